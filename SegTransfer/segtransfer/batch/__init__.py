"""Headless batch runs over folders of studies (head CTs and cardiac series).

* :mod:`.studies`: finding the studies of a folder or a manifest, and telling their kind;
* :mod:`.pipelines`: what runs on one head CT (hemorrhage) and one cardiac series (cleanup,
  sparse 4D pair, wall thickness), with the review figures;
* :mod:`.runner`: the batch itself: progress, failures recorded, finished studies skipped, one CSV.
"""

from .pipelines import BatchOptions
from .runner import BATCH_FILE, RESULTS_FILE, STUDY_FILE, run_batch
from .studies import CAPABILITIES, KINDS, Study, discover, read_manifest

__all__ = ["BATCH_FILE", "CAPABILITIES", "KINDS", "RESULTS_FILE", "STUDY_FILE", "BatchOptions", "Study", "discover",
           "read_manifest", "run_batch"]

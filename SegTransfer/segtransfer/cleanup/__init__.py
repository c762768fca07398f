"""Consensus annotation cleanup: exact multi-label closing, hole fill, minimum-size rule,
inter-rater agreement and label fusion.  See ``docs/cleanup.md``.

Label maps are ``SimpleITK.Image`` / :class:`segtransfer.io.LabelImage` objects (LPS geometry; numpy
arrays ``[z, y, x]``); volumes in mL, distances in mm.
"""

from .agreement import LabelAgreement, agreement_over_cases, compare_labels, pair_cases, summarize, write_agreement_csv
from .closing import Ball, binary_closing, close_labels, make_ball, reference_closing
from .fusion import FusionResult, fuse_labels
from .holes import fill_holes, remove_small_components
from .pipeline import clean_labels
from .report import ChangeReport, CleanupResult, LabelChange, Region

__all__ = [
    "Ball",
    "ChangeReport",
    "CleanupResult",
    "FusionResult",
    "LabelAgreement",
    "LabelChange",
    "Region",
    "agreement_over_cases",
    "binary_closing",
    "clean_labels",
    "close_labels",
    "compare_labels",
    "fill_holes",
    "fuse_labels",
    "make_ball",
    "pair_cases",
    "reference_closing",
    "remove_small_components",
    "summarize",
    "write_agreement_csv",
]

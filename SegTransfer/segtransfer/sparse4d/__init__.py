"""Sparse ED/ES 4D training pairs from multi-phase cardiac CT.

* :mod:`.phases`: ED/ES identification (labels, R-R percentages, predicted volume curve), LV volume
  curve (mL) and ejection fraction;
* :mod:`.resample`: the common output grid (1 mm isotropic by default) and resampling;
* :mod:`.export`: building, writing and reading the pair (``image4d.nii.gz``, ``labels4d.nii.gz``,
  ``sparse4d.json``), with the labelled phases recorded in the sidecar and the NIfTI headers;
* :mod:`.dataset`: a train/validation/test manifest over many pairs, split by study;
* :mod:`.inputs`: loading a study from any supported 4D form.

Typical use::

    series, sources = load_study("study_dir", phase_labels={0: "ed.seg.nrrd", 8: "es.seg.nrrd"})
    pair = build_sparse4d(series, spacing_mm=1.0, sources=sources)
    write_sparse4d(pair, "pairs/study_01")
"""

from .dataset import build_manifest, find_pairs, read_manifest, split_studies, write_manifest
from .export import (
    IMAGE_FILE,
    LABELS_FILE,
    SIDECAR,
    Sparse4DPair,
    build_sparse4d,
    header_note,
    inspect_sparse4d,
    parse_header_note,
    read_sparse4d,
    write_sparse4d,
)
from .inputs import load_predicted_volumes, load_study, read_labels4d, study_inputs
from .phases import (
    DEFAULT_ES_PERCENT,
    PhaseChoice,
    PhaseSummary,
    ed_es_from_percent_rr,
    ed_es_from_volumes,
    ejection_fraction,
    identify_ed_es,
    label_volume_ml,
    read_volume_curve,
    summarise_phases,
    volume_curve_from_label4d,
    volume_curve_from_labels,
)
from .resample import Grid, crop_grid, output_grid, resample_image, resample_labels

__all__ = [
    "DEFAULT_ES_PERCENT",
    "Grid",
    "IMAGE_FILE",
    "LABELS_FILE",
    "PhaseChoice",
    "PhaseSummary",
    "SIDECAR",
    "Sparse4DPair",
    "build_manifest",
    "build_sparse4d",
    "crop_grid",
    "ed_es_from_percent_rr",
    "ed_es_from_volumes",
    "ejection_fraction",
    "find_pairs",
    "header_note",
    "identify_ed_es",
    "inspect_sparse4d",
    "label_volume_ml",
    "load_predicted_volumes",
    "load_study",
    "output_grid",
    "parse_header_note",
    "read_labels4d",
    "read_manifest",
    "read_sparse4d",
    "read_volume_curve",
    "resample_image",
    "resample_labels",
    "split_studies",
    "study_inputs",
    "summarise_phases",
    "volume_curve_from_label4d",
    "volume_curve_from_labels",
    "write_manifest",
    "write_sparse4d",
]

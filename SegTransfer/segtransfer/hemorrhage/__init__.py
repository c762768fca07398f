"""CT hemorrhage segmentation: preprocessing (HU check, RAI reorientation, skull stripping), 2D U-Net
inference with volume, detection and lesions, outputs for review, single-site training, and the
shipped demonstration model (trained on phantoms; not for clinical use)."""

from __future__ import annotations

from pathlib import Path

from .infer import MIN_DETECTION_ML, HemorrhageResult, Lesion, segment
from .preprocess import check_ct, preprocess, skull_strip


def default_model_path() -> Path:
    """The shipped demonstration model package (trained on phantom head CTs; not for clinical use)."""
    return Path(__file__).resolve().parent.parent / "resources" / "models" / "hemorrhage_phantom"


__all__ = ["MIN_DETECTION_ML", "HemorrhageResult", "Lesion", "check_ct", "default_model_path", "preprocess", "segment", "skull_strip"]

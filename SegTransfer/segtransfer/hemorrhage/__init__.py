"""CT hemorrhage segmentation: preprocessing (HU check, RAI reorientation, skull stripping), 2D U-Net
inference with volume, detection and lesions, outputs for review, single-site training, and the
shipped demonstration model (trained on phantoms; not for clinical use)."""

from __future__ import annotations

from pathlib import Path

from ..lazy import lazy_exports
from .preprocess import check_ct, preprocess, skull_strip  # no torch; the function shadows its module's name

_EXPORTS = {"MIN_DETECTION_ML": ".infer", "HemorrhageResult": ".infer", "Lesion": ".infer", "segment": ".infer"}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)  # torch and MONAI load on first use


def default_model_path() -> Path:
    """The shipped demonstration model package (trained on phantom head CTs; not for clinical use)."""
    return Path(__file__).resolve().parent.parent / "resources" / "models" / "hemorrhage_phantom"


__all__ = sorted([*_EXPORTS, "check_ct", "default_model_path", "preprocess", "skull_strip"])

"""The hemorrhage model: a small MONAI 2D U-Net over axial slices, sigmoid output, and its package description."""

from __future__ import annotations

from ..labels import HEMORRHAGE_SEGMENTS

ARCHITECTURE = "monai.networks.nets.UNet"
#: Small enough for a 512x512x40 CT in seconds on two CPU cores.
ARGUMENTS = {"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "channels": [16, 32, 64, 128], "strides": [2, 2, 2],
             "num_res_units": 1, "norm": "batch"}
#: -20..180 HU to 0..1: keeps blood (50-90 HU) apart from brain (30 HU) and from the bone rim (above 200 HU).
INTENSITY = {"kind": "window", "min_hu": -20.0, "max_hu": 180.0}
INFERENCE_PATCH = [256, 256]
#: Key of a package's ``extra`` that asks inference to average the sigmoid with that of the left-right mirrored
#: slice (value ``"left-right"``); see :func:`segtransfer.hemorrhage.infer.predict_slices`.
FLIP_AVERAGE = "test_time_flip"


def description(name: str = "ct-hemorrhage-2d-unet", extra: dict | None = None) -> dict:
    """Validated package description of the hemorrhage model (2D axial slices, LPS-identity orientation);
    ``extra``: inference options kept in the package, e.g. ``{FLIP_AVERAGE: "left-right"}``."""
    from ..models import make_description

    return make_description(ARCHITECTURE, ARGUMENTS, name=name, spacing_mm=[None, None, None], intensity=INTENSITY,
                            labels=list(HEMORRHAGE_SEGMENTS), activation="sigmoid", threshold=0.5, patch_size=INFERENCE_PATCH,
                            task="ct-hemorrhage-segmentation", orientation="LPS", extra=extra)

"""The cleanup steps in their fixed order, with one combined report.

Order: (1) minimum-size rule (remove label components smaller than ``min_component_size``),
(2) multi-label closing with the exact ball, (3) plain hole fill.  Each step is optional; the
combined report counts changes from the input to the final label map and lists every region each
step changed (``Region.step`` names the step).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..io import LabelImage
from ..progress import ProgressCallback
from .arrays import as_label_image, image_like
from .closing import VOXEL, close_labels
from .holes import fill_holes, remove_small_components
from .report import CleanupResult, build_report


def clean_labels(labels: LabelImage | sitk.Image, radius: float | None = 5.0, radius_unit: str = VOXEL,
                 fill: bool = False, max_hole_size: float | None = None, min_component_size: float | None = None,
                 size_unit: str = "voxel", where: str = "labels", progress: ProgressCallback | None = None) -> CleanupResult:
    """Run the chosen cleanup steps on a label map.

    ``radius`` / ``radius_unit``: closing radius (``None`` skips the closing); ``fill``: run the hole
    fill, limited to holes of at most ``max_hole_size`` when given; ``min_component_size``: remove
    label components smaller than this (``None`` skips); ``size_unit``: ``"voxel"`` or ``"ml"`` for both
    sizes.  Returns a :class:`CleanupResult` whose ``changes`` mask marks every voxel that differs from
    the input.  Raises ``InputError`` when no step is chosen or for bad input.
    """
    li = as_label_image(labels, where)
    steps: list[str] = []
    params: dict = {}
    regions = []
    current = li
    chosen = [s for s, on in (("remove-small", min_component_size is not None), ("close", radius is not None), ("fill-holes", fill)) if on]
    if not chosen:
        raise InputError("cleanup", "no step chosen: give a closing radius, the hole fill or a minimum component size")
    for n, step in enumerate(chosen):
        if progress:
            progress(n / len(chosen), f"{step} ({n + 1}/{len(chosen)})")
        if step == "remove-small":
            result = remove_small_components(current, min_component_size, size_unit, where)
        elif step == "close":
            result = close_labels(current, radius, radius_unit, where)
        else:
            result = fill_holes(current, max_hole_size, size_unit, where)
        steps.append(step)
        params[step] = result.report.parameters
        regions += result.report.regions
        current = result.labels
    before = sitk.GetArrayViewFromImage(li.image)
    after = sitk.GetArrayViewFromImage(current.image)
    report = build_report("+".join(steps), params, li, before, after, regions)
    if progress:
        progress(1.0, f"cleanup done: {report.voxels_changed} voxels changed")
    changes = image_like((before != after).astype(np.uint8), li.image)
    return CleanupResult(LabelImage(current.image, li.segments), changes, report)

"""Consensus fusion of two or more raters' label maps: majority vote or multi-label STAPLE.

Both are SimpleITK's filters: ``LabelVoting`` (each voxel takes the label most raters gave it,
background votes included) and ``MultiLabelSTAPLE`` (Warfield et al.: rater performance estimated by
expectation-maximisation, each voxel takes the most probable label).  A voxel is **undecided** when
the vote is tied (majority vote) or the posterior is tied (STAPLE); ``tie`` says what it becomes:
``"first"`` (default) takes the first rater's label (list the senior reader first), an integer
sets that label value (``0`` = background, or a spare value such as 255 to review the voxels).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..io import LabelImage, check_same_grid
from ..labels import Segment
from .arrays import as_label_image, image_like
from .report import label_counts, voxel_volume_ml

METHODS = ("majority", "staple")


@dataclass
class FusionResult:
    """Fused label map (grid of the raters, segments of the first rater plus any others'), the mask of
    undecided voxels (``uint8`` image, 1 = undecided) and a report dict: ``method``, ``raters``,
    ``tie``, ``undecided_voxels``, ``labels`` ({value: {name, voxels, ml}}) and, for STAPLE,
    ``rater_sensitivity`` (per rater, {label value: estimated P(rater says it | it is true)})."""

    labels: LabelImage
    undecided: sitk.Image
    report: dict


def fuse_labels(raters: list[LabelImage | sitk.Image], method: str = "majority", tie: str | int = "first",
                names: list[str | os.PathLike] | None = None, max_iterations: int = 100) -> FusionResult:
    """Fuse two or more label maps of one case into a consensus label map.

    ``raters``: label maps on one grid (``GeometryError`` naming the first mismatching pair
    otherwise); ``method``: ``"majority"`` or ``"staple"``; ``tie``: see this module's docstring;
    ``names``: the raters' names (file names) for messages and the report; ``max_iterations``: cap on
    STAPLE's EM iterations.
    """
    if method not in METHODS:
        raise InputError("fusion method", f"must be one of {', '.join(METHODS)}, got {method!r}")
    names = [str(n) for n in names] if names is not None else [f"rater {i + 1}" for i in range(len(raters))]
    if len(raters) < 2:
        raise InputError(names[0] if names else "raters", "fusion needs at least two raters' label maps")
    if len(names) != len(raters):
        raise InputError("raters", f"{len(names)} names for {len(raters)} label maps")
    maps = [as_label_image(r, n) for r, n in zip(raters, names)]
    for m, n in zip(maps[1:], names[1:]):
        check_same_grid(maps[0].image, m.image, names[0], n)
    arrays = [sitk.GetArrayViewFromImage(m.image) for m in maps]
    vmax = max(int(a.max()) for a in arrays)
    if tie != "first":
        try:
            tie = int(tie)
        except (TypeError, ValueError):
            raise InputError("tie", f"must be 'first' or a label value, got {tie!r}") from None
        if not 0 <= tie <= 65535:
            raise InputError("tie", f"label value must be in 0..65535, got {tie}")
    undecided_value = vmax + 1
    pixel = sitk.sitkUInt8 if undecided_value < 256 else sitk.sitkUInt16
    images = [sitk.Cast(m.image, pixel) for m in maps]
    report: dict = {"method": method, "raters": names, "tie": tie}
    if method == "majority":
        fused = sitk.LabelVoting(images, undecided_value)
    else:
        staple = sitk.MultiLabelSTAPLEImageFilter()
        staple.SetLabelForUndecidedPixels(undecided_value)
        staple.SetMaximumNumberOfIterations(int(max_iterations))
        fused = staple.Execute(images)
        n_labels = vmax + 1
        sensitivity = {}
        for i, name in enumerate(names):
            # confusion matrix: (labels + 1) rows (rater's label) x labels columns (true label), row-major
            matrix = np.asarray(staple.GetConfusionMatrix(i), dtype=float).reshape(n_labels + 1, n_labels)
            sensitivity[name] = {str(v): float(matrix[v, v]) for v in range(n_labels)}
        report["rater_sensitivity"] = sensitivity
    out = sitk.GetArrayFromImage(fused)
    undecided = out == undecided_value
    out[undecided] = arrays[0][undecided] if tie == "first" else tie
    dtype = np.uint8 if max(int(out.max()), 0) < 256 else np.uint16
    out = out.astype(dtype)
    segments: dict[int, Segment] = {}
    for m in reversed(maps):
        segments.update({s.value: s for s in m.segments})
    vml = voxel_volume_ml(maps[0].image)
    counts = label_counts(out)
    report["undecided_voxels"] = int(undecided.sum())
    report["labels"] = {str(v): {"name": segments[v].name if v in segments else f"Label {v}", "voxels": n, "ml": n * vml}
                        for v, n in counts.items()}
    ordered = [segments[v] for v in sorted(segments)]
    return FusionResult(LabelImage(image_like(out, maps[0].image), ordered), image_like(undecided.astype(np.uint8), maps[0].image), report)

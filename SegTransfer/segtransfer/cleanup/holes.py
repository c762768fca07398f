"""Plain hole fill (enclosed holes only) and the minimum-size rule.

Definitions
-----------
* A **hole** is a connected component of background voxels (face connectivity: 6 neighbours in 3D)
  that does not reach the image border; everything beyond the border counts as background, so a
  background pocket open to the border (or to the outside through a face-connected channel) is not
  a hole.  :func:`fill_holes` fills holes of the union of all labels, optionally only those of at
  most ``max_hole_size`` (voxels or mL), and labels them by the rule of
  :mod:`segtransfer.cleanup.regions` (a hole inside the blood pool becomes blood pool; a hole between
  two labels is split by nearest label).
* The **minimum-size rule** (:func:`remove_small_components`) removes connected components of each
  label (full connectivity: 26 neighbours in 3D) smaller than ``min_size`` (strictly fewer voxels, or
  strictly less volume in mL); their voxels become background.  Run it before the hole fill, so a
  speck of one label inside another becomes a hole that the fill then gives to the label around it.

Arrays are indexed ``[z, y, x]``; volumes in mL; centroids in LPS mm.
"""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import InputError
from ..io import LabelImage
from .arrays import PaddedBox, as_label_image, bounding_box, paste_box, spacing_zyx
from .regions import assign_added, face_structure, full_structure, to_report_regions
from .report import KIND_SMALL, CleanupResult, Region, build_report, label_counts, voxel_volume_ml

SIZE_UNITS = ("voxel", "ml")


def _check_size(size: float | None, unit: str, name: str) -> float | None:
    if unit not in SIZE_UNITS:
        raise InputError("size unit", f"must be one of {', '.join(SIZE_UNITS)}, got {unit!r}")
    if size is None:
        return None
    try:
        value = float(size)
    except (TypeError, ValueError):
        raise InputError(name, f"must be a number of {unit}s, got {size!r}") from None
    if not math.isfinite(value) or value < 0:
        raise InputError(name, f"must be a non-negative number of {unit}s, got {size!r}")
    return value


def _sizes_in_unit(voxel_counts: np.ndarray, unit: str, voxel_ml: float) -> np.ndarray:
    return voxel_counts * voxel_ml if unit == "ml" else voxel_counts.astype(np.float64)




def fill_holes(labels: LabelImage | sitk.Image, max_hole_size: float | None = None, size_unit: str = "voxel",
               where: str = "labels") -> CleanupResult:
    """Fill the enclosed holes of the union of labels (definition in this module's docstring).

    ``labels``: label map (2D or 3D); ``max_hole_size``: fill only holes of at most this size in
    ``size_unit`` (``"voxel"`` or ``"ml"``), ``None`` fills every hole; ``where``: name for messages.
    Returns a :class:`CleanupResult`; each filled hole is one report region (kind ``hole`` when one
    label surrounds it, ``gap`` when it touches several).
    Raises ``InputError`` for a label map without labelled voxels or a bad size.
    """
    li = as_label_image(labels, where)
    limit = _check_size(max_hole_size, size_unit, "max hole size")
    arr = sitk.GetArrayViewFromImage(li.image)
    box = bounding_box(arr)
    if box is None:
        raise InputError(where, "label map has no labelled voxels; no holes to fill")
    # one background voxel of margin: the margin shell is background and connected, so every
    # background component that reaches it is open to the outside
    work = PaddedBox(arr.shape, box, (1,) * arr.ndim)
    values = work.take(arr)
    components, n = ndimage.label(values == 0, structure=face_structure(arr.ndim))
    outside = components[(0,) * arr.ndim]
    sizes = np.bincount(components.ravel(), minlength=n + 1)
    vml = voxel_volume_ml(li.image)
    keep = np.ones(n + 1, dtype=bool)
    keep[0] = keep[outside] = False
    if limit is not None:
        keep &= _sizes_in_unit(sizes, size_unit, vml) <= limit
    added = keep[components]
    filled, regions = assign_added(values, added, spacing_zyx(li.image))
    params = {"max_hole_size": limit, "size_unit": size_unit, "holes_found": int(n - 1), "holes_filled": len(regions)}
    report = build_report("fill-holes", params, li, values[work.inner], filled[work.inner],
                          to_report_regions(regions, li.image, work.start, "fill-holes", vml), counts_before=label_counts(arr))
    out = paste_box(li.image, filled[work.inner], work.outer, base=li.image)
    changes = paste_box(li.image, added[work.inner].astype(np.uint8), work.outer)
    return CleanupResult(LabelImage(out, li.segments), changes, report)


def remove_small_components(labels: LabelImage | sitk.Image, min_size: float, size_unit: str = "voxel",
                            where: str = "labels") -> CleanupResult:
    """Set to background every connected component (26-connectivity in 3D) of each label that is
    smaller than ``min_size`` (strictly fewer voxels, or strictly less mL, per ``size_unit``).

    Returns a :class:`CleanupResult`; each removed component is one report region (change
    ``removed``, kind ``small component``, ``labels`` = {its label: its voxels}).
    """
    li = as_label_image(labels, where)
    if min_size is None:
        raise InputError("min component size", "must be given (a number of voxels or mL)")
    limit = _check_size(min_size, size_unit, "min component size")
    full = sitk.GetArrayViewFromImage(li.image)
    vml = voxel_volume_ml(li.image)
    regions: list[Region] = []
    structure = full_structure(full.ndim)
    outer = bounding_box(full)
    if outer is None:
        raise InputError(where, "label map has no labelled voxels")
    arr = full[outer]  # every component lies in the labelled bounding box
    out = arr.copy()
    offset = [b.start for b in outer]
    for value in (int(v) for v in label_counts(arr)):
        box = bounding_box(arr == value)
        mask = arr[box] == value
        components, n = ndimage.label(mask, structure=structure)
        sizes = np.bincount(components.ravel(), minlength=n + 1)
        small = _sizes_in_unit(sizes, size_unit, vml) < limit
        small[0] = False
        if not small.any():
            continue
        ids = np.flatnonzero(small)
        centroids = ndimage.center_of_mass(mask, components, ids)
        objects = ndimage.find_objects(components)
        start = [b.start + o for b, o in zip(box, offset)]  # index of the component box in the full array
        for c, centre in zip(ids, centroids):
            idx_zyx = np.asarray(centre) + start
            point = li.image.TransformContinuousIndexToPhysicalPoint([float(x) for x in idx_zyx[::-1]])
            sl = objects[c - 1]
            first = tuple(int(s.start + b) for s, b in zip(sl, start))[::-1]
            last = tuple(int(s.stop - 1 + b) for s, b in zip(sl, start))[::-1]
            regions.append(Region("remove-small", "removed", KIND_SMALL, int(sizes[c]), float(sizes[c] * vml),
                                  tuple(float(p) for p in point), {value: int(sizes[c])}, (first, last)))
        sub = out[box]
        sub[small[components]] = 0
    params = {"min_size": limit, "size_unit": size_unit, "components_removed": len(regions)}
    report = build_report("remove-small", params, li, arr, out, regions, counts_before=label_counts(full))
    result = paste_box(li.image, out, outer, base=li.image)
    changes = paste_box(li.image, (arr != out).astype(np.uint8), outer)
    return CleanupResult(LabelImage(result, li.segments), changes, report)

"""Resampling every phase of a series onto one common grid (1 mm isotropic by default).

Grid rule: the output grid keeps the source grid's **direction** (its axes stay the scanner's
image axes; an oblique acquisition stays oblique, so no rotation is interpolated in and the
physical box is the same) and the **outer corner** of voxel (0, 0, 0): both grids start at the same
physical point.  Along each axis the output has ``round(n * s / s')`` voxels of spacing ``s'``, so
the physical extent (``n * s``, voxel edge to voxel edge) is kept to within half an output voxel.
Images use a smooth interpolator (cubic B-spline by default, or linear), clamped to the input's own
intensity range so that B-spline overshoot never creates values the scan does not hold; label maps
use nearest neighbour.  Voxel centres in the half-voxel rim outside the source's outermost voxel
centres take the nearest source value (nearest-neighbour extrapolation), never a fill value.

An optional crop keeps a sub-block of that grid (same voxel positions) around the labelled LV: the
bounding box of blood pool and myocardium over all labelled phases, grown by a margin in mm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

INTERPOLATORS = {"bspline": sitk.sitkBSpline, "linear": sitk.sitkLinear}
IMAGE_TYPES = ("float32", "int16")
#: Offset (mm, along each image axis) at which labels are sampled so that nearest-neighbour ties
#: always resolve the same way: above float32 rounding of positions, far below any voxel size.
TIE_BREAK_MM = 1e-3


@dataclass(frozen=True)
class Grid:
    """A 3D voxel grid: ``size`` (x, y, z voxels), ``spacing`` (mm), ``origin`` (LPS mm, centre of voxel
    (0, 0, 0)) and ``direction`` (9 direction cosines, row-major, columns are the image axes)."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> "Grid":
        """The grid of a 3D image."""
        return cls(tuple(int(s) for s in image.GetSize()[:3]), tuple(float(s) for s in image.GetSpacing()[:3]),
                   tuple(float(o) for o in image.GetOrigin()[:3]), tuple(float(d) for d in image.GetDirection()))

    def matrix(self) -> np.ndarray:
        """Direction cosines as a 3x3 matrix (columns: image x, y, z axes in LPS)."""
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    def extent_mm(self) -> np.ndarray:
        """Physical extent along the image axes, voxel edge to voxel edge: ``size * spacing`` (mm)."""
        return np.asarray(self.size, dtype=float) * np.asarray(self.spacing, dtype=float)

    def corner_mm(self) -> np.ndarray:
        """LPS position (mm) of the outer corner of voxel (0, 0, 0): half a voxel before its centre."""
        return np.asarray(self.origin) - self.matrix() @ (0.5 * np.asarray(self.spacing))

    def to_dict(self) -> dict:
        """JSON-ready description."""
        return {"size": list(self.size), "spacing_mm": list(self.spacing), "origin_mm": list(self.origin),
                "direction": list(self.direction)}


def _spacing3(spacing_mm: float | Sequence[float]) -> np.ndarray:
    s = np.atleast_1d(np.asarray(spacing_mm, dtype=float))
    if s.size == 1:
        s = np.repeat(s, 3)
    if s.size != 3 or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise InputError("spacing", f"need one or three positive spacings in mm, got {list(np.atleast_1d(spacing_mm))}")
    return s


def output_grid(source: Grid, spacing_mm: float | Sequence[float] = 1.0) -> Grid:
    """The common output grid for a source grid: same direction and outer corner, spacing
    ``spacing_mm`` (one value = isotropic, or x y z), ``round(extent / spacing)`` voxels per axis."""
    s_out = _spacing3(spacing_mm)
    size = np.maximum(np.floor(source.extent_mm() / s_out + 0.5).astype(int), 1)
    origin = source.corner_mm() + source.matrix() @ (0.5 * s_out)
    return Grid(tuple(int(n) for n in size), tuple(float(s) for s in s_out), tuple(float(o) for o in origin), source.direction)


def crop_grid(grid: Grid, source: Grid, masks: Iterable[sitk.Image], margin_mm: float) -> tuple[Grid, dict]:
    """Sub-block of the output ``grid`` covering the non-zero voxels of ``masks`` (3D label maps on the
    ``source`` grid, e.g. pool + myocardium of the labelled phases) grown by ``margin_mm``.

    ``grid`` must come from :func:`output_grid` of ``source`` (same corner and axes).  Returns the
    cropped grid and a record: index offset and size in the uncropped output grid, margin.
    """
    if not np.isfinite(margin_mm) or margin_mm < 0:
        raise InputError("crop margin", f"must be a non-negative number of mm, got {margin_mm}")
    lo = hi = None
    for m in masks:
        nz = np.argwhere(sitk.GetArrayViewFromImage(m) > 0)  # [z, y, x]
        if nz.size == 0:
            continue
        mlo, mhi = nz.min(axis=0)[::-1], nz.max(axis=0)[::-1]  # (x, y, z)
        lo = mlo if lo is None else np.minimum(lo, mlo)
        hi = mhi if hi is None else np.maximum(hi, mhi)
    if lo is None:
        raise InputError("crop", "no labelled voxels to crop around (the labelled phases are empty)")
    s_src, s_out = np.asarray(source.spacing), np.asarray(grid.spacing)
    # Box along the image axes, mm from the shared outer corner.
    lo_mm = np.clip(lo * s_src - margin_mm, 0.0, None)
    hi_mm = np.minimum((hi + 1) * s_src + margin_mm, source.extent_mm())
    i0 = np.clip(np.floor(lo_mm / s_out + 1e-6).astype(int), 0, np.asarray(grid.size) - 1)
    i1 = np.clip(np.ceil(hi_mm / s_out - 1e-6).astype(int), i0 + 1, np.asarray(grid.size))
    origin = np.asarray(grid.origin) + grid.matrix() @ (i0 * s_out)
    cropped = Grid(tuple(int(n) for n in i1 - i0), grid.spacing, tuple(float(o) for o in origin), grid.direction)
    return cropped, {"margin_mm": float(margin_mm), "index": [int(i) for i in i0], "size": list(cropped.size),
                     "uncropped_size": list(grid.size)}


def _resample(image: sitk.Image, grid: Grid, interpolator: int, pixel_type: int) -> sitk.Image:
    return sitk.Resample(image, list(grid.size), sitk.Transform(), interpolator, grid.origin, grid.spacing, grid.direction,
                         0.0, pixel_type, True)


def resample_image(image: sitk.Image, grid: Grid, interpolator: str = "bspline", image_type: str = "float32") -> sitk.Image:
    """Resample a 3D intensity image (HU) onto ``grid``.

    ``interpolator``: ``bspline`` (cubic) or ``linear``.  The result is clamped to the input's
    min..max.  ``image_type``: ``float32`` or ``int16`` (rounded to whole HU).
    """
    if interpolator not in INTERPOLATORS:
        raise InputError("interpolator", f"unknown image interpolator {interpolator!r}; use {' or '.join(INTERPOLATORS)}")
    if image_type not in IMAGE_TYPES:
        raise InputError("image type", f"unknown output image type {image_type!r}; use {' or '.join(IMAGE_TYPES)}")
    src = sitk.Cast(image, sitk.sitkFloat32)
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(src)
    out = sitk.Clamp(_resample(src, grid, INTERPOLATORS[interpolator], sitk.sitkFloat32), sitk.sitkFloat32,
                     stats.GetMinimum(), stats.GetMaximum())
    if image_type == "int16":
        arr = np.clip(np.rint(sitk.GetArrayViewFromImage(out)), -32768, 32767).astype(np.int16)
        rounded = sitk.GetImageFromArray(arr)
        rounded.CopyInformation(out)
        return rounded
    return out


def resample_labels(labels: sitk.Image, grid: Grid) -> sitk.Image:
    """Resample a 3D label map onto ``grid`` with nearest-neighbour interpolation (uint8 out).

    With corner-aligned grids many output centres lie exactly half-way between two source centres
    (e.g. every one when halving the resolution).  Floating-point noise would break those ties one
    way or the other voxel by voxel, giving ragged boundaries and crops that differ from the uncropped
    grid; sampling :data:`TIE_BREAK_MM` further along each image axis breaks every tie towards the
    higher index instead, a shift far below any voxel size.
    """
    nudge = sitk.TranslationTransform(3, tuple(float(v) for v in grid.matrix() @ np.full(3, TIE_BREAK_MM)))
    return sitk.Resample(labels, list(grid.size), nudge, sitk.sitkNearestNeighbor, grid.origin, grid.spacing, grid.direction,
                         0.0, sitk.sitkUInt8, True)

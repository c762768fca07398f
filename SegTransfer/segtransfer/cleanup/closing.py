"""Multi-label morphological closing with an exact Euclidean ball.

Definition (what :func:`close_labels` computes)
-----------------------------------------------
Let ``F`` be the foreground, the union of all non-zero labels, on the voxel lattice, and let the
ball ``B`` be the set of lattice offsets ``v`` (in voxels, array order) with ``|v * s| <= r``, where
``s`` is 1 per axis for a radius in voxels and the voxel spacing in mm for a radius in mm (so an
anisotropic grid gets a ball that is round in mm, or round in voxel steps, as asked).  A relative
tolerance of 1e-9 on ``r`` keeps offsets lying exactly on the sphere (e.g. (3, 4, 0) for r = 5)
inside despite floating-point rounding.

* Dilation ``D = F (+) B`` = voxels whose distance to ``F`` is ``<= r``.
* Erosion ``C = D (-) B`` = voxels of ``D`` whose distance to the nearest voxel outside ``D`` is
  ``> r`` (no offset of the ball leaves ``D``).
* ``C`` is the morphological closing of ``F`` by ``B``.  Outside the image the lattice is taken as
  background, infinitely far (the work happens in a box padded by the ball's half-width + 1 voxel),
  so the image border never erodes an object touching it.

Distances are exact Euclidean distance maps (SimpleITK ``SignedMaurerDistanceMap``, squared,
multithreaded) compared against a threshold placed half-way between the largest squared offset
length inside the ball and the smallest outside it; where float32 distance values could not
separate the two (gap under 1e-4 relative, possible only for unusual spacings in mm), SciPy's
float64 ``distance_transform_edt`` with ``sampling`` is used instead.  The result equals, voxel for
voxel, ``binary_erosion(binary_dilation(F, B), B)`` with the explicit ball footprint
(:func:`reference_closing`), at a cost independent of the radius.

Properties: ``F`` is a subset of ``C`` (no labelled voxel is removed or relabelled); ``C`` lies within
the bounding box of ``F`` and within ``D`` (nothing grows beyond the closing of the union); a region
whose boundary has no concavity narrower than the ball (a convex shape, a sphere of radius >= r) is
unchanged.  Only background voxels change; each takes a label by the rule in
:mod:`segtransfer.cleanup.regions` (holes take the label around them, gaps between labels take the
nearest label).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import InputError
from ..io import LabelImage
from ..progress import ProgressCallback
from .arrays import PaddedBox, as_label_image, bounding_box, paste_box, spacing_zyx
from .regions import assign_added, to_report_regions
from .report import CleanupResult, build_report, label_counts, voxel_volume_ml

VOXEL, MM = "voxel", "mm"
RADIUS_UNITS = (VOXEL, MM)
#: Offsets with length up to ``r * (1 + RADIUS_REL_TOL)`` belong to the ball.
RADIUS_REL_TOL = 1e-9
#: Smallest relative gap between squared lengths inside/outside the ball for float32 distance maps.
FLOAT32_SAFE_GAP = 1e-4


@dataclass(frozen=True)
class Ball:
    """A Euclidean ball on a voxel lattice.

    ``radius`` in ``unit`` (``voxel`` or ``mm``); ``scale_zyx``: length of one voxel step per array
    axis in that unit (1 for voxels, the spacing in mm for mm); ``spacing_zyx``: voxel spacing in mm;
    ``half_width_zyx``: largest offset along each axis (voxels); ``threshold_sq``: squared-length
    threshold separating offsets inside (below) from outside (above), in ``unit``^2;
    ``relative_gap``: gap between those squared lengths relative to the threshold; ``voxels``: number
    of offsets in the ball; ``max_extent_mm``: length in mm of its longest offset.
    """

    radius: float
    unit: str
    scale_zyx: tuple[float, ...]
    spacing_zyx: tuple[float, ...]
    half_width_zyx: tuple[int, ...]
    threshold_sq: float
    relative_gap: float
    voxels: int
    max_extent_mm: float

    def footprint(self) -> np.ndarray:
        """Boolean array of the ball's offsets, shape ``2 * half_width + 1`` per axis, centred."""
        return _footprint(self.radius, self.scale_zyx)

    def to_dict(self) -> dict:
        """The ball's description as a JSON-ready dict."""
        return asdict(self)


def _offset_lengths_sq(half_width, scale) -> np.ndarray:
    grids = np.meshgrid(*(np.arange(-h, h + 1, dtype=np.float64) * s for h, s in zip(half_width, scale)), indexing="ij")
    return sum(g * g for g in grids)


def _footprint(radius: float, scale_zyx) -> np.ndarray:
    half = [int(math.floor(radius * (1 + RADIUS_REL_TOL) / s)) for s in scale_zyx]
    return _offset_lengths_sq(half, scale_zyx) <= (radius * (1 + RADIUS_REL_TOL)) ** 2


def make_ball(radius: float, spacing_xyz, unit: str = VOXEL) -> Ball:
    """The ball of ``radius`` (in ``unit``: ``"voxel"`` or ``"mm"``) on a grid of ``spacing_xyz`` mm
    (SimpleITK order x, y, z; 2D grids give 2 values).

    Raises ``InputError`` for a radius that is not a positive finite number or an unknown unit.
    """
    if unit not in RADIUS_UNITS:
        raise InputError("radius unit", f"must be one of {', '.join(RADIUS_UNITS)}, got {unit!r}")
    try:
        r = float(radius)
    except (TypeError, ValueError):
        raise InputError("radius", f"must be a number, got {radius!r}") from None
    if not math.isfinite(r) or r <= 0:
        raise InputError("radius", f"must be a positive number of {unit}s, got {radius!r}")
    spacing = tuple(float(s) for s in reversed(tuple(spacing_xyz)))
    scale = (1.0,) * len(spacing) if unit == VOXEL else spacing
    limit = r * (1 + RADIUS_REL_TOL)
    half = tuple(int(math.floor(limit / s)) for s in scale)
    lengths = _offset_lengths_sq([h + 1 for h in half], scale)  # one step beyond the ball on every axis
    inside = lengths <= limit * limit
    inner_max, outer_min = float(lengths[inside].max()), float(lengths[~inside].min())
    threshold = 0.5 * (inner_max + outer_min)
    mm = _offset_lengths_sq([h + 1 for h in half], spacing)
    return Ball(r, unit, scale, spacing, half, threshold, (outer_min - inner_max) / threshold, int(inside.sum()),
                float(np.sqrt(mm[inside].max())))


def _distance_sq_outside(obj: np.ndarray | sitk.Image, ball: Ball) -> sitk.Image:
    """Squared distance (in ``ball.unit``) from every voxel to the nearest non-zero voxel of ``obj``
    (``<= 0`` on them)."""
    if isinstance(obj, np.ndarray):
        img = sitk.GetImageFromArray(obj.view(np.uint8) if obj.dtype == bool else obj)
    else:
        img = obj
    img.SetSpacing(tuple(reversed(ball.scale_zyx)))
    return sitk.SignedMaurerDistanceMap(img, insideIsPositive=False, squaredDistance=True, useImageSpacing=True,
                                        backgroundValue=0.0)


def _close_padded(box: np.ndarray, ball: Ball) -> np.ndarray:
    """Closing of the foreground (non-zero voxels) of the boolean or unsigned-integer array ``box``,
    which must have at least ``half_width + 1`` background voxels between its foreground and each of
    its faces.  Returns a boolean array."""
    t = ball.threshold_sq
    if ball.relative_gap >= FLOAT32_SAFE_GAP:
        big = float(np.finfo(np.float32).max)
        dilated_sq = _distance_sq_outside(box, ball)
        outside_dilation = sitk.BinaryThreshold(dilated_sq, t, big, 1, 0)  # distance^2 > t: not in D
        del dilated_sq
        eroded_sq = _distance_sq_outside(outside_dilation, ball)
        del outside_dilation
        closed = sitk.BinaryThreshold(eroded_sq, t, big, 1, 0)
        del eroded_sq
        return sitk.GetArrayViewFromImage(closed) != 0  # a new array; ``closed`` is alive until this returns
    # float64 path: squared lengths too close to the threshold for float32 distance values
    d = ndimage.distance_transform_edt(box == 0, sampling=ball.scale_zyx)
    dilated = d * d <= t
    d = ndimage.distance_transform_edt(dilated, sampling=ball.scale_zyx)
    return d * d > t


def binary_closing(mask: np.ndarray, ball: Ball) -> np.ndarray:
    """Exact closing of the boolean array ``mask`` (``[z, y, x]``) by ``ball``, with the lattice beyond
    the array taken as background.  Returns a new boolean array of the same shape."""
    box = bounding_box(mask)
    out = np.zeros(mask.shape, dtype=bool)
    if box is None:
        return out
    work = PaddedBox(mask.shape, box, tuple(h + 1 for h in ball.half_width_zyx))
    closed = _close_padded(work.take(mask), ball)
    out[work.outer] = closed[work.inner]
    return out


def reference_closing(mask: np.ndarray, ball: Ball) -> np.ndarray:
    """Closing of ``mask`` by brute force: SciPy ``binary_dilation`` then ``binary_erosion`` with the
    explicit ball footprint, on an array padded by the ball's half-width + 1 (the lattice beyond the
    array is background).  Slow (cost grows with the ball's volume): for checking :func:`binary_closing`."""
    pad = [(h + 1, h + 1) for h in ball.half_width_zyx]
    fp = ball.footprint()
    padded = np.pad(mask.astype(bool), pad)
    closed = ndimage.binary_erosion(ndimage.binary_dilation(padded, structure=fp), structure=fp, border_value=0)
    return closed[tuple(slice(h + 1, h + 1 + n) for h, n in zip(ball.half_width_zyx, mask.shape))]


def close_labels(labels: LabelImage | sitk.Image, radius: float = 5.0, unit: str = VOXEL, where: str = "labels",
                 progress: ProgressCallback | None = None) -> CleanupResult:
    """Multi-label closing of a label map (0 background; 1 blood pool, 2 myocardium, or any labels).

    ``labels``: label map (``LabelImage`` or integer ``SimpleITK.Image``, 2D or 3D, any geometry);
    ``radius``: ball radius in ``unit`` (``"voxel"``, the source study's 5 voxels, or ``"mm"``);
    ``where``: name used in error messages (the file name).

    The union of the labels is closed by the exact Euclidean ball (see this module's docstring); no
    labelled voxel changes; each added voxel is labelled by the rule of
    :mod:`segtransfer.cleanup.regions`.  Returns a :class:`CleanupResult` with the closed label map
    (same grid, same segments), the mask of added voxels and a report (voxels and mL added per label,
    each connected region filled with its size in voxels and mL and its centroid in LPS mm).
    Raises ``InputError`` for a label map without any labelled voxel or a bad radius.
    """
    li = as_label_image(labels, where)
    ball = make_ball(radius, li.image.GetSpacing(), unit)
    arr = sitk.GetArrayViewFromImage(li.image)  # a view: no full-size copy
    box = bounding_box(arr)
    if box is None:
        raise InputError(where, "label map has no labelled voxels; nothing to close")
    if progress:
        progress(0.1, f"closing with a ball of radius {ball.radius:g} {ball.unit} ({ball.voxels} voxels)")
    work = PaddedBox(arr.shape, box, tuple(h + 1 for h in ball.half_width_zyx))
    values = work.take(arr)
    added = _close_padded(values, ball)
    added &= values == 0
    work.clear_outside(added)
    if progress:
        progress(0.6, f"labelling {int(added.sum())} added voxels")
    filled, regions = assign_added(values, added, spacing_zyx(li.image), ball.max_extent_mm)
    # every change lies in the working box: report from it, write the outputs by pasting it
    vml = voxel_volume_ml(li.image)
    params = {"radius": ball.radius, "radius_unit": ball.unit, "ball_voxels": ball.voxels,
              "ball_half_width_zyx": list(ball.half_width_zyx)}
    report = build_report("close", params, li, values[work.inner], filled[work.inner],
                          to_report_regions(regions, li.image, work.start, "close", vml), counts_before=label_counts(arr))
    out = paste_box(li.image, filled[work.inner], work.outer, base=li.image)
    changes = paste_box(li.image, added[work.inner].astype(np.uint8), work.outer)
    if progress:
        progress(1.0, f"closed: {report.voxels_changed} voxels added")
    return CleanupResult(LabelImage(out, li.segments), changes, report)

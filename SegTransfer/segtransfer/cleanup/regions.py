"""Labelling of voxels added to a label map, and the connected regions they form.

The labelling rule (used by the closing and by the hole fill):

1. Added voxels are grouped into connected regions with face connectivity (6-connectivity in 3D,
   4 in 2D), the connectivity of background under which a hole "enclosed" by a 26-connected object
   is a hole.
2. A region whose face neighbours (outside the region) carry exactly one non-zero label takes that
   label whole.  So a hole inside the blood pool becomes blood pool, and a dent in the outer surface
   of the myocardium becomes myocardium.
3. Every voxel of any other region (a gap touching two or more labels, e.g. between blood pool and
   myocardium) takes the label of the nearest originally labelled voxel, by Euclidean distance in
   mm; equal distances (to 1 part in 10^5) go to the lower label value.  A gap between blood pool
   and myocardium is therefore split down its middle, each half joining the structure it touches.

Arrays are indexed ``[z, y, x]``, spacings are mm in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .report import KIND_CONCAVITY, KIND_GAP, KIND_HOLE, Region

#: Relative tolerance under which two distances to different labels count as equal.
TIE_REL_TOL = 1e-5


def face_structure(ndim: int) -> np.ndarray:
    """Face-connectivity structuring element (6-connectivity in 3D)."""
    return ndimage.generate_binary_structure(ndim, 1)


def full_structure(ndim: int) -> np.ndarray:
    """Full connectivity structuring element (26-connectivity in 3D)."""
    return ndimage.generate_binary_structure(ndim, ndim)


def neighbour_values(components: np.ndarray, values: np.ndarray) -> dict[int, set[int]]:
    """For each component id ``c > 0`` of ``components``, the set of ``values`` found at face
    neighbours of its voxels that lie outside every component (beyond the array edge counts as 0).

    Neither SciPy nor SimpleITK lists the labels that border each connected component, so this
    compares face-shifted views of the two arrays (one vectorised pass per face direction).
    """
    vmax = int(values.max()) + 1
    keys = []
    for axis in range(components.ndim):
        lo = [slice(None)] * components.ndim
        hi = [slice(None)] * components.ndim
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        for a, b in ((tuple(lo), tuple(hi)), (tuple(hi), tuple(lo))):
            ca, cb = components[a], components[b]
            m = (ca > 0) & (cb == 0)
            keys.append(ca[m].astype(np.int64) * vmax + values[b][m])
        for face in (0, -1):  # voxels on the array's faces border the (background) outside
            idx = [slice(None)] * components.ndim
            idx[axis] = face
            on_face = components[tuple(idx)]
            keys.append(on_face[on_face > 0].astype(np.int64) * vmax)
    out: dict[int, set[int]] = {}
    for key in np.unique(np.concatenate(keys)):
        out.setdefault(int(key // vmax), set()).add(int(key % vmax))
    return out


def nearest_label(values: np.ndarray, targets: np.ndarray, spacing_zyx, max_distance_mm: float | None = None) -> np.ndarray:
    """Label of the nearest labelled voxel (``values > 0``) for every ``True`` voxel of ``targets``.

    Distances are Euclidean in mm (exact distance maps, SimpleITK ``SignedMaurerDistanceMap``, one per
    label); equal distances (to 1 part in 10^5) go to the lower label value.  ``max_distance_mm``,
    when given, promises that every target has a labelled voxel within that distance; the work is
    then restricted to the targets' bounding box grown by that distance.  Returns a 1D array of label
    values in the order of ``np.nonzero(targets)``.
    """
    from .arrays import bounding_box

    box = bounding_box(targets)
    if box is None:
        return np.zeros(0, dtype=values.dtype)
    if max_distance_mm is None:
        box = tuple(slice(0, n) for n in values.shape)
    else:
        grow = [int(np.ceil(max_distance_mm / s)) + 1 for s in spacing_zyx]
        box = tuple(slice(max(b.start - g, 0), min(b.stop + g, n)) for b, g, n in zip(box, grow, values.shape))
    sub_values, sub_targets = values[box], targets[box]
    candidates = [int(v) for v in np.unique(sub_values) if v != 0]
    if not candidates:
        raise ValueError("no labelled voxel near the voxels to label")
    dist = np.empty((len(candidates), int(np.count_nonzero(sub_targets))), dtype=np.float64)
    for row, value in enumerate(candidates):
        img = sitk.GetImageFromArray((sub_values == value).astype(np.uint8))
        img.SetSpacing(tuple(float(s) for s in reversed(spacing_zyx)))
        d2 = sitk.SignedMaurerDistanceMap(img, insideIsPositive=False, squaredDistance=True, useImageSpacing=True)
        dist[row] = sitk.GetArrayViewFromImage(d2)[sub_targets]
    best = dist.min(axis=0)
    # first row (lowest label value) within the tie tolerance of the minimum (squared distances: 2x the tolerance)
    close = dist <= best * (1.0 + 2.0 * TIE_REL_TOL)
    return np.asarray(candidates, dtype=values.dtype)[np.argmax(close, axis=0)]


@dataclass
class AddedRegion:
    """One connected region of added voxels, in working-array coordinates."""

    index: int
    kind: str
    voxels: int
    labels: dict[int, int]
    slices: tuple[slice, ...]
    centroid_index: tuple[float, ...]


def assign_added(values: np.ndarray, added: np.ndarray, spacing_zyx, max_distance_mm: float | None = None
                 ) -> tuple[np.ndarray, list[AddedRegion]]:
    """Label the ``added`` voxels of the label array ``values`` by the rule in this module's docstring.

    ``values``: integer array (0 = background), ``added``: boolean array of the same shape, all on
    ``values == 0``; ``max_distance_mm``: see :func:`nearest_label`.  Returns the new label array and
    the list of connected regions of added voxels (kind ``hole``, ``gap`` or ``concavity``).
    """
    out = values.copy()
    components, n = ndimage.label(added, structure=face_structure(added.ndim))
    if n == 0:
        return out, []
    around = neighbour_values(components, values)
    single = np.zeros(n + 1, dtype=values.dtype)
    kinds = {}
    for c in range(1, n + 1):
        neigh = around.get(c, set())
        labelled = sorted(v for v in neigh if v != 0)
        if len(labelled) == 1:
            single[c] = labelled[0]
        kinds[c] = KIND_GAP if len(labelled) >= 2 else (KIND_CONCAVITY if 0 in neigh or not labelled else KIND_HOLE)
    by_single = single[components]
    out[added] = by_single[added]
    rest = added & (by_single == 0)
    if rest.any():
        out[rest] = nearest_label(values, rest, spacing_zyx, max_distance_mm)
    # per-region size, centroid and label counts from the added voxels only (memory ~ their number)
    where = np.nonzero(added)
    ids = components[where]
    sizes = np.bincount(ids, minlength=n + 1)
    centroids = np.stack([np.bincount(ids, weights=w, minlength=n + 1) for w in where], axis=1) / np.maximum(sizes, 1)[:, None]
    vmax = int(out.max()) + 1
    pairs, counts = np.unique(ids.astype(np.int64) * vmax + out[where], return_counts=True)
    per_region: dict[int, dict[int, int]] = {}
    for key, count in zip(pairs, counts):
        per_region.setdefault(int(key // vmax), {})[int(key % vmax)] = int(count)
    regions = []
    for c, sl in enumerate(ndimage.find_objects(components), start=1):
        regions.append(AddedRegion(c, kinds[c], int(sizes[c]), per_region[c], sl, tuple(float(x) for x in centroids[c])))
    return out, regions


def to_report_regions(regions: list[AddedRegion], image: sitk.Image, offset_zyx, step: str, voxel_ml: float) -> list[Region]:
    """Turn working-array regions into report :class:`Region` entries for ``image``.

    ``offset_zyx``: index in ``image``'s array of the working array's first voxel.  Centroids become
    LPS mm through the image geometry; bounding boxes become (i, j, k) voxel indices of ``image``.
    """
    out = []
    for r in regions:
        idx_zyx = np.asarray(r.centroid_index) + np.asarray(offset_zyx)
        point = image.TransformContinuousIndexToPhysicalPoint([float(x) for x in idx_zyx[::-1]])
        first = tuple(int(s.start + o) for s, o in zip(r.slices, offset_zyx))[::-1]
        last = tuple(int(s.stop - 1 + o) for s, o in zip(r.slices, offset_zyx))[::-1]
        out.append(Region(step, "added", r.kind, r.voxels, r.voxels * voxel_ml, tuple(float(p) for p in point), r.labels, (first, last)))
    return out

"""Which faces of the myocardium are endocardium, epicardium, or neither (basal cut, LV outflow tract).

Arrays are ``[z, y, x]``; ``spacing_zyx`` in mm.  Rule (documented in docs/thickness.md):

* endocardium: wall voxel faces shared with the blood pool;
* epicardium: wall voxel faces shared with background where the wall lies *between* that
  background voxel and the blood pool: walking from the background voxel along the inward surface
  normal of the pool+wall object, the first voxel that is not myocardium is blood pool (within
  ``max_depth_mm``);
* neither (cut): the other wall/background faces.  At the basal cut and the LVOT the inward normal
  runs along the wall and leaves it into background (or nowhere) without meeting the pool, so these
  faces get a no-flux (Neumann) condition and streamlines there run along the cut instead of
  ending on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import InputError

#: 6-neighbour offsets (axis, step) in [z, y, x] index order.
NEIGHBOURS = [(axis, step) for axis in range(3) for step in (-1, 1)]


@dataclass
class Boundaries:
    """Boolean masks ``[z, y, x]`` on a grid padded by one voxel on every side (``pad`` = 1).

    ``wall``: myocardium; ``pool``: blood pool; ``epi``: background voxels across an epicardial
    face; ``cut``: background voxels across a no-flux face.  ``spacing_zyx`` in mm.
    """

    wall: np.ndarray
    pool: np.ndarray
    epi: np.ndarray
    cut: np.ndarray
    spacing_zyx: tuple[float, float, float]
    pad: int = 1


def shifted(mask: np.ndarray, axis: int, step: int) -> np.ndarray:
    """``mask`` moved by ``step`` voxels along ``axis`` (False shifted in): out[i] = mask[i + step]."""
    out = np.zeros_like(mask)
    src = [slice(None)] * mask.ndim
    dst = [slice(None)] * mask.ndim
    if step > 0:
        src[axis], dst[axis] = slice(step, None), slice(None, -step)
    else:
        src[axis], dst[axis] = slice(None, step), slice(-step, None)
    out[tuple(dst)] = mask[tuple(src)]
    return out


def adjacent_to(mask: np.ndarray) -> np.ndarray:
    """Voxels that share a face with a voxel of ``mask`` (6-neighbourhood)."""
    out = np.zeros_like(mask)
    for axis, step in NEIGHBOURS:
        out |= shifted(mask, axis, step)
    return out


def classify(labels_zyx: np.ndarray, spacing_zyx, pool: int = 1, wall: int = 2, max_depth_mm: float = 60.0,
             where: str = "labels") -> Boundaries:
    """Classify the boundary of the myocardium of a ``[z, y, x]`` label array (see module docstring).

    Raises ``InputError`` when the pool or the wall is missing.
    """
    arr = np.pad(np.asarray(labels_zyx), 1)
    w, p = arr == wall, arr == pool
    if not w.any():
        raise InputError(where, f"no myocardium (label {wall}) in the label map")
    if not p.any():
        raise InputError(where, f"no blood pool (label {pool}) in the label map")
    spacing = np.asarray(spacing_zyx, dtype=float)
    background = ~(w | p)
    candidates = background & adjacent_to(w)
    idx = np.array(np.nonzero(candidates), dtype=float).T  # (n, 3) voxel centres, [z, y, x]
    # inward surface normal of the pool+wall object: gradient of its smoothed indicator (physical units)
    smooth = ndimage.gaussian_filter((w | p).astype(np.float32), sigma=1.5 * spacing.min() / spacing, mode="constant")
    grad = np.stack([np.gradient(smooth, spacing[a], axis=a)[candidates] for a in range(3)], axis=1)
    inward = grad / np.maximum(np.linalg.norm(grad, axis=1, keepdims=True), 1e-12)
    step = 0.5 * spacing.min()
    # march along the normals in flat indices, keeping only the undecided candidates
    strides = np.array([arr.shape[1] * arr.shape[2], arr.shape[2], 1])
    top = np.array(arr.shape) - 1
    origin = idx.astype(int) @ strides
    pool_flat, background_flat = p.ravel(), background.ravel()
    first = np.zeros(len(idx), dtype=np.int8)  # 0 undecided, 1 pool first, 2 background first
    live = np.arange(len(idx))
    per_mm = inward / spacing
    for t in np.arange(step, max_depth_mm, step):
        if live.size == 0:
            break
        q = np.clip(np.round(idx[live] + t * per_mm[live]).astype(int), 0, top) @ strides
        moved = q != origin[live]
        hit_pool = pool_flat[q] & moved
        hit_other = background_flat[q] & moved & ~hit_pool
        first[live[hit_pool]] = 1
        first[live[hit_other]] = 2
        live = live[~(hit_pool | hit_other)]
    is_epi = first == 1
    where_idx = tuple(idx.astype(int).T)
    epi = np.zeros_like(w)
    cut = np.zeros_like(w)
    epi[tuple(i[is_epi] for i in where_idx)] = True
    cut[tuple(i[~is_epi] for i in where_idx)] = True
    return Boundaries(w, p, epi, cut, tuple(float(s) for s in spacing))

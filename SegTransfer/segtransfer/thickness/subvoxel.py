"""Sub-voxel wall boundaries: where a streamline really starts and ends.

A label map only says on which side of a voxel face the wall lies, so a surface on the voxel faces
(marching cubes at 0.5 on the binary mask) is a staircase: each vertex is up to half a voxel off
the smooth anatomical boundary the label map was drawn from, and thickness measured face to face
inherits both ends' errors.  The boundary is estimated instead as the 0.5 level set of the mask
smoothed with a Gaussian of ``SIGMA_MM`` (at least one voxel along every axis): the smoothing
averages the staircase out, and for a boundary with curvature radius R it moves the level set by
only about ``sigma_mm**2 / R`` (0.05 mm on a 30 mm epicardium; the endocardial and epicardial
shifts partly cancel).  The width is set in millimetres, not voxels, because on an anisotropic
grid the terraces of the staircase are as wide in-plane as the slices are thick: a 2 mm slice
cutting an oblique wall leaves steps 2 mm or more wide across 0.5 mm pixels, which a one-pixel
in-plane smoothing would keep.

The streamline keeps its path; only its two ends move along its first and last direction onto
those level sets, so the thickness becomes ``length - start_offset + end_offset``.  The offsets are
searched within ``reach`` voxels of the face (no level crossing there keeps the face position).
Hand-written because no library does this search along many arbitrary lines at once; the
smoothing and the interpolation are scipy's.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Gaussian width (mm) for the boundary estimate; never less than one voxel along an axis.
SIGMA_MM = 1.25
#: How far (voxels along the line's steepest axis) from the face the boundary is searched.
REACH_VOXELS = 1.5


def smoothed_mask(mask: np.ndarray, spacing_zyx, sigma_mm: float = SIGMA_MM) -> np.ndarray:
    """``mask`` (boolean ``[z, y, x]``, ``spacing_zyx`` in mm) as a float32 field smoothed by a Gaussian
    of ``sigma_mm``, but at least one voxel, along each axis; its 0.5 level set is the sub-voxel
    boundary estimate."""
    sigma_voxels = np.maximum(sigma_mm / np.asarray(spacing_zyx, dtype=float), 1.0)
    return ndimage.gaussian_filter(mask.astype(np.float32), sigma=sigma_voxels, mode="constant")


def level_offsets(field: np.ndarray, points_zyx: np.ndarray, directions: np.ndarray, spacing_zyx,
                  level: float = 0.5, reach_voxels: float = REACH_VOXELS, samples: int = 11) -> np.ndarray:
    """Signed distance (mm) from each point along its direction to the nearest crossing of ``level``.

    ``points_zyx`` (n, 3): continuous indices of ``field``'s grid; ``directions`` (n, 3): unit
    ``[z, y, x]`` vectors in physical space (mm); ``spacing_zyx`` in mm.  The search runs on both
    sides as far as the line moves ``reach_voxels`` voxels along its steepest axis (so a 2 mm slice
    direction is searched over 2 mm, a 0.5 mm in-plane one over 0.5 mm); a point with no crossing
    there (or a NaN or zero direction) gets 0.
    """
    spacing = np.asarray(spacing_zyx, dtype=float)
    n = len(points_zyx)
    offsets = np.zeros(n)
    ok = np.all(np.isfinite(directions), axis=1) & (np.linalg.norm(np.nan_to_num(directions), axis=1) > 0.5)
    if not ok.any():
        return offsets
    p, d = points_zyx[ok], directions[ok]
    step_index = d / spacing  # index change per mm along each line
    reach = reach_voxels / np.max(np.abs(step_index), axis=1)  # mm along the line for reach_voxels voxels
    s = np.linspace(-1.0, 1.0, samples)
    t = s[None, :] * reach[:, None]  # (m, samples) mm along the line
    q = p[:, None, :] + t[:, :, None] * step_index[:, None, :]  # (m, samples, 3) indices
    f = ndimage.map_coordinates(field, q.reshape(-1, 3).T, order=1, mode="nearest").reshape(len(p), samples) - level
    sign_change = np.signbit(f[:, :-1]) != np.signbit(f[:, 1:])
    # the crossing nearest the face: rank candidate intervals by the distance of their midpoint to t = 0
    mid = np.abs(0.5 * (s[:-1] + s[1:]))
    rank = np.where(sign_change, mid[None, :], np.inf)
    rows = np.arange(len(p))
    j = np.argmin(rank, axis=1)
    found = np.isfinite(rank[rows, j])
    f0, f1 = f[rows, j], f[rows, j + 1]
    frac = np.where(found, f0 / np.where(f0 - f1 == 0, 1.0, f0 - f1), 0.0)
    crossing = np.where(found, t[rows, j] + frac * (t[rows, j + 1] - t[rows, j]), 0.0)
    offsets[ok] = crossing
    return offsets

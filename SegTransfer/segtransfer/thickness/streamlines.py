"""Streamlines of the Laplace field from the epicardium to the endocardium.

Fourth-order Runge-Kutta along the normalised gradient, trilinear interpolation of the gradient
and of u (scipy.ndimage.map_coordinates), all seeds advanced together (in ``workers`` chunks of
seeds on threads: most of the work runs outside the GIL, so two threads on two cores trace about
1.5 times as fast).  A streamline starts at a
surface vertex (u = 1, on the label boundary) and ends where the interpolated u reaches 0 (the
crossing is interpolated linearly within the last step); its length in mm is the thickness.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass
class Streamlines:
    """Per seed: ``length_mm`` (NaN where no valid streamline was found); ``start_dir`` and
    ``end_dir`` (n, 3): unit ``[z, y, x]`` directions in physical space (mm) of the first and last
    step (NaN where none was taken); ``end_zyx`` (n, 3): where the streamline ended (continuous
    indices); and, when kept, ``paths``: a list of ``[z, y, x]`` continuous-index polylines (padded
    grid)."""

    length_mm: np.ndarray
    paths: list[np.ndarray] | None
    start_dir: np.ndarray
    end_dir: np.ndarray
    end_zyx: np.ndarray


def _sample(field: np.ndarray, p: np.ndarray) -> np.ndarray:
    return ndimage.map_coordinates(field, p.T, order=1, mode="nearest")


#: Default RK4 step, in voxels of the smallest spacing.  Two voxels measured as accurate as one on
#: every analytic shell (mean error within 0.01 mm of it) at half the interpolation work.
STEP_VOXELS = 2.0


def trace(u: np.ndarray, spacing_zyx, seeds_zyx: np.ndarray, step_mm: float | None = None, max_length_mm: float = 80.0,
          keep_paths: bool = False, workers: int = 1) -> Streamlines:
    """Trace from ``seeds_zyx`` (n, 3; continuous indices of ``u``'s grid) down the gradient of ``u``.

    ``step_mm``: RK4 step (default :data:`STEP_VOXELS` times the smallest spacing); where the four
    RK4 directions of a step disagree (the field turns within it) that seed's step is halved, down
    to an eighth.  A seed whose streamline has not reached u = 0 within ``max_length_mm``, leaves the
    grid, or still turns at the smallest step (the gradient vanishes) is invalid.  ``workers``: seeds
    are split into that many chunks traced on threads (each seed's streamline is independent, so
    the result does not depend on it).
    """
    spacing = np.asarray(spacing_zyx, dtype=float)
    step = float(step_mm or STEP_VOXELS * spacing.min())
    # float32 halves the memory the interpolation reads; its rounding (1e-7) is far below the tolerances
    grads = [np.gradient(u, spacing[a], axis=a).astype(np.float32) for a in range(3)]
    seeds = np.asarray(seeds_zyx, dtype=float)
    chunks = np.array_split(seeds, max(1, min(int(workers), len(seeds))))
    if len(chunks) == 1:
        return _trace(u, grads, spacing, seeds, step, max_length_mm, keep_paths)
    with ThreadPoolExecutor(len(chunks)) as pool:
        parts = list(pool.map(lambda c: _trace(u, grads, spacing, c, step, max_length_mm, keep_paths), chunks))
    return Streamlines(np.concatenate([x.length_mm for x in parts]),
                       [p for x in parts for p in x.paths] if keep_paths else None,
                       np.concatenate([x.start_dir for x in parts]), np.concatenate([x.end_dir for x in parts]),
                       np.concatenate([x.end_zyx for x in parts]))


def _trace(u: np.ndarray, grads: list[np.ndarray], spacing: np.ndarray, seeds: np.ndarray, step: float,
           max_length_mm: float, keep_paths: bool) -> Streamlines:
    """:func:`trace` for one chunk of seeds, given the gradient components ``grads`` of ``u``."""

    def direction(p: np.ndarray) -> np.ndarray:
        g = np.stack([_sample(gr, p) for gr in grads], axis=1)
        norm = np.linalg.norm(g, axis=1, keepdims=True)
        return np.where(norm > 1e-9, -g / np.maximum(norm, 1e-12), 0.0)

    p = seeds.copy()
    n = len(p)
    length = np.zeros(n)
    result = np.full(n, np.nan)
    active = np.ones(n, dtype=bool)
    u_prev = _sample(u, p)
    result[u_prev <= 0] = 0.0
    active &= u_prev > 0
    paths = [[q.copy()] for q in p] if keep_paths else None
    start_dir = np.full((n, 3), np.nan)
    end_dir = np.full((n, 3), np.nan)
    shape = np.array(u.shape) - 1
    h = np.full(n, step)  # per-seed step: halved where the four RK4 directions disagree
    for _ in range(4 * int(np.ceil(max_length_mm / step))):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        q, hq = p[idx], h[idx][:, None]
        k1 = direction(q)
        k2 = direction(q + 0.5 * hq * k1 / spacing)
        k3 = direction(q + 0.5 * hq * k2 / spacing)
        k4 = direction(q + hq * k3 / spacing)
        move = (k1 + 2 * k2 + 2 * k3 + k4) / 6.0
        moved = np.linalg.norm(move, axis=1)
        unit = move / np.maximum(moved, 1e-12)[:, None]
        q_new = q + hq * move / spacing
        u_new = _sample(u, q_new)
        outside = np.any((q_new < 0) | (q_new > shape), axis=1)
        turning = (moved < 0.5) & ~outside
        retry = turning & (h[idx] > step / 8)  # the field turns within the step: try again with half of it
        h[idx[retry]] *= 0.5
        go = ~retry
        stalled = outside | (turning & ~retry) | (length[idx] > max_length_mm)
        crossed = (u_new <= 0) & ~stalled & go
        first = go & np.isnan(start_dir[idx, 0])
        start_dir[idx[first]] = unit[first]
        end_dir[idx[go]] = unit[go]
        frac = np.where(crossed, u_prev[idx] / np.maximum(u_prev[idx] - u_new, 1e-12), 1.0)
        length[idx[go]] += (h[idx] * moved * frac)[go]
        end = q + frac[:, None] * (q_new - q)
        p[idx[go]] = np.where(crossed[:, None], end, q_new)[go]
        if keep_paths:
            for j, i in enumerate(idx):
                if go[j]:
                    paths[i].append(p[i].copy())
        result[idx[crossed]] = length[idx[crossed]]
        active[idx[crossed | stalled]] = False
        u_prev[idx[go]] = u_new[go]
    return Streamlines(result, [np.array(x) for x in paths] if keep_paths else None, start_dir, end_dir, p)

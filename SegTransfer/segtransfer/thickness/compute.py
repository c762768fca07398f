"""Wall thickness of one label map: boundaries -> Laplace -> epicardial surface -> thickness per vertex."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..io import LabelImage, as_label_pixels
from ..labels import BLOOD_POOL, MYOCARDIUM
from .boundaries import Boundaries, classify
from .eulerian import eulerian_thickness
from .laplace import LaplaceField, nearest_defined, solve_laplace, solve_laplace_jacobi
from .streamlines import trace
from .subvoxel import level_offsets, smoothed_mask
from .surface import Surface, boundary_mesh, epicardial_part, to_lps

METHODS = ("streamline", "eulerian")
#: Laplace solvers: conjugate gradients (the default) and the source study's plain Jacobi sweeps
#: (the benchmark baseline, scripts/benchmark_laplace.py).
SOLVERS = {"cg": solve_laplace, "jacobi": solve_laplace_jacobi}
#: Threads for one label map: the surface mesh, the smoothed masks and the nearest-value map are
#: built while the boundaries are classified and the solver runs, and the streamlines are traced
#: in that many chunks (most of that work runs outside the GIL).
WORKERS = min(4, os.cpu_count() or 1)


@dataclass
class ThicknessResult:
    """Thickness on the epicardial surface.

    ``points_lps`` (n, 3) mm and ``triangles`` (m, 3): the epicardial mesh; ``thickness_mm`` (n,):
    per vertex, NaN where no valid streamline was found; ``streamlines_lps``: polylines (LPS mm) when
    requested; ``laplace``: solver iterations, residual and time.
    """

    points_lps: np.ndarray
    triangles: np.ndarray
    thickness_mm: np.ndarray
    method: str
    laplace: LaplaceField
    streamlines_lps: list[np.ndarray] | None = None

    def statistics(self) -> dict:
        """mean, median, 95th percentile and max (mm) over vertices with a valid thickness, with counts."""
        valid = self.thickness_mm[np.isfinite(self.thickness_mm)]
        stats = {"n_vertices": int(self.thickness_mm.size), "n_invalid": int(self.thickness_mm.size - valid.size)}
        if valid.size:
            stats.update(mean_mm=float(valid.mean()), median_mm=float(np.median(valid)),
                         p95_mm=float(np.percentile(valid, 95)), max_mm=float(valid.max()))
        else:
            stats.update(mean_mm=float("nan"), median_mm=float("nan"), p95_mm=float("nan"), max_mm=float("nan"))
        return stats


def compute_thickness(labels: LabelImage | sitk.Image, method: str = "streamline", pool: int = BLOOD_POOL, wall: int = MYOCARDIUM,
                      keep_streamlines: bool = False, max_depth_mm: float = 60.0, where: str = "labels",
                      solver: str = "cg", workers: int = WORKERS) -> ThicknessResult:
    """LV wall thickness from a 3D label map (``pool`` and ``wall`` label values; LPS geometry kept).

    ``method``: ``streamline`` (RK4 streamlines of the Laplace field, the default) or ``eulerian``
    (Yezzi-Prince PDEs).  ``solver``: a key of :data:`SOLVERS`.  ``workers``: threads (the result
    does not depend on them).  Raises ``InputError`` for a non-3D map or a missing pool or wall.
    """
    if method not in METHODS:
        raise InputError(where, f"unknown thickness method {method!r} (use {' or '.join(METHODS)})")
    if solver not in SOLVERS:
        raise InputError(where, f"unknown Laplace solver {solver!r} (use {' or '.join(SOLVERS)})")
    image = labels.image if isinstance(labels, LabelImage) else labels
    if image.GetDimension() != 3:
        raise InputError(where, f"expected a 3D label map, got {image.GetDimension()}D")
    image = as_label_pixels(image, where)
    arr, offset_zyx = crop_to_labels(sitk.GetArrayFromImage(image), (pool, wall))
    spacing_zyx = tuple(image.GetSpacing()[::-1])
    padded = np.pad(arr, 1)  # the grid of Boundaries
    wall_mask, pool_mask = padded == wall, padded == pool
    with ThreadPoolExecutor(max(1, workers)) as threads:
        # these need only the label masks: built on the other thread(s) while the boundaries are
        # classified and the solver runs
        nearest_job = threads.submit(nearest_defined, wall_mask, spacing_zyx)
        mesh_job = threads.submit(boundary_mesh, wall_mask | pool_mask)
        if method == "streamline":
            masks_job = threads.submit(lambda: (smoothed_mask(wall_mask | pool_mask, spacing_zyx), smoothed_mask(pool_mask, spacing_zyx)))
        b: Boundaries = classify(arr, spacing_zyx, pool, wall, max_depth_mm, where)
        if not b.epi.any():
            raise InputError(where, "the myocardium has no epicardial face (does it enclose the blood pool?)")
        field = SOLVERS[solver](b, nearest=nearest_job)
        surface: Surface = epicardial_part(mesh_job.result(), b)
        if len(surface.vertices_zyx) == 0:
            raise InputError(where, "no epicardial surface could be extracted")
        paths = None
        vertices = surface.vertices_zyx
        if method == "streamline":
            lines = trace(field.u, spacing_zyx, vertices, keep_paths=keep_streamlines, workers=workers)
            # both ends onto the sub-voxel boundaries (see .subvoxel): the start along the first step,
            # the end along the last; the vertex moves with its streamline's start
            outer, inner = masks_job.result()
            start_job = threads.submit(level_offsets, outer, vertices, lines.start_dir, spacing_zyx)
            end = level_offsets(inner, lines.end_zyx, lines.end_dir, spacing_zyx)
            start = start_job.result()
            thickness, paths = lines.length_mm - start + end, lines.paths
            moved = np.nan_to_num(lines.start_dir) * start[:, None] / np.asarray(spacing_zyx)
            vertices = vertices + moved
            if paths is not None:
                paths = [np.vstack([v, path[1:]]) for v, path in zip(vertices, paths)]
        else:
            per_voxel = eulerian_thickness(b, field.u)
            thickness = _vertex_values(per_voxel, surface.vertices_zyx, b)
    geometry = (image.GetOrigin(), image.GetSpacing(), image.GetDirection())
    lines_lps = [to_lps(p + offset_zyx, *geometry) for p in paths] if paths is not None else None
    return ThicknessResult(to_lps(vertices + offset_zyx, *geometry), surface.faces,
                           thickness, method, field, lines_lps)


#: Background voxels kept around the labels' bounding box: room for the ghost layer and the
#: interpolation stencils outside the wall.  The Gaussian smoothing pads with zeros, which is what
#: background is, so the crop changes no result.
CROP_MARGIN = 4


def crop_to_labels(arr: np.ndarray, values, margin: int = CROP_MARGIN) -> tuple[np.ndarray, np.ndarray]:
    """The part of a ``[z, y, x]`` label array around the voxels holding ``values``, ``margin`` voxels
    wider on every side (within the array), and the ``[z, y, x]`` index of its first voxel.  Only
    background is cut away, so every later step sees the same neighbourhood; the whole array comes
    back when none of ``values`` is present."""
    present = np.isin(arr, values)
    if not present.any():
        return arr, np.zeros(3)
    lo, hi = [], []
    for axis in range(3):
        nz = np.flatnonzero(present.any(axis=tuple(a for a in range(3) if a != axis)))
        lo.append(max(int(nz[0]) - margin, 0))
        hi.append(min(int(nz[-1]) + margin + 1, arr.shape[axis]))
    return arr[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], np.array(lo, dtype=float)


def _vertex_values(per_voxel: np.ndarray, vertices_zyx: np.ndarray, b: Boundaries) -> np.ndarray:
    """Value of the wall voxel behind each epicardial vertex (the inside voxel of its edge)."""
    rounded = np.round(vertices_zyx).astype(int)
    frac_axis = np.argmax(np.abs(vertices_zyx - np.round(vertices_zyx)), axis=1)
    rows = np.arange(len(vertices_zyx))
    lo = rounded.copy()
    lo[rows, frac_axis] = np.floor(vertices_zyx[rows, frac_axis]).astype(int)
    hi = lo.copy()
    hi[rows, frac_axis] += 1
    inner = np.where(b.wall[tuple(lo.T)][:, None], lo, hi)
    return per_voxel[tuple(inner.T)]

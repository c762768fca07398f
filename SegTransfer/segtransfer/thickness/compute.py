"""Wall thickness of one label map: boundaries -> Laplace -> epicardial surface -> thickness per vertex."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..io import LabelImage, as_label_pixels
from ..labels import BLOOD_POOL, MYOCARDIUM
from .boundaries import Boundaries, classify
from .eulerian import eulerian_thickness
from .laplace import LaplaceField, solve_laplace
from .streamlines import trace
from .surface import Surface, epicardial_surface, to_lps

METHODS = ("streamline", "eulerian")


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
                      keep_streamlines: bool = False, max_depth_mm: float = 60.0, where: str = "labels") -> ThicknessResult:
    """LV wall thickness from a 3D label map (``pool`` and ``wall`` label values; LPS geometry kept).

    ``method``: ``streamline`` (RK4 streamlines of the Laplace field, the default) or ``eulerian``
    (Yezzi-Prince PDEs).  Raises ``InputError`` for a non-3D map or a missing pool or wall.
    """
    if method not in METHODS:
        raise InputError(where, f"unknown thickness method {method!r} (use {' or '.join(METHODS)})")
    image = labels.image if isinstance(labels, LabelImage) else labels
    if image.GetDimension() != 3:
        raise InputError(where, f"expected a 3D label map, got {image.GetDimension()}D")
    image = as_label_pixels(image, where)
    arr = sitk.GetArrayFromImage(image)
    spacing_zyx = tuple(image.GetSpacing()[::-1])
    b: Boundaries = classify(arr, spacing_zyx, pool, wall, max_depth_mm, where)
    if not b.epi.any():
        raise InputError(where, "the myocardium has no epicardial face (does it enclose the blood pool?)")
    field = solve_laplace(b)
    surface: Surface = epicardial_surface(b)
    if len(surface.vertices_zyx) == 0:
        raise InputError(where, "no epicardial surface could be extracted")
    paths = None
    if method == "streamline":
        lines = trace(field.u, spacing_zyx, surface.vertices_zyx, keep_paths=keep_streamlines)
        thickness, paths = lines.length_mm, lines.paths
    else:
        per_voxel = eulerian_thickness(b, field.u)
        thickness = _vertex_values(per_voxel, surface.vertices_zyx, b)
    geometry = (image.GetOrigin(), image.GetSpacing(), image.GetDirection())
    lines_lps = [to_lps(p, *geometry) for p in paths] if paths is not None else None
    return ThicknessResult(to_lps(surface.vertices_zyx, *geometry), surface.faces,
                           thickness, method, field, lines_lps)


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

"""The epicardial surface: a triangle mesh on the label boundary (marching cubes, scikit-image).

Vertices of marching cubes on a binary mask at level 0.5 lie half-way between an inside and an
outside voxel centre, i.e. on the voxel face: the sub-voxel label boundary.  A vertex is
epicardial when its inside voxel is myocardium and its outside voxel is an epicardial background
voxel; the surface keeps the triangles whose three vertices are epicardial.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage import measure

from .boundaries import Boundaries


@dataclass
class Surface:
    """Triangle mesh: ``vertices_zyx`` (n, 3) continuous indices in the padded grid, ``faces`` (m, 3)."""

    vertices_zyx: np.ndarray
    faces: np.ndarray


def epicardial_surface(b: Boundaries) -> Surface:
    """The epicardial part of the boundary of pool + wall (see module docstring)."""
    inside = (b.wall | b.pool).astype(np.float32)
    verts, faces, _normals, _values = measure.marching_cubes(inside, level=0.5, allow_degenerate=False)
    frac = np.abs(verts - np.round(verts))
    axis = np.argmax(frac, axis=1)  # the axis of the edge the vertex lies on
    rows = np.arange(len(verts))
    lo = np.round(verts).astype(int)  # the two coordinates off the edge axis are integers
    lo[rows, axis] = np.floor(verts[rows, axis]).astype(int)
    hi = lo.copy()
    hi[rows, axis] += 1
    lo_in = inside[tuple(lo.T)] > 0
    inner = np.where(lo_in[:, None], lo, hi)
    outer = np.where(lo_in[:, None], hi, lo)
    epicardial = b.wall[tuple(inner.T)] & b.epi[tuple(outer.T)]
    keep = epicardial[faces].all(axis=1)
    used = np.unique(faces[keep])
    renumber = np.full(len(verts), -1)
    renumber[used] = np.arange(used.size)
    return Surface(verts[used], renumber[faces[keep]])


def to_lps(points_zyx: np.ndarray, origin, spacing_xyz, direction, pad: int = 1) -> np.ndarray:
    """Continuous ``[z, y, x]`` indices of the padded grid -> LPS mm (n, 3) through the image geometry."""
    ijk = points_zyx[:, ::-1] - pad
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    return (ijk * np.asarray(spacing_xyz, dtype=float)) @ d.T + np.asarray(origin, dtype=float)

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
    return epicardial_part(boundary_mesh(b.wall | b.pool), b)


def boundary_mesh(inside: np.ndarray) -> Surface:
    """Marching cubes at 0.5 on the boolean ``inside`` (pool + wall, ``[z, y, x]`` padded grid): the
    whole boundary, vertices on the voxel faces.  Needs no boundary classification, so it can run
    while the classification does."""
    verts, faces, _normals, _values = measure.marching_cubes(inside.astype(np.float32), level=0.5, allow_degenerate=False)
    return Surface(verts, faces)


def epicardial_part(mesh: Surface, b: Boundaries) -> Surface:
    """The triangles of ``mesh`` (from :func:`boundary_mesh` of ``b.wall | b.pool``) whose three
    vertices are epicardial, renumbered."""
    verts, faces = mesh.vertices_zyx, mesh.faces
    inside = b.wall | b.pool
    frac = np.abs(verts - np.round(verts))
    axis = np.argmax(frac, axis=1)  # the axis of the edge the vertex lies on
    rows = np.arange(len(verts))
    lo = np.round(verts).astype(int)  # the two coordinates off the edge axis are integers
    lo[rows, axis] = np.floor(verts[rows, axis]).astype(int)
    hi = lo.copy()
    hi[rows, axis] += 1
    lo_in = inside[tuple(lo.T)]
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

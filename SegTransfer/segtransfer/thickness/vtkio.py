"""Legacy-VTK polydata output: surfaces with per-vertex arrays and polylines.

A small writer by hand: the legacy format is a short, fixed text header plus big-endian binary
arrays, and the core avoids a dependency on the ~100 MB ``vtk`` wheel for it.  Coordinates are LPS
millimetres; the header line says ``SPACE=LPS``, which 3D Slicer reads to place the model.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..io import atomic_path


def _header(title: str) -> bytes:
    return f"# vtk DataFile Version 3.0\n{title} SPACE=LPS\nBINARY\nDATASET POLYDATA\n".encode()


def _points(points: np.ndarray) -> bytes:
    pts = np.asarray(points, dtype=">f4").reshape(-1, 3)
    return f"POINTS {len(pts)} float\n".encode() + pts.tobytes() + b"\n"


def _cells(keyword: str, cells: list[np.ndarray]) -> bytes:
    total = sum(len(c) + 1 for c in cells)
    flat = np.concatenate([np.concatenate([[len(c)], c]) for c in cells]).astype(">i4") if cells else np.zeros(0, ">i4")
    return f"{keyword} {len(cells)} {total}\n".encode() + flat.tobytes() + b"\n"


def _point_data(n: int, arrays: dict[str, np.ndarray]) -> bytes:
    if not arrays:
        return b""
    out = f"POINT_DATA {n}\n".encode()
    for name, values in arrays.items():
        out += f"SCALARS {name} float 1\nLOOKUP_TABLE default\n".encode() + np.asarray(values, dtype=">f4").tobytes() + b"\n"
    return out


def write_surface(path: str | os.PathLike, points_lps: np.ndarray, triangles: np.ndarray, arrays: dict[str, np.ndarray] | None = None,
                  title: str = "SegTransfer surface") -> Path:
    """Write a triangle mesh (points (n, 3) LPS mm, triangles (m, 3) vertex indices) with per-vertex
    float arrays (e.g. ``{"thickness_mm": values}``; NaN where undefined) atomically."""
    arrays = arrays or {}
    with atomic_path(path) as tmp:
        tmp.write_bytes(_header(title) + _points(points_lps) + _cells("POLYGONS", list(np.asarray(triangles, dtype=int)))
                        + _point_data(len(points_lps), arrays))
    return Path(path)


def write_polylines(path: str | os.PathLike, lines_lps: list[np.ndarray], arrays: dict[str, np.ndarray] | None = None,
                    title: str = "SegTransfer streamlines") -> Path:
    """Write polylines (each (k, 3) LPS mm) with optional per-point arrays, atomically."""
    points = np.concatenate(lines_lps) if lines_lps else np.zeros((0, 3))
    cells, start = [], 0
    for line in lines_lps:
        cells.append(np.arange(start, start + len(line)))
        start += len(line)
    with atomic_path(path) as tmp:
        tmp.write_bytes(_header(title) + _points(points) + _cells("LINES", cells) + _point_data(len(points), arrays or {}))
    return Path(path)

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


def read_surface(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Read a surface written by :func:`write_surface`: ``(points (n, 3) LPS mm, triangles (m, 3),
    {array name: per-vertex values})``.  Only this module's binary legacy layout is understood; any
    other file is an ``InputError`` naming it."""
    from ..errors import InputError

    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(p, f"cannot be read ({exc.strerror or exc})") from None
    pos = 0

    def line() -> str:
        nonlocal pos
        end = data.index(b"\n", pos)
        text, pos = data[pos:end].decode("ascii", "replace").strip(), end + 1
        return text

    def block(count: int, dtype: str) -> np.ndarray:
        nonlocal pos
        size = count * np.dtype(dtype).itemsize
        if pos + size > len(data):
            raise ValueError("truncated array")
        values, pos = np.frombuffer(data[pos:pos + size], dtype=dtype).copy(), pos + size + 1
        return values

    try:
        if not line().startswith("# vtk DataFile"):
            raise ValueError("no VTK header")
        line()
        if line() != "BINARY" or line() != "DATASET POLYDATA":
            raise ValueError("not binary polydata")
        head = line().split()
        if head[0] != "POINTS":
            raise ValueError("no POINTS")
        points = block(int(head[1]) * 3, ">f4").reshape(-1, 3).astype(float)
        head = line().split()
        if head[0] != "POLYGONS":
            raise ValueError("no POLYGONS")
        flat = block(int(head[2]), ">i4").reshape(-1, 4) if int(head[1]) else np.zeros((0, 4), int)
        if flat.size and np.any(flat[:, 0] != 3):
            raise ValueError("polygons that are not triangles")
        triangles = flat[:, 1:].astype(int)
        arrays: dict[str, np.ndarray] = {}
        if pos < len(data):
            head = line().split()
            if head and head[0] == "POINT_DATA":
                while pos < len(data):
                    spec = line().split()
                    if not spec:
                        continue
                    line()  # LOOKUP_TABLE default
                    arrays[spec[1]] = block(len(points), ">f4").astype(float)
    except (ValueError, IndexError) as exc:
        raise InputError(p, f"not a SegTransfer VTK surface ({exc})") from None
    return points, triangles, arrays

"""Geometry helpers shared by the core tests."""

from __future__ import annotations

import numpy as np


def oblique_direction(angle_deg: float = 20.0) -> tuple[float, ...]:
    """Direction cosines (row-major, LPS) of a rotation by ``angle_deg`` about z then about x."""
    a = np.deg2rad(angle_deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(a / 2), -np.sin(a / 2)], [0, np.sin(a / 2), np.cos(a / 2)]])
    return tuple((rz @ rx).ravel())

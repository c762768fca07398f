"""Shared pytest fixtures for the core tests."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk


def oblique_direction(angle_deg: float = 20.0) -> tuple[float, ...]:
    """Direction cosines (row-major, LPS) of a rotation by ``angle_deg`` about z then about x."""
    a = np.deg2rad(angle_deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(a / 2), -np.sin(a / 2)], [0, np.sin(a / 2), np.cos(a / 2)]])
    return tuple((rz @ rx).ravel())


@pytest.fixture
def oblique_image() -> sitk.Image:
    """A small float32 CT-like image (HU) on an oblique, anisotropic grid with a non-zero origin."""
    rng = np.random.default_rng(0)
    arr = rng.normal(40.0, 10.0, size=(7, 9, 11)).astype(np.float32)
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing((0.7, 0.9, 2.5))
    image.SetOrigin((-12.5, 30.25, 101.0))
    image.SetDirection(oblique_direction())
    return image

"""Shared pytest fixtures for the core tests."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from geometry_helpers import oblique_direction


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

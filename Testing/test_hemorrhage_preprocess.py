"""Skull-stripping steps that must give exactly what the plain filters give."""

from __future__ import annotations

import importlib

import numpy as np
import SimpleITK as sitk

preprocess = importlib.import_module("segtransfer.hemorrhage.preprocess")  # the module, not the function


def test_per_slice_hole_filling_fills_every_3d_hole():
    """A hollow ball (a 3D hole of 2109 voxels), a ring open to one side in one slice, and random speckle:
    filling the holes of every axial slice gives the same mask with or without SimpleITK's 3D hole filling
    first, and contains all of the 3D filling."""
    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[:30, :40, :40]
    r = np.sqrt((z - 15) ** 2 + (y - 20) ** 2 + (x - 20) ** 2)
    mask = (r <= 12) & (r > 8)  # a shell around a cavity
    mask |= rng.random(mask.shape) < 0.3
    cavity = r <= 8
    mask[cavity] = False
    filled_3d = sitk.GetArrayFromImage(sitk.BinaryFillhole(sitk.GetImageFromArray(mask.astype(np.uint8)))) > 0
    assert filled_3d[cavity].all() and cavity.sum() == 2109
    per_slice = preprocess.fill_holes_per_slice(mask)
    np.testing.assert_array_equal(per_slice, preprocess.fill_holes_per_slice(filled_3d))
    assert per_slice[filled_3d].all() and per_slice.sum() > filled_3d.sum()  # the speckle's in-slice holes too

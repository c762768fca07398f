"""Analytic shells with exact wall thickness, on any voxel grid.

Labels follow the cardiac convention: 1 inside the inner surface ("blood pool"), 2 in the wall
("myocardium"), 0 outside.  A voxel takes the label of the region holding its centre.  The exact
thickness is ``r_outer - r_inner`` in millimetres everywhere on the wall.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..io.images import LabelImage
from ..labels import CARDIAC_SEGMENTS


@dataclass(frozen=True)
class ShellTruth:
    """Known truth of an analytic shell: centre (LPS mm), radii (mm), thickness (mm), and for a
    cylinder its axis (unit vector, LPS) and length (mm); for a hemisphere (``kind`` "hemisphere")
    the axis is the normal of its flat open cut through the centre, pointing away from the shell."""

    kind: str
    center: tuple[float, float, float]
    r_inner: float
    r_outer: float
    axis: tuple[float, float, float] | None = None
    length: float | None = None

    @property
    def thickness(self) -> float:
        return self.r_outer - self.r_inner


def _grid(extent_mm: np.ndarray, spacing, direction) -> tuple[sitk.Image, np.ndarray]:
    """An image whose grid covers a box of ``extent_mm`` (along its own axes) centred on the origin
    of physical space; returns the image and the LPS coordinates of every voxel centre, shape (z, y, x, 3)."""
    spacing = np.asarray(spacing, dtype=float)
    size = np.maximum(np.ceil(extent_mm / spacing).astype(int) + 1, 1)
    d = np.asarray(direction if direction is not None else np.eye(3).ravel(), dtype=float).reshape(3, 3)
    origin = -d @ ((size - 1) * spacing / 2.0)
    image = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    image.SetSpacing(tuple(spacing))
    image.SetDirection(tuple(d.ravel()))
    image.SetOrigin(tuple(origin))
    k, j, i = np.meshgrid(*(np.arange(n) for n in size[::-1]), indexing="ij")
    ijk = np.stack([i, j, k], axis=-1).astype(float) * spacing
    points = ijk @ d.T + origin
    return image, points


def _labels_from(image: sitk.Image, inner: np.ndarray, wall: np.ndarray) -> LabelImage:
    arr = np.zeros(inner.shape, dtype=np.uint8)
    arr[wall] = 2
    arr[inner] = 1
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(image)
    return LabelImage(out, list(CARDIAC_SEGMENTS))


def spherical_shell(
    r_inner: float = 20.0,
    r_outer: float = 30.0,
    spacing=(1.0, 1.0, 1.0),
    direction=None,
    margin_mm: float = 6.0,
    open_end: bool = False,
) -> tuple[LabelImage, ShellTruth]:
    """Concentric spherical shell centred at the physical origin.

    ``spacing``: (x, y, z) mm, anisotropic allowed; ``direction``: 9 direction cosines (row-major,
    LPS), identity by default.  ``open_end``: keep only the half below the plane through the centre
    normal to the image's third axis, a shell open at one end like the LV at its basal cut; the
    radial field still meets the cut tangentially, so the thickness stays exact up to the cut.
    Returns the 0/1/2 label map and its truth.
    """
    if not 0 < r_inner < r_outer:
        raise ValueError("need 0 < r_inner < r_outer")
    extent = np.full(3, 2 * (r_outer + margin_mm))
    image, pts = _grid(extent, spacing, direction)
    r = np.linalg.norm(pts, axis=-1)
    if not open_end:
        return _labels_from(image, r < r_inner, r < r_outer), ShellTruth("sphere", (0.0, 0.0, 0.0), r_inner, r_outer)
    axis = np.asarray(image.GetDirection()).reshape(3, 3)[:, 2]
    below = pts @ axis <= 0.0
    labels = _labels_from(image, (r < r_inner) & below, (r < r_outer) & below)
    return labels, ShellTruth("hemisphere", (0.0, 0.0, 0.0), r_inner, r_outer, tuple(float(a) for a in axis))


def cylindrical_shell(
    r_inner: float = 20.0,
    r_outer: float = 30.0,
    length: float = 40.0,
    spacing=(1.0, 1.0, 1.0),
    direction=None,
    margin_mm: float = 6.0,
) -> tuple[LabelImage, ShellTruth]:
    """Concentric cylindrical shell centred at the physical origin, axis along the image's third
    axis (its direction column), ``length`` mm long and closed by flat cuts at both ends.

    The flat ends are where the wall meets background without being an epicardial surface, like the
    basal cut of the LV.  Returns the 0/1/2 label map and its truth.
    """
    if not 0 < r_inner < r_outer:
        raise ValueError("need 0 < r_inner < r_outer")
    extent = np.array([2 * (r_outer + margin_mm)] * 2 + [length + 2 * margin_mm])
    image, pts = _grid(extent, spacing, direction)
    d = np.asarray(image.GetDirection()).reshape(3, 3)
    axis = d[:, 2]
    along = pts @ axis
    radial = np.linalg.norm(pts - along[..., None] * axis, axis=-1)
    inside_len = np.abs(along) <= length / 2.0
    labels = _labels_from(image, (radial < r_inner) & inside_len, (radial < r_outer) & inside_len)
    return labels, ShellTruth("cylinder", (0.0, 0.0, 0.0), r_inner, r_outer, tuple(float(a) for a in axis), length)

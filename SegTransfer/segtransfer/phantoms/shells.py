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


@dataclass(frozen=True)
class EllipsoidTruth:
    """Known truth of a shell between two confocal ellipsoids centred at the physical origin.

    ``semi_axes``: inner semi-axes (mm) along the image's first, second and third axes (strictly
    decreasing); the outer surface is the confocal ellipsoid with squared semi-axes
    ``semi_axes**2 + lam`` (``lam`` in mm^2); ``direction``: the image's direction cosines (row-major).

    Between confocal ellipsoids held at two potentials, Laplace's equation has a solution that
    depends on the ellipsoidal coordinate lambda alone (the potential of a charged conducting
    ellipsoid), so its streamlines are the coordinate lines of lambda: the curves on which the other
    two ellipsoidal coordinates (mu, nu) stay constant.  The thickness at a point is the length of
    that curve from the inner to the outer surface, the integral of the metric factor h_lambda,
    computed by quadrature (:meth:`thickness_at`): there is no closed form.
    """

    semi_axes: tuple[float, float, float]
    lam: float
    direction: tuple[float, ...]

    kind = "ellipsoid"
    center = (0.0, 0.0, 0.0)

    def _local(self, points_lps: np.ndarray) -> np.ndarray:
        """LPS mm (n, 3) -> coordinates along the ellipsoid's own axes (n, 3)."""
        return np.asarray(points_lps, dtype=float) @ np.asarray(self.direction, dtype=float).reshape(3, 3)

    def coordinates_mu_nu(self, points_lps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ellipsoidal coordinates (mu, nu) of each point: the two roots of
        ``sum x_i^2 / (a_i^2 + t) = 1`` in (-b^2, -c^2) and (-a^2, -b^2); the third root is lambda."""
        x2 = self._local(points_lps) ** 2
        a2 = np.asarray(self.semi_axes, dtype=float) ** 2
        # multiplied out, the equation is the monic cubic t^3 + p2 t^2 + p1 t + p0 = 0
        s1, s2, s3 = a2.sum(), a2[0] * a2[1] + a2[0] * a2[2] + a2[1] * a2[2], a2.prod()
        others = [(1, 2), (0, 2), (0, 1)]
        p2 = s1 - x2.sum(axis=1)
        p1 = s2 - sum(x2[:, i] * (a2[j] + a2[k]) for i, (j, k) in enumerate(others))
        p0 = s3 - sum(x2[:, i] * a2[j] * a2[k] for i, (j, k) in enumerate(others))
        companion = np.zeros((len(x2), 3, 3))
        companion[:, 0, :] = -np.stack([p2, p1, p0], axis=1)
        companion[:, 1, 0] = companion[:, 2, 1] = 1.0
        roots = np.sort(np.linalg.eigvals(companion).real, axis=1)  # nu <= mu <= lambda
        return roots[:, 1], roots[:, 0]

    def thickness_at(self, points_lps: np.ndarray) -> np.ndarray:
        """Exact streamline thickness (mm) through each point (n, 3; LPS mm): the length of the
        lambda coordinate line through it from lambda = 0 (inner) to ``lam`` (outer),
        ``integral of sqrt((l - mu)(l - nu) / (4 (a^2 + l)(b^2 + l)(c^2 + l))) dl``."""
        from scipy import integrate

        mu, nu = self.coordinates_mu_nu(points_lps)
        a2 = np.asarray(self.semi_axes, dtype=float) ** 2

        def h(l, m, n):
            return np.sqrt((l - m) * (l - n) / (4.0 * np.prod(a2 + l)))

        return np.array([integrate.quad(h, 0.0, self.lam, args=(m, n))[0] for m, n in zip(mu, nu)])


def ellipsoidal_shell(
    semi_axes=(36.0, 24.0, 20.0),
    lam: float = 500.0,
    spacing=(1.0, 1.0, 1.0),
    direction=None,
    margin_mm: float = 6.0,
) -> tuple[LabelImage, EllipsoidTruth]:
    """Shell between the ellipsoid with ``semi_axes`` (mm, strictly decreasing, along the image's
    axes) and its confocal ellipsoid ``lam`` mm^2 further out; the wall thickness varies over the
    surface (with the defaults from 6.4 mm at the long axis to 10 mm at the short one) and is
    computed numerically by :meth:`EllipsoidTruth.thickness_at`.  Returns the 0/1/2 label map and
    its truth."""
    a = np.asarray(semi_axes, dtype=float)
    if not (a[0] > a[1] > a[2] > 0 and lam > 0):
        raise ValueError("need semi-axes a > b > c > 0 and lam > 0")
    outer = np.sqrt(a**2 + lam)
    image, pts = _grid(2 * (outer + margin_mm), spacing, direction)
    truth = EllipsoidTruth(tuple(float(v) for v in a), float(lam), tuple(float(v) for v in image.GetDirection()))
    local = truth._local(pts.reshape(-1, 3)).reshape(pts.shape)
    inner = np.sum(local**2 / a**2, axis=-1) < 1.0
    wall = np.sum(local**2 / outer**2, axis=-1) < 1.0
    return _labels_from(image, inner, wall), truth

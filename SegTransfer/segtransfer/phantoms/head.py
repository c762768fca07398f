"""Non-contrast head CT with intracranial hemorrhages of the common kinds and known truth.

Anatomy (head-local frame: x to the patient's left, y posterior, z superior, origin at the centre of
the inner skull; the head sits in the scanner's LPS frame with a small random tilt):

* inner skull: ellipsoid with semi-axes ``A`` (mm), cut flat at the skull base ``z = z_base``;
  the intracranial space above it is the brain mask (skull stripping target);
* skull 6.5 mm (outer and inner tables ~1400 HU, diploe ~750 HU), skull base slab, scalp (skin and
  fat), air (-1000 HU) outside;
* brain: 2 mm of subarachnoid CSF under the skull, a cortical ribbon of grey matter, sulci (CSF
  sheets from a smooth random field, lined by grey matter) in the outer 14 mm, white matter inside,
  deep grey nuclei, lateral and third ventricles (CSF ~6 HU), the interhemispheric fissure.

Hemorrhages (55-90 HU, labelled 1 in ``mask``, one value per lesion in ``lesions``):

* ``intraparenchymal``: a rotated ellipsoid in the deep grey nuclei or a lobe, with a hypodense
  edema rim (image only); volume 4/3 pi a b c;
* ``subdural``: a crescent along the inner skull over a cap of half-angle alpha, thickness
  ``t0 cos(pi psi / 2 alpha)``; ``epidural``: a biconvex lens ``t0 (1 - (psi / alpha)^2)``; volumes
  by one-dimensional quadrature of the closed-form shell integral in scaled (unit-sphere) space;
* ``subarachnoid``: blood filling the CSF spaces (surface layer, sulci, fissure) under a cap; its
  volume is integrated numerically on a 0.5 mm lattice, independent of the image grid;
* ``intraventricular``: the dependent (posterior, patient supine) part of a lateral ventricle below
  a horizontal fluid level; volume of an ellipsoid cap, closed form.

Lesions never overlap one another (checked on dense samples of each shape before it is accepted)
and lie wholly inside the intracranial space, so each lesion's voxel count estimates its truth
volume.  Image: one HU value per tissue, the site's point-spread function and slice profile, then
noise (:func:`~segtransfer.phantoms.sites.scanner_blur_and_noise`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import integrate
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from ..errors import InputError
from .cardiac import check_grid_size, check_seed, truncated_ellipsoid_volume
from .shells import _grid
from .sites import SiteProfile, get_site, scanner_blur_and_noise

KINDS: tuple[str, ...] = ("intraparenchymal", "subdural", "epidural", "subarachnoid", "intraventricular")

AIR_HU = -1000.0
SKIN_HU = 40.0
FAT_HU = -90.0
BONE_TABLE_HU = 1400.0
DIPLOE_HU = 750.0
SKULL_BASE_HU = 1000.0
SOFT_TISSUE_HU = 40.0
CSF_HU = 6.0
EDEMA_HU = 18.0

SKULL_MM = 6.5
TABLE_MM = 1.8
SCALP_MM = 5.0
CSF_LAYER_MM = 2.0
CORTEX_MM = 3.0
SULCAL_BAND_MM = 14.0
LATTICE_MM = 0.5  # numerical integration step for truth volumes / centroids

_STREAM_ANATOMY, _STREAM_LESIONS, _STREAM_NOISE = 0, 1, 2


@dataclass(frozen=True)
class Hemorrhage:
    """Truth of one hemorrhage: ``kind`` (one of :data:`KINDS`), ``label`` (its value in
    ``HeadPhantom.lesions``), ``volume_ml``, ``centroid_mm`` (LPS), ``hu`` (its attenuation before
    blur and noise) and how the volume was obtained (``"closed form"`` or ``"numerical"``)."""

    kind: str
    label: int
    volume_ml: float
    centroid_mm: tuple[float, float, float]
    hu: float
    volume_method: str

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "label": self.label,
            "volume_ml": float(self.volume_ml),
            "centroid_mm": [float(c) for c in self.centroid_mm],
            "hu": float(self.hu),
            "volume_method": self.volume_method,
        }


@dataclass
class HeadTruth:
    """Known truth of a head CT phantom: the lesions, their total volume (mL), the analytic
    intracranial volume (mL, the truncated inner-skull ellipsoid), the site profile name, the voxel
    spacing (x, y, z mm) and the seed."""

    lesions: list[Hemorrhage]
    total_volume_ml: float
    intracranial_ml: float
    site: str
    spacing: tuple[float, float, float]
    seed: int = 0

    @property
    def has_hemorrhage(self) -> bool:
        return bool(self.lesions)

    def to_dict(self) -> dict:
        return {
            "has_hemorrhage": self.has_hemorrhage,
            "total_volume_ml": float(self.total_volume_ml),
            "intracranial_ml": float(self.intracranial_ml),
            "site": self.site,
            "spacing": [float(s) for s in self.spacing],
            "seed": int(self.seed),
            "lesions": [h.to_dict() for h in self.lesions],
        }


@dataclass
class HeadPhantom:
    """A generated head CT.

    ``image``: float32 HU; ``mask``: uint8 0/1 hemorrhage; ``brain_mask``: uint8 0/1 intracranial
    space (everything inside the inner skull above the skull base, hemorrhages included);
    ``lesions``: uint8, 0 or the ``label`` of the hemorrhage holding the voxel; ``truth``: see
    :class:`HeadTruth`.  All share one axial grid (identity direction, LPS), head centred on the
    physical origin.
    """

    image: sitk.Image
    mask: sitk.Image
    brain_mask: sitk.Image
    truth: HeadTruth
    lesions: sitk.Image | None = None


@dataclass(frozen=True)
class _Head:
    A: np.ndarray  # inner-skull semi-axes (x, y, z) mm
    z_base: float  # skull base plane, local z (mm)
    rot: np.ndarray  # columns: head-local axes in LPS
    center: np.ndarray  # LPS position of the local origin
    waves: np.ndarray  # (K, 3) wave vectors of the sulcal field (rad/mm)
    phases: np.ndarray  # (K,)
    ventricles: tuple[tuple[np.ndarray, np.ndarray], ...]  # lateral ventricles: (centre, semi-axes)

    @property
    def r_mean(self) -> float:
        return float(np.prod(self.A) ** (1.0 / 3.0))

    def depth(self, local: np.ndarray) -> np.ndarray:
        """Approximate depth (mm) below the inner table: ``(1 - |local / A|) * r_mean``."""
        return (1.0 - np.linalg.norm(local / self.A, axis=-1)) * self.r_mean

    def intracranial(self, local: np.ndarray) -> np.ndarray:
        return (np.sum((local / self.A) ** 2, axis=-1) < 1.0) & (local[..., 2] > self.z_base)

    def sulcal_field(self, local: np.ndarray) -> np.ndarray:
        """Smooth random field with unit variance; sulci are where it is near zero."""
        g = np.cos(local @ self.waves.T + self.phases).sum(axis=-1)
        return g / np.sqrt(len(self.phases) / 2.0)

    def sulcus(self, local: np.ndarray) -> np.ndarray:
        return (np.abs(self.sulcal_field(local)) < 0.2) & (self.depth(local) < SULCAL_BAND_MM)

    def fissure(self, local: np.ndarray) -> np.ndarray:
        return (np.abs(local[..., 0]) < 0.8) & (self.depth(local) < 40.0) & (local[..., 2] > -10.0)

    def csf_space(self, local: np.ndarray) -> np.ndarray:
        """Subarachnoid CSF: surface layer, sulci, interhemispheric fissure (inside the skull)."""
        return self.intracranial(local) & ((self.depth(local) < CSF_LAYER_MM) | self.sulcus(local) | self.fissure(local))

    def in_ventricle(self, local: np.ndarray, margin: float = 0.0) -> np.ndarray:
        out = np.zeros(local.shape[:-1], dtype=bool)
        for c, a in self.ventricles:
            out |= np.sum(((local - c) / (a + margin)) ** 2, axis=-1) < 1.0
        return out


def _head_anatomy(rng: np.random.Generator) -> _Head:
    A = np.array([66.0, 84.0, 74.0]) * rng.uniform(0.95, 1.05, 3)
    z_base = -0.55 * A[2]
    angles = np.deg2rad(rng.uniform([-4, -5, -3], [4, 5, 3]))  # yaw (z), pitch (x), roll (y)
    rot = Rotation.from_euler("zxy", angles).as_matrix()
    k = 2.0 * np.pi / rng.uniform(18.0, 28.0, 8)
    dirs = rng.normal(size=(8, 3))
    waves = dirs / np.linalg.norm(dirs, axis=1, keepdims=True) * k[:, None]
    phases = rng.uniform(0.0, 2.0 * np.pi, 8)
    v_scale = rng.uniform(0.85, 1.3)
    ventricles = tuple(
        (np.array([side * 12.0, 2.0, 0.2 * A[2]]), np.array([6.5, 30.0, 9.0]) * np.array([v_scale, 1.0, v_scale]))
        for side in (1.0, -1.0)
    )
    return _Head(A, z_base, rot, np.zeros(3), waves, phases, ventricles)


# ----------------------------------------------------------------------------------------------
# Lesions


@dataclass
class _Lesion:
    kind: str
    inside: Callable[[np.ndarray], np.ndarray]  # local (..., 3) mm -> bool
    lo: np.ndarray  # local bounding box (mm)
    hi: np.ndarray
    hu: float
    volume_mm3: float | None  # closed form, or None for numerical integration
    edema: Callable[[np.ndarray], np.ndarray] | None = None
    samples: np.ndarray | None = None


def _sample_inside(lesion: _Lesion, rng: np.random.Generator, n: int = 100000) -> np.ndarray:
    """Points drawn uniformly in the lesion's bounding box that fall inside it."""
    pts = rng.uniform(lesion.lo, lesion.hi, size=(n, 3))
    return pts[lesion.inside(pts)]


def _cap_points(head: _Head, v: np.ndarray, alpha: float, s_min: float) -> np.ndarray:
    """Local points spanning a cap (scaled-space direction ``v``, half-angle ``alpha``) between
    scaled radius ``s_min`` and 1: used for bounding boxes and the skull-base check."""
    e1 = np.cross(v, [0.0, 0.0, 1.0] if abs(v[2]) < 0.9 else [1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(v, e1)
    psi, phi = np.meshgrid(np.linspace(0, alpha, 24), np.linspace(0, 2 * np.pi, 48, endpoint=False), indexing="ij")
    dirs = np.cos(psi)[..., None] * v + np.sin(psi)[..., None] * (np.cos(phi)[..., None] * e1 + np.sin(phi)[..., None] * e2)
    dirs = dirs.reshape(-1, 3)
    return np.concatenate([dirs * s for s in (s_min, 1.0)]) * head.A


def _cap_lesion(head: _Head, kind: str, v: np.ndarray, alpha: float, hu: float, thickness: Callable[[np.ndarray], np.ndarray] | None, t0: float) -> _Lesion:
    """A lesion under the inner table over a cap around scaled-space direction ``v`` (unit).

    ``thickness(psi)``: scaled-space thickness profile (0 outside the cap) for subdural / epidural;
    ``None`` for subarachnoid (CSF spaces under the cap).  ``t0``: maximum depth reached (mm).
    """
    cos_alpha = np.cos(alpha)

    def psi_of(local):
        q = local / head.A
        s = np.linalg.norm(q, axis=-1)
        c = (q @ v) / np.maximum(s, 1e-9)
        return s, c

    if thickness is not None:

        def inside(local):
            s, c = psi_of(local)
            psi = np.arccos(np.clip(c, -1.0, 1.0))
            return (c > cos_alpha) & (s <= 1.0) & (s > 1.0 - thickness(psi))

        # Shell integral in scaled space, times the Jacobian prod(A).
        def integrand(psi):
            return (1.0 - (1.0 - thickness(np.array(psi))) ** 3) / 3.0 * np.sin(psi)

        vol = float(np.prod(head.A) * 2.0 * np.pi * integrate.quad(integrand, 0.0, alpha, epsabs=1e-12, limit=200)[0])
    else:

        def inside(local):
            s, c = psi_of(local)
            return (c > cos_alpha) & head.csf_space(local)

        vol = None
    pts = _cap_points(head, v, alpha, 1.0 - (t0 + 1.0) / head.r_mean)
    return _Lesion(kind, inside, pts.min(axis=0) - 1.0, pts.max(axis=0) + 1.0, hu, vol)


def _parenchymal(head: _Head, rng: np.random.Generator, scale: float) -> _Lesion:
    r = rng.uniform(7.0, 14.0) * scale
    semi = r * rng.uniform(0.75, 1.25, 3)
    rot = Rotation.random(random_state=rng).as_matrix()
    side = rng.choice([-1.0, 1.0])
    if rng.random() < 0.5:  # deep (basal ganglia / thalamus), the hypertensive pattern
        c = np.array([side * rng.uniform(20.0, 28.0), rng.uniform(-10.0, 10.0), rng.uniform(-2.0, 10.0)])
    else:  # lobar
        d = rng.normal(size=3)
        d[0] = side * abs(d[0])
        d[2] = abs(d[2])
        d /= np.linalg.norm(d)
        depth = semi.max() + rng.uniform(10.0, 20.0)
        c = d * head.A * (1.0 - depth / head.r_mean)
    edema_mm = rng.uniform(2.5, 4.5)

    def ellipsoid(extra: float):
        def inside(local):
            return np.sum((((local - c) @ rot) / (semi + extra)) ** 2, axis=-1) < 1.0

        return inside

    half = np.sqrt((rot**2) @ (semi + edema_mm) ** 2)
    les = _Lesion("intraparenchymal", ellipsoid(0.0), c - half, c + half, rng.uniform(60.0, 85.0), 4.0 / 3.0 * np.pi * np.prod(semi))
    les.edema = ellipsoid(edema_mm)
    return les


def _intraventricular(head: _Head, rng: np.random.Generator, scale: float) -> _Lesion:
    cv, av = head.ventricles[int(rng.integers(2))]
    # Fluid level: horizontal for a supine patient, blood in the posterior (+y, LPS) part.
    m = head.rot.T @ np.array([0.0, 1.0, 0.0])  # scanner posterior, in local coordinates
    w = np.linalg.norm(av * m)
    height = float(np.clip(rng.uniform(0.35, 0.7) * scale, 0.1, 0.95))  # cap height in unit-sphere units
    d = 1.0 - height
    level = float(m @ cv + d * w)

    def inside(local):
        return (np.sum(((local - cv) / av) ** 2, axis=-1) < 1.0) & (local @ m >= level)

    vol = float(np.prod(av) * np.pi * (1.0 - d) ** 2 * (2.0 + d) / 3.0)
    return _Lesion("intraventricular", inside, cv - av - 1.0, cv + av + 1.0, rng.uniform(55.0, 75.0), vol)


_CAP_DIRECTIONS = np.array([[1.0, 0.0, 0.35], [-1.0, 0.0, 0.35], [0.0, -1.0, 0.4], [0.0, 1.0, 0.4], [0.0, 0.0, 1.0]])


def _cap_kind(head: _Head, kind: str, v: np.ndarray, rng: np.random.Generator, scale: float) -> tuple[_Lesion, float]:
    r = head.r_mean
    if kind == "subdural":
        alpha = np.deg2rad(rng.uniform(30.0, 40.0))
        t0 = rng.uniform(5.0, 11.0) * scale
        delta0 = t0 / r
        prof = lambda psi, a=alpha, d0=delta0: np.where(psi < a, d0 * np.cos(np.pi * np.minimum(psi, a) / (2 * a)), 0.0)  # noqa: E731
        return _cap_lesion(head, kind, v, alpha, rng.uniform(55.0, 75.0), prof, t0), alpha
    if kind == "epidural":
        alpha = np.deg2rad(rng.uniform(16.0, 24.0))
        t0 = rng.uniform(10.0, 18.0) * scale
        delta0 = t0 / r
        prof = lambda psi, a=alpha, d0=delta0: np.where(psi < a, d0 * (1.0 - (np.minimum(psi, a) / a) ** 2), 0.0)  # noqa: E731
        return _cap_lesion(head, kind, v, alpha, rng.uniform(60.0, 85.0), prof, t0), alpha
    alpha = np.deg2rad(min(rng.uniform(20.0, 28.0) * np.sqrt(scale), 32.0))
    return _cap_lesion(head, kind, v, alpha, rng.uniform(55.0, 70.0), None, SULCAL_BAND_MM), alpha


def _place_lesions(head: _Head, kinds: Sequence[str], rng: np.random.Generator, scale: float) -> list[_Lesion]:
    """Build one lesion per entry of ``kinds`` so that none overlap (3 mm apart on dense samples),
    each lies inside the intracranial space, and intraparenchymal ones stay clear of ventricles, the
    fissure and the cortical CSF."""
    placed: list[_Lesion] = []
    caps: list[tuple[np.ndarray, float]] = []
    order = sorted(kinds, key=lambda k: {"intraventricular": 0, "intraparenchymal": 1}.get(k, 2))
    dirs = _CAP_DIRECTIONS / np.linalg.norm(_CAP_DIRECTIONS, axis=1, keepdims=True)
    for kind in order:
        for attempt in range(200):
            alpha = 0.0
            if kind == "intraparenchymal":
                les = _parenchymal(head, rng, scale)
            elif kind == "intraventricular":
                les = _intraventricular(head, rng, scale)
            else:
                v = dirs[int(rng.integers(len(dirs)))] + rng.normal(0.0, 0.04, 3)
                v /= np.linalg.norm(v)
                les, alpha = _cap_kind(head, kind, v, rng, scale * (0.97**attempt))
                if any(np.arccos(np.clip(v @ v2, -1, 1)) < alpha + a2 + np.deg2rad(5.0) for v2, a2 in caps):
                    continue
            pts = _sample_inside(les, rng)
            if len(pts) < 50 or not head.intracranial(pts).all() or (pts[:, 2] < head.z_base + 2.0).any():
                continue
            if kind == "intraparenchymal":
                halo = _sample_inside(_Lesion("", les.edema, les.lo, les.hi, 0.0, None), rng)
                if head.in_ventricle(halo, 2.0).any() or (np.abs(halo[:, 0]) < 3.0).any() or (head.depth(halo) < 5.0).any():
                    continue
                pts_check = halo
            else:
                pts_check = pts
            if any(cKDTree(p.samples).query(pts_check, distance_upper_bound=3.0)[0].min() < 3.0 for p in placed):
                continue
            les.samples = pts_check
            placed.append(les)
            if alpha:
                caps.append((v, alpha))
            break
        else:
            raise InputError("hemorrhage", f"could not place a non-overlapping {kind} hemorrhage; use fewer lesions or a smaller site lesion scale")
    return placed


def _integrate(inside: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray, step: float = LATTICE_MM):
    """Volume (mm^3) and centroid (local mm) of a region by the midpoint rule on a ``step`` lattice
    over its bounding box; independent of any image grid.

    Written here because scipy's quadrature routines expect smooth integrands: the indicator of a
    region bounded by sulcal sheets is integrated reliably only by dense sampling.
    """
    axes = [np.arange(a + step / 2.0, b, step) for a, b in zip(lo, hi)]
    total, moment = 0, np.zeros(3)
    yy, zz = np.meshgrid(axes[1], axes[2], indexing="ij")
    plane = np.stack([np.zeros_like(yy), yy, zz], axis=-1).reshape(-1, 3)
    for x in axes[0]:
        plane[:, 0] = x
        sel = plane[inside(plane)]
        total += len(sel)
        moment += sel.sum(axis=0)
    vol = total * step**3
    return vol, (moment / total if total else np.full(3, np.nan))


# ----------------------------------------------------------------------------------------------
# Generator


def _parse_kinds(hemorrhage, rng: np.random.Generator) -> list[str]:
    if hemorrhage is True:
        return list(KINDS)
    if hemorrhage is False or hemorrhage is None:
        return []
    if isinstance(hemorrhage, str):
        if hemorrhage == "random":
            n = int(rng.integers(1, 4))
            return [str(k) for k in rng.choice(KINDS, size=n, replace=False)]
        hemorrhage = [hemorrhage]
    kinds = [str(k) for k in hemorrhage]
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise InputError("hemorrhage", f"unknown hemorrhage kind(s) {', '.join(bad)} (known: {', '.join(KINDS)}, or 'random')")
    return kinds


def head_ct(
    seed: int = 0,
    spacing=None,
    site: str | SiteProfile | None = None,
    hemorrhage: bool | str | Sequence[str] = True,
) -> HeadPhantom:
    """Generate a head CT with hemorrhages and their truth.

    ``seed``: anatomy, lesions and noise follow from it (numpy Generator streams).
    ``spacing``: (x, y, z) mm, z the axial slice spacing; ``None`` takes the site's (e.g. 0.9 x 0.9
    x 5 mm for ``site_a``).  The grid is axial (identity direction, LPS), the head centred on the
    physical origin.
    ``site``: appearance profile name or :class:`~segtransfer.phantoms.sites.SiteProfile`.
    ``hemorrhage``: ``True`` for one of each kind in :data:`KINDS`, ``False`` for a negative scan,
    ``"random"`` for 1-3 kinds chosen by the seed, or a kind / list of kinds (repeats allowed).
    """
    seed = check_seed(seed)
    profile = get_site(site)
    spacing = tuple(float(s) for s in (profile.head_spacing if spacing is None else spacing))
    if len(spacing) != 3 or not np.all(np.isfinite(spacing)) or min(spacing) <= 0:
        raise InputError("spacing", f"need three positive spacings in mm, got {spacing}")
    if max(spacing) > 10.0:
        raise InputError("spacing", f"spacing {spacing} mm is too coarse for a head CT phantom (at most 10 mm)")
    rng_anat = np.random.default_rng([seed, _STREAM_ANATOMY])
    rng_les = np.random.default_rng([seed, _STREAM_LESIONS])
    rng_noise = np.random.default_rng([seed, _STREAM_NOISE])

    head = _head_anatomy(rng_anat)
    # Grid: covers the scalp with a margin; z from below the skull base to above the vertex.
    outer = head.A + SKULL_MM + SCALP_MM
    z_lo, z_hi = head.z_base - 30.0, outer[2] + 8.0
    head_center = np.array([0.0, 0.0, -(z_lo + z_hi) / 2.0])  # puts the grid's centre mid-way
    extent = np.array([2 * outer[0] + 16.0, 2 * outer[1] + 16.0, z_hi - z_lo])
    check_grid_size(extent, spacing, "head CT phantom")
    head = replace(head, center=head_center)

    kinds = _parse_kinds(hemorrhage, rng_les)
    lesions = _place_lesions(head, kinds, rng_les, profile.lesion_scale)

    ref, pts = _grid(extent, spacing, None)
    shape_zyx = pts.shape[:3]
    local = ((pts.reshape(-1, 3) - head_center) @ head.rot).astype(np.float32)
    del pts

    hu = np.full(len(local), AIR_HU, dtype=np.float32)
    q2 = lambda k: np.sum((local / (head.A + k)) ** 2, axis=-1)  # noqa: E731  (offset ellipsoid)
    hu[q2(SKULL_MM + SCALP_MM) < 1.0] = SKIN_HU
    hu[q2(SKULL_MM + 3.0) < 1.0] = FAT_HU
    hu[q2(SKULL_MM) < 1.0] = BONE_TABLE_HU
    hu[q2(SKULL_MM - TABLE_MM) < 1.0] = DIPLOE_HU
    hu[q2(TABLE_MM) < 1.0] = BONE_TABLE_HU
    inner = q2(0.0) < 1.0
    below = local[:, 2] <= head.z_base
    hu[inner & below] = SKULL_BASE_HU
    hu[inner & (local[:, 2] < head.z_base - 8.0)] = SOFT_TISSUE_HU
    brain = inner & ~below

    idx = np.flatnonzero(brain)
    lb = local[idx]
    depth = head.depth(lb)
    tissue = np.full(len(idx), profile.white_hu, dtype=np.float32)
    g = np.abs(head.sulcal_field(lb))
    tissue[(depth < CSF_LAYER_MM + CORTEX_MM) | ((g < 0.75) & (depth < SULCAL_BAND_MM + 2.0))] = profile.grey_hu
    for side in (1.0, -1.0):  # lentiform / caudate and thalamus
        for c, a in (((side * 22.0, -2.0, 2.0), (7.0, 16.0, 11.0)), ((side * 9.0, 12.0, 0.0), (7.0, 11.0, 9.0))):
            tissue[np.sum(((lb - np.array(c)) / np.array(a)) ** 2, axis=-1) < 1.0] = profile.grey_hu
    tissue[head.csf_space(lb)] = CSF_HU
    tissue[head.in_ventricle(lb)] = CSF_HU
    tissue[np.sum(((lb - np.array([0.0, 5.0, -2.0])) / np.array([2.5, 12.0, 9.0])) ** 2, axis=-1) < 1.0] = CSF_HU
    hu[idx] = tissue

    # Hemorrhages (and the edema rim of intraparenchymal ones) on the voxels of their bounding boxes.
    les_arr = np.zeros(len(local), dtype=np.uint8)
    records: list[Hemorrhage] = []
    for label, les in enumerate(lesions, start=1):
        box = np.flatnonzero(np.all((local >= les.lo) & (local <= les.hi), axis=1))
        pl = local[box]
        if les.edema is not None:
            rim = box[les.edema(pl) & brain[box]]
            hu[rim] = EDEMA_HU
        inside = box[les.inside(pl) & brain[box]]
        hu[inside] = les.hu
        les_arr[inside] = label
        vol_num, cen_local = _integrate(les.inside, les.lo, les.hi)
        vol = les.volume_mm3 if les.volume_mm3 is not None else vol_num
        centroid = head.center + head.rot @ cen_local
        records.append(
            Hemorrhage(les.kind, label, vol / 1000.0, tuple(float(c) for c in centroid), float(les.hu), "closed form" if les.volume_mm3 is not None else "numerical")
        )

    image_arr = scanner_blur_and_noise(hu.reshape(shape_zyx), spacing, profile.head_fwhm_mm, profile.head_noise_hu, rng_noise)

    def as_image(arr: np.ndarray) -> sitk.Image:
        img = sitk.GetImageFromArray(arr.reshape(shape_zyx))
        img.CopyInformation(ref)
        return img

    intracranial = truncated_ellipsoid_volume(head.A[0], head.A[1], head.A[2], -head.z_base / head.A[2])
    truth = HeadTruth(records, float(sum(r.volume_ml for r in records)), intracranial / 1000.0, profile.name, spacing, int(seed))
    return HeadPhantom(
        image=as_image(image_arr),
        mask=as_image((les_arr > 0).astype(np.uint8)),
        brain_mask=as_image(brain.astype(np.uint8)),
        truth=truth,
        lesions=as_image(les_arr),
    )

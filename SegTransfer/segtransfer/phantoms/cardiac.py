"""Beating left ventricle over the R-R interval: a cardiac CT angiography phantom with known truth.

Geometry (all lengths in mm, positions LPS):

* The LV blood pool (endocardium) and the epicardium are prolate ellipsoids sharing a centre and a
  long axis ``u`` (unit vector from apex to base), both truncated by one basal (mitral) plane
  perpendicular to ``u`` at height ``h`` above the centre.  Endocardial semi-axes ``(a, a, c)``,
  epicardial ``(a + t, a + t, c + t)`` with ``t`` the nominal wall thickness.
* Over the cycle the cavity contracts (short axis by ``s_a``, long axis by ``s_c`` at end-systole),
  ``h / c`` stays fixed, the epicardial apex stays put (the base descends), and ``t`` is solved at
  every phase so that the myocardial volume stays exactly constant (the wall thickens in systole).
* Two papillary muscles (capsules attached to the free wall) lie in the cavity: myocardium-like in
  the image, labelled blood pool (consensus rule).  The RV (blood pool and a thin free wall wrapped
  around the septum), the left atrium and the aortic root above the basal plane (the LVOT is
  truncated at the valve plane), a descending aorta, pericardial fat, lung and the anterior chest
  wall surround it; only the LV is labelled.

Labels: 0 background, 1 LV blood pool, 2 LV myocardium; a voxel takes the label of the region holding
its centre, so voxel counts converge to the analytic volumes in :class:`LVTruth`.

Image: Hounsfield units, float32.  Each tissue gets one value, then the site's point-spread function
(Gaussian, in-plane and through-plane FWHM) gives partial volume at boundaries, then correlated
Gaussian noise with the site's standard deviation is added.  Reference values follow the real
cardiac CT crop in the project data: LV blood ~485 HU (std 43), myocardium ~130-150 HU, lung ~-810 HU,
pericardial fat around -90 HU.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage, optimize

from ..errors import InputError
from ..io import Series4D
from ..progress import ProgressCallback, Steps
from .shells import _grid
from .sites import SiteProfile, get_site, scanner_blur_and_noise

#: Default voxel spacing (x, y, z) in mm.
DEFAULT_SPACING = (1.25, 1.25, 2.0)
#: Field of view (x, y, z) in mm, centred on the physical origin.
FIELD_OF_VIEW_MM = (160.0, 160.0, 140.0)

# Fixed tissue values (HU) that do not depend on the site.
LUNG_HU = -820.0
FAT_HU = -90.0
SOFT_TISSUE_HU = 45.0
UNENHANCED_BLOOD_HU = 40.0

# Stream numbers of the per-seed random generators (shape, image noise, annotation defects), so that
# asking for defects does not change the anatomy or the image of a seed.
_STREAM_SHAPE, _STREAM_NOISE, _STREAM_DEFECTS = 0, 1, 2


#: Largest grid a phantom generator builds (voxels); finer spacings over the field of view are refused.
MAX_VOXELS = 40_000_000


def check_seed(seed) -> int:
    """The seed as a non-negative ``int``; raises ``InputError`` otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError("seed", f"need a non-negative integer, got {seed!r}")
    return int(seed)


def check_grid_size(extent_mm, spacing, what: str) -> None:
    """Raise ``InputError`` when a field of view ``extent_mm`` (x, y, z) at ``spacing`` (x, y, z mm)
    would exceed :data:`MAX_VOXELS`."""
    n = float(np.prod(np.ceil(np.asarray(extent_mm, dtype=float) / np.asarray(spacing, dtype=float)) + 1))
    if n > MAX_VOXELS:
        raise InputError("spacing", f"spacing {tuple(spacing)} mm gives {n:.3g} voxels for the {what}; at most {MAX_VOXELS:.0e} (use a coarser spacing)")


@dataclass
class LVTruth:
    """Known truth of a beating-LV phantom, per phase unless stated.

    ``cavity_ml``: analytic LV blood-pool volume (papillary muscles count as pool), mL.
    ``myocardium_ml``: analytic myocardial volume, mL (constant over the cycle by construction).
    ``wall_thickness_mm``: nominal wall thickness ``t`` (epicardial minus endocardial semi-axis), mm.
    ``ed_index`` / ``es_index``: end-diastole (largest cavity) / end-systole (smallest cavity) phase.
    ``ejection_fraction``: (EDV - ESV) / EDV from ``cavity_ml``, 0..1.
    ``percent_rr``: phase positions, % of the R-R interval.
    ``long_axis``: unit vector (LPS) from apex to base.
    ``apex_mm``: epicardial apex (LPS mm), fixed over the cycle.
    ``base_center_mm``: centre of the basal (mitral) plane per phase (LPS mm); the plane is
    perpendicular to ``long_axis``.
    ``shape``: per phase the shape parameters in mm: ``a_endo``, ``c_endo``, ``a_epi``, ``c_epi``
    (semi-axes) and ``h`` (basal plane height above the ellipsoid centre).
    """

    cavity_ml: list[float]
    myocardium_ml: list[float]
    wall_thickness_mm: list[float]
    ed_index: int
    es_index: int
    ejection_fraction: float
    percent_rr: list[float]
    long_axis: tuple[float, float, float] = (0.0, 0.0, 1.0)
    apex_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    base_center_mm: list[tuple[float, float, float]] = field(default_factory=list)
    shape: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready copy of the truth."""
        return {
            "cavity_ml": [float(v) for v in self.cavity_ml],
            "myocardium_ml": [float(v) for v in self.myocardium_ml],
            "wall_thickness_mm": [float(v) for v in self.wall_thickness_mm],
            "ed_index": int(self.ed_index),
            "es_index": int(self.es_index),
            "ejection_fraction": float(self.ejection_fraction),
            "percent_rr": [float(v) for v in self.percent_rr],
            "long_axis": [float(v) for v in self.long_axis],
            "apex_mm": [float(v) for v in self.apex_mm],
            "base_center_mm": [[float(v) for v in p] for p in self.base_center_mm],
            "shape": [{k: float(v) for k, v in s.items()} for s in self.shape],
        }


@dataclass
class LVPhantom:
    """A generated 4D cardiac study.

    ``series``: the phases (HU, float32, one grid), ``percent_rr`` set, labels (0/1/2 uint8) for every
    phase; with ``defects=True`` these labels carry annotation defects.
    ``clean_labels``: defect-free truth labels for every phase.
    ``truth``: the analytic truth.
    ``papillary``: per phase, a 0/1 mask of the papillary muscles (voxels labelled blood pool that
    are myocardium in the image).
    ``defects``: per phase, what the annotation defects changed: ``holes`` and ``gaps`` (number of
    separate defects), ``hole_voxels`` and ``gap_voxels`` (pool voxels set to background); all zero
    without defects.
    """

    series: Series4D
    clean_labels: dict[int, sitk.Image]
    truth: LVTruth
    papillary: dict[int, sitk.Image] = field(default_factory=dict)
    defects: dict[int, dict] = field(default_factory=dict)


def truncated_ellipsoid_volume(a: float, b: float, c: float, d: float) -> float:
    """Volume (mm^3) of the ellipsoid with semi-axes ``a, b, c`` (mm) on the apex side of a plane
    perpendicular to the ``c`` axis at ``d * c`` from the centre (``-1 <= d <= 1``).

    Closed form: the unit sphere below height ``d`` holds ``pi (2 + 3d - d^3) / 3``; the affine map to
    the ellipsoid scales volume by ``a b c``.
    """
    d = float(np.clip(d, -1.0, 1.0))
    return float(np.pi * a * b * c * (2.0 + 3.0 * d - d**3) / 3.0)


def contraction(percent_rr: float | np.ndarray, es_percent: float, diastasis: float = 0.2, atrial_start: float = 85.0):
    """Fraction of the systolic contraction (0 at end-diastole, 1 at end-systole) at ``percent_rr``.

    Systole: half-cosine from 0 % (ED) to ``es_percent`` (ES).  Diastole: rapid filling then diastasis
    down to ``diastasis`` at ``atrial_start`` %, then the atrial kick back to 0 at 100 %.  Smooth
    (zero slope) at ED, ES and the start of the atrial kick.
    """
    p = np.mod(np.asarray(percent_rr, dtype=float), 100.0)
    out = np.empty_like(p)
    sys_ = p <= es_percent
    out[sys_] = 0.5 * (1.0 - np.cos(np.pi * p[sys_] / es_percent))
    fill = (p > es_percent) & (p <= atrial_start)
    w = np.sqrt((p[fill] - es_percent) / (atrial_start - es_percent))
    out[fill] = diastasis + (1.0 - diastasis) * 0.5 * (1.0 + np.cos(np.pi * w))
    kick = p > atrial_start
    out[kick] = diastasis * 0.5 * (1.0 + np.cos(np.pi * (p[kick] - atrial_start) / (100.0 - atrial_start)))
    return out if out.ndim else float(out)


@dataclass(frozen=True)
class _Anatomy:
    """Per-seed anatomy: ED shape, contraction, orientation (all mm, LPS)."""

    a_ed: float
    c_ed: float
    eta: float  # basal plane height / c
    t_ed: float
    s_a: float
    s_c: float
    es_percent: float
    u: np.ndarray  # long axis, apex -> base
    e1: np.ndarray  # short axis towards the septum / RV
    e2: np.ndarray
    apex: np.ndarray  # epicardial apex
    pap_angles: tuple[float, float]  # papillary muscle angles from e1 (radians)
    pap_radius: float


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def _anatomy(rng: np.random.Generator, n_phases: int) -> _Anatomy:
    a_ed = rng.uniform(24.0, 26.5)
    c_ed = rng.uniform(62.0, 68.0)
    eta = rng.uniform(0.30, 0.38)
    t_ed = rng.uniform(8.5, 10.5)
    ef = rng.uniform(0.52, 0.63)
    s_c = rng.uniform(0.12, 0.16)
    # EF = 1 - (1 - s_a)^2 (1 - s_c) for a cavity whose shape scales by (1 - s_a, 1 - s_a, 1 - s_c).
    s_a = 1.0 - np.sqrt((1.0 - ef) / (1.0 - s_c))
    # ES lands exactly on a phase between about 33 % and 42 % of R-R.
    candidates = [i for i in range(n_phases) if 33.0 <= 100.0 * i / n_phases <= 42.0]
    if not candidates:
        candidates = [max(1, int(round(0.375 * n_phases)))]
    es_index = int(rng.choice(candidates))
    # Long axis: base lies right (-x), posterior (+y) and superior (+z) of the apex; jitter a few degrees.
    u = _unit(np.array([-0.55, 0.5, 0.67]) + rng.normal(0.0, 0.05, 3))
    toward_rv = np.array([-0.5, -0.85, 0.1])  # septum faces right-anterior
    e1 = _unit(toward_rv - (toward_rv @ u) * u)
    e2 = np.cross(u, e1)
    c_epi = c_ed + t_ed
    apex = -(c_epi + 0.5 * eta * c_ed) * u - 12.0 * e1  # roughly centres LV, RV and LA in the field of view
    pap = (np.deg2rad(135.0 + rng.uniform(-10, 10)), np.deg2rad(235.0 + rng.uniform(-10, 10)))
    return _Anatomy(a_ed, c_ed, eta, t_ed, s_a, s_c, 100.0 * es_index / n_phases, u, e1, e2, apex, pap, rng.uniform(3.5, 4.5))


def _phase_shape(anat: _Anatomy, f: float, myo_volume: float) -> dict:
    """Shape parameters (mm) at contraction fraction ``f``, the wall thickness solved for constant
    myocardial volume ``myo_volume`` (mm^3)."""
    a = anat.a_ed * (1.0 - anat.s_a * f)
    c = anat.c_ed * (1.0 - anat.s_c * f)
    h = anat.eta * c
    v_endo = truncated_ellipsoid_volume(a, a, c, h / c)

    def excess(t: float) -> float:
        return truncated_ellipsoid_volume(a + t, a + t, c + t, h / (c + t)) - v_endo - myo_volume

    t = optimize.brentq(excess, 0.1, 60.0, xtol=1e-9)
    return {"a_endo": a, "c_endo": c, "a_epi": a + t, "c_epi": c + t, "h": h, "t": t, "v_endo": v_endo}


def _capsule(p: np.ndarray, a: np.ndarray, b: np.ndarray, r: float) -> np.ndarray:
    """Points ``p`` (..., 3) within ``r`` of the segment ``a``-``b``."""
    ab = b - a
    s = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)
    closest = a + s[..., None] * ab
    return np.sum((p - closest) ** 2, axis=-1) < r * r


def _render_phase(local: np.ndarray, pts: np.ndarray, anat: _Anatomy, shape: dict, f: float, profile: SiteProfile):
    """Tissue image (HU, noise-free, no blur), labels and papillary mask of one phase.

    ``local``: voxel centres in the LV frame relative to the epicardial apex, (z, y, x, 3) with
    components along (e1, e2, u); ``pts``: the same points in LPS mm.
    """
    a, c, h = shape["a_endo"], shape["c_endo"], shape["h"]
    ae, ce = shape["a_epi"], shape["c_epi"]
    x1, x2 = local[..., 0], local[..., 1]
    z = local[..., 2] - ce  # height above the shared ellipsoid centre
    rho2 = x1 * x1 + x2 * x2
    below_base = z < h
    endo = (rho2 / (a * a) + (z * z) / (c * c) < 1.0) & below_base
    epi = (rho2 / (ae * ae) + (z * z) / (ce * ce) < 1.0) & below_base

    blood = profile.blood_hu
    rv_blood = UNENHANCED_BLOOD_HU + 0.85 * (blood - UNENHANCED_BLOOD_HU)
    myo = profile.myocardium_hu
    hu = np.full(z.shape, LUNG_HU, dtype=np.float32)

    # Chest wall: soft tissue with a subcutaneous fat layer in front of the heart (anterior is -y).
    y = pts[..., 1]
    y_front = float(pts[..., 1].min())
    hu[y < y_front + 22.0] = FAT_HU
    hu[y < y_front + 14.0] = SOFT_TISSUE_HU

    # Pericardial fat envelope around LV, RV, LA and aortic root.
    env = ((x1 - 0.5 * ae) / (1.75 * ae)) ** 2 + ((x2 + 0.05 * ae) / (1.45 * ae)) ** 2 + ((z - 0.3 * ce) / (1.2 * ce)) ** 2 < 1.0
    hu[env] = FAT_HU

    # Descending aorta: vertical tube posterior-left of the heart.
    base_center = anat.apex + (ce + h) * anat.u
    da_center = base_center + np.array([38.0, 42.0, 0.0])
    da = (pts[..., 0] - da_center[0]) ** 2 + (pts[..., 1] - da_center[1]) ** 2 < 11.0**2
    hu[da] = blood

    # Left atrium and aortic root above the basal plane (LVOT truncated at the valve plane).
    above = ~below_base
    la_s = 1.0 + 0.1 * f  # the atrium fills during ventricular systole
    la = above & (((x1 + 0.35 * a) / (22.0 * la_s)) ** 2 + (x2 / (26.0 * la_s)) ** 2 + ((z - h - 18.0) / (26.0 * la_s)) ** 2 < 1.0)
    hu[la] = blood
    root_start = np.array([0.55 * a, -0.15 * a, h])
    root_dir = _unit([0.3, -0.2, 1.0])
    loc3 = np.stack([x1, x2, z], axis=-1)
    rel = loc3[above] - root_start
    along = rel @ root_dir
    radial2 = np.sum(rel * rel, axis=-1) - along**2
    root = np.zeros(z.shape, dtype=bool)
    root[above] = (along >= 0.0) & (along <= 45.0) & (radial2 < 12.5**2)
    hu[root] = blood

    # RV: blood pool and a 3.5 mm free wall wrapped around the septum, truncated near the base plane.
    r1, r2, r3 = 0.8 * ae * (1.0 - 0.25 * f), 1.35 * ae * (1.0 - 0.1 * f), 0.85 * ce * (1.0 - 0.1 * f)
    zc = h - 0.8 * r3
    cx = 0.7 * ae

    def rv_q(extra: float) -> np.ndarray:
        return ((x1 - cx) / (r1 + extra)) ** 2 + (x2 / (r2 + extra)) ** 2 + ((z - zc) / (r3 + extra)) ** 2

    rv_level = z < h + 5.0
    rv_outer = rv_level & (rv_q(3.5) < 1.0) & ~epi
    rv_pool = rv_level & (rv_q(0.0) < 1.0) & ~epi
    hu[rv_outer] = myo
    hu[rv_pool] = rv_blood

    # LV wall, cavity, papillary muscles.
    hu[epi] = myo
    hu[endo] = blood
    pap = np.zeros(z.shape, dtype=bool)
    pr = anat.pap_radius * (1.0 + 0.25 * f)
    in_cavity = loc3[endo]  # only cavity voxels can be papillary muscle
    pap_c = np.zeros(len(in_cavity), dtype=bool)
    for ang in anat.pap_angles:
        d = np.array([np.cos(ang), np.sin(ang)])
        z_root, z_tip = -0.55 * c, -0.1 * c
        root_p = np.array([*(0.95 * a * np.sqrt(1 - (z_root / c) ** 2) * d), z_root])
        tip_p = np.array([*(0.6 * a * np.sqrt(1 - (z_tip / c) ** 2) * d), z_tip])
        pap_c |= _capsule(in_cavity, root_p, tip_p, pr)
    pap[endo] = pap_c
    hu[pap] = myo

    labels = np.zeros(z.shape, dtype=np.uint8)
    labels[epi] = 2
    labels[endo] = 1
    return hu, labels, pap, base_center


def _image_like(arr: np.ndarray, ref: sitk.Image) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(ref)
    return img


def _add_defects(clean: np.ndarray, spacing, local: np.ndarray, shape: dict, rng: np.random.Generator):
    """Annotation defects a flood-filled expert contour leaves, on a copy of the 0/1/2 ``clean`` labels.

    Holes: 2-4 small ellipsoidal background blobs enclosed in the blood pool, each more than three
    voxels from any non-pool voxel (semi-axes 1.3-2.2 voxels, so a radius-5 closing fills them).
    Gaps: 1-2 patches where the one-voxel layer of pool next to the myocardium becomes background,
    on opposite sides of the cavity, away from the apex and the basal plane.
    Returns the defective labels and a record of what changed.
    """
    # Work inside the LV's bounding box (plus a margin) only: distance maps there are much cheaper.
    nz = np.argwhere(clean > 0)
    lo, hi = np.maximum(nz.min(axis=0) - 2, 0), nz.max(axis=0) + 3
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    full = clean.copy()
    clean, local = clean[box], local[box]

    spacing_zyx = np.array(spacing, dtype=float)[::-1]
    smax = float(spacing_zyx.max())
    pool = clean == 1
    out = clean.copy()
    dist_out = ndimage.distance_transform_edt(pool, sampling=spacing_zyx)

    # Holes.
    n_wanted = int(rng.integers(2, 5))
    hole_mask = np.zeros(clean.shape, dtype=bool)
    centres: list[np.ndarray] = []
    zz, yy, xx = np.indices(clean.shape, sparse=True)
    for _ in range(n_wanted):
        semi = rng.uniform(1.3, 2.2, 3) * spacing_zyx  # mm, (z, y, x)
        margin = float(semi.max()) + 3.0 * smax
        cand = np.argwhere(dist_out > margin)
        if centres:
            cpos = cand * spacing_zyx
            far = np.ones(len(cand), dtype=bool)
            for c0 in centres:
                far &= np.linalg.norm(cpos - c0 * spacing_zyx, axis=1) > 2.0 * margin
            cand = cand[far]
        if len(cand) == 0:
            break
        c0 = cand[int(rng.integers(len(cand)))]
        centres.append(c0)
        blob = ((zz - c0[0]) * spacing_zyx[0] / semi[0]) ** 2 + ((yy - c0[1]) * spacing_zyx[1] / semi[1]) ** 2 + (
            (xx - c0[2]) * spacing_zyx[2] / semi[2]
        ) ** 2 <= 1.0
        hole_mask |= blob & pool
    out[hole_mask] = 0

    # Gaps: pool voxels within one (largest) voxel spacing of the myocardium, over angular patches.
    dist_myo = ndimage.distance_transform_edt(clean != 2, sampling=spacing_zyx)
    near_wall = pool & (dist_myo <= smax * 1.01) & ~hole_mask
    z_loc = local[..., 2] - shape["c_epi"]
    theta = np.arctan2(local[..., 1], local[..., 0])
    n_gaps = int(rng.integers(1, 3))
    theta0 = rng.uniform(-np.pi, np.pi)
    z0 = rng.uniform(-0.45, -0.05) * shape["c_endo"]
    gap_mask = np.zeros(clean.shape, dtype=bool)
    made = 0
    for k in range(n_gaps):
        th = theta0 + k * np.pi
        dth = np.angle(np.exp(1j * (theta - th)))
        patch = near_wall & (np.abs(dth) < np.deg2rad(35.0)) & (np.abs(z_loc - z0) < 10.0)
        if patch.any():
            gap_mask |= patch
            made += 1
    out[gap_mask] = 0
    full[box] = out
    record = {"holes": len(centres), "hole_voxels": int(hole_mask.sum()), "gaps": made, "gap_voxels": int(gap_mask.sum())}
    return full, record


def beating_lv(
    seed: int = 0,
    n_phases: int = 20,
    spacing=DEFAULT_SPACING,
    site: str | SiteProfile | None = None,
    defects: bool = False,
    progress: ProgressCallback | None = None,
) -> LVPhantom:
    """Generate a beating-LV cardiac CT series with labels for every phase.

    ``seed``: anatomy, orientation, timing, noise and defects all follow from it (numpy Generator).
    ``n_phases``: phases evenly spread over the R-R interval (``percent_rr = 100 i / n``); ED is at
    0 %, ES at the phase nearest 33-42 % R-R.
    ``spacing``: (x, y, z) voxel spacing in mm; the field of view is fixed at
    :data:`FIELD_OF_VIEW_MM`, centred on the physical origin, axial (identity direction, LPS).
    ``site``: appearance profile name or :class:`~segtransfer.phantoms.sites.SiteProfile`.
    ``defects``: put annotation defects (enclosed holes in the pool, pool/wall gaps) into
    ``series.labels``; ``clean_labels`` always holds the truth.
    ``progress``: optional callback ``(fraction, message)``, called as phases are done.
    Images are float32 HU; labels uint8 0/1/2.
    """
    seed = check_seed(seed)
    if int(n_phases) < 2:
        raise InputError("n_phases", f"need at least 2 phases, got {n_phases}")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or min(spacing) <= 0 or not np.all(np.isfinite(spacing)):
        raise InputError("spacing", f"need three positive spacings in mm, got {spacing}")
    if max(spacing) > 6.0:
        raise InputError("spacing", f"spacing {spacing} mm is too coarse for an LV phantom (at most 6 mm)")
    check_grid_size(FIELD_OF_VIEW_MM, spacing, "LV phantom")
    n_phases = int(n_phases)
    profile = get_site(site)
    rng_shape = np.random.default_rng([seed, _STREAM_SHAPE])
    rng_noise = np.random.default_rng([seed, _STREAM_NOISE])
    rng_def = np.random.default_rng([seed, _STREAM_DEFECTS])

    anat = _anatomy(rng_shape, n_phases)
    percent = [100.0 * i / n_phases for i in range(n_phases)]
    fractions = contraction(np.array(percent), anat.es_percent)

    a, c, t = anat.a_ed, anat.c_ed, anat.t_ed
    myo_volume = truncated_ellipsoid_volume(a + t, a + t, c + t, anat.eta * c / (c + t)) - truncated_ellipsoid_volume(a, a, c, anat.eta)
    shapes = [_phase_shape(anat, float(f), myo_volume) for f in fractions]

    ref, pts = _grid(np.array(FIELD_OF_VIEW_MM), spacing, None)
    rot = np.stack([anat.e1, anat.e2, anat.u], axis=1)  # columns: LV frame axes in LPS
    local = ((pts - anat.apex) @ rot).astype(np.float32)
    pts = pts.astype(np.float32)

    phases, labels, clean, paps, records, bases = [], {}, {}, {}, {}, []
    steps = Steps(n_phases, "LV phantom phase", progress) if progress is not None else None
    for i, (f, shp) in enumerate(zip(fractions, shapes)):
        hu, lab, pap, base_center = _render_phase(local, pts, anat, shp, float(f), profile)
        image = scanner_blur_and_noise(hu, spacing, profile.cardiac_fwhm_mm, profile.cardiac_noise_hu, rng_noise)
        phases.append(_image_like(image, ref))
        clean[i] = _image_like(lab, ref)
        paps[i] = _image_like(pap.astype(np.uint8), ref)
        bases.append(tuple(float(v) for v in base_center))
        if defects:
            bad, records[i] = _add_defects(lab, spacing, local, shp, rng_def)
            labels[i] = _image_like(bad, ref)
        else:
            records[i] = {"holes": 0, "hole_voxels": 0, "gaps": 0, "gap_voxels": 0}
            labels[i] = _image_like(lab.copy(), ref)
        if steps is not None:
            steps.step(f"{percent[i]:.0f}% R-R")

    cavity = [s["v_endo"] / 1000.0 for s in shapes]
    truth = LVTruth(
        cavity_ml=cavity,
        myocardium_ml=[myo_volume / 1000.0] * n_phases,
        wall_thickness_mm=[s["t"] for s in shapes],
        ed_index=int(np.argmax(cavity)),
        es_index=int(np.argmin(cavity)),
        ejection_fraction=(max(cavity) - min(cavity)) / max(cavity),
        percent_rr=percent,
        long_axis=tuple(float(v) for v in anat.u),
        apex_mm=tuple(float(v) for v in anat.apex),
        base_center_mm=bases,
        shape=[{k: s[k] for k in ("a_endo", "c_endo", "a_epi", "c_epi", "h")} for s in shapes],
    )
    series = Series4D(phases, percent, labels)
    return LVPhantom(series, clean, truth, paps, records)

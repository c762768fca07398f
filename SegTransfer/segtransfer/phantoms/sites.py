"""Site appearance profiles: how scanners and protocols at different hospitals make the same anatomy look.

A profile sets, for the phantom generators, the noise level (HU standard deviation), the contrast
(blood enhancement for cardiac CT angiography, grey-white difference for head CT), the resolution
(point-spread function and slice thickness, and the voxel spacing of head CT) and the scale of
hemorrhage sizes in the site's patient population.  Both :func:`~segtransfer.phantoms.beating_lv`
and :func:`~segtransfer.phantoms.head_ct` take ``site=`` as a profile name or a :class:`SiteProfile`.

The reference profile ``site_a`` follows the real contrast-enhanced cardiac CT crop shipped with
the project data (``cardiac_cta_crop.nii.gz``): LV blood pool about 485 HU (std 43 HU inside the
pool), myocardium about 130-150 HU, lung about -810 HU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class SiteProfile:
    """Appearance of one site's scanner and protocol.

    Cardiac CT angiography:
      ``cardiac_noise_hu``: noise standard deviation (HU) in a uniform region.
      ``blood_hu`` / ``myocardium_hu``: contrast-enhanced LV blood pool and myocardium (HU).
      ``cardiac_fwhm_mm``: (in-plane, through-plane) full width at half maximum of the scanner's
      point-spread function and slice profile (mm).
    Head CT:
      ``head_noise_hu``: noise standard deviation (HU).
      ``grey_hu`` / ``white_hu``: grey and white matter (HU); their difference is the site's
      grey-white contrast.
      ``head_spacing``: voxel spacing (x, y, z) in mm used when the caller gives none; z is the
      axial slice spacing.
      ``head_fwhm_mm``: (in-plane, slice thickness) point-spread function FWHM (mm).
      ``lesion_scale``: linear scale of hemorrhage sizes (1 = reference population).
    """

    name: str
    description: str
    cardiac_noise_hu: float
    blood_hu: float
    myocardium_hu: float
    cardiac_fwhm_mm: tuple[float, float]
    head_noise_hu: float
    grey_hu: float
    white_hu: float
    head_spacing: tuple[float, float, float]
    head_fwhm_mm: tuple[float, float]
    lesion_scale: float

    def to_dict(self) -> dict:
        """The profile as plain JSON-ready values."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


SITES: dict[str, SiteProfile] = {
    p.name: p
    for p in (
        SiteProfile(
            name="site_a",
            description="reference: 64-row CT, standard dose and kernel; head CT in 5 mm axial slices",
            cardiac_noise_hu=40.0,
            blood_hu=485.0,
            myocardium_hu=140.0,
            cardiac_fwhm_mm=(1.0, 1.5),
            head_noise_hu=4.0,
            grey_hu=38.0,
            white_hu=30.0,
            head_spacing=(0.9, 0.9, 5.0),
            head_fwhm_mm=(0.9, 5.0),
            lesion_scale=1.0,
        ),
        SiteProfile(
            name="site_b",
            description="low dose, soft kernel, late contrast timing (weaker enhancement); head CT in 2.5 mm slices",
            cardiac_noise_hu=65.0,
            blood_hu=360.0,
            myocardium_hu=125.0,
            cardiac_fwhm_mm=(1.6, 2.5),
            head_noise_hu=7.0,
            grey_hu=36.0,
            white_hu=30.0,
            head_spacing=(0.7, 0.7, 2.5),
            head_fwhm_mm=(1.2, 2.5),
            lesion_scale=1.3,
        ),
        SiteProfile(
            name="site_c",
            description="high-end scanner, sharp kernel, strong enhancement; head CT in 3 mm slices, smaller bleeds",
            cardiac_noise_hu=28.0,
            blood_hu=600.0,
            myocardium_hu=150.0,
            cardiac_fwhm_mm=(0.7, 0.9),
            head_noise_hu=3.0,
            grey_hu=41.0,
            white_hu=30.0,
            head_spacing=(1.0, 1.0, 3.0),
            head_fwhm_mm=(0.7, 3.0),
            lesion_scale=0.7,
        ),
    )
}

DEFAULT_SITE = "site_a"


def list_sites() -> list[str]:
    """Names of the built-in site profiles, sorted."""
    return sorted(SITES)


def get_site(site: str | SiteProfile | None = None) -> SiteProfile:
    """The profile for ``site``: a built-in name, a :class:`SiteProfile` (returned as is), or ``None``
    for the reference site.  Raises ``InputError`` for an unknown name or invalid values."""
    if site is None:
        return SITES[DEFAULT_SITE]
    if isinstance(site, SiteProfile):
        profile = site
    else:
        key = str(site)
        if key not in SITES:
            raise InputError("site", f"unknown site profile {key!r} (known: {', '.join(list_sites())})")
        profile = SITES[key]
    if profile.cardiac_noise_hu < 0 or profile.head_noise_hu < 0:
        raise InputError(f"site {profile.name}", "noise standard deviation must be >= 0 HU")
    if profile.lesion_scale <= 0 or min(profile.head_spacing) <= 0 or min(profile.cardiac_fwhm_mm + profile.head_fwhm_mm) < 0:
        raise InputError(f"site {profile.name}", "lesion scale and spacing must be > 0, FWHM >= 0")
    return profile


def scanner_blur_and_noise(hu: np.ndarray, spacing, fwhm_mm: tuple[float, float], noise_hu: float, rng: np.random.Generator) -> np.ndarray:
    """Apply a Gaussian point-spread function and correlated Gaussian noise to a tissue image.

    ``hu``: [z, y, x] HU; ``spacing``: (x, y, z) mm; ``fwhm_mm``: (in-plane, through-plane) FWHM in
    mm.  The noise is white noise smoothed in-plane by a 0.6-voxel Gaussian (the reconstruction
    kernel correlates CT noise within a slice), rescaled to ``noise_hu`` standard deviation.  Returns float32 HU clipped to
    [-1024, 3071].
    """
    from scipy import ndimage  # here, not at the top: the CLI reads the site names from this module

    sx, sy, sz = (float(s) for s in spacing)
    fw_xy, fw_z = fwhm_mm
    sigma_vox = np.array([fw_z / sz, fw_xy / sy, fw_xy / sx]) / 2.3548
    out = ndimage.gaussian_filter(hu.astype(np.float32), sigma_vox, mode="nearest") if np.any(sigma_vox > 0) else hu.astype(np.float32)
    if noise_hu > 0:
        noise = ndimage.gaussian_filter(rng.standard_normal(hu.shape, dtype=np.float32), (0.0, 0.6, 0.6), mode="wrap")
        noise *= noise_hu / float(noise.std())
        out += noise
    return np.clip(out, -1024.0, 3071.0).astype(np.float32)

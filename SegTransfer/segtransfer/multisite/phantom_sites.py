"""Phantom hospitals for multi-site experiments: site folders of head CTs with known hemorrhage masks.

Training sites get ``train/`` and ``test/``; held-out sites (which never train) only ``test/``.  Each
case is ``CASE/image.nii.gz`` (HU) + ``CASE/mask.nii.gz`` (0/1) + ``CASE/truth.json`` (the phantom's
known lesions and volumes).  The sites differ the way scanners, protocols and populations do: the
built-in profiles ``site_a`` (reference, 5 mm slices), ``site_b`` (low dose, 2.5 mm slices, bleeds
1.3x larger) and ``site_c`` (sharp kernel, 3 mm, bleeds 0.7x), plus :data:`SITE_D` defined here
(intermediate noise and contrast, 4 mm slices, bleeds 1.15x) as a second site that never trains.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import SimpleITK as sitk

from ..errors import InputError
from ..io import atomic_dir
from ..phantoms import SiteProfile, get_site, head_ct
from ..progress import ProgressCallback, print_progress

SITE_D = SiteProfile(
    name="site_d",
    description="older 16-row CT, standard kernel; head CT in 4 mm slices, somewhat larger bleeds",
    cardiac_noise_hu=50.0, blood_hu=420.0, myocardium_hu=135.0, cardiac_fwhm_mm=(1.2, 2.0),
    head_noise_hu=5.5, grey_hu=37.0, white_hu=30.0, head_spacing=(0.8, 0.8, 4.0), head_fwhm_mm=(1.0, 4.0), lesion_scale=1.15,
)
PROFILES = {"site_d": SITE_D}


def profile(name: str) -> SiteProfile:
    """A built-in site profile or one of :data:`PROFILES`."""
    return PROFILES[name] if name in PROFILES else get_site(name)


def _kinds(i: int):
    # every fourth scan carries all five kinds, the others one to three chosen by the seed
    return True if i % 4 == 0 else "random"


def write_site(folder: str | os.PathLike, site: str, *, train: int, test: int, spacing=None, in_plane_mm: float | None = None,
               seed: int = 0, progress: ProgressCallback | None = None) -> Path:
    """Write one phantom site folder (atomic): ``train`` training and ``test`` test cases of profile ``site``.

    ``spacing``: (x, y, z) mm for every scan (``None``: the site's own); ``in_plane_mm``: keep the site's
    slice spacing but use this in-plane spacing (smaller scans, same slice thickness differences).
    Seeds differ per site, split and case."""
    progress = progress or print_progress
    prof = profile(site)
    if spacing is None and in_plane_mm is not None:
        spacing = (float(in_plane_mm), float(in_plane_mm), prof.head_spacing[2])
    if train < 0 or test < 1:
        raise InputError(f"site {site}", f"need train >= 0 and test >= 1 cases, got {train} and {test}")
    site_index = zlib.crc32(site.encode()) % 1000
    with atomic_dir(folder) as tmp:
        n, total = 0, train + test
        for split, count, offset in (("train", train, 0), ("test", test, 500)):
            for i in range(count):
                case_seed = 1_000_000 * (seed + 1) + 1000 * site_index + offset + i
                h = head_ct(seed=case_seed, site=prof, spacing=spacing, hemorrhage=_kinds(i))
                case = tmp / split / f"{site}_{split}_{i:02d}"
                case.mkdir(parents=True)
                sitk.WriteImage(h.image, str(case / "image.nii.gz"))
                sitk.WriteImage(h.mask, str(case / "mask.nii.gz"))
                (case / "truth.json").write_text(json.dumps({"site": site, "seed": case_seed, **h.truth.to_dict()}, indent=2) + "\n", encoding="utf-8")
                n += 1
                progress(n / total, f"{site}: {split} case {i + 1}/{count}")
    return Path(folder)


def write_sites(root: str | os.PathLike, training: list[str], held_out: list[str], *, train: int, test: int, spacing=None,
                in_plane_mm: float | None = None, seed: int = 0, progress: ProgressCallback | None = None) -> dict[str, Path]:
    """Write ``root/<site>`` for every training site (train + test cases) and held-out site (test only);
    returns site name -> folder.  ``spacing`` and ``in_plane_mm`` as for :func:`write_site`."""
    root = Path(root)
    out = {}
    for site in training:
        out[site] = write_site(root / site, site, train=train, test=test, spacing=spacing, in_plane_mm=in_plane_mm, seed=seed, progress=progress)
    for site in held_out:
        out[site] = write_site(root / site, site, train=0, test=test, spacing=spacing, in_plane_mm=in_plane_mm, seed=seed, progress=progress)
    return out

#!/usr/bin/env python
"""Reproduce the shipped demonstration hemorrhage model: train on phantom head CTs of site_a and
site_b, and of randomised variants of those two sites, and write the package to
SegTransfer/segtransfer/resources/models/hemorrhage_phantom.

Three stages.  Stage 1 trains from scratch (below).  Stage 2 warm-starts from stage 1's weights on stage 1's
scans plus ``--finetune-scans-per-site`` new variants per site with small lesions (thin subdurals, random
kinds and negatives, see :func:`finetune_cases`), at the study's learning rate 1e-4, until the study's
convergence rule stops it (at most ``--finetune-epochs``); its package asks inference for left-right flip
averaging.  Stage 3 warm-starts from stage 2's weights on stage 2's scans plus ``--subdural-scans-per-site``
further variants per site with a thin subdural hematoma only (see :func:`subdural_cases`), again at 1e-4
with the same patches, until the convergence rule stops it (at most ``--stage3-epochs``); its package, the
shipped one, also asks for flip averaging.  ``--stage1`` fine-tunes a stage-1 package kept from an earlier
run (``--stage1-out``); ``--stage2`` runs stage 3 alone from a kept stage-2 package (``--stage2-out``).

Training data (all generated here from seeds, nothing is downloaded): for each of site_a and site_b,
``--scans-per-site`` phantoms; the first quarter use the site's own profile, the others a variant of
it with another scanner set-up and patient population drawn at random (noise 2.5-8 HU, grey matter
35-43 HU, in-plane resolution 0.6-1.4 mm FWHM, in-plane spacing 0.8-1.0 mm, slices 2.5-5 mm,
lesion-size scale 0.55-1.3), so that the model does not learn one scanner's look.  Every fourth scan
is negative; the others carry all five hemorrhage kinds or a random one to three of them.

site_c is never used here (neither its profile nor its scans): the quality test evaluates the model
on it.  The model is trained on phantoms only: for demonstration and testing, not for clinical use.
To train on two CPU cores it uses 128x128 training patches, ``--patches`` positive and as many
negative patches per scan, and Adam with lr 1e-3 (the study's 1e-4 is the default of
`segtransfer hemorrhage train`); the study's convergence rule applies, with at most ``--max-epochs``.
The shipped package was made with the defaults and one thread (``OMP_NUM_THREADS=1``):

    OMP_NUM_THREADS=1 python scripts/train_default_hemorrhage_model.py [--out DIR] [--checkpoint-dir DIR] [--resume]
        [--stage1-out DIR | --stage1 DIR] [--stage2-out DIR | --stage2 DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SegTransfer"))

BASE_SITES = ("site_a", "site_b")


def site_variant(base: str, index: int, rng: np.random.Generator):
    """A randomised variant of site profile ``base``: other noise, grey-white contrast, in-plane
    resolution, voxel spacing, slice thickness and lesion-size scale (ranges in the module docstring)."""
    from segtransfer.phantoms.sites import get_site

    profile = get_site(base)
    slice_mm = float(rng.uniform(2.5, 5.0))
    pixel_mm = float(rng.uniform(0.8, 1.0))
    return replace(profile, name=f"{base}_variant{index}", description=f"randomised variant of {base} (training only)",
                   head_noise_hu=float(rng.uniform(2.5, 8.0)), grey_hu=float(rng.uniform(35.0, 43.0)),
                   head_spacing=(pixel_mm, pixel_mm, slice_mm), head_fwhm_mm=(float(rng.uniform(0.6, 1.4)), slice_mm),
                   lesion_scale=float(rng.uniform(0.55, 1.3)))


def training_cases(scans_per_site: int, seed: int):
    """(name, image, mask) of the training phantoms, and the profile of each (for the model card)."""
    from segtransfer.phantoms import head_ct
    from segtransfer.progress import print_progress

    rng = np.random.default_rng([seed, 7])
    cases, profiles = [], []
    total = len(BASE_SITES) * scans_per_site
    for s, base in enumerate(BASE_SITES):
        for i in range(scans_per_site):
            profile = base if i < scans_per_site // 4 else site_variant(base, i, rng)
            # every fourth scan is negative; the others carry all five kinds or a random few
            kinds = False if i % 4 == 3 else (True if i % 2 == 0 else "random")
            print_progress(len(cases) / total * 0.05, f"generating phantom {base} {i}")
            h = head_ct(seed=1000 * s + i, site=profile, hemorrhage=kinds)
            cases.append((f"{base}_{i}", h.image, h.mask))
            profiles.append(h.truth.site)
    return cases, profiles


def small_lesion_variants(scans_per_site: int, rng: np.random.Generator, first: int, first_seed: int, kinds, tag: str):
    """(name, image, mask) and profiles of ``scans_per_site`` new randomised variants per base site with small
    lesions (lesion-size scale 0.55-0.8): variant ``first + i`` of each site, drawn from ``rng``, phantom seed
    ``first_seed + 100 * site + i``, hemorrhage kinds ``kinds(i)`` (see ``head_ct``), named ``<site>_<tag><first + i>``."""
    from segtransfer.phantoms import head_ct
    from segtransfer.progress import print_progress

    cases, profiles = [], []
    for s, base in enumerate(BASE_SITES):
        for i in range(scans_per_site):
            profile = replace(site_variant(base, first + i, rng), lesion_scale=float(rng.uniform(0.55, 0.8)))
            print_progress(len(cases) / (len(BASE_SITES) * scans_per_site) * 0.05, f"generating phantom {profile.name}")
            h = head_ct(seed=first_seed + 100 * s + i, site=profile, hemorrhage=kinds(i))
            cases.append((f"{base}_{tag}{first + i}", h.image, h.mask))
            profiles.append(h.truth.site)
    return cases, profiles


def finetune_cases(scans_per_site: int, seed: int):
    """(name, image, mask) of the second stage's extra phantoms, and their profiles: per base site,
    ``scans_per_site`` new randomised variants with small lesions (lesion-size scale 0.55-0.8); of each
    three, one carries a subdural hematoma only (the thin crescents along the inner skull that stage 1
    partly misses), one a random one to three kinds and one is negative (the inner-skull rim that stage 1
    marks).  Seeds and variants differ from stage 1's and from the held-out evaluation's."""
    return small_lesion_variants(scans_per_site, np.random.default_rng([seed, 8]), 20, 3000,
                                 lambda i: ("subdural", "random", False)[i % 3], "thin")


def subdural_cases(scans_per_site: int, seed: int):
    """(name, image, mask) of the third stage's extra phantoms, and their profiles: per base site,
    ``scans_per_site`` new randomised variants with small lesions (lesion-size scale 0.55-0.8), each with a
    subdural hematoma only: the thin crescents along the inner skull table whose volume stage 2 still
    underestimates.  Random stream ``[seed, 9, 1]`` and phantom seeds 5000 + 100 * site + i: they differ
    from the other stages' ([seed, 7], [seed, 8]; seeds below 4000) and from the held-out evaluation's
    ([0, 99], [0, 98]; seeds 7000 and 8000 on)."""
    return small_lesion_variants(scans_per_site, np.random.default_rng([seed, 9, 1]), 40, 5000, lambda i: "subdural", "sdh")


def main() -> None:
    from segtransfer.hemorrhage.network import FLIP_AVERAGE
    from segtransfer.hemorrhage.train import train
    from segtransfer.models import load_network

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "SegTransfer" / "segtransfer" / "resources" / "models" / "hemorrhage_phantom")
    parser.add_argument("--scans-per-site", type=int, default=10)
    parser.add_argument("--patches", type=int, default=150, help="positive (and as many negative) patches per scan")
    parser.add_argument("--max-epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-dir", type=Path, help="keep the per-epoch checkpoint here (default: a temporary folder)")
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir")
    parser.add_argument("--stage1", type=Path, help="stage 1's package, written by an earlier run of this script "
                        "(--stage1-out): skip stage 1 and fine-tune it")
    parser.add_argument("--stage1-out", type=Path, help="also keep stage 1's package here")
    parser.add_argument("--finetune-scans-per-site", type=int, default=6)
    parser.add_argument("--finetune-epochs", type=int, default=30, help="most epochs of stage 2")
    parser.add_argument("--stage2", type=Path, help="stage 2's package, written by an earlier run of this script "
                        "(--stage2-out): skip stages 1 and 2 and fine-tune it")
    parser.add_argument("--stage2-out", type=Path, help="also keep stage 2's package here")
    parser.add_argument("--subdural-scans-per-site", type=int, default=6)
    parser.add_argument("--stage3-epochs", type=int, default=25, help="most epochs of stage 3")
    args = parser.parse_args()
    card = {"limitations": "Trained on synthetic phantom head CTs only. For demonstration and testing, NOT for clinical use.",
            "intended_use": "Demonstration and testing of SegTransfer on phantoms; not for clinical use.",
            "reproduce": "OMP_NUM_THREADS=1 python scripts/train_default_hemorrhage_model.py"}
    cases, profiles = training_cases(args.scans_per_site, args.seed)
    extra_cases, extra_profiles = finetune_cases(args.finetune_scans_per_site, args.seed)
    site = "SegTransfer phantoms (site_a, site_b and randomised variants of them)"
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.checkpoint_dir or Path(tmp) / "checkpoint"
        stage2 = args.stage2
        if stage2 is None:
            stage1 = args.stage1
            if stage1 is None:  # stage 1: from scratch on site_a, site_b and their variants
                stage1 = args.stage1_out or Path(tmp) / "stage1"
                train(cases, stage1, site=site, patch_size=128,
                      positives=args.patches, negatives=args.patches, lr=1e-3, batch_size=16, max_epochs=args.max_epochs,
                      seed=args.seed, checkpoint_dir=ckpt / "stage1", resume=args.resume,
                      card_extra={**card, "training_sites": sorted(set(profiles))})
            network, parent = load_network(stage1)
            # stage 2: warm start from stage 1 on its scans plus thin subdurals and negatives of new variants, at
            # the study's learning rate; the package asks inference to average with the left-right mirrored slice
            stage2 = args.stage2_out or Path(tmp) / "stage2"
            train(cases + extra_cases, stage2, site=site,
                  patch_size=128, positives=args.patches, negatives=args.patches, lr=1e-4, batch_size=16,
                  max_epochs=args.finetune_epochs, seed=args.seed + 1, checkpoint_dir=ckpt / "stage2", resume=args.resume,
                  initial_weights=network.state_dict(), description_extra={FLIP_AVERAGE: "left-right"},
                  card_extra={**card, "training_sites": sorted(set(profiles + extra_profiles)),
                              "parent": {"sha256": parent.sha256, "name": "stage 1 of the same recipe"}})
        network, parent = load_network(stage2)
        # stage 3: warm start from stage 2 on its scans plus more thin-subdural-only variants, same patches and
        # learning rate (uniform positive sampling), flip averaging kept
        sdh_cases, sdh_profiles = subdural_cases(args.subdural_scans_per_site, args.seed)
        pkg = train(cases + extra_cases + sdh_cases, args.out, site=site,
                    patch_size=128, positives=args.patches, negatives=args.patches, lr=1e-4, batch_size=16,
                    max_epochs=args.stage3_epochs, seed=args.seed + 2, positive_sampling="uniform", checkpoint_dir=ckpt / "stage3",
                    resume=args.resume, initial_weights=network.state_dict(), description_extra={FLIP_AVERAGE: "left-right"},
                    card_extra={**card, "training_sites": sorted(set(profiles + extra_profiles + sdh_profiles)),
                                "parent": {"sha256": parent.sha256, "name": "stage 2 of the same recipe"}})
        shutil.copy(Path(ckpt) / "stage3" / "training_log.csv", Path(tempfile.gettempdir()) / "hemorrhage_phantom_training_log.csv")
    print(f"wrote {args.out} (sha256 {pkg.sha256})")


if __name__ == "__main__":
    main()

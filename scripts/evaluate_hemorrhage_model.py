#!/usr/bin/env python
"""Evaluate a hemorrhage model package on phantom head CTs it never saw, scan by scan.

Two sets:

* ``heldout`` (the default; for choosing a recipe or an inference option): randomised variants of
  ``site_a`` and ``site_b`` drawn as in scripts/train_default_hemorrhage_model.py but from another random
  stream and other phantom seeds, so no scan, variant or seed of the training is among them:
  ``--mixed`` scans with one to three random kinds (every third one negative) and ``--thin`` scans with
  a subdural hematoma only and small lesions (lesion-size scale 0.55-0.8).
* ``site_c`` (the test site, never used in training or for choices): 5 positive scans (seeds 500-504,
  random kinds) and 1 negative (seed 600), the scans of the quality test in Testing/test_hemorrhage.py.

Per scan: true and predicted volume (mL), Dice; then mean Dice over the positive scans, Pearson's r of
predicted vs true volume over the positive scans (as the quality test) and over all scans, the mean
relative volume error, and the volume marked on each negative scan.  ``--flip``
overrides the package's left-right flip averaging (``on``/``off``) to compare both on the same weights.

    OMP_NUM_THREADS=1 python scripts/evaluate_hemorrhage_model.py [--model PACKAGE] [--set heldout|site_c] [--flip package|on|off]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SegTransfer"))


def _training_script():
    """scripts/train_default_hemorrhage_model.py as a module (its site variants)."""
    spec = importlib.util.spec_from_file_location("train_default_hemorrhage_model", ROOT / "scripts" / "train_default_hemorrhage_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def heldout_scans(mixed: int, thin: int):
    """(name, phantom) of the held-out set: variants of site_a/site_b from random streams and seeds that
    the training script never uses (its streams are [seed, 7] and [seed, 8], its seeds below 4000)."""
    from segtransfer.phantoms import head_ct

    recipe = _training_script()
    rng = np.random.default_rng([0, 99])
    for n in range(mixed):
        profile = recipe.site_variant(recipe.BASE_SITES[n % 2], 100 + n, rng)
        yield profile.name, head_ct(seed=7000 + n, site=profile, hemorrhage=False if n % 3 == 2 else "random")
    rng = np.random.default_rng([0, 98])
    for n in range(thin):
        profile = recipe.site_variant(recipe.BASE_SITES[n % 2], 100 + n, rng)
        profile = replace(profile, name=profile.name + "_thin", lesion_scale=float(rng.uniform(0.55, 0.8)))
        yield profile.name, head_ct(seed=8000 + n, site=profile, hemorrhage="subdural")


def site_c_scans():
    """(name, phantom) of the test site: the quality test's scans."""
    from segtransfer.phantoms import head_ct

    for seed in range(500, 505):
        yield f"site_c_{seed}", head_ct(seed=seed, site="site_c", hemorrhage="random")
    yield "site_c_600", head_ct(seed=600, site="site_c", hemorrhage=False)


def main() -> None:
    import SimpleITK as sitk

    from segtransfer.hemorrhage import default_model_path, segment
    from segtransfer.hemorrhage.network import FLIP_AVERAGE
    from segtransfer.models import load_network

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=default_model_path())
    parser.add_argument("--set", choices=("heldout", "site_c"), default="heldout")
    parser.add_argument("--mixed", type=int, default=18, help="held-out scans with random kinds (every third negative)")
    parser.add_argument("--thin", type=int, default=8, help="held-out scans with a thin subdural hematoma only")
    parser.add_argument("--flip", choices=("package", "on", "off"), default="package")
    args = parser.parse_args()
    network, package = load_network(args.model)
    description = package.description
    if args.flip != "package":
        extra = {k: v for k, v in (description.get("extra") or {}).items() if k != FLIP_AVERAGE}
        description = {**description, "extra": {**extra, **({FLIP_AVERAGE: "left-right"} if args.flip == "on" else {})}}
    scans = heldout_scans(args.mixed, args.thin) if args.set == "heldout" else site_c_scans()
    rows = []
    print(f"{'scan':28}{'kinds':44}{'true mL':>9}{'pred mL':>9}{'Dice':>7}")
    for name, h in scans:
        result = segment(h.image, network, description, name, progress=lambda *_: None)
        truth = sitk.GetArrayFromImage(h.mask) > 0
        pred = sitk.GetArrayFromImage(result.mask) > 0
        dice = 2.0 * np.logical_and(pred, truth).sum() / max(pred.sum() + truth.sum(), 1)
        kinds = ",".join(les.kind for les in h.truth.lesions) or "negative"
        rows.append((name, h.truth.total_volume_ml, result.volume_ml, dice))
        print(f"{name:28}{kinds:44}{h.truth.total_volume_ml:9.2f}{result.volume_ml:9.2f}{dice:7.3f}", flush=True)
    true = np.array([r[1] for r in rows])
    pred = np.array([r[2] for r in rows])
    dices = np.array([r[3] for r in rows])
    positive = true > 0
    print(f"{args.set}: {positive.sum()} positive, {(~positive).sum()} negative scans; model {package.sha256[:12]}, "
          f"flip averaging {'on' if (description.get('extra') or {}).get(FLIP_AVERAGE) else 'off'}")
    print(f"mean Dice (positive scans) {dices[positive].mean():.3f}, lowest {dices[positive].min():.3f}")
    print(f"Pearson r of volumes: positive scans {np.corrcoef(pred[positive], true[positive])[0, 1]:.3f}, "
          f"all scans {np.corrcoef(pred, true)[0, 1]:.3f} (a negative scan's 0 mL adds a point at the origin)")
    print(f"mean relative volume error (positive scans) {np.mean((pred[positive] - true[positive]) / true[positive]):+.3f}")
    if (~positive).any():
        print(f"marked on negative scans (mL): {', '.join(f'{v:.2f}' for v in pred[~positive])} (max {pred[~positive].max():.2f})")


if __name__ == "__main__":
    main()

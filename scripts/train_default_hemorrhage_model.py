#!/usr/bin/env python
"""Reproduce the shipped demonstration hemorrhage model: train on phantom head CTs from two sites
(site_a, site_b) and write the package to SegTransfer/segtransfer/resources/models/hemorrhage_phantom.

site_c is never used here: the quality test evaluates the model on it.  The model is trained on
phantoms only: for demonstration and testing, not for clinical use.  To train in minutes on two CPU
cores it uses 128x128 training patches, 200 positive and 200 negative patches per scan and Adam
with lr 1e-3 (the study's 1e-4 is the default of `segtransfer hemorrhage train`).

    python scripts/train_default_hemorrhage_model.py [--out DIR] [--scans-per-site 6] [--max-epochs 40]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SegTransfer"))


def main() -> None:
    from segtransfer.hemorrhage.train import train
    from segtransfer.phantoms import head_ct

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "SegTransfer" / "segtransfer" / "resources" / "models" / "hemorrhage_phantom")
    parser.add_argument("--scans-per-site", type=int, default=8)
    parser.add_argument("--max-epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cases = []
    for site in ("site_a", "site_b"):
        for i in range(args.scans_per_site):
            # every fourth scan is negative; the others carry all five kinds or a random few
            kinds = False if i % 4 == 3 else (True if i % 2 == 0 else "random")
            h = head_ct(seed=1000 * (site == "site_b") + i, site=site, hemorrhage=kinds)
            cases.append((f"{site}_{i}", h.image, h.mask))
    with tempfile.TemporaryDirectory() as ckpt:
        pkg = train(cases, args.out, site="SegTransfer phantoms (site_a, site_b)", patch_size=128, positives=200, negatives=200,
                    lr=1e-3, batch_size=16, max_epochs=args.max_epochs, seed=args.seed, checkpoint_dir=ckpt,
                    card_extra={"limitations": "Trained on synthetic phantom head CTs only. For demonstration and testing, "
                                               "NOT for clinical use.",
                                "intended_use": "Demonstration and testing of SegTransfer on phantoms; not for clinical use."})
        shutil.copy(Path(ckpt) / "training_log.csv", Path(tempfile.gettempdir()) / "hemorrhage_phantom_training_log.csv")
    print(f"wrote {args.out} (sha256 {pkg.sha256})")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""The source study's multi-site experiment on phantom hospitals, end to end on NVIDIA FLARE.

Two training sites whose data differ (site_a: 5 mm slices, reference lesion sizes; site_b: low dose,
2.5 mm slices, bleeds 1.3x larger) and two held-out sites that never train (site_c, site_d).  Trains
a single-site model at each training site (``segtransfer hemorrhage train``), the cyclic
weight-transfer model and the federated-averaging model (``segtransfer multisite simulate``, FLARE
simulator), all until the study's convergence rule holds (validation loss improved by less than
``--min-delta`` over ``--patience`` epochs / rounds) or ``--max-epochs``; then evaluates every model,
and each site's final FedAvg local model, on every site's test set (``segtransfer multisite
evaluate``) and prints the table and the study's two expectations: each single-site model is the best
single-site model on its own site, and the multi-site models' mean Dice over the held-out sites is at
least the mean of the single-site models'.

    python scripts/multisite_phantom_experiment.py --out /tmp/msl [--train 8] [--test 6] [--max-epochs 100] [--in-plane 2]

Exit status 0 when both hold, 1 when one does not.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SegTransfer"))


def run(argv: list[str]) -> None:
    from segtransfer.cli import main

    code = main(argv)
    if code != 0:
        raise SystemExit(f"segtransfer {' '.join(argv[:2])} failed with exit code {code}")


def experiment(out: Path, train: int, test: int, epochs: int, spacing: list[float] | None, options: dict, seed: int = 0,
               in_plane: float | None = None, sites: Path | None = None, fedavg_local_epochs: int = 1, patience: int = 10,
               min_delta: float = 1e-4) -> dict:
    """Run everything into ``out``; returns the evaluation's held-out means and the checks.  ``epochs``: the most
    epochs (single-site) and rounds (multi-site); ``patience``, ``min_delta``: the convergence rule.  ``sites``:
    phantom site folders written earlier by the same settings (default: written into ``out/sites``)."""
    started = time.time()
    training, held_out = ["site_a", "site_b"], ["site_c", "site_d"]
    if sites is None:
        sites = out / "sites"
        run(["multisite", "phantoms", "--out", str(sites), "--train", str(train), "--test", str(test), "--seed", str(seed)]
            + (["--spacing", *map(str, spacing)] if spacing else []) + (["--in-plane", str(in_plane)] if in_plane else []))
    opts = [f"{k}={v}" for k, v in options.items()]
    for site in training:
        run(["hemorrhage", "train", str(sites / site / "train"), "--out", str(out / f"single_{site}"), "--site", site,
             "--max-epochs", str(epochs), "--patience", str(patience), "--min-delta", str(min_delta), "--patch-size", str(options["patch_size"]), "--positives", str(options["positives"]),
             "--negatives", str(options["negatives"]), "--lr", str(options["lr"]), "--batch-size", str(options["batch_size"]),
             "--positive-sampling", options["positive_sampling"], "--seed", str(seed)])
    site_args = [a for s in training for a in ("--site", f"{s}={sites / s}")]
    for workflow, local_epochs in (("cyclic", 1), ("fedavg", fedavg_local_epochs)):
        run(["multisite", "simulate", "--workflow", workflow, *site_args, "--rounds", str(epochs), "--local-epochs", str(local_epochs),
             "--patience", str(patience), "--min-delta", str(min_delta),
             "--out", str(out / workflow), "--seed", str(seed), *[a for o in opts for a in ("--option", o)]])
    all_sites = [a for s in training + held_out for a in ("--site", f"{s}={sites / s}")]
    run(["multisite", "evaluate", *all_sites, *[a for s in held_out for a in ("--held-out", s)],
         *[a for s in training for a in ("--single", f"single {s}={out / f'single_{s}'}")],
         "--multi", f"cyclic={out / 'cyclic' / 'global_model'}", "--multi", f"fedavg={out / 'fedavg' / 'global_model'}",
         *[a for s in training for a in ("--local", f"fedavg local {s}={out / 'fedavg' / 'sites' / s / 'local_model'}")],
         "--out", str(out / "evaluation")])
    ev = json.loads((out / "evaluation" / "evaluation.json").read_text(encoding="utf-8"))
    means = {m: v["dice_mean"] for m, v in ev["held_out_mean"].items()}
    single = [means[f"single {s}"] for s in training]
    multi = {"cyclic": means["cyclic"], "fedavg": means["fedavg"]}
    own = {s: {r["model"]: r["dice_mean"] for r in ev["per_site"] if r["site"] == s} for s in training}
    own_best = {s: max((m for m in own[s] if m.startswith("single ")), key=own[s].get) == f"single {s}" for s in training}
    own_best_overall = {s: max(own[s], key=own[s].get) == f"single {s}" for s in training}
    training_length = {f"single {s}": json.loads((out / f"single_{s}" / "model_card.json").read_text(encoding="utf-8"))["training"]["epochs"]
                       for s in training}
    for workflow in ("cyclic", "fedavg"):
        summary = json.loads((out / workflow / "run.json").read_text(encoding="utf-8"))
        training_length[workflow] = {"rounds": summary["completed_rounds"], "best_round": summary["best_round"] + 1, "stop": summary["stop_reason"]}
    held = all(v >= sum(single) / len(single) for v in multi.values())
    check = {"held_out_mean_dice": means, "single_site_mean": sum(single) / len(single), "multi_site": multi,
             "own_site_dice": own, "own_site_best_single": own_best, "own_site_best_of_all": own_best_overall,
             "multi_site_at_least_single_site_mean": held, "holds": held and all(own_best.values()),
             "training_length": training_length, "options": options, "minutes": (time.time() - started) / 60}
    (out / "check.json").write_text(json.dumps(check, indent=2) + "\n", encoding="utf-8")
    return check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--train", type=int, default=8, help="training scans per training site (default 8: 6 train, 2 validate)")
    parser.add_argument("--test", type=int, default=6, help="test scans per site (default 6)")
    parser.add_argument("--max-epochs", type=int, default=100, help="most single-site epochs and multi-site rounds (default 100)")
    parser.add_argument("--patience", type=int, default=10, help="convergence rule: epochs / rounds (default 10)")
    parser.add_argument("--min-delta", type=float, default=1e-4, help="convergence rule: smallest improvement (default 1e-4)")
    parser.add_argument("--spacing", type=float, nargs=3, help="phantom spacing in mm (default: each site's own)")
    parser.add_argument("--in-plane", type=float, default=2.0, help="phantom in-plane spacing in mm, keeping each site's slice spacing (default 2)")
    parser.add_argument("--patch-size", type=int, default=64)
    parser.add_argument("--patches", type=int, default=60, help="positive and negative patches per scan")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--positive-sampling", choices=("uniform", "balanced"), default="uniform",
                        help="positive patch centres of every model trained (default uniform; see docs/hemorrhage.md)")
    parser.add_argument("--fedavg-local-epochs", type=int, default=2, help="local epochs per FedAvg round (default 2; cyclic: always 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sites", type=Path, help="reuse phantom site folders written earlier with the same settings")
    args = parser.parse_args()
    options = {"patch_size": args.patch_size, "positives": args.patches, "negatives": args.patches, "lr": args.lr,
               "batch_size": args.batch_size,
               "positive_sampling": args.positive_sampling, "seed": args.seed}
    check = experiment(args.out, args.train, args.test, args.max_epochs, args.spacing, options, args.seed, args.in_plane, args.sites,
                       args.fedavg_local_epochs, args.patience, args.min_delta)
    print((args.out / "evaluation" / "table.md").read_text(encoding="utf-8"))
    print(json.dumps(check, indent=2))
    raise SystemExit(0 if check["holds"] else 1)


if __name__ == "__main__":
    main()

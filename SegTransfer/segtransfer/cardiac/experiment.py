"""The source study's transfer-learning experiment, on phantoms.

Site 1 (appearance profile ``site_a``) trains the partner model on dense labels (every other phase).
Site 2 (``site_b``: lower dose, softer kernel, weaker enhancement) has ED/ES labels only.  For each
number ``n`` of site-2 training cases: training from random initialisation (lr 1e-3) and
fine-tuning from the partner package (lr 1e-4), both validated on the same site-2 validation cases;
mean and max Dice (per case: mean of LV blood pool and myocardium Dice over ED and ES) on a held-out
site-2 test set, with the un-tuned partner model as reference.  Wall thickness (median, 95th
percentile, max at ED and ES, :mod:`segtransfer.thickness`) of the partner's and of the fine-tuned
model's test segmentations (largest ``n``) is correlated with the truth (Pearson, as
``segtransfer thickness compare`` does).

Outputs (``out``): ``dice.csv`` (one row per n), ``runs.csv`` (one row per run and test case),
``thickness.csv`` (correlations before/after fine-tuning), ``experiment.json`` (configuration,
timings, everything above) and ``dice.png`` (mean and max Dice against n).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..io import atomic_dir
from ..progress import ProgressCallback, print_progress
from ..thickness import compute_thickness
from ..thickness.report import compare_statistics
from .data import case_arrays
from .infer import dice_per_label, predict
from .phantom_data import phantom_pair, split_manifest
from .network import choose_device
from .train import load_cardiac_network, train_cardiac

#: Quick mode: under 20 minutes on two CPU cores.
QUICK = {"sizes": [5, 10], "site1_cases": 5, "validation_cases": 2, "test_cases": 4, "n_phases": 10, "spacing_mm": 4.0,
         "partner_epochs": 25, "max_epochs": 12, "patience": 5, "channels": [8, 16, 32], "batch_size": 1}
#: Full mode: the study's training-set sizes; hours on CPU, minutes on a GPU.
FULL = {"sizes": [5, 10, 15, 20, 25, 30], "site1_cases": 20, "validation_cases": 5, "test_cases": 10, "n_phases": 20,
        "spacing_mm": 2.0, "partner_epochs": 100, "max_epochs": 100, "patience": 10, "channels": [16, 32, 64, 128], "batch_size": 2}
SITE1, SITE2 = "site_a", "site_b"
DICE_COLUMNS = ["n_cases", "scratch_mean_dice", "scratch_max_dice", "finetuned_mean_dice", "finetuned_max_dice", "partner_mean_dice",
                "partner_max_dice", "scratch_epochs", "finetuned_epochs", "scratch_seconds", "finetuned_seconds"]


def case_dice(package_path: str | os.PathLike, pair_folders: Sequence[Path], device="cpu") -> list[dict]:
    """Per test case: Dice per label on its labelled phases (ED/ES) and the case Dice (mean over
    labels and phases), and the predicted label arrays; the model runs on the pair's grid."""
    network, package = load_cardiac_network(package_path, device=device)
    out = []
    for folder in pair_folders:
        case = case_arrays(folder, package.description)
        pred = predict(network, case.x, package.description, device)
        per_phase = [dice_per_label(p, t[0]) for p, t in zip(pred, case.y)]
        out.append({"study": case.study, "phases": case.phases, "pred": pred,
                    "dice_blood_pool": float(np.mean([d["blood_pool"] for d in per_phase])),
                    "dice_myocardium": float(np.mean([d["myocardium"] for d in per_phase])),
                    "dice": float(np.mean([d["mean"] for d in per_phase]))})
    return out


def _thickness_rows(study: str, phases: Sequence[int], arrays: Sequence[np.ndarray], roles: Mapping[int, str], reference: sitk.Image) -> list[dict]:
    """Thickness statistics rows (study, role, median/p95/max) of label arrays on the grid of ``reference``;
    NaN where the labels hold no usable wall."""
    rows = []
    for phase, arr in zip(phases, arrays):
        image = sitk.GetImageFromArray(np.asarray(arr, dtype=np.uint8))
        image.CopyInformation(reference)
        try:
            stats = compute_thickness(image, where=f"{study} phase {phase}").statistics()
        except (InputError, RuntimeError):  # no enclosed wall, or a Laplace system that does not converge
            stats = {"median_mm": math.nan, "p95_mm": math.nan, "max_mm": math.nan}
        rows.append({"study": study, "phase": phase, "role": roles[phase], **stats})
    return rows


def thickness_correlation(pair_folders: Sequence[Path], predictions: Mapping[str, list[dict]]) -> list[dict]:
    """Pearson correlation with the truth of each model's thickness statistics at ED and ES
    (:func:`~segtransfer.thickness.report.compare_statistics`): rows ``{model, role, metric, n, pearson_r, p_value}``."""
    from ..sparse4d import read_sparse4d

    truth_rows, model_rows = [], {name: [] for name in predictions}
    for k, folder in enumerate(pair_folders):
        pair = read_sparse4d(folder)
        phases = pair.labelled_phases()
        roles = {pair.record["ed_index"]: "ED", pair.record["es_index"]: "ES"}
        ref = pair.phase_image(phases[0])
        study = str(pair.record["study_id"])
        truth_rows += _thickness_rows(study, phases, [sitk.GetArrayFromImage(pair.phase_labels(i)) for i in phases], roles, ref)
        for name, cases in predictions.items():
            model_rows[name] += _thickness_rows(study, phases, list(cases[k]["pred"]), roles, ref)
    return [{"model": name, **row} for name, rows in model_rows.items() for row in compare_statistics(rows, truth_rows)]


def _write_csv(path: Path, rows: list[dict], columns: Sequence[str]) -> None:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})


def _plot(path: Path, dice_rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["n_cases"] for r in dice_rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label, colour in (("finetuned", "transfer learning", "tab:blue"), ("scratch", "random init", "tab:orange")):
        ax.plot(n, [r[f"{key}_mean_dice"] for r in dice_rows], "o-", color=colour, label=f"{label}, mean")
        ax.plot(n, [r[f"{key}_max_dice"] for r in dice_rows], "^--", color=colour, label=f"{label}, max")
    ax.axhline(dice_rows[0]["partner_mean_dice"], color="grey", ls=":", label="partner model, no fine-tuning (mean)")
    ax.set(xlabel="site-2 training cases", ylabel="Dice on the site-2 test set", ylim=(0, 1), xticks=n,
           title="Transfer learning vs random initialisation")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


def run_experiment(out: str | os.PathLike, *, sizes: Sequence[int] = QUICK["sizes"], site1_cases: int = QUICK["site1_cases"],
                   validation_cases: int = QUICK["validation_cases"], test_cases: int = QUICK["test_cases"],
                   n_phases: int = QUICK["n_phases"], spacing_mm: float = QUICK["spacing_mm"], partner_epochs: int = QUICK["partner_epochs"],
                   max_epochs: int = QUICK["max_epochs"], patience: int = QUICK["patience"], channels: Sequence[int] = QUICK["channels"],
                   batch_size: int = QUICK["batch_size"], seed: int = 0, device: str | None = "auto", work_dir: str | os.PathLike | None = None,
                   progress: ProgressCallback | None = None) -> dict:
    """Run the experiment (see the module docstring) and write its tables and plot into ``out``
    (atomically: the folder appears complete or not at all).  Phantom seeds derive from ``seed``; the
    training runs use ``seed`` too.  ``work_dir`` keeps the generated pairs and packages (default: a
    temporary folder, removed).  Returns the ``experiment.json`` content."""
    progress = progress or print_progress
    sizes = sorted({int(n) for n in sizes})
    if not sizes or sizes[0] < 1 or site1_cases < 2 or validation_cases < 1 or test_cases < 3:
        raise InputError("experiment", "need sizes >= 1, at least 2 site-1 cases, 1 validation and 3 test cases")
    started = time.monotonic()
    dev = choose_device(device)
    with tempfile.TemporaryDirectory(prefix="segtransfer-experiment-") as tmp:
        work = Path(work_dir) if work_dir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        n2 = max(sizes) + validation_cases + test_cases
        total = site1_cases + n2
        pairs1, pairs2 = [], []
        for k in range(site1_cases):
            progress(0.1 * k / total, f"site-1 phantom {k + 1}/{site1_cases}")
            pairs1.append(phantom_pair(work / "site1" / f"site1_{k:03d}", seed * 1000 + k, SITE1, "dense", n_phases, spacing_mm))
        for k in range(n2):
            progress(0.1 * (site1_cases + k) / total, f"site-2 phantom {k + 1}/{n2}")
            pairs2.append(phantom_pair(work / "site2" / f"site2_{k:03d}", seed * 1000 + 500 + k, SITE2, "ed-es", n_phases, spacing_mm))
        train2, val2, test2 = pairs2[:max(sizes)], pairs2[max(sizes):max(sizes) + validation_cases], pairs2[max(sizes) + validation_cases:]
        n_val1 = max(1, site1_cases // 5)
        m1 = split_manifest({"train": pairs1[n_val1:], "validation": pairs1[:n_val1]}, work / "site1.json")
        m2 = split_manifest({"train": train2, "validation": val2, "test": test2}, work / "site2.json")
        quiet = lambda *_: None
        steps = 1 + 2 * len(sizes)
        progress(0.1, "training the partner model at site 1")
        t0 = time.monotonic()
        partner = train_cardiac(m1, work / "partner", max_epochs=partner_epochs, patience=patience, spacing_mm=(spacing_mm,) * 3,
                                channels=channels, batch_size=batch_size, seed=seed, site="site 1 (phantom)", device=device, progress=quiet)
        partner_seconds = time.monotonic() - t0
        partner_cases = case_dice(work / "partner", test2, dev)
        partner_mean, partner_max = float(np.mean([c["dice"] for c in partner_cases])), float(np.max([c["dice"] for c in partner_cases]))
        dice_rows, run_rows, finetuned_last = [], [], None
        for j, n in enumerate(sizes):
            row = {"n_cases": n, "partner_mean_dice": partner_mean, "partner_max_dice": partner_max}
            for key, kw in (("scratch", {"spacing_mm": (spacing_mm,) * 3, "channels": channels}), ("finetuned", {"partner": work / "partner"})):
                progress(0.1 + 0.85 * (1 + 2 * j + (key == "finetuned")) / steps, f"n={n}: {'random init' if key == 'scratch' else 'fine-tuning'}")
                t0 = time.monotonic()
                pkg = train_cardiac(m2, work / f"{key}_n{n:02d}", cases=n, max_epochs=max_epochs, patience=patience, batch_size=batch_size, seed=seed,
                                    site="site 2 (phantom)", device=device, progress=quiet, **kw)
                row[f"{key}_seconds"] = time.monotonic() - t0
                row[f"{key}_epochs"] = pkg.card["training"]["epochs"]
                cases = case_dice(work / f"{key}_n{n:02d}", test2, dev)
                row[f"{key}_mean_dice"] = float(np.mean([c["dice"] for c in cases]))
                row[f"{key}_max_dice"] = float(np.max([c["dice"] for c in cases]))
                run_rows += [{"model": key, "n_cases": n, "study": c["study"], "dice": c["dice"], "dice_blood_pool": c["dice_blood_pool"],
                              "dice_myocardium": c["dice_myocardium"]} for c in cases]
                if key == "finetuned":
                    finetuned_last = cases
            dice_rows.append(row)
            progress(0.1 + 0.85 * (2 + 2 * j) / steps, f"n={n}: random init {row['scratch_mean_dice']:.3f}, fine-tuned "
                     f"{row['finetuned_mean_dice']:.3f}, partner {partner_mean:.3f}")
        run_rows += [{"model": "partner", "n_cases": 0, "study": c["study"], "dice": c["dice"], "dice_blood_pool": c["dice_blood_pool"],
                      "dice_myocardium": c["dice_myocardium"]} for c in partner_cases]
        progress(0.96, "wall thickness before and after fine-tuning")
        thickness = thickness_correlation(test2, {"partner (before fine-tuning)": partner_cases,
                                                  f"fine-tuned n={sizes[-1]} (after)": finetuned_last})
    result = {"config": {"sizes": sizes, "site1": SITE1, "site2": SITE2, "site1_cases": site1_cases, "validation_cases": validation_cases,
                         "test_cases": test_cases, "n_phases": n_phases, "spacing_mm": spacing_mm, "partner_epochs": partner_epochs,
                         "max_epochs": max_epochs, "patience": patience, "channels": list(channels), "batch_size": batch_size, "seed": seed},
              "partner": {"sha256": partner.sha256, "validation": partner.card["validation"], "seconds": partner_seconds,
                          "test_mean_dice": partner_mean, "test_max_dice": partner_max},
              "dice": dice_rows, "runs": run_rows, "thickness": thickness, "seconds": time.monotonic() - started}
    with atomic_dir(out) as tmp:
        tmp = Path(tmp)
        _write_csv(tmp / "dice.csv", dice_rows, DICE_COLUMNS)
        _write_csv(tmp / "runs.csv", run_rows, ["model", "n_cases", "study", "dice", "dice_blood_pool", "dice_myocardium"])
        _write_csv(tmp / "thickness.csv", thickness, ["model", "role", "metric", "n", "pearson_r", "p_value"])
        (tmp / "experiment.json").write_text(json.dumps(result, indent=2, allow_nan=True) + "\n", encoding="utf-8")
        _plot(tmp / "dice.png", dice_rows)
    progress(1.0, f"experiment done in {result['seconds']:.0f} s")
    return result

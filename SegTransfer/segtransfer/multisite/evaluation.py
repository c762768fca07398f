"""Every model on every site's test set, in the form of the source study's table.

For each model and each site: Dice of every test scan against its manual mask (MONAI
``compute_dice``, binary), predicted and manual hemorrhage volume (mL), the site's mean and standard
deviation of Dice and the Pearson correlation of predicted vs manual volume (``scipy.stats.pearsonr``);
then the mean over the held-out sites (sites that never trained).  Each multi-site model is compared
with each single-site model by the Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, two-sided) on
the paired per-scan Dice of the held-out sites' scans.

Sites: ``<site>/test/CASE/image.nii.gz`` + ``mask.nii.gz`` (a folder without ``test/`` is itself the
test folder).  Models: verified model packages (checksums; nothing unpickled).

Outputs (folder written atomically): ``per_scan.csv`` (model, site, case, Dice, volumes),
``per_site.csv`` (model, site, held out, n, Dice mean/sd, Pearson r and p), ``wilcoxon.csv``,
``table.md`` (the study's table: one row per model, Dice and r per site, held-out means; then the
Wilcoxon tests) and ``evaluation.json`` (all of it).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..io import atomic_dir, check_same_grid, read_image, read_labels
from ..progress import ProgressCallback, print_progress

ROLES = ("single-site", "multi-site", "local")


@dataclass
class ModelEntry:
    """A model to evaluate: ``name`` (table row), package ``path`` (and expected ``sha256``), ``role``:
    ``single-site``, ``multi-site`` (compared with every single-site model) or ``local`` (a site's final
    local model of a federated run)."""

    name: str
    path: Path
    role: str
    sha256: str | None = None


@dataclass
class Evaluation:
    """Results: ``per_scan`` and ``per_site`` rows, ``wilcoxon`` rows, ``held_out`` means per model."""

    sites: list[str]
    held_out: list[str]
    models: list[ModelEntry]
    per_scan: list[dict] = field(default_factory=list)
    per_site: list[dict] = field(default_factory=list)
    held_out_mean: dict[str, dict] = field(default_factory=dict)
    wilcoxon: list[dict] = field(default_factory=list)

    def site_row(self, model: str, site: str) -> dict:
        return next(r for r in self.per_site if r["model"] == model and r["site"] == site)


def test_cases(folder: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """(case, image, mask) of a site's ``test/`` folder (or the folder itself)."""
    from ..hemorrhage.train import load_cases

    root = Path(folder)
    return load_cases(root / "test" if (root / "test").is_dir() else root)


def binary_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two binary masks (MONAI ``compute_dice``); 1.0 when both are empty."""
    import torch
    from monai.metrics import compute_dice

    p = torch.from_numpy(np.ascontiguousarray(pred, dtype=np.float32))[None, None]
    t = torch.from_numpy(np.ascontiguousarray(truth, dtype=np.float32))[None, None]
    return float(compute_dice(p, t, include_background=True, ignore_empty=False)[0, 0])


def _pearson(x: list[float], y: list[float]) -> tuple[float, float]:
    from scipy.stats import pearsonr

    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return math.nan, math.nan  # undefined for fewer than 3 scans or a constant volume
    r = pearsonr(x, y)
    return float(r.statistic), float(r.pvalue)


def _wilcoxon(a: list[float], b: list[float]) -> float:
    from scipy.stats import wilcoxon

    diff = np.asarray(a) - np.asarray(b)
    if len(diff) == 0 or np.all(diff == 0):
        return 1.0  # identical per-scan Dice: no difference to test
    return float(wilcoxon(a, b, alternative="two-sided").pvalue)


def evaluate(models: list[ModelEntry], sites: dict[str, str | os.PathLike], held_out: list[str],
             progress: ProgressCallback | None = None) -> Evaluation:
    """Evaluate every model on every site's test scans (see the module docstring)."""
    from ..hemorrhage import preprocess, segment
    from ..models import load_network

    progress = progress or print_progress
    if not models:
        raise InputError("models", "no models to evaluate")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise InputError("models", f"model names must be unique, got {', '.join(names)}")
    for m in models:
        if m.role not in ROLES:
            raise InputError(m.name, f"unknown role {m.role!r} (known: {', '.join(ROLES)})")
    unknown = [s for s in held_out if s not in sites]
    if unknown:
        raise InputError("held-out sites", f"{', '.join(unknown)} not among the sites ({', '.join(sites)})")
    cases = {site: test_cases(folder) for site, folder in sites.items()}
    networks = {m.name: load_network(m.path, expected_sha256=m.sha256) for m in models}
    result = Evaluation(list(sites), list(held_out), list(models))
    total = sum(len(c) for c in cases.values())
    done = 0
    for site, site_cases in cases.items():
        for case, image_path, mask_path in site_cases:
            image = read_image(image_path)
            mask = read_labels(mask_path).image
            check_same_grid(image, mask, image_path, mask_path)
            truth = sitk.GetArrayFromImage(mask) > 0
            voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
            pre = preprocess(image, image_path)  # once per scan, shared by the models
            for m in models:
                network, package = networks[m.name]
                seg = segment(image, network, package.description, where=image_path, pre=pre)
                pred = sitk.GetArrayFromImage(seg.mask) > 0
                result.per_scan.append({"model": m.name, "site": site, "case": case, "dice": binary_dice(pred, truth),
                                        "predicted_ml": seg.volume_ml, "manual_ml": float(truth.sum() * voxel_ml)})
            done += 1
            progress(done / total, f"evaluated {site}/{case} with {len(models)} models")
    return summarise(result)


def summarise(result: Evaluation) -> Evaluation:
    """Fill ``per_site``, ``held_out_mean`` and ``wilcoxon`` of ``result`` from its ``per_scan`` rows."""
    models, sites, held_out = result.models, result.sites, result.held_out
    result.per_site, result.held_out_mean, result.wilcoxon = [], {}, []
    for m in models:
        for site in sites:
            rows = [r for r in result.per_scan if r["model"] == m.name and r["site"] == site]
            dices = [r["dice"] for r in rows]
            r, p = _pearson([x["predicted_ml"] for x in rows], [x["manual_ml"] for x in rows])
            result.per_site.append({"model": m.name, "role": m.role, "site": site, "held_out": site in held_out, "n": len(rows),
                                    "dice_mean": float(np.mean(dices)), "dice_sd": float(np.std(dices, ddof=1)) if len(dices) > 1 else 0.0,
                                    "pearson_r": r, "pearson_p": p})
        if held_out:
            site_rows = [result.site_row(m.name, s) for s in held_out]
            result.held_out_mean[m.name] = {"dice_mean": float(np.mean([x["dice_mean"] for x in site_rows])),
                                            "pearson_r": float(np.mean([x["pearson_r"] for x in site_rows]))}
    scans = [(r["site"], r["case"]) for r in result.per_scan if r["model"] == models[0].name and r["site"] in held_out]
    per = {(r["model"], r["site"], r["case"]): r["dice"] for r in result.per_scan}
    for multi in (m for m in models if m.role == "multi-site"):
        for single in (m for m in models if m.role == "single-site"):
            a = [per[(multi.name, s, c)] for s, c in scans]
            b = [per[(single.name, s, c)] for s, c in scans]
            result.wilcoxon.append({"multi_site": multi.name, "single_site": single.name, "scans": len(scans),
                                    "median_dice_difference": float(np.median(np.subtract(a, b))) if scans else math.nan,
                                    "p": _wilcoxon(a, b)})
    return result


def _fmt(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def markdown_table(ev: Evaluation) -> str:
    """The study's table: per model, Dice (mean ± sd) and Pearson r of volumes on every site, the held-out
    means, then the Wilcoxon signed-rank tests on the held-out scans."""
    head = ["Model", "Role"]
    for s in ev.sites:
        tag = " (held out)" if s in ev.held_out else ""
        head += [f"{s}{tag} Dice", f"{s}{tag} r"]
    if ev.held_out:
        head += ["Held-out mean Dice", "Held-out mean r"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    best = {s: max(ev.per_site, key=lambda r: r["dice_mean"] if r["site"] == s else -1)["model"] for s in ev.sites}
    best_held = max(ev.held_out_mean, key=lambda k: ev.held_out_mean[k]["dice_mean"]) if ev.held_out_mean else None
    for m in ev.models:
        cells = [m.name, m.role]
        for s in ev.sites:
            r = ev.site_row(m.name, s)
            dice = f"{r['dice_mean']:.3f} ± {r['dice_sd']:.3f}"
            cells += [f"**{dice}**" if best[s] == m.name else dice, _fmt(r["pearson_r"])]
        if ev.held_out:
            h = ev.held_out_mean[m.name]
            cells += [f"**{h['dice_mean']:.3f}**" if best_held == m.name else f"{h['dice_mean']:.3f}", _fmt(h["pearson_r"])]
        lines.append("| " + " | ".join(cells) + " |")
    n_scans = {s: ev.site_row(ev.models[0].name, s)["n"] for s in ev.sites}
    out = ["# Per-site evaluation", "",
           "Dice (mean ± standard deviation over the site's test scans) and Pearson correlation r of predicted vs manual "
           "hemorrhage volume; the best Dice per column in bold. Test scans per site: "
           + ", ".join(f"{s} {n}" for s, n in n_scans.items()) + ".", "", *lines, ""]
    if ev.wilcoxon:
        out += ["## Wilcoxon signed-rank test (held-out scans, per-scan Dice, two-sided)", "",
                "| Multi-site model | Single-site model | Scans | Median Dice difference | p |", "|---|---|---|---|---|"]
        out += [f"| {w['multi_site']} | {w['single_site']} | {w['scans']} | {_fmt(w['median_dice_difference'], 3)} | {_fmt(w['p'], 4)} |"
                for w in ev.wilcoxon]
        out.append("")
    return "\n".join(out)


def _no_nan(value):
    """``value`` with NaN replaced by ``None`` (JSON has no NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


def _csv(rows: list[dict], fields: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_evaluation(ev: Evaluation, out: str | os.PathLike) -> Path:
    """Write the CSV, Markdown and JSON outputs into ``out`` (atomic; an existing non-empty folder is refused)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(out, "output folder exists and is not empty")
    with atomic_dir(out) as tmp:
        (tmp / "per_scan.csv").write_text(_csv(ev.per_scan, ["model", "site", "case", "dice", "predicted_ml", "manual_ml"]), encoding="utf-8")
        (tmp / "per_site.csv").write_text(_csv(ev.per_site, ["model", "role", "site", "held_out", "n", "dice_mean", "dice_sd", "pearson_r", "pearson_p"]),
                                          encoding="utf-8")
        (tmp / "wilcoxon.csv").write_text(_csv(ev.wilcoxon, ["multi_site", "single_site", "scans", "median_dice_difference", "p"]), encoding="utf-8")
        (tmp / "table.md").write_text(markdown_table(ev), encoding="utf-8")
        record = {"sites": ev.sites, "held_out": ev.held_out,
                  "models": [{"name": m.name, "role": m.role, "path": str(m.path), "sha256": m.sha256} for m in ev.models],
                  "per_site": ev.per_site, "held_out_mean": ev.held_out_mean, "wilcoxon": ev.wilcoxon, "per_scan": ev.per_scan}
        (tmp / "evaluation.json").write_text(json.dumps(_no_nan(record), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return out

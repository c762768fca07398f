"""Every model on every site's test set, in the form of the source study's table.

For each model and each site: Dice of every test scan against its manual mask (MONAI
``compute_dice``, binary), predicted and manual hemorrhage volume (mL), the site's mean and standard
deviation of Dice and the Pearson correlation of predicted vs manual volume (``scipy.stats.pearsonr``);
then the mean over the held-out sites (sites that never trained).  Each multi-site model is compared
with each single-site model by the Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, two-sided) on
the paired per-scan Dice of the held-out sites' scans.

Sites: ``<site>/test/CASE/image.nii.gz`` + ``mask.nii.gz`` (a folder without ``test/`` is itself the
test folder).  Models: verified model packages (checksums; nothing unpickled).

Three ways to the same table: :func:`evaluate` (every site's test folder on this machine, e.g. phantom
sites); FLARE's cross-site model evaluation (:mod:`segtransfer.multisite.flare_eval`: each site evaluates
the models on its own test folder and returns only its per-scan metrics); and :func:`merge_site_metrics`
(each site ran :func:`evaluate_site` itself and sent its per-scan metrics file).  A site's metrics file
(:func:`site_metrics`, JSON) holds, per model and scan, Dice and predicted and manual volume, with scans
named by their position only (``scan_001``, ...; case names stay at the site): no image data.

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
    """A model to evaluate: ``name`` (table row), package ``path`` (None for results merged from the sites)
    and expected ``sha256``, ``role``:
    ``single-site``, ``multi-site`` (compared with every single-site model) or ``local`` (a site's final
    local model of a federated run)."""

    name: str
    path: Path | None
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


def check_models(models: list[ModelEntry]) -> None:
    """Refuses an empty list, repeated names and unknown roles."""
    if not models:
        raise InputError("models", "no models to evaluate")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise InputError("models", f"model names must be unique, got {', '.join(names)}")
    for m in models:
        if m.role not in ROLES:
            raise InputError(m.name, f"unknown role {m.role!r} (known: {', '.join(ROLES)})")


def _check_held_out(sites: list[str], held_out: list[str]) -> None:
    unknown = [s for s in held_out if s not in sites]
    if unknown:
        raise InputError("held-out sites", f"{', '.join(unknown)} not among the sites ({', '.join(sites)})")


class SiteScans:
    """A site's test scans, read and preprocessed once and kept for every model evaluated on them."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.cases = test_cases(self.folder)
        self._read: dict[str, tuple] = {}

    def scan(self, case: str, image_path: Path, mask_path: Path):
        """(image, manual 0/1 array, voxel volume in mL, preprocessed) of one case."""
        from ..hemorrhage import preprocess

        if case not in self._read:
            image = read_image(image_path)
            mask = read_labels(mask_path).image
            check_same_grid(image, mask, image_path, mask_path)
            self._read[case] = (image, sitk.GetArrayFromImage(mask) > 0, float(np.prod(image.GetSpacing())) / 1000.0, preprocess(image, image_path))
        return self._read[case]

    def evaluate(self, networks: list[tuple[str, object, dict]], progress: ProgressCallback | None = None) -> list[dict]:
        """Per-scan rows ``{"model", "case", "dice", "predicted_ml", "manual_ml"}`` of every ``(name, network,
        package description)`` on every scan (inference of ``segtransfer hemorrhage segment``)."""
        from ..hemorrhage import segment

        progress = progress or print_progress
        rows = []
        for n, (case, image_path, mask_path) in enumerate(self.cases):
            image, truth, voxel_ml, pre = self.scan(case, image_path, mask_path)
            for name, network, description in networks:
                seg = segment(image, network, description, where=image_path, pre=pre)
                pred = sitk.GetArrayFromImage(seg.mask) > 0
                rows.append({"model": name, "case": case, "dice": binary_dice(pred, truth), "predicted_ml": seg.volume_ml,
                             "manual_ml": float(truth.sum() * voxel_ml)})
            progress((n + 1) / len(self.cases), f"evaluated {self.folder.name}/{case} with {len(networks)} models")
        return rows


def _load_networks(models: list[ModelEntry]) -> list[tuple[str, object, dict]]:
    from ..models import load_network

    out = []
    for m in models:
        network, package = load_network(m.path, expected_sha256=m.sha256)
        out.append((m.name, network, package.description))
    return out


def evaluate(models: list[ModelEntry], sites: dict[str, str | os.PathLike], held_out: list[str],
             progress: ProgressCallback | None = None) -> Evaluation:
    """Evaluate every model on every site's test scans (see the module docstring)."""
    progress = progress or print_progress
    check_models(models)
    _check_held_out(list(sites), held_out)
    scans = {site: SiteScans(folder) for site, folder in sites.items()}
    networks = _load_networks(models)
    result = Evaluation(list(sites), list(held_out), list(models))
    for i, (site, site_scans) in enumerate(scans.items()):
        rows = site_scans.evaluate(networks, lambda f, m, i=i: progress((i + f) / len(scans), m))
        result.per_scan += [{"model": r["model"], "site": site, **{k: v for k, v in r.items() if k != "model"}} for r in rows]
    return summarise(result)


SITE_METRICS_FORMAT = "segtransfer-site-metrics/1"
_SCAN_KEYS = ("dice", "predicted_ml", "manual_ml")


def pseudonymous(rows: list[dict]) -> list[dict]:
    """Per-scan rows with each case named by its position in the site's sorted test folder (``scan_001``, ...)."""
    order = {c: i for i, c in enumerate(sorted({r["case"] for r in rows}))}
    return [{"model": r["model"], "scan": f"scan_{order[r['case']] + 1:03d}", **{k: float(r[k]) for k in _SCAN_KEYS}} for r in rows]


def site_metrics(site: str, models: list[ModelEntry], rows: list[dict]) -> dict:
    """The metrics file a site sends: site name, models (name, role, package ID), per-scan numbers
    (:func:`pseudonymous` rows); no image data, no case names."""
    return {"format": SITE_METRICS_FORMAT, "site": site, "models": [{"name": m.name, "role": m.role, "sha256": m.sha256} for m in models],
            "per_scan": pseudonymous(rows)}


def evaluate_site(models: list[ModelEntry], site: str, folder: str | os.PathLike, progress: ProgressCallback | None = None) -> dict:
    """Evaluate ``models`` on one site's own test folder and return its :func:`site_metrics` (what a site
    that evaluates on its own sends for :func:`merge_site_metrics`).  Package IDs are filled in from the
    verified packages."""
    from ..models import load_package

    check_models(models)
    models = [ModelEntry(m.name, m.path, m.role, m.sha256 or load_package(m.path).sha256) for m in models]
    return site_metrics(site, models, SiteScans(folder).evaluate(_load_networks(models), progress))


def read_site_metrics(path: str | os.PathLike) -> dict:
    """A site's metrics file, checked: format, site name, models, and per-scan rows of numbers for every
    model on the same scans."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(path, f"not a readable site metrics file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != SITE_METRICS_FORMAT:
        raise InputError(path, f"not a site metrics file (format {SITE_METRICS_FORMAT!r} expected)")
    try:
        names = [m["name"] for m in data["models"]]
        scans = {}
        for r in data["per_scan"]:
            if r["model"] not in names or not all(isinstance(r[k], (int, float)) for k in _SCAN_KEYS):
                raise ValueError(f"bad row {r}")
            scans.setdefault(r["model"], []).append(r["scan"])
        str(data["site"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(path, f"malformed site metrics ({exc})") from None
    if not scans or any(sorted(scans.get(n, [])) != sorted(scans[names[0]]) for n in names):
        raise InputError(path, "every model must have results on the same scans")
    return data


def merge_site_metrics(files: list[str | os.PathLike], held_out: list[str]) -> Evaluation:
    """The evaluation from the sites' metrics files (one per site; the models must be the same, with the
    same package IDs, in every file)."""
    if not files:
        raise InputError("site metrics", "no site metrics files")
    datas = [(Path(f), read_site_metrics(f)) for f in files]
    sites = [d["site"] for _, d in datas]
    if len(set(sites)) != len(sites):
        raise InputError("site metrics", f"a site appears twice: {', '.join(sites)}")
    _check_held_out(sites, held_out)
    reference = datas[0][1]["models"]
    for path, d in datas[1:]:
        if [(m["name"], m["role"], m.get("sha256")) for m in d["models"]] != [(m["name"], m["role"], m.get("sha256")) for m in reference]:
            raise InputError(path, f"evaluated other models (or other package IDs) than {datas[0][0]}")
    models = [ModelEntry(m["name"], None, m["role"], m.get("sha256")) for m in reference]  # the packages stayed with the sites
    check_models(models)
    result = Evaluation(sites, list(held_out), models)
    for _, d in datas:
        result.per_scan += [{"model": r["model"], "site": d["site"], "case": r["scan"], **{k: float(r[k]) for k in _SCAN_KEYS}} for r in d["per_scan"]]
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
    scans = sorted((r["site"], r["case"]) for r in result.per_scan if r["model"] == models[0].name and r["site"] in held_out)
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
                  "models": [{"name": m.name, "role": m.role, "path": m.path and str(m.path), "sha256": m.sha256} for m in ev.models],
                  "per_site": ev.per_site, "held_out_mean": ev.held_out_mean, "wilcoxon": ev.wilcoxon, "per_scan": ev.per_scan}
        (tmp / "evaluation.json").write_text(json.dumps(_no_nan(record), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return out

"""The end-to-end demo (the main job): phantoms with known truth through every capability.

Each step writes its outputs under the demo folder and adds a record to ``summary.json``; the
printed summary compares what SegTransfer measured with the phantoms' truth.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk

from .io import Series4D, atomic_dir, write_labels, write_series4d, write_text
from .labels import BLOOD_POOL, CARDIAC_SEGMENTS
from .progress import ProgressCallback, print_progress


@dataclass
class DemoContext:
    """State shared by the demo steps: the output folder, seed and what earlier steps produced."""

    out: Path
    seed: int
    progress: ProgressCallback
    summary: dict = field(default_factory=dict)
    lv: object | None = None          # segtransfer.phantoms.LVPhantom
    sparse_series: Series4D | None = None
    cleaned: dict[int, object] = field(default_factory=dict)  # phase -> LabelImage after cleanup


def step_cardiac_phantom(ctx: DemoContext) -> dict:
    """A 20-phase beating-LV study from site_b with annotation defects, labelled only at ED and ES."""
    from .phantoms import beating_lv

    lv = beating_lv(seed=ctx.seed, site="site_b", defects=True)
    ed, es = lv.truth.ed_index, lv.truth.es_index
    ctx.lv = lv
    ctx.sparse_series = Series4D(lv.series.phases, lv.series.percent_rr, {ed: lv.series.labels[ed], es: lv.series.labels[es]})
    write_series4d(ctx.sparse_series, ctx.out / "cardiac" / "study")
    return {
        "study": "cardiac/study",
        "phases": len(lv.series.phases),
        "labelled_phases": [ed, es],
        "truth": {"ed_index": ed, "es_index": es, "edv_ml": lv.truth.cavity_ml[ed], "esv_ml": lv.truth.cavity_ml[es],
                  "ejection_fraction": lv.truth.ejection_fraction},
    }


def step_cleanup(ctx: DemoContext) -> dict:
    """Close holes and pool/wall gaps in the ED and ES labels (radius 5 voxels); agreement with the clean truth."""
    from .cleanup import close_labels, compare_labels
    from .io import LabelImage

    record = {}
    folder = ctx.out / "cardiac" / "cleanup"
    for name, phase in (("ED", ctx.lv.truth.ed_index), ("ES", ctx.lv.truth.es_index)):
        defective = LabelImage(ctx.sparse_series.labels[phase], list(CARDIAC_SEGMENTS))
        result = close_labels(defective, radius=5.0, unit="voxel", where=f"phase {phase}")
        ctx.cleaned[phase] = result.labels
        write_labels(result.labels, folder / f"{name.lower()}_cleaned.seg.nrrd")
        write_text(folder / f"{name.lower()}_report.json", result.report.to_json())
        truth = ctx.lv.clean_labels[phase]
        before = {r.label: r.dice for r in compare_labels(defective, truth)}
        after = {r.label: r.dice for r in compare_labels(result.labels, truth)}
        record[name] = {
            "voxels_changed": int(result.report.voxels_changed),
            "dice_to_truth_before": {int(k): round(v, 4) for k, v in before.items()},
            "dice_to_truth_after": {int(k): round(v, 4) for k, v in after.items()},
        }
    return record


def step_sparse4d(ctx: DemoContext) -> dict:
    """Export the cleaned ED/ES labels with all 20 phases as a 1 mm isotropic sparse 4D pair."""
    from .sparse4d import build_sparse4d, write_sparse4d

    labels = {p: lab.image for p, lab in ctx.cleaned.items()}
    series = Series4D(ctx.sparse_series.phases, ctx.sparse_series.percent_rr, labels)
    pair = build_sparse4d(series, spacing_mm=1.0, crop_margin_mm=10.0, study_id="demo_lv", where="demo study")
    write_sparse4d(pair, ctx.out / "cardiac" / "sparse4d")
    rec = pair.record
    return {
        "pair": "cardiac/sparse4d",
        "labelled_phases": pair.labelled_phases(),
        "ed_index": rec.get("ed_index"),
        "es_index": rec.get("es_index"),
        "ejection_fraction": rec.get("ejection_fraction"),
        "truth_ejection_fraction": ctx.lv.truth.ejection_fraction,
    }


def step_thickness(ctx: DemoContext) -> dict:
    """Wall thickness at ED and ES on the cleaned labels: surfaces coloured by thickness and statistics."""
    from .thickness import compute_thickness, write_study

    results = []
    for role, phase in (("ED", ctx.lv.truth.ed_index), ("ES", ctx.lv.truth.es_index)):
        results.append((phase, role, compute_thickness(ctx.cleaned[phase], where=f"phase {phase}")))
    rows = write_study(ctx.out / "cardiac" / "thickness", "demo_lv", results)
    return {
        "folder": "cardiac/thickness",
        **{r["role"]: {"median_mm": r["median_mm"], "p95_mm": r["p95_mm"], "max_mm": r["max_mm"],
                       "nominal_mm": ctx.lv.truth.wall_thickness_mm[r["phase"]]} for r in rows},
    }


def step_hemorrhage(ctx: DemoContext) -> dict:
    """Hemorrhage segmentation with the shipped model (verified package) on head CTs from a site it never
    saw (site_c): one scan with hemorrhages of every kind, one without."""
    from .hemorrhage import default_model_path, segment
    from .hemorrhage.report import write_outputs
    from .models import load_network
    from .phantoms import head_ct

    network, package = load_network(default_model_path())
    record = {"model_sha256": package.sha256}
    for name, kinds in (("positive", True), ("negative", False)):
        head = head_ct(seed=ctx.seed + 900, site="site_c", hemorrhage=kinds)
        result = segment(head.image, network, package.description, where=f"{name} head CT")
        truth = sitk.GetArrayFromImage(head.mask) > 0
        pred = sitk.GetArrayFromImage(result.mask) > 0
        dice = 2.0 * float((truth & pred).sum()) / max(float(truth.sum() + pred.sum()), 1.0) if truth.any() else None
        write_outputs(ctx.out / "head" / name, name, head.image, result, {"sha256": package.sha256})
        record[name] = {"detected": result.detected, "volume_ml": result.volume_ml, "truth_volume_ml": head.truth.total_volume_ml,
                        "lesions": len(result.lesions), "dice": dice}
    return record


STEPS: list[tuple[str, Callable[[DemoContext], dict]]] = [
    ("cardiac phantom", step_cardiac_phantom),
    ("annotation cleanup", step_cleanup),
    ("sparse 4D pair", step_sparse4d),
    ("wall thickness", step_thickness),
    ("hemorrhage", step_hemorrhage),
]


def run_demo(out: str | os.PathLike, seed: int = 0, progress: ProgressCallback | None = None) -> dict:
    """Run every demo step into the folder ``out`` (written atomically: a failed run leaves no folder)
    and return the summary (also written to ``out/summary.json``)."""
    progress = progress or print_progress
    out = Path(out)
    summary: dict = {"seed": seed, "steps": {}}
    with atomic_dir(out) as tmp:
        ctx = DemoContext(tmp, seed, progress, summary)
        for i, (name, step) in enumerate(STEPS):
            progress(i / len(STEPS), f"demo: {name}")
            t0 = time.perf_counter()
            record = step(ctx)
            record["seconds"] = round(time.perf_counter() - t0, 2)
            summary["steps"][name] = record
        write_text(tmp / "summary.json", json.dumps(summary, indent=2, default=_json_default))
        progress(1.0, "demo: done")
    return summary


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def summary_lines(summary: dict) -> list[str]:
    """Human-readable lines of a demo summary: measured values beside the phantom truth."""
    s = summary["steps"]
    lines = []
    if "cardiac phantom" in s:
        t = s["cardiac phantom"]["truth"]
        lines.append(f"cardiac phantom: {s['cardiac phantom']['phases']} phases, ED={t['ed_index']} ES={t['es_index']}, "
                     f"EDV {t['edv_ml']:.1f} mL, ESV {t['esv_ml']:.1f} mL, EF {t['ejection_fraction']:.3f} (truth)")
    if "annotation cleanup" in s:
        for name, r in s["annotation cleanup"].items():
            if isinstance(r, dict):
                lines.append(f"cleanup {name}: {r['voxels_changed']} voxels changed; Dice to truth pool "
                             f"{r['dice_to_truth_before'].get(BLOOD_POOL, float('nan')):.4f} -> "
                             f"{r['dice_to_truth_after'].get(BLOOD_POOL, float('nan')):.4f}")
    if "sparse 4D pair" in s:
        r = s["sparse 4D pair"]
        lines.append(f"sparse 4D: labelled phases {r['labelled_phases']}, ED={r['ed_index']} ES={r['es_index']}, "
                     f"EF {r['ejection_fraction']:.3f} (truth {r['truth_ejection_fraction']:.3f})")
    if "wall thickness" in s:
        r = s["wall thickness"]
        for role in ("ED", "ES"):
            lines.append(f"wall thickness {role}: median {r[role]['median_mm']:.2f} mm (phantom nominal {r[role]['nominal_mm']:.2f} mm), "
                         f"p95 {r[role]['p95_mm']:.2f} mm, max {r[role]['max_mm']:.2f} mm")
    if "hemorrhage" in s:
        for name in ("positive", "negative"):
            r = s["hemorrhage"][name]
            dice = f", Dice {r['dice']:.3f}" if r["dice"] is not None else ""
            lines.append(f"hemorrhage ({name} scan, unseen site): {'present' if r['detected'] else 'not detected'}, "
                         f"{r['volume_ml']:.2f} mL (truth {r['truth_volume_ml']:.2f} mL){dice}")
    return lines

"""The end-to-end demo (the main job): a small multi-study batch of phantoms with known truth.

1. Phantom studies are generated into ``OUT/studies``: beating-LV cardiac series from two sites, with
   annotation defects in their labels, and head CTs from a site the hemorrhage model never saw (one
   with hemorrhages of every kind, stored as a DICOM series; one without).  Their truth goes to
   ``OUT/truth`` (kept apart from the studies, as a hospital's data would have none).
2. ``segtransfer batch`` runs over ``OUT/studies`` into ``OUT/batch`` with DICOM SEG output: annotation
   cleanup, the sparse ED/ES 4D pair and wall thickness on each cardiac series, hemorrhage
   segmentation and detection on each head CT, and the review report ``OUT/batch/report.html``.
3. ``OUT/summary.json`` compares what the batch measured with the truth (ED/ES, EF, cleanup Dice,
   thickness against the phantom's nominal wall, hemorrhage volume, detection and Dice).

``quick=True`` runs one small cardiac series (8 phases, 2 mm) and the DICOM head CT, for tests.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .io import atomic_dir, write_image, write_series4d, write_text
from .labels import BLOOD_POOL
from .progress import ProgressCallback, print_progress

MARKER = ".segtransfer-demo"
SUMMARY = "summary.json"


@dataclass(frozen=True)
class CardiacSpec:
    study_id: str
    seed_offset: int
    site: str
    n_phases: int = 20
    spacing: tuple[float, float, float] = (1.25, 1.25, 2.0)


@dataclass(frozen=True)
class HeadSpec:
    study_id: str
    seed_offset: int
    site: str
    hemorrhage: bool
    dicom: bool


FULL = ([CardiacSpec("lv_site_a", 0, "site_a"), CardiacSpec("lv_site_b", 1, "site_b")],
        [HeadSpec("head_positive_dicom", 900, "site_c", True, True), HeadSpec("head_negative", 900, "site_c", False, False)])
QUICK = ([CardiacSpec("lv_site_b", 1, "site_b", 8, (2.0, 2.0, 2.5))], [HeadSpec("head_positive_dicom", 900, "site_c", True, True)])


def make_studies(out: Path, seed: int, quick: bool, progress: ProgressCallback) -> dict:
    """Write the phantom studies into ``out/studies`` and their truth into ``out/truth``; returns the truth."""
    from .io.dicom_series import DicomIdentity, write_dicom_series
    from .phantoms import beating_lv, head_ct

    cardiac, heads = QUICK if quick else FULL
    truth: dict = {}
    n, total = 0, len(cardiac) + len(heads)
    for spec in cardiac:
        progress(n / total, f"phantom {spec.study_id}")
        lv = beating_lv(seed=seed + spec.seed_offset, n_phases=spec.n_phases, spacing=spec.spacing, site=spec.site, defects=True)
        write_series4d(lv.series, out / "studies" / spec.study_id)
        t = lv.truth
        with atomic_dir(out / "truth" / spec.study_id) as tmp:
            for role, phase in (("ed", t.ed_index), ("es", t.es_index)):
                write_image(lv.clean_labels[phase], tmp / f"{role}_clean_labels.nii.gz")
        truth[spec.study_id] = {"kind": "cardiac", "site": spec.site, "ed_index": t.ed_index, "es_index": t.es_index,
                                "ejection_fraction": t.ejection_fraction, "edv_ml": t.cavity_ml[t.ed_index],
                                "esv_ml": t.cavity_ml[t.es_index], "wall_thickness_ed_mm": t.wall_thickness_mm[t.ed_index],
                                "wall_thickness_es_mm": t.wall_thickness_mm[t.es_index]}
        n += 1
    for spec in heads:
        progress(n / total, f"phantom {spec.study_id}")
        head = head_ct(seed=seed + spec.seed_offset, site=spec.site, hemorrhage=spec.hemorrhage)
        if spec.dicom:
            write_dicom_series(head.image, out / "studies" / spec.study_id,
                               DicomIdentity(patient_id=spec.study_id.upper(), series_description="phantom head CT"))
        else:
            write_image(head.image, out / "studies" / f"{spec.study_id}.nii.gz")
        write_image(head.mask, out / "truth" / spec.study_id / "mask.nii.gz")
        truth[spec.study_id] = {"kind": "head", "site": spec.site, "hemorrhage": bool(head.truth.lesions),
                                "volume_ml": head.truth.total_volume_ml, "kinds": [h.kind for h in head.truth.lesions]}
        n += 1
    write_text(out / "truth" / "truth.json", json.dumps(truth, indent=2, default=_json_default))
    return truth


def _dice(a: np.ndarray, b: np.ndarray) -> float | None:
    total = float(a.sum() + b.sum())
    return None if total == 0 else 2.0 * float((a & b).sum()) / total


def compare(out: Path, records: list[dict], truth: dict) -> dict:
    """What the batch measured beside the truth, per study."""
    from .io import read_labels, read_series4d

    result = {}
    for rec in records:
        sid, t = rec["study"], truth.get(rec["study"])
        row: dict = {"kind": rec["kind"], "status": rec["status"], "reason": rec.get("reason", ""), "truth": t}
        m = rec.get("metrics", {})
        if rec["status"] == "failed" or t is None:
            result[sid] = row
            continue
        folder = out / "batch" / rec["output"]
        if t["kind"] == "cardiac":
            row["measured"] = {k: m.get(k) for k in ("ed_phase", "es_phase", "ejection_fraction", "edv_ml", "esv_ml",
                                                      "thickness_ed_median_mm", "thickness_es_median_mm")}
            series = read_series4d(out / "studies" / sid)
            dice = {}
            for role, phase in (("ED", t["ed_index"]), ("ES", t["es_index"])):
                clean = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "truth" / sid / f"{role.lower()}_clean_labels.nii.gz")))
                before = sitk.GetArrayFromImage(series.labels[phase])
                cleaned_file = folder / "cleanup" / f"{role.lower()}_cleaned.seg.nrrd"
                after = read_labels(cleaned_file).array() if cleaned_file.exists() else before
                dice[role] = {"before": _dice(before == BLOOD_POOL, clean == BLOOD_POOL), "after": _dice(after == BLOOD_POOL, clean == BLOOD_POOL)}
            row["pool_dice_to_truth"] = dice
        else:
            row["measured"] = {k: m.get(k) for k in ("hemorrhage_detected", "hemorrhage_ml", "lesions")}
            pred = read_labels(folder / "hemorrhage" / "hemorrhage.nii.gz").array() > 0
            mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "truth" / sid / "mask.nii.gz"))) > 0
            row["dice"] = _dice(pred, mask) if mask.any() else None
            row["dicom_seg"] = rec.get("files", {}).get("dicom_seg")
        result[sid] = row
    return result


def run_demo(out: str | os.PathLike, seed: int = 0, quick: bool = False, progress: ProgressCallback | None = None) -> dict:
    """Run the demo into the folder ``out`` and return the summary (also ``out/summary.json``, written
    last).  ``out`` must be absent or empty (the command clears an earlier demo output first)."""
    from .batch import BatchOptions, discover, run_batch

    progress = progress or print_progress
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / MARKER, "SegTransfer demo output\n")

    def phantoms(f, msg=""):
        progress(0.2 * f, f"demo: {msg}")

    def batch(f, msg=""):
        progress(0.2 + 0.78 * f, f"demo batch: {msg}")

    truth = make_studies(out, seed, quick, phantoms)
    records = run_batch(discover(out / "studies"), out / "batch", options=BatchOptions(dicom_seg=True), progress=batch)
    summary = {"seed": seed, "quick": quick, "report": "batch/report.html", "results": "batch/results.csv",
               "studies": compare(out, records, truth)}
    write_text(out / SUMMARY, json.dumps(summary, indent=2, default=_json_default))
    progress(1.0, "demo: done")
    return summary


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _f(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def summary_lines(summary: dict) -> list[str]:
    """Human-readable lines of a demo summary: measured values beside the phantom truth."""
    lines = []
    for sid, r in summary["studies"].items():
        if r["status"] == "failed":
            lines.append(f"{sid}: FAILED: {r['reason']}")
            continue
        t, m = r["truth"], r["measured"]
        if t["kind"] == "cardiac":
            lines.append(f"{sid} ({t['site']}): ED {m['ed_phase']} ES {m['es_phase']} (truth {t['ed_index']}, {t['es_index']}), "
                         f"EF {_f(m['ejection_fraction'], '.3f')} (truth {t['ejection_fraction']:.3f})")
            for role in ("ED", "ES"):
                d = r["pool_dice_to_truth"][role]
                lines.append(f"  {role}: cleanup blood-pool Dice to truth {_f(d['before'], '.4f')} -> {_f(d['after'], '.4f')}; "
                             f"wall thickness median {_f(m[f'thickness_{role.lower()}_median_mm'], '.2f')} mm "
                             f"(phantom nominal {t[f'wall_thickness_{role.lower()}_mm']:.2f} mm)")
        else:
            dice = f", Dice {r['dice']:.3f}" if r.get("dice") is not None else ""
            seg = f"; DICOM SEG {r['dicom_seg']}" if r.get("dicom_seg") else ""
            lines.append(f"{sid} ({t['site']}, unseen by the model): hemorrhage {'present' if m['hemorrhage_detected'] else 'not detected'}, "
                         f"{m['hemorrhage_ml']:.2f} mL (truth {t['volume_ml']:.2f} mL){dice}{seg}")
    return lines

"""The end-to-end demo (the main job): a small multi-study batch of phantoms with known truth.

1. Phantom studies are generated into ``OUT/studies``: beating-LV cardiac series from two sites, with
   annotation defects in their labels, and head CTs from a site the hemorrhage model never saw (one
   with hemorrhages of every kind, stored as a DICOM series; one without).  Their truth goes to
   ``OUT/truth`` (kept apart from the studies, as a hospital's data would have none).
2. ``segtransfer batch`` runs over ``OUT/studies`` into ``OUT/batch`` with DICOM SEG output: annotation
   cleanup, the sparse ED/ES 4D pair and wall thickness on each cardiac series, hemorrhage
   segmentation and detection on each head CT, and the review report ``OUT/batch/report.html``.
2. Cardiac transfer learning into ``OUT/transfer`` (:mod:`segtransfer.demo_transfer`): a partner site
   (``site_a``, dense labels) trains the partner model, the local site (``site_b``, ED/ES-labelled
   sparse 4D pairs) fine-tunes it, and both are scored on held-out local pairs.
3. ``segtransfer batch`` runs over ``OUT/studies`` into ``OUT/batch`` with DICOM SEG output and the
   fine-tuned model as ``--cardiac-model``: every cardiac phase segmented by the model (its volume
   curve in the report), annotation cleanup, the sparse ED/ES 4D pair and wall thickness on each
   cardiac series, hemorrhage segmentation and detection on each head CT, and the review report
   ``OUT/batch/report.html``.
4. ``OUT/summary.json`` compares what the batch measured with the truth (ED/ES, EF, cleanup Dice,
   thickness against the phantom's nominal wall; the model's ED/ES, EF and its Dice at ED and ES
   against the clean truth labels, beside the un-tuned partner model's on the same phases;
   hemorrhage volume, detection and Dice) and carries the transfer step's held-out Dice.

``quick=True`` runs one small cardiac series (8 phases, 2 mm), the DICOM head CT and a tiny transfer
step (a few epochs on 6 mm phantoms: it exercises the wiring, its model is not meant to be good), for tests.
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


def model_against_truth(out: Path, folder: Path, rec: dict, t: dict, series, partner: tuple | None) -> dict:
    """The batch's model segmentation of a cardiac study against its truth: the model's ED/ES, EF and
    blood-pool volumes (mL) at the true ED and ES, and Dice per label at the true ED and ES against the
    clean truth labels on the study's grid; ``partner`` (``(network, package, device)``): the un-tuned
    partner model's Dice on the same phases, for comparison."""
    from .cardiac.infer import dice_per_label, segment_phase
    from .io import read_labels

    m = rec["metrics"]
    curve = m.get("predicted_curve_ml") or []
    row = {"ed_phase": m.get("model_ed_phase"), "es_phase": m.get("model_es_phase"), "ejection_fraction": m.get("model_ejection_fraction"),
           "edv_ml": curve[t["ed_index"]] if curve else None, "esv_ml": curve[t["es_index"]] if curve else None,
           "phases_segmented": len(curve), "dice": {}, "partner_dice": {}}
    for role, phase in (("ED", t["ed_index"]), ("ES", t["es_index"])):
        clean = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "truth" / rec["study"] / f"{role.lower()}_clean_labels.nii.gz")))
        pred = read_labels(folder / "segment" / f"phase_{phase:02d}.seg.nrrd").array()
        row["dice"][role] = dice_per_label(pred, clean)
        if partner is not None:
            network, package, device = partner
            theirs = sitk.GetArrayFromImage(segment_phase(series.phases[phase], network, package.description, device))
            row["partner_dice"][role] = dice_per_label(theirs, clean)
    return row


def compare(out: Path, records: list[dict], truth: dict, partner: tuple | None = None) -> dict:
    """What the batch measured beside the truth, per study (``partner``: see :func:`model_against_truth`)."""
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
            if "model_segmentation" in rec.get("files", {}):
                row["model"] = model_against_truth(out, folder, rec, t, series, partner)
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


def run_demo(out: str | os.PathLike, seed: int = 0, quick: bool = False, progress: ProgressCallback | None = None,
             device: str | None = "auto") -> dict:
    """Run the demo into the folder ``out`` and return the summary (also ``out/summary.json``, written
    last).  ``out`` must be absent or empty (the command clears an earlier demo output first).
    ``device``: where the cardiac models train and run (``auto``: the first CUDA GPU, else the CPU)."""
    from .batch import BatchOptions, discover, run_batch
    from .cardiac.network import choose_device
    from .cardiac.train import load_cardiac_network
    from .demo_transfer import run_transfer

    progress = progress or print_progress
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / MARKER, "SegTransfer demo output\n")

    def phantoms(f, msg=""):
        progress(0.1 * f, f"demo: {msg}")

    def batch(f, msg=""):
        progress(0.55 + 0.43 * f, f"demo batch: {msg}")

    def transfer(f, msg=""):
        progress(0.1 + 0.45 * f, f"demo transfer learning: {msg}")

    truth = make_studies(out, seed, quick, phantoms)
    learnt = run_transfer(out / "transfer", seed=seed, quick=quick, device=device, progress=transfer)
    options = BatchOptions(dicom_seg=True, cardiac_model=out / "transfer" / learnt["finetuned_model"]["package"],
                           cardiac_sha256=learnt["finetuned_model"]["sha256"], device=device)
    records = run_batch(discover(out / "studies"), out / "batch", options=options, progress=batch)
    progress(0.98, "demo: the partner model on the same phases")
    dev = choose_device(device)
    partner = (*load_cardiac_network(out / "transfer" / learnt["partner_model"]["package"], learnt["partner_model"]["sha256"], dev), dev)
    summary = {"seed": seed, "quick": quick, "report": "batch/report.html", "results": "batch/results.csv",
               "transfer": {"folder": "transfer", **{k: learnt[k] for k in ("partner_model", "finetuned_model", "seconds")},
                            "held_out_local": learnt["held_out_local"]},
               "studies": compare(out, records, truth, partner)}
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
    tr = summary.get("transfer")
    if tr:
        p, f, h = tr["partner_model"], tr["finetuned_model"], tr["held_out_local"]
        lines.append(f"cardiac transfer learning ({tr['folder']}/): partner model trained at the partner site ({p['epochs']} epochs), "
                     f"fine-tuned at the local site on ED/ES labels ({f['epochs']} epochs), {tr['seconds']:.0f} s")
        lines.append(f"  held-out local studies ({h['studies']}): Dice pool/myocardium partner {h['partner']['dice_blood_pool']:.3f}/"
                     f"{h['partner']['dice_myocardium']:.3f} -> fine-tuned {h['finetuned']['dice_blood_pool']:.3f}/"
                     f"{h['finetuned']['dice_myocardium']:.3f}")
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
            if r.get("model"):
                mod = r["model"]
                lines.append(f"  fine-tuned model, {mod['phases_segmented']} phases: ED {mod['ed_phase']} ES {mod['es_phase']}, "
                             f"EF {_f(mod['ejection_fraction'], '.3f')} (truth {t['ejection_fraction']:.3f}), EDV {_f(mod['edv_ml'], '.1f')} mL ESV {_f(mod['esv_ml'], '.1f')} mL "
                             f"(truth {t['edv_ml']:.1f}, {t['esv_ml']:.1f} mL)")
                for role in ("ED", "ES"):
                    d, pd = mod["dice"][role], mod["partner_dice"].get(role)
                    partner = f" (partner {pd['blood_pool']:.3f}/{pd['myocardium']:.3f})" if pd else ""
                    lines.append(f"    {role}: Dice pool/myocardium to truth {d['blood_pool']:.3f}/{d['myocardium']:.3f}{partner}")
        else:
            dice = f", Dice {r['dice']:.3f}" if r.get("dice") is not None else ""
            seg = f"; DICOM SEG {r['dicom_seg']}" if r.get("dicom_seg") else ""
            lines.append(f"{sid} ({t['site']}, unseen by the model): hemorrhage {'present' if m['hemorrhage_detected'] else 'not detected'}, "
                         f"{m['hemorrhage_ml']:.2f} mL (truth {t['volume_ml']:.2f} mL){dice}{seg}")
    return lines

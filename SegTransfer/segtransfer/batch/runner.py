"""Running a batch: every study through its pipeline, failures recorded, finished studies skipped.

Output folder layout::

    OUT/batch.json            every study's record (status ok / failed / skipped, reason, metrics, files)
    OUT/results.csv           one row per study (RESULT_COLUMNS)
    OUT/report.html           the review report (segtransfer.review), images in OUT/studies/*/figures/
    OUT/studies/<id>/         one folder per study that succeeded, with study.json written last

A study's folder is written atomically (it appears complete or not at all), so a failed study leaves
nothing behind but its line in ``batch.json`` and ``results.csv``; both are rewritten after every
study, so an interrupted batch keeps what it finished.  On a re-run a study whose ``study.json``
says ``ok`` for the same input (path, size and modification time of its files) and capabilities
is skipped, and its earlier record is reused.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
import traceback
from pathlib import Path

from ..errors import InputError, SegTransferError
from ..io import atomic_dir, write_text
from ..progress import ProgressCallback, print_progress
from .pipelines import PIPELINES, BatchOptions
from .studies import CAPABILITIES, NEEDS_MODEL, Study

BATCH_FILE = "batch.json"
RESULTS_FILE = "results.csv"
STUDY_FILE = "study.json"
RESULT_COLUMNS = ["study", "kind", "status", "reason", "capabilities", "seconds", "hemorrhage_detected", "hemorrhage_ml",
                  "lesions", "brain_ml", "ed_phase", "es_phase", "edv_ml", "esv_ml", "ejection_fraction",
                  "thickness_ed_median_mm", "thickness_ed_p95_mm", "thickness_es_median_mm", "thickness_es_p95_mm",
                  "dicom_seg", "input", "output"]


def fingerprint(path: Path) -> str:
    """What identifies a study's input for skipping: SHA-256 over (relative name, size, mtime in ns) of
    its files (a changed, added or removed file changes it; the contents are not read)."""
    import hashlib

    files = [path] if path.is_file() else sorted(q for q in path.rglob("*") if q.is_file())
    base = path if path.is_dir() else path.parent
    listing = [[str(q.relative_to(base)), q.stat().st_size, q.stat().st_mtime_ns] for q in files]
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def check_batch_folder(out: Path) -> None:
    """The output folder may be absent, empty or an earlier batch output (holding batch.json)."""
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / BATCH_FILE).is_file():
        raise InputError(out, f"folder is not empty and holds no {BATCH_FILE}; choose a new or empty output folder")


def capabilities_for(study: Study, chosen: tuple[str, ...] | None, with_model: bool = False) -> tuple[str, ...]:
    """The capabilities that run on ``study``: those of its kind, narrowed by the manifest and by ``chosen``;
    cardiac ``segment`` only ``with_model`` (a cardiac model package given to the batch)."""
    caps = tuple(c for c in CAPABILITIES.get(study.kind, ()) if with_model or c not in NEEDS_MODEL)
    if study.capabilities is not None:
        caps = tuple(c for c in caps if c in study.capabilities)
    if chosen is not None:
        caps = tuple(c for c in caps if c in chosen)
    return caps


def _earlier(folder: Path, study: Study, caps: tuple[str, ...], fp: str) -> dict | None:
    try:
        rec = json.loads((folder / STUDY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if rec.get("status") == "ok" and rec.get("capabilities") == list(caps) and rec.get("fingerprint") == fp:
        return rec
    return None


def run_batch(studies: list[Study], out: str | os.PathLike, capabilities: tuple[str, ...] | None = None,
              options: BatchOptions | None = None, force: bool = False, report: bool = True,
              progress: ProgressCallback | None = None) -> list[dict]:
    """Run ``studies`` into ``out``; returns one record per study (also in ``batch.json`` and ``results.csv``).

    ``capabilities``: run only these (``None``: every capability of each study's kind).  ``force``: redo
    studies that are already done.  A study that fails (bad input of any kind, or an unexpected error)
    is recorded with its reason and the batch goes on.  ``report``: write ``report.html`` at the end.
    """
    progress = progress or print_progress
    options = options or BatchOptions()
    out = Path(out)
    check_batch_folder(out)
    ids = [s.study_id for s in studies]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise InputError(out, f"two studies would share the output folder {dup[0]!r}; rename one (or use a manifest)")
    out.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    total = max(len(studies), 1)
    for n, study in enumerate(studies):
        lo, hi = n / total, (n + 1) / total
        label = f"study {n + 1}/{len(studies)} {study.study_id}"
        progress(lo, label)
        folder = out / "studies" / study.study_id
        caps = capabilities_for(study, capabilities, options.cardiac_model is not None)
        base = {"study": study.study_id, "kind": study.kind, "input": str(study.path), "capabilities": list(caps)}
        t0 = time.perf_counter()
        try:
            if study.problem:
                raise InputError(study.path, study.problem)
            fp = fingerprint(study.path)
            earlier = None if force else _earlier(folder, study, caps, fp)
            if earlier is not None:
                records.append({**earlier, "status": "skipped", "reason": "done in an earlier run"})
            else:
                if not caps:
                    raise InputError(study.path, f"no capability to run on this {study.kind} study")

                def sub(f, msg="", lo=lo, hi=hi, label=label):
                    progress(lo + (hi - lo) * f, f"{label}: {msg}")

                with atomic_dir(folder) as tmp:
                    rec = PIPELINES[study.kind](study, tmp, caps, options, sub)
                    rec = {**base, "status": "ok", "reason": "", **rec, "fingerprint": fp,
                           "seconds": round(time.perf_counter() - t0, 1), "output": f"studies/{study.study_id}"}
                    write_text(tmp / STUDY_FILE, json.dumps(rec, indent=2))
                records.append(rec)
        except SegTransferError as exc:
            records.append({**base, "status": "failed", "reason": str(exc), "seconds": round(time.perf_counter() - t0, 1)})
        except Exception as exc:  # an unexpected error in one study must not stop the others
            where = traceback.extract_tb(exc.__traceback__)[-1]
            records.append({**base, "status": "failed", "seconds": round(time.perf_counter() - t0, 1),
                            "reason": f"{study.path}: unexpected {type(exc).__name__}: {exc} "
                                      f"(at {Path(where.filename).name}:{where.lineno})"})
        if records[-1]["status"] == "failed":
            print(f"{study.study_id}: FAILED: {records[-1]['reason']}", flush=True)
        write_results(out, records)
        progress(hi, f"{label}: {records[-1]['status']}")
    if report:
        from ..review import write_report

        path = write_report(out)
        progress(1.0, f"report: {path}")
    return records


def result_row(rec: dict) -> dict:
    """The ``results.csv`` row of one study record."""
    m = rec.get("metrics", {})
    row = {k: rec.get(k, "") for k in ("study", "kind", "status", "reason", "seconds", "input", "output")}
    row["capabilities"] = " ".join(rec.get("capabilities", []))
    for k in RESULT_COLUMNS:
        if k in m:
            row[k] = "" if m[k] is None else m[k]
    row["dicom_seg"] = rec.get("files", {}).get("dicom_seg", "")
    return row


def write_results(out: Path, records: list[dict]) -> None:
    """Rewrite ``batch.json`` and ``results.csv`` (atomically) from the records so far."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=RESULT_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for rec in records:
        writer.writerow(result_row(rec))
    write_text(out / RESULTS_FILE, buf.getvalue())
    write_text(out / BATCH_FILE, json.dumps({"format": "segtransfer.batch", "version": 1, "studies": records}, indent=2))

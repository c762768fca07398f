#!/usr/bin/env python3
"""Export sparse ED/ES 4D training pairs for many studies, headless, and optionally a dataset manifest.

Runs under plain Python::

    python scripts/batch_sparse4d.py --root studies/ --out pairs/ --manifest pairs/dataset.json

and under Slicer::

    Slicer --no-main-window --python-script scripts/batch_sparse4d.py -- --root studies/ --out pairs/

Each study (a folder or 4D file, laid out as described in ``docs/sparse4d.md``, "Batch") becomes
``OUT/<study id>/`` with ``image4d.nii.gz``, ``labels4d.nii.gz`` and ``sparse4d.json``.  A study that
fails (bad or incomplete series, labels on another grid, unreadable files) is recorded and the batch
goes on.  ``OUT/batch_report.json`` and ``OUT/batch_report.csv`` list every study with its status
(``ok``, ``skipped`` when its pair already exists and ``--force`` is not given, ``failed`` with the
error), ED/ES, EF and time; the report is rewritten after every study.  Exit code 0 when no study
failed, 1 when some did, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
import traceback
from pathlib import Path


def _import_core():
    """Import the core package, from the installed package or from this checkout."""
    try:
        import segtransfer  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "SegTransfer"))
    from segtransfer import sparse4d
    from segtransfer.errors import SegTransferError
    from segtransfer.io import write_text

    return sparse4d, SegTransferError, write_text


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="batch_sparse4d.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", nargs="+", default=[], metavar="PATH", help="study folders or 4D files")
    parser.add_argument("--root", action="append", default=[], metavar="DIR",
                        help="a folder whose entries (subfolders and 4D files) are studies; may be repeated")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder: one pair folder per study, plus the batch report")
    parser.add_argument("--force", action="store_true", help="export again studies whose pair already exists")
    parser.add_argument("--spacing", nargs="+", type=float, default=[1.0], metavar="MM", help="output spacing, one value or x y z (default 1)")
    parser.add_argument("--interpolator", default="bspline", choices=["bspline", "linear"])
    parser.add_argument("--image-type", default="float32", choices=["float32", "int16"])
    parser.add_argument("--crop-margin", type=float, metavar="MM", help="crop to the labelled LV plus this margin")
    parser.add_argument("--cleanup-radius", type=float, metavar="R", help="close holes and gaps in the labelled phases first (radius in voxels)")
    parser.add_argument("--keep-labels", default="all", choices=["all", "ed-es"], help="keep every labelled phase, or only ED and ES")
    parser.add_argument("--method", default="auto", choices=["auto", "labels", "percent", "prediction"], help="how to find ED/ES")
    parser.add_argument("--es-percent", type=float, default=40.0, metavar="P", help="ES position for the R-R rule (default 40 %%)")
    parser.add_argument("--manifest", metavar="FILE", help="afterwards, write a dataset manifest over the exported pairs")
    parser.add_argument("--split", nargs=3, type=float, default=[0.6, 0.2, 0.2], metavar=("TRAIN", "VAL", "TEST"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.studies and not args.root:
        parser.error("give --studies and/or --root")
    if len(args.spacing) not in (1, 3) or min(args.spacing) <= 0:
        parser.error("--spacing takes one or three positive values in mm")
    return args


def list_studies(args: argparse.Namespace) -> list[Path]:
    """Studies named by ``--studies`` and found under each ``--root`` (hidden entries skipped), in order, once each."""
    found = [Path(s) for s in args.studies]
    for root in args.root:
        r = Path(root)
        if not r.is_dir():
            raise SystemExit(f"batch_sparse4d: error: --root {r} is not a folder")
        found += [q for q in sorted(r.iterdir()) if not q.name.startswith(".")]
    seen, out = set(), []
    for p in found:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _write_report(out: Path, rows: list[dict], write_text) -> None:
    write_text(out / "batch_report.json", json.dumps({"studies": rows}, indent=2) + "\n")
    buf = io.StringIO()
    fields = ["study", "path", "status", "error", "ed_index", "es_index", "labelled_phases", "ejection_fraction", "seconds"]
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fields})
    write_text(out / "batch_report.csv", buf.getvalue())


def run(argv: list[str]) -> int:
    """Run the batch; returns the exit code."""
    args = parse_args(argv)
    sparse4d, SegTransferError, write_text = _import_core()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    studies = list_studies(args)
    rows: list[dict] = []
    ids: set[str] = set()
    for n, path in enumerate(studies, start=1):
        started = time.monotonic()
        row = {"study": path.name, "path": str(path), "status": "failed", "error": None}
        try:
            inputs = sparse4d.study_inputs(path)
            study_id = inputs["study_id"]
            row["study"] = study_id
            if study_id in ids:
                raise SegTransferError(f"{path}: study id {study_id!r} already used by another study in this batch")
            ids.add(study_id)
            target = out / study_id
            if (target / sparse4d.SIDECAR).is_file() and not args.force:
                record = sparse4d.inspect_sparse4d(target)
                row.update(status="skipped", error="pair already exists (use --force to export again)")
            else:
                series, sources = sparse4d.load_study(inputs["series"], labels4d=inputs["labels4d"], phase_labels=inputs["phase_labels"])
                predicted, predicted_source = sparse4d.load_predicted_volumes(len(series), inputs["predicted_volumes_file"],
                                                                              inputs["predicted_labels_file"])
                if predicted_source:
                    sources["predicted"] = predicted_source
                pair = sparse4d.build_sparse4d(
                    series, spacing_mm=args.spacing, interpolator=args.interpolator, image_type=args.image_type,
                    crop_margin_mm=args.crop_margin, cleanup_radius=args.cleanup_radius, predicted_volumes=predicted,
                    method=args.method, es_percent=args.es_percent, keep_labels=args.keep_labels, study_id=study_id,
                    sources=sources, where=path)
                sparse4d.write_sparse4d(pair, target)
                record = pair.record
                row.update(status="ok")
            row.update(ed_index=record["ed_index"], es_index=record["es_index"], labelled_phases=record["labelled_phases"],
                       ejection_fraction=record["ejection_fraction"], pair=str(target))
        except SegTransferError as exc:
            row["error"] = str(exc)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # a broken study must not stop the batch: record what went wrong and go on
            row["error"] = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
            row["traceback"] = traceback.format_exc()
        row["seconds"] = round(time.monotonic() - started, 2)
        rows.append(row)
        _write_report(out, rows, write_text)
        print(f"PROGRESS {100.0 * n / max(len(studies), 1):.1f}% study {n}/{len(studies)}: {row['study']} {row['status']}"
              + (f" ({row['error']})" if row["status"] == "failed" else ""), flush=True)

    failed = [r for r in rows if r["status"] == "failed"]
    done = [Path(r["pair"]) for r in rows if r["status"] in ("ok", "skipped")]
    print(f"{len(rows) - len(failed)} of {len(rows)} studies exported or present, {len(failed)} failed; report: {out / 'batch_report.json'}")
    if args.manifest:
        if done:
            try:
                manifest = sparse4d.build_manifest(done, args.manifest, args.split, args.seed)
                sparse4d.write_manifest(manifest, args.manifest)
                counts = ", ".join(f"{k} {len(v)}" for k, v in manifest["splits"].items())
                print(f"Wrote dataset manifest {args.manifest}: {counts}")
            except SegTransferError as exc:
                print(f"batch_sparse4d: manifest not written: {exc}", file=sys.stderr)
                return 1
        else:
            print("batch_sparse4d: no pair to put in a manifest", file=sys.stderr)
    return 1 if failed else 0


def main() -> None:
    argv = sys.argv[1:]
    if argv and argv[0] == "--":  # Slicer --python-script passes the separator through
        argv = argv[1:]
    try:
        code = run(argv)
    except SystemExit as exc:  # argparse errors and --help
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    slicer = sys.modules.get("slicer")
    if slicer is not None and hasattr(slicer, "app"):
        slicer.util.exit(code)  # inside the Slicer application: leave the event loop with this status
    else:
        sys.exit(code)


if __name__ == "__main__" or hasattr(sys.modules.get("slicer"), "app"):  # plain Python, or Slicer --python-script
    main()

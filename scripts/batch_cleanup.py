#!/usr/bin/env python
"""Headless batch cleanup of every label map in a folder: closing (and optionally the minimum-size
rule and the hole fill), one cleaned label map and one JSON report per case, and a CSV over all cases.

A file that cannot be read or cleaned is recorded in the CSV (status ``error`` and the message) and
the batch goes on; the exit code is 0 when every case succeeded, 1 when some failed, 2 for bad
arguments.

Plain Python (with SegTransfer installed, or from a source checkout):
    python scripts/batch_cleanup.py IN_DIR OUT_DIR --radius 5 --radius-unit voxel --csv summary.csv
Inside 3D Slicer, without a window (the arguments after ``--`` reach the script):
    Slicer --no-main-window --python-script scripts/batch_cleanup.py -- IN_DIR OUT_DIR --radius 5
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
import traceback
from pathlib import Path


def _import_core():
    """Import the core package, from the installed package or from this checkout's ``SegTransfer/``
    folder (the case inside Slicer, where the extension's folder may not be on ``sys.path``)."""
    try:
        import segtransfer  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "SegTransfer"))
    from segtransfer.cleanup import clean_labels
    from segtransfer.cleanup.agreement import LABEL_SUFFIXES, case_name
    from segtransfer.errors import SegTransferError
    from segtransfer.io import read_labels, write_labels, write_text

    return clean_labels, LABEL_SUFFIXES, case_name, SegTransferError, read_labels, write_labels, write_text


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the batch script."""
    p = argparse.ArgumentParser(prog="batch_cleanup.py", description=__doc__.split("\n\n")[0])
    p.add_argument("input_dir", help="folder of label maps (.seg.nrrd, .nii.gz, .nii, .nrrd, .mha)")
    p.add_argument("output_dir", help="folder for the cleaned label maps and their reports (created)")
    p.add_argument("--radius", type=float, default=5.0, help="closing radius (default 5); 0 skips the closing")
    p.add_argument("--radius-unit", choices=("voxel", "mm"), default="voxel", help="unit of --radius (default voxel)")
    p.add_argument("--fill-holes", action="store_true", help="also fill enclosed holes after the closing")
    p.add_argument("--max-hole-size", type=float, help="with --fill-holes: only holes of at most this size")
    p.add_argument("--min-component-size", type=float, help="first remove label components smaller than this")
    p.add_argument("--size-unit", choices=("voxel", "ml"), default="voxel", help="unit of the sizes (default voxel)")
    p.add_argument("--format", default="same", help="output extension, e.g. .seg.nrrd or .nii.gz (default: same as input)")
    p.add_argument("--csv", help="summary CSV (default: OUTPUT_DIR/cleanup_summary.csv)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the batch; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--":  # Slicer passes the separator through
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    clean_labels, suffixes, case_name, SegTransferError, read_labels, write_labels, write_text = _import_core()
    in_dir, out_dir = Path(args.input_dir), Path(args.output_dir)
    if not in_dir.is_dir():
        print(f"batch_cleanup: error: {in_dir}: folder not found", file=sys.stderr)
        return 2
    if not (args.radius >= 0 and args.radius < float("inf")):
        print(f"batch_cleanup: error: --radius {args.radius}: must be a non-negative number", file=sys.stderr)
        return 2
    if args.radius == 0 and not args.fill_holes and args.min_component_size is None:
        print("batch_cleanup: error: nothing to do: --radius 0 without --fill-holes or --min-component-size", file=sys.stderr)
        return 2
    if args.format != "same" and not args.format.lower().endswith((".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".mha")):
        print(f"batch_cleanup: error: --format {args.format}: not a label-map extension", file=sys.stderr)
        return 2
    files = sorted(p for p in in_dir.iterdir() if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(suffixes))
    if not files:
        print(f"batch_cleanup: error: {in_dir}: no label files ({', '.join(suffixes)})", file=sys.stderr)
        return 2
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, labels_seen = [], set()
    for n, path in enumerate(files, start=1):
        case = case_name(path)
        ext = path.name[len(case):] if args.format == "same" else args.format
        out_path = out_dir / f"{case}{ext}"
        row = {"case": case, "input": str(path), "output": "", "report": "", "status": "ok", "error": "", "voxels_changed": ""}
        started = time.perf_counter()
        try:
            labels = read_labels(path)
            result = clean_labels(labels, radius=args.radius if args.radius > 0 else None, radius_unit=args.radius_unit,
                                  fill=args.fill_holes, max_hole_size=args.max_hole_size,
                                  min_component_size=args.min_component_size, size_unit=args.size_unit, where=str(path))
            write_labels(result.labels, out_path)
            report_path = out_dir / f"{case}.report.json"
            write_text(report_path, result.report.to_json() + "\n")
            row.update(output=str(out_path), report=str(report_path), voxels_changed=result.report.voxels_changed)
            kinds: dict[str, int] = {}
            for region in result.report.regions:
                kinds[region.kind] = kinds.get(region.kind, 0) + 1
            row["regions"] = "; ".join(f"{k}: {v}" for k, v in sorted(kinds.items()))
            for change in result.report.labels:
                labels_seen.add(change.value)
                row[f"added_voxels_{change.value}"] = change.voxels_added
                row[f"added_ml_{change.value}"] = round(change.ml_added, 6)
                row[f"removed_voxels_{change.value}"] = change.voxels_removed
            message = f"{result.report.voxels_changed} voxels changed"
        except SegTransferError as exc:
            row.update(status="error", error=str(exc))
            message = f"ERROR {exc}"
        except Exception as exc:  # keep going past any broken case; the CSV records what happened
            row.update(status="error", error=f"{type(exc).__name__}: {exc}".splitlines()[0])
            message = f"ERROR {row['error']}"
            traceback.print_exc(file=sys.stderr)
        row["seconds"] = round(time.perf_counter() - started, 3)
        rows.append(row)
        print(f"[{n}/{len(files)}] {case}: {message}", flush=True)
    columns = ["case", "input", "output", "report", "status", "error", "voxels_changed", "regions", "seconds"]
    for v in sorted(labels_seen):
        columns += [f"added_voxels_{v}", f"added_ml_{v}", f"removed_voxels_{v}"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    csv_path = Path(args.csv) if args.csv else out_dir / "cleanup_summary.csv"
    write_text(csv_path, buf.getvalue())
    failed = [r["case"] for r in rows if r["status"] != "ok"]
    print(f"{len(rows) - len(failed)} of {len(rows)} cases cleaned; summary {csv_path}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    # sys.exit also ends a headless Slicer session (Slicer --no-main-window --python-script) with this code
    sys.exit(main())

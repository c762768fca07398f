#!/usr/bin/env python
"""Headless batch LV wall thickness over a folder: every label map (.nii.gz, .nii, .nrrd, .seg.nrrd,
.mha) and every 4D series folder (with series.json) in INPUT_DIR gets its own output folder
(surfaces, statistics), and one CSV collects the statistics of all studies.

A study that cannot be read or measured is recorded (status ``error`` and the message) and the
batch goes on; studies whose output folder already holds statistics are skipped unless --force.
Exit code 0 when every study succeeded, 1 when some failed, 2 for bad arguments.

Plain Python:
    python scripts/batch_thickness.py INPUT_DIR OUTPUT_DIR [--method eulerian]
Inside 3D Slicer, without a window:
    Slicer --no-main-window --python-script scripts/batch_thickness.py -- INPUT_DIR OUTPUT_DIR
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

SUFFIXES = (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".mha")


def _core():
    try:
        import segtransfer  # noqa: F401
    except ImportError:  # inside Slicer or from a checkout: use this repository's core
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "SegTransfer"))
    from segtransfer.cli import run_captured
    from segtransfer.io import write_text

    return run_captured, write_text


def studies(folder: Path) -> list[tuple[str, Path]]:
    """(study name, path) for every label file and series folder directly in ``folder``, sorted."""
    found = []
    for p in sorted(folder.iterdir()):
        if p.is_dir() and (p / "series.json").exists():
            found.append((p.name, p))
        elif p.is_file() and p.name.lower().endswith(SUFFIXES):
            found.append((next(p.name[: -len(s)] for s in SUFFIXES if p.name.lower().endswith(s)), p))
    return found


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    parser = argparse.ArgumentParser(prog="batch_thickness.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("input_dir", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--method", choices=("streamline", "eulerian"), default="streamline")
    parser.add_argument("--force", action="store_true", help="recompute studies that already have outputs")
    args = parser.parse_args(argv)
    run_captured, write_text = _core()
    if not args.input_dir.is_dir():
        print(f"batch_thickness: error: {args.input_dir}: not a folder", file=sys.stderr)
        return 2
    rows, failed = [], 0
    items = studies(args.input_dir)
    for n, (name, path) in enumerate(items, start=1):
        out = args.output_dir / name
        print(f"PROGRESS {100.0 * (n - 1) / max(len(items), 1):.1f}% study {n}/{len(items)}: {name}", flush=True)
        if (out / "statistics.csv").exists() and not args.force:
            status = "skipped (done)"
        else:
            code, error = run_captured(["thickness", "compute", str(path), "--out", str(out), "--method", args.method, "--study-id", name])
            status = "ok" if code == 0 else f"error: {error}"
        if status.startswith("error"):
            failed += 1
            rows.append({"study": name, "status": status})
            continue
        with open(out / "statistics.csv", newline="", encoding="utf-8") as f:
            rows.extend({**r, "status": status} for r in csv.DictReader(f))
    columns = ["study", "phase", "role", "mean_mm", "median_mm", "p95_mm", "max_mm", "n_vertices", "n_invalid", "status"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(args.output_dir / "thickness_summary.csv", buf.getvalue())
    print(f"PROGRESS 100.0% {len(items) - failed} of {len(items)} studies done; summary: {args.output_dir / 'thickness_summary.csv'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

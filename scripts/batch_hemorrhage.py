#!/usr/bin/env python
"""Headless batch hemorrhage segmentation over a folder of head CTs (NIfTI, NRRD, MHA, .inv3, or DICOM
series folders): one output folder per scan and one CSV with volume and detection per scan.

A scan that fails (not a CT, no brain, corrupt file) is recorded with its reason and the batch goes
on; scans whose output already exists are skipped unless --force.  Exit code 0 when every scan
succeeded, 1 when some failed, 2 for bad arguments.

    python scripts/batch_hemorrhage.py INPUT_DIR OUTPUT_DIR [--model PKG]
    Slicer --no-main-window --python-script scripts/batch_hemorrhage.py -- INPUT_DIR OUTPUT_DIR
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".inv3")


def _core():
    try:
        import segtransfer  # noqa: F401
    except ImportError:  # inside Slicer or from a checkout
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "SegTransfer"))
    from segtransfer.cli import run_captured
    from segtransfer.io import write_text

    return run_captured, write_text


def scans(folder: Path) -> list[tuple[str, Path]]:
    out = []
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.name.lower().endswith(SUFFIXES):
            out.append((next(p.name[: -len(s)] for s in SUFFIXES if p.name.lower().endswith(s)), p))
        elif p.is_dir() and any(f.suffix.lower() == ".dcm" for f in p.iterdir()):
            out.append((p.name, p))
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    parser = argparse.ArgumentParser(prog="batch_hemorrhage.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("input_dir", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--model", type=Path, help="model package (default: the shipped demonstration model)")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    run_captured, write_text = _core()
    if not args.input_dir.is_dir():
        print(f"batch_hemorrhage: error: {args.input_dir}: not a folder", file=sys.stderr)
        return 2
    items = scans(args.input_dir)
    rows, failed = [], 0
    for n, (name, path) in enumerate(items, start=1):
        print(f"PROGRESS {100.0 * (n - 1) / max(len(items), 1):.1f}% scan {n}/{len(items)}: {name}", flush=True)
        out = args.output_dir / name
        if (out / "summary.json").exists() and not args.force:
            status = "skipped (done)"
        else:
            cmd = ["hemorrhage", "segment", str(path), "--out", str(out)] + (["--model", str(args.model)] if args.model else [])
            code, error = run_captured(cmd)
            status = "ok" if code == 0 else f"error: {error}"
        if status.startswith("error"):
            failed += 1
            rows.append({"scan": name, "status": status})
            continue
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        rows.append({"scan": name, "status": status, "detected": summary["detected"], "volume_ml": f"{summary['volume_ml']:.3f}",
                     "lesions": len(summary["lesions"]), "brain_ml": f"{summary['brain_ml']:.1f}"})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["scan", "status", "detected", "volume_ml", "lesions", "brain_ml"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(args.output_dir / "hemorrhage_summary.csv", buf.getvalue())
    print(f"PROGRESS 100.0% {len(items) - failed} of {len(items)} scans done; summary: {args.output_dir / 'hemorrhage_summary.csv'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

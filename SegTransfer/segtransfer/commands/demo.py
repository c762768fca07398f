"""``segtransfer demo``: the end-to-end main job, a small multi-study batch of generated phantoms."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ..errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    p = sub.add_parser(
        "demo",
        help="run every capability end to end on a small batch of generated phantoms",
        description="Generate phantom studies with known truth (cardiac series from two sites, head CTs from a site the "
        "hemorrhage model never saw, one as a DICOM series), run segtransfer batch over them (cleanup, sparse ED/ES "
        "pair, wall thickness, hemorrhage, DICOM SEG), write the review report and summary.json into --out, and print "
        "the measured values beside the truth and where the report is.",
    )
    p.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder (default: demo_output)")
    p.add_argument("--seed", type=int, default=0, help="phantom seed (default: 0)")
    p.add_argument("--quick", action="store_true", help="one small cardiac series and one head CT (about a minute)")
    p.add_argument("--force", action="store_true", help="replace an earlier demo output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import MARKER, SUMMARY, run_demo, summary_lines

    out: Path = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not ((out / MARKER).exists() or (out / SUMMARY).exists()):
            raise InputError(out, "exists and is not an earlier demo output (choose another --out)")
        if not args.force:
            raise InputError(out, "an earlier demo output is there; use --force to replace it")
        shutil.rmtree(out)
    summary = run_demo(out, seed=args.seed, quick=args.quick)
    print()
    for line in summary_lines(summary):
        print(line)
    print(f"\nResults table: {(out / summary['results']).resolve()}")
    print(f"Review report (open in a browser): {(out / summary['report']).resolve()}")
    print(f"Demo outputs: {out.resolve()}  (summary: {(out / SUMMARY).resolve()})")
    return 0

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
        "hemorrhage model never saw, one as a DICOM series), train a partner cardiac model and fine-tune it on "
        "ED/ES-labelled local phantoms, run segtransfer batch over the studies (every cardiac phase segmented by the "
        "fine-tuned model, cleanup, sparse ED/ES pair, wall thickness, hemorrhage, DICOM SEG), write the review report and summary.json into --out, and print "
        "the measured values beside the truth and where the report is.",
    )
    p.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder (default: demo_output)")
    p.add_argument("--seed", type=int, default=0, help="phantom seed (default: 0)")
    p.add_argument("--quick", action="store_true", help="one small cardiac series, one head CT and a tiny transfer-learning step that only exercises the wiring (about a minute)")
    p.add_argument("--force", action="store_true", help="replace an earlier demo output folder")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for PyTorch (default: 1; the demo's networks are small, and more threads on cores "
                   "shared with other jobs slow it down)")
    p.add_argument("--device", default="auto", help="where the cardiac models train and run: auto (the first CUDA GPU, else the CPU), cpu, cuda")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..cardiac.network import choose_device
    from .cardiac import set_threads

    threads = torch.get_num_threads()
    set_threads(args.threads)
    try:
        choose_device(args.device)  # an unknown or missing device is refused before anything is written
        return _run(args)
    finally:
        torch.set_num_threads(threads)  # callers in the same process keep their setting


def _run(args: argparse.Namespace) -> int:
    from ..demo import MARKER, SUMMARY, run_demo, summary_lines

    out: Path = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not ((out / MARKER).exists() or (out / SUMMARY).exists()):
            raise InputError(out, "exists and is not an earlier demo output (choose another --out)")
        if not args.force:
            raise InputError(out, "an earlier demo output is there; use --force to replace it")
        shutil.rmtree(out)
    summary = run_demo(out, seed=args.seed, quick=args.quick, device=args.device)
    print()
    for line in summary_lines(summary):
        print(line)
    print(f"\nResults table: {(out / summary['results']).resolve()}")
    print(f"Review report (open in a browser): {(out / summary['report']).resolve()}")
    print(f"Demo outputs: {out.resolve()}  (summary: {(out / SUMMARY).resolve()})")
    return 0

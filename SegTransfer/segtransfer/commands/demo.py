"""``segtransfer demo``: the end-to-end main job on generated phantoms."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    p = sub.add_parser(
        "demo",
        help="run every capability end to end on generated phantoms",
        description="Generate phantoms with known truth and run every capability on them; writes the "
        "outputs and summary.json into --out and prints measured values beside the truth.",
    )
    p.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder (default: demo_output)")
    p.add_argument("--seed", type=int, default=0, help="phantom seed (default: 0)")
    p.add_argument("--force", action="store_true", help="replace an existing demo output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo, summary_lines

    out: Path = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not (out / "summary.json").exists():
            raise InputError(out, "exists and is not an earlier demo output (choose another --out)")
        if not args.force:
            raise InputError(out, "an earlier demo output is there; use --force to replace it")
    summary = run_demo(out, seed=args.seed)
    print()
    for line in summary_lines(summary):
        print(line)
    print(f"\nDemo outputs: {out.resolve()}  (summary: {(out / 'summary.json').resolve()})")
    return 0

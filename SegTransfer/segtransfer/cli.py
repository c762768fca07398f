"""``segtransfer`` command line: one subcommand per capability.

Each module in :mod:`segtransfer.commands` defines ``register(subparsers)``, which adds its
subcommand and sets ``func`` (called with the parsed arguments, returning an exit code).  Errors the
user can fix (:class:`~segtransfer.errors.SegTransferError`) print one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import __version__, commands
from .errors import SegTransferError

EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every command module's subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="segtransfer",
        description="Use a partner site's segmentation model on local scanners: annotation cleanup, "
        "sparse 4D labels, transfer learning and multi-site training, LV wall thickness, hemorrhage volume.",
    )
    parser.add_argument("--version", action="version", version=f"segtransfer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``segtransfer`` console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SegTransferError as exc:
        print(f"segtransfer {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"segtransfer {args.command}: interrupted", file=sys.stderr)
        return 130


def run_captured(argv: list[str]) -> tuple[int, str]:
    """Run one command in-process for batch scripts: ``(exit code, its one-line error or "")``.
    Progress and results still print; the error line is captured instead of printed."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    lines = err.getvalue().strip().splitlines()
    return code, (lines[-1] if code != 0 and lines else "")


if __name__ == "__main__":
    sys.exit(main())

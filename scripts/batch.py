#!/usr/bin/env python
"""Headless batch over a folder of studies: the arguments of ``segtransfer batch`` (see its --help).

Head CTs get hemorrhage segmentation, cardiac series cleanup, the sparse ED/ES pair and wall
thickness; one results CSV, a review report (report.html), failed studies recorded with their reason,
finished studies skipped on a re-run.  Exit code 0 when every study succeeded, 1 when some failed,
2 for bad arguments.

Plain Python:
    python scripts/batch.py STUDIES_DIR --out OUT [--capabilities hemorrhage thickness] [--dicom-seg]
Inside 3D Slicer, without a window:
    Slicer --no-main-window --python-script scripts/batch.py -- STUDIES_DIR --out OUT
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    try:
        import segtransfer  # noqa: F401
    except ImportError:  # inside Slicer or from a checkout: use this repository's core
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "SegTransfer"))
    from segtransfer.cli import main as cli_main

    return cli_main(["batch", *argv])


if __name__ == "__main__":
    sys.exit(main())

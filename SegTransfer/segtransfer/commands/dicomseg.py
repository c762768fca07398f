"""``segtransfer dicomseg``: write a label map as DICOM SEG referencing its source series, or read one back."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``dicomseg write`` and ``dicomseg read``."""
    p = sub.add_parser("dicomseg", help="DICOM SEG for PACS: write a segmentation referencing its source series, or read one",
                       description="DICOM SEG (binary, one segment per label value, highdicom) on the grid of a DICOM CT series.")
    s = p.add_subparsers(dest="action", metavar="ACTION")
    s.required = True
    w = s.add_parser("write", help="label map -> DICOM SEG referencing the source series",
                     description="Write a label map (.seg.nrrd keeps segment names and colours; NIfTI/NRRD get known names) that lies "
                     "on the grid of the DICOM series in --source as one DICOM SEG file. Label values must be 1..N.")
    w.add_argument("labels", type=Path, help="label map on the source series' grid")
    w.add_argument("--source", type=Path, required=True, help="folder holding the source DICOM series")
    w.add_argument("--series-uid", help="SeriesInstanceUID when the folder holds several series")
    w.add_argument("--out", "-o", type=Path, required=True, help="DICOM SEG file to write (atomically)")
    w.add_argument("--names", choices=("cardiac", "hemorrhage"), default="cardiac",
                   help="segment names for label files without them (NIfTI/NRRD): cardiac 1 LV blood pool, 2 LV myocardium "
                   "(default); hemorrhage 1 Hemorrhage. A .seg.nrrd keeps its own names")
    w.add_argument("--description", default="SegTransfer segmentation", help="SeriesDescription of the SEG")
    w.set_defaults(func=run_write)
    r = s.add_parser("read", help="DICOM SEG -> label map on the source series' grid",
                     description="Read a DICOM SEG onto the grid of its source series and write it as a label map "
                     "(.seg.nrrd keeps segment names and colours).")
    r.add_argument("seg", type=Path, help="DICOM SEG file")
    r.add_argument("--source", type=Path, required=True, help="folder holding the source DICOM series")
    r.add_argument("--series-uid", help="SeriesInstanceUID when the folder holds several series")
    r.add_argument("--out", "-o", type=Path, required=True, help="label map to write")
    r.set_defaults(func=run_read)


def run_write(args: argparse.Namespace) -> int:
    from ..io import read_labels
    from ..io.dicom_seg import write_dicom_seg
    from ..labels import CARDIAC_SEGMENTS, HEMORRHAGE_SEGMENTS

    labels = read_labels(args.labels, known=HEMORRHAGE_SEGMENTS if args.names == "hemorrhage" else CARDIAC_SEGMENTS)
    write_dicom_seg(labels, args.source, args.out, series_uid=args.series_uid, series_description=args.description)
    print(f"Wrote DICOM SEG {args.out}: segments " + ", ".join(f"{s.value} {s.name}" for s in labels.segments)
          + f"; references the series in {args.source}")
    return 0


def run_read(args: argparse.Namespace) -> int:
    from ..io import write_labels
    from ..io.dicom_seg import read_dicom_seg

    labels = read_dicom_seg(args.seg, args.source, series_uid=args.series_uid)
    write_labels(labels, args.out)
    print(f"Wrote {args.out}: segments " + ", ".join(f"{s.value} {s.name}" for s in labels.segments))
    return 0

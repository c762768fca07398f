"""``segtransfer cleanup``: consensus annotation cleanup.

Subcommands: ``close`` (exact multi-label closing, optionally with the minimum-size rule and the
hole fill), ``fill-holes`` (enclosed holes only, optionally with the minimum-size rule),
``agreement`` (two raters: Dice, HD95, MSD, volume difference; one case or two folders of cases)
and ``fuse`` (majority vote or STAPLE over two or more raters).  Every output is written atomically
and only after all inputs were read and checked.  Described in ``docs/cleanup.md``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from ..errors import InputError
from ..progress import print_progress

#: Label-map formats written (single files only, so that the atomic rename covers the whole output).
LABEL_OUTPUT_SUFFIXES = (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".mha")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a non-negative number, got {text!r}")
    return value


def _label_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated label values such as 1,2, got {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"must be positive label values such as 1,2, got {text!r}")
    return values


def _tie(text: str) -> str | int:
    if text == "first":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be 'first' or a label value, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"label value must be in 0..65535, got {text!r}")
    return value


def check_label_output(path: str | Path) -> Path:
    """Refuse an output path whose extension is not a label-map format (before any work is done)."""
    p = Path(path)
    if not p.name.lower().endswith(LABEL_OUTPUT_SUFFIXES):
        raise InputError(p, f"output must end with one of {', '.join(LABEL_OUTPUT_SUFFIXES)}")
    if p.is_dir():
        raise InputError(p, "output is a folder; give a file name")
    return p


def default_report_path(output: str | Path) -> Path:
    """``<output without its label extension>.report.json`` beside the output."""
    from ..cleanup.agreement import case_name

    p = Path(output)
    return p.with_name(f"{case_name(p)}.report.json")


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse unusable output paths before any work: label map, changes mask, report."""
    check_label_output(args.output)
    if args.changes:
        check_label_output(args.changes)
    report_path = Path(args.report) if args.report else default_report_path(args.output)
    if report_path.is_dir():
        raise InputError(report_path, "report path is a folder; give a file name")
    if args.max_hole_size is not None and not getattr(args, "fill_holes", True):
        raise InputError("--max-hole-size", "applies to the hole fill; add --fill-holes")


def _write_result(result, args: argparse.Namespace) -> None:
    from ..io import write_image, write_labels, write_text

    report_path = Path(args.report) if args.report else default_report_path(args.output)
    write_labels(result.labels, args.output)
    if args.changes:
        write_image(result.changes, args.changes)
    write_text(report_path, result.report.to_json() + "\n")
    for line in result.report.summary_lines():
        print(line)
    print(f"Wrote {args.output} and report {report_path}" + (f" and changed-voxel mask {args.changes}" if args.changes else ""))


def _close(args: argparse.Namespace) -> int:
    from ..cleanup import clean_labels
    from ..io import read_labels

    _check_outputs(args)
    labels = read_labels(args.input)
    result = clean_labels(labels, radius=args.radius, radius_unit=args.radius_unit, fill=args.fill_holes,
                          max_hole_size=args.max_hole_size, min_component_size=args.min_component_size,
                          size_unit=args.size_unit, where=str(args.input), progress=print_progress)
    _write_result(result, args)
    return 0


def _fill_holes(args: argparse.Namespace) -> int:
    from ..cleanup import clean_labels
    from ..io import read_labels

    _check_outputs(args)
    labels = read_labels(args.input)
    result = clean_labels(labels, radius=None, fill=True, max_hole_size=args.max_hole_size,
                          min_component_size=args.min_component_size, size_unit=args.size_unit, where=str(args.input),
                          progress=print_progress)
    _write_result(result, args)
    return 0


def format_agreement(rows) -> list[str]:
    """Text table of agreement rows (one line per case and label)."""
    lines = [f"{'case':<20} {'label':<18} {'Dice':>7} {'HD95 mm':>8} {'MSD mm':>7} {'A mL':>9} {'B mL':>9} {'B-A mL':>8} {'B-A %':>7}  status"]

    def num(v, fmt):
        return "-" if isinstance(v, float) and math.isnan(v) else format(v, fmt)

    for r in rows:
        lines.append(f"{r.case[:20]:<20} {f'{r.label} {r.name}'[:18]:<18} {num(r.dice, '7.4f')} {num(r.hd95_mm, '8.2f')} "
                     f"{num(r.msd_mm, '7.2f')} {r.volume_a_ml:9.2f} {r.volume_b_ml:9.2f} {r.volume_diff_ml:8.2f} "
                     f"{num(r.volume_diff_percent, '7.1f')}  {r.status}")
    return lines


def _agreement(args: argparse.Namespace) -> int:
    from ..cleanup.agreement import agreement_over_cases, agreement_csv, case_name, pair_cases, summarize
    from ..io import write_text

    a, b = Path(args.rater_a), Path(args.rater_b)
    for p in (a, b):
        if not p.exists():
            raise InputError(p, "file or folder not found")
    if a.is_dir() != b.is_dir():
        raise InputError(b, f"give two files (one case) or two folders (a set of cases); {a} and {b} differ")
    for out in (args.csv, args.summary):
        if out and Path(out).is_dir():
            raise InputError(out, "output is a folder; give a file name")
    pairs = pair_cases(a, b) if a.is_dir() else [(case_name(a), a, b)]
    rows = agreement_over_cases(pairs, args.labels, progress=print_progress if len(pairs) > 1 else None)
    summary = summarize(rows)
    summary.update({"rater_a": str(a), "rater_b": str(b)})
    for line in format_agreement(rows):
        print(line)
    if len(pairs) > 1:
        for value, s in summary["labels"].items():
            d, h = s["dice"], s["hd95_mm"]
            print(f"label {value} {s['name']}: {s['cases']} cases, Dice mean {d['mean']:.4f} (min {d['min']:.4f})"
                  + (f", HD95 mean {h['mean']:.2f} mm" if h["n"] else ""))
    if args.csv:
        write_text(args.csv, agreement_csv(rows))
        print(f"Wrote {args.csv}")
    if args.summary:
        write_text(args.summary, json.dumps(summary, indent=2) + "\n")
        print(f"Wrote {args.summary}")
    return 0


def _fuse(args: argparse.Namespace) -> int:
    from ..cleanup import fuse_labels
    from ..io import read_labels, write_image, write_labels, write_text

    check_label_output(args.output)
    if args.undecided:
        check_label_output(args.undecided)
    report_path = Path(args.report) if args.report else default_report_path(args.output)
    if report_path.is_dir():
        raise InputError(report_path, "report path is a folder; give a file name")
    if len(args.raters) < 2:
        raise InputError(args.raters[0], "fusion needs at least two raters' label maps")
    raters = [read_labels(p) for p in args.raters]
    result = fuse_labels(raters, method=args.method, tie=args.tie, names=[str(p) for p in args.raters])
    write_labels(result.labels, args.output)
    if args.undecided:
        write_image(result.undecided, args.undecided)
    write_text(report_path, json.dumps(result.report, indent=2) + "\n")
    r = result.report
    print(f"{r['method']} fusion of {len(r['raters'])} raters: {r['undecided_voxels']} undecided voxels (tie -> {r['tie']})")
    for value, lab in r["labels"].items():
        print(f"  {value} {lab['name']}: {lab['voxels']} voxels, {lab['ml']:.3f} mL")
    print(f"Wrote {args.output} and report {report_path}")
    return 0


def _add_size_options(p: argparse.ArgumentParser, hole_help: str) -> None:
    p.add_argument("--max-hole-size", type=_non_negative, metavar="N", help=hole_help)
    p.add_argument("--min-component-size", type=_non_negative, metavar="N",
                   help="first remove connected components (26-connectivity) of each label smaller than N; their voxels become background")
    p.add_argument("--size-unit", choices=("voxel", "ml"), default="voxel", help="unit of the sizes above (default: voxel)")


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", required=True, help="cleaned label map (.seg.nrrd keeps segment names and colours; .nii.gz, .nrrd, ...)")
    p.add_argument("--report", help="JSON report of the changes (default: OUTPUT's name with .report.json)")
    p.add_argument("--changes", metavar="MASK", help="also write a mask of the changed voxels (1 = changed), e.g. changes.nii.gz")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``segtransfer cleanup`` and its subcommands."""
    parser = subparsers.add_parser(
        "cleanup", help="annotation cleanup: multi-label closing, hole fill, inter-rater agreement, fusion",
        description="Consensus annotation cleanup of 0/1/2 (or any integer) label maps; see docs/cleanup.md.")
    sub = parser.add_subparsers(dest="cleanup_command", metavar="SUBCOMMAND")
    sub.required = True

    p = sub.add_parser(
        "close", help="close holes and gaps with an exact Euclidean ball (dilation then erosion of the union of labels)",
        description="Close the union of all labels with the exact Euclidean ball of --radius (dilation then erosion; the image "
        "border does not erode). Labelled voxels never change; each added voxel gets the label around its region, or, for a gap "
        "touching several labels, the label of the nearest labelled voxel (ties: lower label value). Writes the label map and a "
        "JSON report (voxels and mL added per label, every region filled with size and centroid).")
    p.add_argument("input", help="label map: .seg.nrrd, NIfTI, NRRD, MHA")
    _add_output_options(p)
    p.add_argument("--radius", type=_positive, default=5.0, help="ball radius (default: 5, the source study's 5 voxels)")
    p.add_argument("--radius-unit", choices=("voxel", "mm"), default="voxel",
                   help="voxel: round in voxel steps; mm: round in millimetres on anisotropic grids (default: voxel)")
    p.add_argument("--fill-holes", action="store_true", help="after closing, also fill enclosed holes of any size (see fill-holes)")
    _add_size_options(p, "with --fill-holes: fill only holes of at most N")
    p.set_defaults(func=_close)

    p = sub.add_parser(
        "fill-holes", help="fill enclosed holes only (background not connected to the image border)",
        description="Fill enclosed holes of the union of labels: background components (6-connectivity) that do not reach the "
        "image border. Holes open to the outside are kept. Filled voxels are labelled as in 'close'.")
    p.add_argument("input", help="label map: .seg.nrrd, NIfTI, NRRD, MHA")
    _add_output_options(p)
    _add_size_options(p, "fill only holes of at most N (default: every enclosed hole)")
    p.set_defaults(func=_fill_holes)

    p = sub.add_parser(
        "agreement", help="inter-rater agreement per label: Dice, HD95, MSD (mm), volume difference",
        description="Compare two raters' label maps: two files (one case) or two folders whose label files are matched by case "
        "name (file name without its extension). Per case and label: Dice, 95%% Hausdorff distance and mean surface distance in "
        "mm (MONAI, with the voxel spacing), volumes and B - A difference in mL and %% of the mean volume. Raters on different "
        "grids are an error.")
    p.add_argument("rater_a", help="rater A: label file or folder of label files")
    p.add_argument("rater_b", help="rater B: label file or folder of label files")
    p.add_argument("--csv", help="write the per-case, per-label table as CSV")
    p.add_argument("--summary", help="write the per-label summary over cases as JSON")
    p.add_argument("--labels", type=_label_list, help="label values to compare, e.g. 1,2 (default: all present)")
    p.set_defaults(func=_agreement)

    p = sub.add_parser(
        "fuse", help="consensus of two or more raters: majority vote or STAPLE",
        description="Fuse two or more raters' label maps of one case (same grid) with SimpleITK's LabelVoting (majority) or "
        "MultiLabelSTAPLE. Tied voxels take the first rater's label (--tie first) or a given label value.")
    p.add_argument("raters", nargs="+", help="label maps of the raters (list the senior reader first)")
    p.add_argument("-o", "--output", required=True, help="fused label map (.seg.nrrd keeps segment names and colours)")
    p.add_argument("--method", choices=("majority", "staple"), default="majority", help="fusion method (default: majority)")
    p.add_argument("--tie", type=_tie, default="first", help="undecided voxels: 'first' (first rater's label, default) or a label value")
    p.add_argument("--report", help="JSON report (default: OUTPUT's name with .report.json)")
    p.add_argument("--undecided", metavar="MASK", help="also write a mask of the undecided voxels")
    p.set_defaults(func=_fuse)

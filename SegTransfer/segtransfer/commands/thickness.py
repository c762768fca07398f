"""``segtransfer thickness``: LV wall thickness (compute) and the predicted-vs-truth table (compare)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``thickness compute`` and ``thickness compare``."""
    p = sub.add_parser("thickness", help="LV wall thickness by Laplace's equation and streamlines",
                       description="LV myocardial wall thickness mapped on the epicardial surface.")
    s = p.add_subparsers(dest="action", metavar="ACTION")
    s.required = True

    c = s.add_parser("compute", help="thickness of a label map or of every labelled phase of a 4D series",
                     description="Solve Laplace's equation in the myocardium (endocardium 0, epicardium 1, no flux at the "
                     "basal cut and LVOT), trace streamlines from the epicardial surface to the endocardium, and write the "
                     "surface with a thickness_mm array (VTK, LPS), optional streamlines, and statistics per phase "
                     "(CSV/JSON: mean, median, 95th percentile, max, vertices without a valid streamline).")
    c.add_argument("labels", type=Path, help="3D label map (NIfTI, NRRD, .seg.nrrd) or a 4D series (folder with series.json, or 4D file)")
    c.add_argument("--labels4d", type=Path, help="4D label file for a 4D image file given as LABELS")
    c.add_argument("--out", "-o", type=Path, required=True, help="output folder")
    c.add_argument("--method", choices=["streamline", "eulerian"], default="streamline",
                   help="streamline (default) or eulerian (Yezzi-Prince PDEs, no tracing)")
    c.add_argument("--pool", type=int, default=1, help="label value of the blood pool (default 1)")
    c.add_argument("--wall", type=int, default=2, help="label value of the myocardium (default 2)")
    c.add_argument("--streamlines", action="store_true", help="also write the streamlines as polylines")
    c.add_argument("--study-id", help="study name in the statistics (default: the input's name)")
    c.set_defaults(func=run_compute)

    k = s.add_parser("compare", help="Pearson correlation of median, p95 and max at ED and ES between two statistics tables",
                     description="Compare per-study statistics (e.g. from predicted and from ground-truth segmentations), "
                     "studies matched by name: the source study's table, as CSV and Markdown.")
    k.add_argument("predicted", type=Path, help="statistics CSV (one or many studies)")
    k.add_argument("truth", type=Path, help="statistics CSV of the reference segmentations")
    k.add_argument("--out", "-o", type=Path, required=True, help="output CSV (a .md table is written beside it)")
    k.set_defaults(func=run_compare)


def run_compute(args: argparse.Namespace) -> int:
    from ..io import read_labels
    from ..progress import print_progress
    from ..thickness import compute_thickness, thickness_for_series, write_study

    src: Path = args.labels
    study = args.study_id or src.name.split(".")[0]
    is_series = (src.is_dir() and (src / "series.json").exists()) or args.labels4d is not None
    if is_series:
        from ..io import read_series4d

        series = read_series4d(src, args.labels4d)
        results = thickness_for_series(series, args.method, args.pool, args.wall, args.streamlines, where=str(src), progress=print_progress)
    else:
        if not src.exists():
            raise InputError(src, "file not found")
        labels = read_labels(src)
        print_progress(0.0, "thickness: solving Laplace's equation")
        results = [("labels", "", compute_thickness(labels, args.method, args.pool, args.wall, args.streamlines, where=str(src)))]
        print_progress(1.0, "thickness done")
    rows = write_study(args.out, study, results)
    for r in rows:
        tag = f"phase {r['phase']}" + (f" ({r['role']})" if r["role"] else "")
        print(f"{study} {tag}: median {r['median_mm']:.2f} mm, p95 {r['p95_mm']:.2f} mm, max {r['max_mm']:.2f} mm, "
              f"{r['n_invalid']} of {r['n_vertices']} vertices without a valid streamline")
    print(f"Wrote {args.out}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from ..io import write_text
    from ..thickness import compare_statistics, comparison_markdown, read_statistics

    rows = compare_statistics(read_statistics(args.predicted), read_statistics(args.truth))
    if all(r["n"] == 0 for r in rows):
        raise InputError(args.predicted, f"no study with ED/ES rows in common with {args.truth}")
    lines = ["role,metric,n,pearson_r,p_value"] + [f"{r['role']},{r['metric']},{r['n']},{r['pearson_r']:.4f},{r['p_value']:.4g}" for r in rows]
    write_text(args.out, "\n".join(lines) + "\n")
    md = comparison_markdown(rows)
    write_text(args.out.with_suffix(".md"), md)
    print(md)
    return 0

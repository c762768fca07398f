"""``segtransfer sparse4d``: sparse ED/ES 4D training pairs from multi-phase cardiac CT.

Subcommands:

* ``export``: one study -> ``image4d.nii.gz`` + ``labels4d.nii.gz`` (zeros on unlabelled phases) +
  ``sparse4d.json`` (labelled phases, ED/ES, volume curve, EF, grid), resampled to 1 mm isotropic
  by default;
* ``curve``: the LV volume curve (mL per phase), ED/ES and ejection fraction of a study, as text,
  JSON or CSV, without exporting;
* ``manifest``: a train/validation/test dataset manifest over many pairs, split by study.

The format is described in ``docs/sparse4d.md``.  Bad input (mismatched or incomplete series, labels
on another grid, unexpected label values) prints one line and exits 2, leaving no output.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

from ..errors import InputError


def _phase_label(text: str) -> tuple[int, str]:
    index, sep, path = text.partition("=")
    if not sep or not path:
        raise argparse.ArgumentTypeError(f"expected PHASE=FILE (e.g. 8=es.seg.nrrd), got {text!r}")
    try:
        return int(index), path
    except ValueError:
        raise argparse.ArgumentTypeError(f"phase must be an integer index, got {index!r}") from None


def _spacing(values: list[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or not all(v > 0 for v in values):
        raise InputError("--spacing", f"give one or three positive spacings in mm, got {values}")
    return tuple(float(v) for v in values)


def _add_study_arguments(p: argparse.ArgumentParser) -> None:
    """Inputs shared by ``export`` and ``curve``."""
    p.add_argument("series", help="the study: series folder (series.json), 4D NIfTI/NRRD file, multi-phase DICOM folder, "
                   "or an earlier sparse4d pair folder")
    p.add_argument("--labels4d", metavar="FILE", help="4D label file (phases on the 4th axis); all-zero phases count as unlabelled")
    p.add_argument("--label", action="append", type=_phase_label, default=[], metavar="PHASE=FILE",
                   help="label map of one phase (0-based index; NIfTI, NRRD or .seg.nrrd on the phase grid); repeat per phase")
    p.add_argument("--percent-rr", nargs="+", type=float, metavar="P", help="R-R position (%%) of every phase, in order")
    p.add_argument("--phase-tag", default="auto", choices=["auto", "temporal", "percent", "trigger", "series"],
                   help="DICOM: what separates the phases (default: first of TemporalPositionIdentifier, "
                   "NominalPercentageOfCardiacPhase, TriggerTime that varies; else one series per phase)")
    pred = p.add_mutually_exclusive_group()
    pred.add_argument("--predicted-volumes", metavar="FILE", help="a model's cavity volume per phase (mL): JSON list or CSV with a volume_ml column")
    pred.add_argument("--predicted-labels", metavar="FILE", help="a model's 4D predicted label map; blood pool (1) volume per phase")
    p.add_argument("--method", default="auto", choices=["auto", "labels", "percent", "prediction"],
                   help="how to find ED/ES (auto: prediction if given, else labels if 2+ phases are labelled, else R-R percentages)")
    p.add_argument("--ed", type=int, metavar="N", help="ED phase index chosen by hand (needs --es)")
    p.add_argument("--es", type=int, metavar="N", help="ES phase index chosen by hand (needs --ed)")
    p.add_argument("--es-percent", type=float, default=40.0, metavar="P",
                   help="R-R position (%%) of ES for the phase-metadata rule (default 40)")


def _load(args: argparse.Namespace):
    from ..sparse4d import load_predicted_volumes, load_study

    if (args.ed is None) != (args.es is None):
        raise InputError("--ed/--es", "give both the ED and the ES phase index, or neither")
    series, sources = load_study(args.series, labels4d=args.labels4d, phase_labels=dict(args.label) or None,
                                 percent_rr=args.percent_rr, phase_tag=args.phase_tag)
    predicted, predicted_source = load_predicted_volumes(len(series), args.predicted_volumes, args.predicted_labels)
    if predicted_source:
        sources["predicted"] = predicted_source
    return series, sources, predicted


def _check_out(out: Path, force: bool) -> None:
    """Refuse to replace anything but an earlier sparse4d pair, and that only with ``--force``."""
    from ..sparse4d import SIDECAR

    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / SIDECAR).is_file():
            raise InputError(out, f"folder exists, is not empty and holds no {SIDECAR}; refusing to replace it")
        if not force:
            raise InputError(out, "folder holds an earlier sparse4d pair (use --force to replace it)")


def _export(args: argparse.Namespace) -> int:
    from ..progress import print_progress
    from ..sparse4d import build_sparse4d, write_sparse4d

    out = Path(args.out)
    _check_out(out, args.force)
    spacing = _spacing(args.spacing)
    series, sources, predicted = _load(args)
    pair = build_sparse4d(series, spacing_mm=spacing, interpolator=args.interpolator, image_type=args.image_type,
                          crop_margin_mm=args.crop_margin, cleanup_radius=args.cleanup_radius, predicted_volumes=predicted,
                          method=args.method, es_percent=args.es_percent, ed_index=args.ed, es_index=args.es,
                          keep_labels=args.keep_labels, study_id=args.study_id or out.name, sources=sources, where=args.series,
                          progress=print_progress)
    write_sparse4d(pair, out)
    r = pair.record
    print(f"Wrote sparse 4D pair to {out}: {r['n_phases']} phases, labelled {r['labelled_phases']}, "
          f"grid {'x'.join(map(str, r['grid']['size']))} at {'x'.join(f'{s:g}' for s in r['grid']['spacing_mm'])} mm")
    print(f"  ED phase {r['ed_index']}, ES phase {r['es_index']} ({r['ed_es_method']}: {r['ed_es_reason']})")
    if r["ejection_fraction"] is not None:
        print(f"  EDV {r['edv_ml']:.1f} mL, ESV {r['esv_ml']:.1f} mL, EF {100 * r['ejection_fraction']:.1f} % (from {r['ejection_fraction_source']})")
    if r["cleanup"]["applied"]:
        changed = sum(p["voxels_changed"] for p in r["cleanup"]["phases"].values())
        print(f"  cleanup applied to the labelled phases (radius {r['cleanup']['radius_voxels']:g} voxels, {changed} voxels changed)")
    return 0


def _curve_rows(series, summary) -> list[dict]:
    rr = series.percent_rr
    rows = []
    for i in range(len(series)):
        rows.append({
            "phase": i,
            "percent_rr": rr[i] if rr is not None else None,
            "pool_labels_ml": summary.pool_ml[i],
            "myocardium_labels_ml": summary.myocardium_ml[i],
            "pool_predicted_ml": summary.predicted_ml[i] if summary.predicted_ml is not None else None,
            "ed": i == summary.choice.ed_index,
            "es": i == summary.choice.es_index,
        })
    return rows


def _curve(args: argparse.Namespace) -> int:
    from ..io import write_text
    from ..sparse4d import summarise_phases

    series, sources, predicted = _load(args)
    s = summarise_phases(series.labels, len(series), percent_rr=series.percent_rr, predicted_volumes=predicted, method=args.method,
                         es_percent=args.es_percent, ed_index=args.ed, es_index=args.es, where=args.series)
    rows = _curve_rows(series, s)
    result = {"series": str(args.series), "ed_index": s.choice.ed_index, "es_index": s.choice.es_index,
              "ed_es_method": s.choice.method, "ed_es_reason": s.choice.reason, "edv_ml": s.edv_ml, "esv_ml": s.esv_ml,
              "ejection_fraction": s.ejection_fraction, "ejection_fraction_source": s.ef_source, "phases": rows, "sources": sources}
    if args.csv:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
        write_text(args.csv, buf.getvalue())
    if args.json:
        print(json.dumps(result, indent=2))
        return 0

    def ml(v):
        return f"{v:8.2f}" if v is not None else "       -"

    print(f"{'phase':>5} {'%R-R':>6} {'pool mL':>8} {'myo mL':>8} {'pred mL':>8}")
    for r in rows:
        mark = " ED" if r["ed"] else " ES" if r["es"] else ""
        pct = f"{r['percent_rr']:6.1f}" if r["percent_rr"] is not None else "     -"
        print(f"{r['phase']:>5} {pct} {ml(r['pool_labels_ml'])} {ml(r['myocardium_labels_ml'])} {ml(r['pool_predicted_ml'])}{mark}")
    print(f"ED phase {s.choice.ed_index}, ES phase {s.choice.es_index} ({s.choice.method}: {s.choice.reason})")
    if s.ejection_fraction is not None:
        print(f"EDV {s.edv_ml:.1f} mL, ESV {s.esv_ml:.1f} mL, EF {100 * s.ejection_fraction:.1f} % (from {s.ef_source})")
    else:
        print("EF not measurable: ED and ES are not both labelled and no predicted curve was given")
    return 0


def _manifest(args: argparse.Namespace) -> int:
    from ..sparse4d import build_manifest, write_manifest

    manifest = build_manifest(args.studies, args.out, args.split, args.seed)
    write_manifest(manifest, args.out)
    counts = ", ".join(f"{k} {len(v)}" for k, v in manifest["splits"].items())
    print(f"Wrote dataset manifest {args.out}: {len(manifest['studies'])} studies ({counts}), seed {args.seed}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``segtransfer sparse4d`` and its subcommands."""
    parser = subparsers.add_parser(
        "sparse4d", help="sparse ED/ES 4D training pairs from multi-phase cardiac CT",
        description="Turn a multi-phase cardiac CT study with labels on some phases (typically ED and ES) into a 4D image and "
        "4D label pair on a common grid, with an explicit record of the labelled phases; build dataset manifests. "
        "See docs/sparse4d.md.")
    sub = parser.add_subparsers(dest="sparse4d_command", metavar="SUBCOMMAND")
    sub.required = True

    p = sub.add_parser("export", help="export one study as image4d.nii.gz + labels4d.nii.gz + sparse4d.json",
                       description="Resample every phase onto one grid (images B-spline or linear, labels nearest), write the "
                       "4D image, the 4D labels (all zeros on unlabelled phases) and the sparse4d.json record (labelled phases, "
                       "ED/ES, LV volume curve, EF). The labelled phases are also recorded in the NIfTI headers.")
    _add_study_arguments(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output pair folder (written atomically)")
    p.add_argument("--force", action="store_true", help="replace an earlier sparse4d pair in --out")
    p.add_argument("--spacing", nargs="+", type=float, default=[1.0], metavar="MM", help="output spacing: one value (isotropic) or x y z (default 1)")
    p.add_argument("--interpolator", default="bspline", choices=["bspline", "linear"], help="image interpolator (labels: always nearest)")
    p.add_argument("--image-type", default="float32", choices=["float32", "int16"], help="voxel type of image4d (HU)")
    p.add_argument("--crop-margin", type=float, metavar="MM", help="crop to the labelled LV (pool + myocardium, all labelled phases) plus this margin")
    p.add_argument("--keep-labels", default="all", choices=["all", "ed-es"], help="keep every labelled phase, or only ED and ES")
    p.add_argument("--study-id", help="study id in the record and in dataset manifests (default: the output folder name)")
    p.add_argument("--cleanup-radius", type=float, metavar="R",
                   help="first apply the annotation cleanup to the labelled phases: multi-label closing with a ball of R voxels "
                   "(the consensus rule uses 5), on their own grid; recorded in sparse4d.json")
    p.set_defaults(func=_export)

    p = sub.add_parser("curve", help="LV volume curve (mL per phase), ED/ES and ejection fraction of a study",
                       description="Measure the blood pool and myocardium of every labelled phase (mL), read a predicted curve if "
                       "given, choose ED/ES and compute the ejection fraction. Prints a table, or JSON with --json.")
    _add_study_arguments(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--csv", metavar="FILE", help="also write the per-phase table as CSV")
    p.set_defaults(func=_curve)

    p = sub.add_parser("manifest", help="train/validation/test manifest over many pairs, split by study",
                       description="Collect sparse4d pair folders and split them by study (never by phase) into train, validation "
                       "and test, reproducibly from the seed (independent of the order the studies are listed in).")
    p.add_argument("--studies", nargs="+", required=True, metavar="DIR", help="pair folders, or folders holding pair folders")
    p.add_argument("--out", required=True, metavar="FILE", help="manifest JSON to write (paths inside are relative to its folder)")
    p.add_argument("--split", nargs=3, type=float, default=[0.6, 0.2, 0.2], metavar=("TRAIN", "VAL", "TEST"),
                   help="fractions of studies (default 0.6 0.2 0.2)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the split (default 0)")
    p.set_defaults(func=_manifest)

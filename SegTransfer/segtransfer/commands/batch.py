"""``segtransfer batch``: run the chosen capabilities over a folder of studies, with one CSV and a review report."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The batch arguments (shared with ``scripts/batch.py``)."""
    from ..batch import CAPABILITIES

    every = sorted({c for caps in CAPABILITIES.values() for c in caps})
    p.add_argument("studies", type=Path, nargs="?", help="folder of studies: head CT files or DICOM folders, cardiac series folders "
                   "(series.json), 4D image files, multi-phase DICOM folders")
    p.add_argument("--manifest", type=Path, help="CSV listing the studies instead (study,path,kind,capabilities; paths relative to it)")
    p.add_argument("--out", "-o", type=Path, required=True, help="batch output folder (results.csv, batch.json, report.html, studies/)")
    p.add_argument("--capabilities", nargs="+", choices=every, metavar="CAP",
                   help=f"run only these ({', '.join(every)}; default: every capability of each study's kind)")
    p.add_argument("--dicom-seg", action="store_true",
                   help="also write the hemorrhage mask of CTs read from a DICOM series as DICOM SEG referencing that series")
    p.add_argument("--model", type=Path, help="hemorrhage model package (default: the shipped demonstration model)")
    p.add_argument("--sha256", help="expected package ID of --model")
    p.add_argument("--cardiac-model", type=Path, help="cardiac 4D model package (segtransfer cardiac train): adds the segment "
                   "capability, every phase segmented; studies without ED/ES labels are measured on its segmentation")
    p.add_argument("--cardiac-sha256", help="expected package ID of --cardiac-model")
    p.add_argument("--device", default="auto", help="for the cardiac model: auto (GPU when available), cpu or cuda")
    p.add_argument("--thickness-method", choices=("streamline", "eulerian"), default="streamline")
    p.add_argument("--force", action="store_true", help="redo studies that an earlier run finished")
    p.add_argument("--no-report", action="store_true", help="do not write report.html")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``batch`` subcommand."""
    p = sub.add_parser("batch", help="run capabilities over a folder of studies: one results CSV and a review report",
                       description="Run the chosen capabilities on every study of a folder (or manifest), with overall progress. "
                       "A study that fails is recorded with its reason and the others go on; studies finished by an earlier "
                       "run are skipped. Writes results.csv, batch.json, studies/<id>/ and report.html into --out. "
                       "Exit code 0 when every study succeeded, 1 when some failed, 2 for bad arguments.")
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..batch import BatchOptions, discover, read_manifest, run_batch
    from ..batch.runner import RESULTS_FILE, check_batch_folder
    from ..errors import InputError

    if (args.studies is None) == (args.manifest is None):
        raise InputError("batch", "give a folder of studies or --manifest, not both or neither")
    if args.capabilities and "segment" in args.capabilities and args.cardiac_model is None:
        raise InputError("--capabilities", "segment needs --cardiac-model (a cardiac model package)")
    check_batch_folder(args.out)  # before the work
    studies = read_manifest(args.manifest) if args.manifest else discover(args.studies)
    studies = [s for s in studies if s.path.resolve() != args.out.resolve()]  # an output folder inside the studies folder
    if not studies:
        raise InputError(args.studies or args.manifest, "no study found")
    options = BatchOptions(hemorrhage_model=args.model, hemorrhage_sha256=args.sha256, dicom_seg=args.dicom_seg,
                           thickness_method=args.thickness_method, cardiac_model=args.cardiac_model,
                           cardiac_sha256=args.cardiac_sha256, device=args.device)
    if args.cardiac_model is not None:
        options.cardiac_network()  # verify the package before the work: a bad package is one error, not one per study
    records = run_batch(studies, args.out, tuple(args.capabilities) if args.capabilities else None, options,
                        force=args.force, report=not args.no_report)
    counts = {s: sum(r["status"] == s for r in records) for s in ("ok", "skipped", "failed")}
    print(f"\n{len(records)} studies: {counts['ok']} done, {counts['skipped']} skipped (done earlier), {counts['failed']} failed")
    for r in records:
        if r["status"] == "failed":
            print(f"  failed: {r['study']}: {r['reason']}")
    print(f"Results: {(args.out / RESULTS_FILE).resolve()}")
    if not args.no_report:
        print(f"Review report: {(args.out / 'report.html').resolve()}")
    return 1 if counts["failed"] else 0

"""``segtransfer multisite``: train across sites by exchanging weights only (NVIDIA FLARE), and evaluate.

* ``simulate``: run cyclic weight transfer or federated averaging with the FLARE simulator, one
  simulated site per ``--site NAME=FOLDER`` (each reads only its folder); ``--resume`` continues an
  interrupted run from its last good global model.
* ``export-job``: write the FLARE job folder for a real deployment (sites run the installed package).
* ``evaluate``: every model on every site's test set; CSV and the Markdown table of the study, from the
  sites' folders here, from FLARE's cross-site evaluation (``--flare``: each site evaluates its own
  folder) or from the per-site metrics files the sites sent (``--merge``).
* ``export-eval-job``: FLARE's cross-site evaluation job for a real deployment.
* ``evaluate-site``: at one site, the models on the site's own test set; writes the site's metrics file
  (per-scan numbers only) for ``evaluate --merge``.
* ``phantoms``: phantom site folders (training and held-out sites) with known truth.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import InputError


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    """``NAME=VALUE`` arguments as an ordered dict; refuses malformed and repeated names."""
    out: dict[str, str] = {}
    for item in values or []:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise InputError(what, f"expected NAME=VALUE, got {item!r}")
        if name in out:
            raise InputError(what, f"{name} given twice")
        out[name] = value
    return out


def _options(values: list[str] | None) -> dict:
    """``--option KEY=VALUE`` as numbers where they parse (the task checks names and types)."""
    out = {}
    for key, value in _pairs(values, "--option").items():
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _job_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workflow", choices=("cyclic", "fedavg"), required=True,
                   help="cyclic: cyclic weight transfer (the model visits one site after the other); fedavg: federated averaging")
    p.add_argument("--rounds", "--max-rounds", type=int, default=100,
                   help="most rounds (a cyclic round visits every site once; default 100); the run stops earlier on the convergence rule")
    p.add_argument("--patience", type=int, default=10,
                   help="convergence rule: stop when the sample-weighted validation loss of the sites improved by less than --min-delta "
                   "over this many rounds (default 10)")
    p.add_argument("--min-delta", type=float, default=1e-4, help="convergence rule: smallest improvement (default 1e-4)")
    p.add_argument("--local-epochs", type=int, default=1, help="local epochs per site per round (default 1: the study's cyclic transfer)")
    p.add_argument("--task", default="hemorrhage", help="task kind (default hemorrhage)")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="training option of the task, e.g. lr=1e-4, patch_size=128, positives=1000 (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first global model's random initialisation")
    p.add_argument("--initial-model", type=Path, help="start from this model package (e.g. a partner's model)")
    p.add_argument("--sha256", help="expected package ID of --initial-model")


def _model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--single", action="append", metavar="NAME=PACKAGE", help="a single-site model (repeatable)")
    p.add_argument("--multi", action="append", metavar="NAME=PACKAGE", help="a multi-site model (repeatable)")
    p.add_argument("--local", action="append", metavar="NAME=PACKAGE", help="another model, e.g. a site's final local model")
    p.add_argument("--run", action="append", metavar="NAME=RUN_FOLDER",
                   help="a 'multisite simulate' run: its global model (multi-site) and each site's final local model")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``multisite simulate|export-job|evaluate|phantoms``."""
    p = sub.add_parser("multisite", help="multi-site training by exchanging weights only (NVIDIA FLARE) and per-site evaluation",
                       description="Cyclic weight transfer and federated averaging on NVIDIA FLARE (pip install segtransfer[multisite]); "
                       "only model weights and sample counts leave a site.")
    s = p.add_subparsers(dest="action", metavar="ACTION")
    s.required = True
    g = s.add_parser("simulate", help="run a multi-site job with the FLARE simulator on this machine",
                     description="One simulated FLARE site per --site; each reads only its own folder (train/ for training). "
                     "Writes run.json, global_model/ (the last good global model), sites/<site>/ (local model, status, outgoing "
                     "audit, training log) and flare/ (FLARE workspace and logs) into --out.")
    g.add_argument("--site", action="append", required=True, metavar="NAME=FOLDER", help="a site and its data folder (at least two)")
    g.add_argument("--out", "-o", type=Path, required=True, help="run folder (new, or the interrupted run's with --resume)")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run from its last good global model")
    _job_arguments(g)
    g.set_defaults(func=run_simulate)
    e = s.add_parser("export-job", help="write the FLARE job folder for a real deployment",
                     description="The job holds configuration only (no code): server and sites run the installed segtransfer "
                     "package. Sites set SEGTRANSFER_SITE_DATA (and optionally SEGTRANSFER_SITE_OUTPUT) and add the classes of "
                     "site_resources.json to their component allow list. Submit with 'nvflare job submit -j <folder>'.")
    e.add_argument("--sites", type=int, required=True, help="number of sites the server waits for")
    e.add_argument("--out", "-o", type=Path, required=True, help="folder to write (new)")
    _job_arguments(e)
    e.set_defaults(func=run_export)
    v = s.add_parser("evaluate", help="every model on every site's test set: Dice, Pearson of volumes, Wilcoxon; CSV + Markdown",
                     description="Writes per_scan.csv, per_site.csv, wilcoxon.csv, table.md and evaluation.json into --out. The "
                     "per-scan results come from the --site folders on this machine, from FLARE's cross-site evaluation (--flare: each "
                     "simulated site evaluates the models on its own folder and returns only per-scan metrics), or from the sites' "
                     "metrics files (--merge, written at each site by 'multisite evaluate-site').")
    v.add_argument("--site", action="append", metavar="NAME=FOLDER", help="a site and its folder (test/ holds its test cases)")
    v.add_argument("--held-out", action="append", default=[], metavar="NAME", help="a site that never trained (repeatable)")
    _model_arguments(v)
    v.add_argument("--flare", type=Path, metavar="RUN_FOLDER",
                   help="run FLARE's cross-site model evaluation in the simulator (workspace and the sites' metrics files in this new folder)")
    v.add_argument("--merge", action="append", type=Path, metavar="FILE_OR_FOLDER",
                   help="a site's metrics file, or a folder of them (e.g. RUN_FOLDER/cross_site); repeatable; replaces --site and the models")
    v.add_argument("--out", "-o", type=Path, required=True, help="output folder (new)")
    v.set_defaults(func=run_evaluate)
    x = s.add_parser("export-eval-job", help="write FLARE's cross-site evaluation job for a real deployment",
                     description="Server: FLARE's CrossSiteModelEval sends each model (packages on the server machine, verified and "
                     "pinned by package ID) to every site; each site evaluates it on the test/ folder of its SEGTRANSFER_SITE_DATA and "
                     "returns per-scan Dice and volumes only. The server writes cross_site/<site>.json in its run folder; build the table "
                     "with 'evaluate --merge'. Submit with 'nvflare job submit -j <folder>'.")
    x.add_argument("--sites", type=int, required=True, help="number of sites the server waits for")
    _model_arguments(x)
    x.add_argument("--out", "-o", type=Path, required=True, help="folder to write (new)")
    x.set_defaults(func=run_export_eval)
    w = s.add_parser("evaluate-site", help="at one site: the models on the site's own test set; writes the site's metrics file",
                     description="Per scan and model: Dice and predicted and manual hemorrhage volume (mL); scans are named by position "
                     "(scan_001, ...), no image data or case names. Send the file to whoever builds the table with 'evaluate --merge'.")
    w.add_argument("--site", required=True, metavar="NAME=FOLDER", help="this site and its folder (test/ holds its test cases)")
    _model_arguments(w)
    w.add_argument("--out", "-o", type=Path, required=True, help="metrics file to write (JSON, new)")
    w.set_defaults(func=run_evaluate_site)
    h = s.add_parser("phantoms", help="write phantom site folders (training and held-out sites) with known truth",
                     description="Training sites get train/ and test/, held-out sites test/ only; site profiles differ in noise, "
                     "contrast, slice thickness and lesion size (see 'segtransfer phantom sites'; site_d is defined for multi-site work).")
    h.add_argument("--out", "-o", type=Path, required=True, help="folder for the site folders")
    h.add_argument("--train-site", action="append", default=None, help="training site profile (default site_a and site_b)")
    h.add_argument("--held-out", action="append", default=None, help="held-out site profile (default site_c and site_d)")
    h.add_argument("--train", type=int, default=6, help="training cases per training site (default 6)")
    h.add_argument("--test", type=int, default=6, help="test cases per site (default 6)")
    h.add_argument("--spacing", type=float, nargs=3, metavar=("X", "Y", "Z"), help="voxel spacing in mm (default: each site's own)")
    h.add_argument("--in-plane", type=float, metavar="MM", help="in-plane spacing in mm, keeping each site's slice spacing")
    h.add_argument("--seed", type=int, default=0)
    h.set_defaults(func=run_phantoms)


def _spec(args: argparse.Namespace):
    from ..multisite.flare_job import JobSpec

    return JobSpec(workflow=args.workflow, rounds=args.rounds, local_epochs=args.local_epochs, task=args.task,
                   patience=args.patience, min_delta=args.min_delta,
                   options=_options(args.option), seed=args.seed,
                   initial_package=str(args.initial_model.resolve()) if args.initial_model else None, initial_sha256=args.sha256).check()


def run_simulate(args: argparse.Namespace) -> int:
    from ..multisite.flare_job import simulate

    sites = _pairs(args.site, "--site")
    if args.initial_model:
        from ..models import load_package

        load_package(args.initial_model, expected_sha256=args.sha256)  # verified before any site starts
    summary = simulate(_spec(args), sites, args.out, resume=args.resume)
    print(f"{args.workflow}: stopped after {summary['completed_rounds']} of at most {summary['rounds_requested']} rounds on {', '.join(sites)} "
          f"({summary['stop_reason']}); best global model (round {summary['best_round'] + 1}) {summary['global_model']['path']} "
          f"(sha256 {summary['global_model']['sha256']})")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from ..multisite.flare_job import export_job

    folder = export_job(_spec(args), args.sites, args.out)
    print(f"Wrote FLARE job {folder}; sites add {args.out / 'site_resources.json'} to their component allow list")
    return 0


def _models(args: argparse.Namespace) -> list:
    """The models of --single, --multi, --local and --run, in that order."""
    from ..multisite.evaluation import ModelEntry
    from ..multisite.flare_job import RUN_FILE

    models = [ModelEntry(n, Path(p), "single-site") for n, p in _pairs(args.single, "--single").items()]
    models += [ModelEntry(n, Path(p), "multi-site") for n, p in _pairs(args.multi, "--multi").items()]
    models += [ModelEntry(n, Path(p), "local") for n, p in _pairs(args.local, "--local").items()]
    for name, folder in _pairs(args.run, "--run").items():
        run = Path(folder)
        try:
            summary = json.loads((run / RUN_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise InputError(run, f"not a 'multisite simulate' run folder (no readable {RUN_FILE})") from None
        if not summary.get("global_model"):
            raise InputError(run, "run has no global model")
        models.append(ModelEntry(name, Path(summary["global_model"]["path"]), "multi-site", summary["global_model"]["sha256"]))
        for site in summary["sites"]:
            local = run / "sites" / site / "local_model"
            if local.is_dir():
                models.append(ModelEntry(f"{name} local {site}", local, "local"))
    return models


def _metrics_files(paths: list[Path]) -> list[Path]:
    files = []
    for p in paths:
        if p.is_dir():
            found = sorted(p.glob("*.json"))
            if not found:
                raise InputError(p, "no site metrics files (*.json) in the folder")
            files += found
        else:
            files.append(p)
    return files


def run_evaluate(args: argparse.Namespace) -> int:
    from ..multisite.evaluation import evaluate, merge_site_metrics, write_evaluation

    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise InputError(args.out, "output folder exists and is not empty")
    if args.merge:
        if args.site or args.flare or args.single or args.multi or args.local or args.run:
            raise InputError("--merge", "takes the sites and models from the metrics files: give no --site, --flare or models")
        ev = merge_site_metrics(_metrics_files(args.merge), args.held_out)
    else:
        if not args.site:
            raise InputError("--site", "give the sites (--site NAME=FOLDER), or --merge the sites' metrics files")
        sites, models = _pairs(args.site, "--site"), _models(args)
        if args.flare:
            from ..multisite.flare_eval import cross_site_evaluate

            unknown = [s for s in args.held_out if s not in sites]
            if unknown:  # checked before the sites start
                raise InputError("held-out sites", f"{', '.join(unknown)} not among the sites ({', '.join(sites)})")
            ev = merge_site_metrics(cross_site_evaluate(models, sites, args.flare), args.held_out)
        else:
            ev = evaluate(models, sites, args.held_out)
    write_evaluation(ev, args.out)
    print(f"Wrote {args.out / 'table.md'} ({len(ev.models)} models x {len(ev.sites)} sites)")
    return 0


def run_export_eval(args: argparse.Namespace) -> int:
    from ..multisite.flare_eval import export_eval_job

    models = _models(args)
    folder = export_eval_job(models, args.sites, args.out)
    print(f"Wrote FLARE job {folder} ({len(models)} models); sites add {args.out / 'site_resources.json'} to their component allow list")
    return 0


def run_evaluate_site(args: argparse.Namespace) -> int:
    from ..io import write_text
    from ..multisite.evaluation import evaluate_site

    [(site, folder)] = _pairs([args.site], "--site").items()
    if args.out.exists():
        raise InputError(args.out, "exists; choose a new file")
    metrics = evaluate_site(_models(args), site, folder)
    write_text(args.out, json.dumps(metrics, indent=2) + "\n")
    print(f"Wrote {args.out} ({len(metrics['models'])} models on {site}'s {len(metrics['per_scan']) // max(len(metrics['models']), 1)} test scans)")
    return 0


def run_phantoms(args: argparse.Namespace) -> int:
    from ..multisite.phantom_sites import write_sites

    training = args.train_site or ["site_a", "site_b"]
    held_out = args.held_out or ["site_c", "site_d"]
    if args.out.exists() and any(args.out.iterdir()):
        raise InputError(args.out, "output folder exists and is not empty")
    folders = write_sites(args.out, training, held_out, train=args.train, test=args.test,
                          spacing=tuple(args.spacing) if args.spacing else None, in_plane_mm=args.in_plane, seed=args.seed)
    print("Wrote " + ", ".join(f"{n} ({p})" for n, p in folders.items()))
    return 0

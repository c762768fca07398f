"""FLARE's cross-site model evaluation for the per-site table: every model on every site's test set,
each site evaluating on its own folder, so that no test scan leaves a site.

Server (:func:`build_eval_job`): FLARE's ``CrossSiteModelEval`` controller sends each model that
:class:`PackageLocator` provides (verified model packages on the server: the single-site models, the
multi-site global models, the sites' final local models) to every site as a ``validate`` task;
:class:`SiteMetricsCollector` writes what comes back into ``cross_site/<site>.json``, the site metrics
files of :mod:`segtransfer.multisite.evaluation` (``segtransfer multisite evaluate --merge`` builds the
table from them).  Sites: :class:`SiteEvaluator` runs the inference of ``segtransfer hemorrhage
segment`` on the site's ``test/`` scans and returns, per scan, Dice and predicted and manual volume
(mL), scans named by position only; ``OutgoingAudit`` records each result that leaves the site.

Output folder of :func:`cross_site_evaluate`::

    cross_site/<site>.json   each site's per-scan metrics (what the site returned), one file per site
    sites/<site>/            outgoing.jsonl: what left the site, one line per model evaluated
    flare/<job>/             the FLARE simulator workspace (logs)
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from nvflare.apis.dxo import DXO, DataKind, from_shareable
from nvflare.apis.executor import Executor
from nvflare.apis.fl_component import FLComponent
from nvflare.apis.fl_constant import ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable, make_reply
from nvflare.apis.signal import Signal
from nvflare.app_common.abstract.model_locator import ModelLocator
from nvflare.app_common.app_constant import AppConstants
from nvflare.app_common.app_event_type import AppEventType

from ..errors import InputError
from ..io import write_text
from ..progress import ProgressCallback, print_progress
from .evaluation import ModelEntry, SiteScans, check_models, pseudonymous, site_metrics
from .flare_site import DATA_ENV, run_output_dir, site_output_dir

VALIDATE_TASK = AppConstants.TASK_VALIDATION
RESULTS_DIR = "cross_site"
#: FLARE's CrossSiteModelEval names the models of the server's locator "SRV_<name>".
_SERVER_PREFIX = "SRV_"
EVAL_CLASSES = ("segtransfer.multisite.flare_eval.PackageLocator", "segtransfer.multisite.flare_eval.SiteMetricsCollector",
                "segtransfer.multisite.flare_eval.SiteEvaluator", "segtransfer.multisite.flare_site.OutgoingAudit")


def _entries(models: dict) -> list[ModelEntry]:
    return [ModelEntry(name, Path(m["path"]), m["role"], m.get("sha256")) for name, m in models.items()]


class PackageLocator(ModelLocator):
    """The models to evaluate: ``models`` maps a table name to ``{"path", "sha256", "role"}`` (packages on
    the server, verified against their checksums and package ID before they are sent)."""

    def __init__(self, models: dict):
        super().__init__()
        self.models = dict(models)

    def get_model_names(self, fl_ctx: FLContext) -> list[str]:
        return list(self.models)

    def locate_model(self, model_name, fl_ctx: FLContext) -> DXO:
        from ..models import load_package
        from .weights import to_numpy

        entry = self.models[model_name]
        package = load_package(entry["path"], expected_sha256=entry.get("sha256"))
        # the package description travels with the weights: the site builds the network and its inference from it
        return DXO(data_kind=DataKind.WEIGHTS, data=to_numpy(package.state_dict), meta={"description": json.dumps(package.description)})


class SiteMetricsCollector(FLComponent):
    """Writes each site's validation results into ``<output_dir>/cross_site/<site>.json`` (atomic, after
    every result) in the site metrics format; ``models``: as for :class:`PackageLocator`."""

    def __init__(self, models: dict, output_dir: str | None = None):
        super().__init__()
        self.models = dict(models)
        self.output_dir = output_dir
        self._rows: dict[str, list[dict]] = {}

    def handle_event(self, event_type: str, fl_ctx: FLContext):
        if event_type != AppEventType.VALIDATION_RESULT_RECEIVED:
            return
        owner = str(fl_ctx.get_prop(AppConstants.MODEL_OWNER) or "")
        site = fl_ctx.get_prop(AppConstants.DATA_CLIENT)
        site = getattr(site, "name", site)
        result: Shareable = fl_ctx.get_prop(AppConstants.VALIDATION_RESULT)
        model = owner[len(_SERVER_PREFIX):] if owner.startswith(_SERVER_PREFIX) else owner
        if model not in self.models or result is None or result.get_return_code(ReturnCode.OK) != ReturnCode.OK:
            self.log_error(fl_ctx, f"no validation result of model {model!r} from site {site}")
            return
        rows = from_shareable(result).data["per_scan"]
        self._rows.setdefault(site, []).extend({"model": model, "case": r["scan"], **{k: r[k] for k in ("dice", "predicted_ml", "manual_ml")}}
                                               for r in rows)
        out = run_output_dir(fl_ctx, self.output_dir) / RESULTS_DIR
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / f"{site}.json", json.dumps(site_metrics(site, _entries(self.models), self._rows[site]), indent=2) + "\n")


class SiteEvaluator(Executor):
    """Executor of FLARE's ``validate`` task: the received model on this site's test scans (``test/`` of
    ``data_dir``, else of ``$SEGTRANSFER_SITE_DATA``); returns only per-scan metrics (Dice, predicted and
    manual volume in mL; scans named by position)."""

    def __init__(self, data_dir: str | None = None, output_dir: str | None = None):
        super().__init__()
        self.data_dir = data_dir
        self.output_dir = output_dir
        self._scans: SiteScans | None = None

    def execute(self, task_name: str, shareable: Shareable, fl_ctx: FLContext, abort_signal: Signal) -> Shareable:
        from .weights import network_from_weights

        if task_name != VALIDATE_TASK:
            return make_reply(ReturnCode.TASK_UNKNOWN)
        site = fl_ctx.get_identity_name()
        model = shareable.get_header(AppConstants.MODEL_OWNER)
        try:
            folder = self.data_dir or os.environ.get(DATA_ENV)
            if not folder:
                raise InputError(site, f"no site data folder: set {DATA_ENV} in the site's environment")
            if self._scans is None:
                self._scans = SiteScans(folder)
            dxo = from_shareable(shareable)
            if dxo.data_kind != DataKind.WEIGHTS:
                raise InputError(f"model {model}", f"expected weights, got {dxo.data_kind}")
            description = json.loads(dxo.get_meta_prop("description"))
            network = network_from_weights(description, dxo.data, f"model {model} received at {site}").eval()
            rows = self._scans.evaluate([(str(model), network, description)], progress=lambda f, m: self.log_info(fl_ctx, m))
        except Exception as exc:  # reported to the server as an error code; the site's log has the reason
            self.log_error(fl_ctx, f"evaluating model {model} at {site} failed: {exc}")
            site_output_dir(fl_ctx, self.output_dir)  # the audit writes there
            return make_reply(ReturnCode.EXECUTION_EXCEPTION)
        per_scan = [{k: v for k, v in r.items() if k != "model"} for r in pseudonymous(rows)]
        return DXO(data_kind=DataKind.METRICS, data={"per_scan": per_scan}).to_shareable()


def build_eval_job(models: list[ModelEntry], sites: dict[str, tuple[str | None, str | None]] | None, server_output: str | None = None,
                   n_sites: int | None = None):
    """The FLARE cross-site evaluation job: ``models`` on every site (``sites``: name -> (data folder,
    output folder) for a simulation; ``None`` for a deployable job of ``n_sites`` sites)."""
    from nvflare.app_common.workflows.cross_site_model_eval import CrossSiteModelEval
    from nvflare.job_config.api import FedJob
    from nvflare.job_config.defs import FilterType

    from .flare_job import check_site_name
    from .flare_site import OutgoingAudit

    check_models(models)
    count = len(sites) if sites is not None else int(n_sites or 0)
    if count < 1:
        raise InputError("sites", "cross-site evaluation needs at least one site")
    table = {m.name: {"path": str(Path(m.path).resolve()), "sha256": m.sha256, "role": m.role} for m in models}
    job = FedJob(name="segtransfer-hemorrhage-cross-site-eval", min_clients=count)
    job.set_app_packages(["segtransfer"])
    job.to_server(PackageLocator(models=table), id="model_locator")
    job.to_server(SiteMetricsCollector(models=table, output_dir=server_output), id="metrics_collector")
    job.to_server(CrossSiteModelEval(model_locator_id="model_locator", submit_model_task_name="", validation_timeout=6000))
    if sites is None:
        job.to_clients(SiteEvaluator(), tasks=[VALIDATE_TASK])
        job.to_clients(OutgoingAudit(), filter_type=FilterType.TASK_RESULT, tasks=[VALIDATE_TASK])
    else:
        for name, (data_dir, output_dir) in sites.items():
            job.to(SiteEvaluator(data_dir=data_dir, output_dir=output_dir), check_site_name(name), tasks=[VALIDATE_TASK])
            job.to(OutgoingAudit(output_dir=output_dir), name, filter_type=FilterType.TASK_RESULT, tasks=[VALIDATE_TASK])
    return job


def export_eval_job(models: list[ModelEntry], n_sites: int, out: str | os.PathLike) -> Path:
    """Write the deployable cross-site evaluation job (``models``: packages on the server machine, verified
    now and pinned by their package IDs) for ``n_sites`` sites into the new folder ``out``; each site takes its
    test folder from ``SEGTRANSFER_SITE_DATA``.  Returns the job folder."""
    from ..models import load_package
    from .flare_job import write_job_folder

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(out, "output folder exists and is not empty")
    models = [ModelEntry(m.name, Path(m.path), m.role, load_package(m.path, expected_sha256=m.sha256).sha256) for m in models]
    return write_job_folder(build_eval_job(models, None, n_sites=n_sites), out)


def cross_site_evaluate(models: list[ModelEntry], sites: dict[str, str | os.PathLike], out: str | os.PathLike,
                        progress: ProgressCallback | None = None) -> list[Path]:
    """Run FLARE's cross-site evaluation in the simulator (one simulated site per entry of ``sites``, each
    reading only its own folder) into ``out`` (new); returns the site metrics files, in the order of
    ``sites``.  ``SegTransferError`` when a site returned no results."""
    from nvflare.recipe import SimEnv

    from ..errors import SegTransferError
    from ..models import load_package
    from .flare_job import _allow_components, _recipe, check_site_name, site_folders

    progress = progress or print_progress
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(out, "output folder exists and is not empty")
    names = [check_site_name(n) for n in sites]
    folders = site_folders(sites)
    # verified here before any site starts; the IDs then pin what the server sends
    models = [ModelEntry(m.name, Path(m.path), m.role, load_package(m.path, expected_sha256=m.sha256).sha256) for m in models]
    out.mkdir(parents=True)
    job = build_eval_job(models, {n: (str(folders[n]), str((out / "sites" / n).resolve())) for n in names}, server_output=str(out.resolve()))
    flare_root = (out / "flare").resolve()
    _allow_components(flare_root / job.name)
    progress(0.0, f"cross-site evaluation: {len(models)} models on {len(names)} sites (FLARE)")
    error = None
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Potential secret value")
            _recipe(job).execute(SimEnv(clients=names, num_threads=len(names), workspace_root=str(flare_root)))
    except RuntimeError as exc:
        error = str(exc)
    files = [out / RESULTS_DIR / f"{n}.json" for n in names]
    missing = [n for n, f in zip(names, files) if not f.exists()]
    if not missing:
        expected = {m.name for m in models}
        missing = [n for n, f in zip(names, files) if {r["model"] for r in json.loads(f.read_text(encoding="utf-8"))["per_scan"]} != expected]
    if missing:
        raise SegTransferError(f"{out}: cross-site evaluation incomplete: no results from {', '.join(missing)}"
                               + (f" ({error})" if error else "") + f"; see the site logs under {flare_root}")
    progress(1.0, f"cross-site evaluation: results of {len(names)} sites in {out / RESULTS_DIR}")
    return files

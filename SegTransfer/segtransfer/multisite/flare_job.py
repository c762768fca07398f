"""The two multi-site workflows as NVIDIA FLARE jobs: build, run in the FLARE simulator, export.

* ``cyclic`` (cyclic weight transfer): FLARE's ``CyclicController`` (extended by
  :class:`~segtransfer.multisite.flare_server.ConvergingCyclic`) relays the model from site to site;
  one round visits every site once and each visit trains ``local_epochs`` (the source study: one).
* ``fedavg`` (federated averaging): FLARE's ``FedAvg`` controller (extended by
  :class:`~segtransfer.multisite.flare_server.ConvergingFedAvg`) sends the global model to every site,
  each trains ``local_epochs`` and returns its weights with its sample count, and the server (which
  holds no data) averages them weighted by sample count into the next global model.

Both stop on the source study's convergence rule (:mod:`segtransfer.multisite.convergence`: the
sample-weighted validation loss the sites report improves by less than ``min_delta`` over ``patience``
rounds) or after ``rounds`` rounds, and keep the best round's global model.

Server and sites run only components of the installed packages (``nvflare``, ``segtransfer``): the job
holds configuration, no code (``custom/`` stays empty), so a site whose policy refuses shipped code
(no "bring your own code" right) and allows the three classes of :data:`ALLOWED_CLASSES` runs it.

Output folder of :func:`simulate`::

    run.json                  workflow, sites, rounds requested and completed, why it stopped, failures, model IDs
    global_model/             the best global model (lowest weighted validation loss; model package)
    last_model/               the last good global model (a resumed run continues from it)
    global_model.json         rounds, package IDs, the convergence rule's history, best round and stop reason
    sites/<site>/             each site's own output: local_model/, status.json, outgoing.jsonl,
                              training_log.csv
    flare/<job>/              the FLARE simulator workspace (server and site logs)
"""

from __future__ import annotations

import json
import os
import re
import threading
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import InputError, SegTransferError
from ..io import write_text
from ..progress import ProgressCallback, print_progress

WORKFLOWS = ("cyclic", "fedavg")
RUN_FILE = "run.json"
#: Component classes the sites and the server must allow in their ``class_allow_list`` for these jobs.
ALLOWED_CLASSES = ("segtransfer.multisite.flare_site.SiteTrainer", "segtransfer.multisite.flare_site.OutgoingAudit",
                   "segtransfer.multisite.flare_server.GlobalModelPersistor", "segtransfer.multisite.flare_server.ConvergingCyclic",
                   "segtransfer.multisite.flare_server.ConvergingFedAvg")
_SITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


class RunIncomplete(SegTransferError):
    """A multi-site run stopped before its last round (a site failed); the last good global model is kept."""


@dataclass
class JobSpec:
    """What a multi-site job trains and how.

    ``workflow``: ``"cyclic"`` or ``"fedavg"``; ``rounds``: the most rounds to run (a cyclic round visits
    every site once); ``patience`` and ``min_delta``: the convergence rule (stop when the weighted validation
    loss improved by less than ``min_delta`` over ``patience`` rounds); ``local_epochs``: epochs per site per
    round; ``task``: task kind; ``options``: its training options; ``seed``: initialisation seed of the first
    global model; ``initial_package`` / ``initial_sha256``: start from this package instead; ``first_round``
    and ``history``: rounds already done and their rule records (resume).
    """

    workflow: str
    rounds: int
    local_epochs: int = 1
    task: str = "hemorrhage"
    options: dict = field(default_factory=dict)
    seed: int = 0
    initial_package: str | None = None
    initial_sha256: str | None = None
    first_round: int = 0
    patience: int = 10
    min_delta: float = 1e-4
    history: list = field(default_factory=list)

    def check(self) -> "JobSpec":
        from .task import check_options, get_task_kind

        if self.workflow not in WORKFLOWS:
            raise InputError("workflow", f"unknown workflow {self.workflow!r} (known: {', '.join(WORKFLOWS)})")
        if int(self.rounds) < 1 or int(self.local_epochs) < 1:
            raise InputError("rounds", f"rounds and local epochs must be >= 1, got {self.rounds} and {self.local_epochs}")
        if int(self.patience) < 1 or not float(self.min_delta) >= 0:
            raise InputError("convergence rule", f"patience must be >= 1 and min delta >= 0, got {self.patience} and {self.min_delta}")
        check_options(get_task_kind(self.task), self.options)
        return self


def require_nvflare() -> None:
    """``SegTransferError`` with the install hint when the optional ``nvflare`` extra is missing."""
    try:
        import nvflare  # noqa: F401
    except ImportError:
        raise SegTransferError("nvflare: not installed; multi-site jobs need the extra: pip install 'segtransfer[multisite]'") from None


def check_site_name(name: str) -> str:
    """A FLARE client name: letters, digits, ``_`` and ``-``, starting with a letter or digit."""
    if not _SITE_NAME.match(name):
        raise InputError("site", f"site name {name!r} must be letters, digits, '_' or '-' (at most 63)")
    return name


def build_job(spec: JobSpec, sites: dict[str, tuple[str | None, str | None]] | None, server_output: str | None = None, n_sites: int | None = None):
    """The FLARE job (``nvflare.job_config.api.FedJob``) for ``spec``.

    ``sites``: site name -> (data folder, output folder) for a simulation; ``None`` for a deployable job
    whose sites take their folders from their own environment (``n_sites`` then gives the number of
    sites the server waits for).  ``server_output``: the server's output folder (default: its run folder).
    """
    require_nvflare()
    from nvflare.job_config.defs import FilterType
    from nvflare.app_common.shareablegenerators.full_model_shareable_generator import FullModelShareableGenerator
    from nvflare.job_config.api import FedJob

    from .flare_server import ConvergingCyclic, ConvergingFedAvg, GlobalModelPersistor
    from .flare_site import TRAIN_TASK, OutgoingAudit, SiteTrainer

    spec.check()
    count = len(sites) if sites is not None else int(n_sites or 0)
    if count < 2:
        raise InputError("sites", f"a multi-site job needs at least 2 sites, got {count}")
    job = FedJob(name=f"segtransfer-{spec.task}-{spec.workflow}", min_clients=count)
    job.set_app_packages(["segtransfer"])  # sites run the installed package: no segtransfer code goes into the job
    persistor = GlobalModelPersistor(task=spec.task, workflow=spec.workflow, output_dir=server_output, initial_package=spec.initial_package,
                                     initial_sha256=spec.initial_sha256, seed=spec.seed, first_round=spec.first_round)
    job.to_server(persistor, id="persistor")
    rule = dict(first_round=spec.first_round, patience=int(spec.patience), min_delta=float(spec.min_delta),
                max_rounds=spec.first_round + int(spec.rounds), history=list(spec.history))
    if spec.workflow == "cyclic":
        job.to_server(FullModelShareableGenerator(), id="shareable_generator")
        job.to_server(ConvergingCyclic(num_rounds=spec.rounds, task_assignment_timeout=60, persistor_id="persistor",
                                       shareable_generator_id="shareable_generator", task_name=TRAIN_TASK, **rule))
    else:
        job.to_server(ConvergingFedAvg(num_clients=count, num_rounds=spec.rounds, persistor_id="persistor", task_name=TRAIN_TASK, **rule))

    def executor(data_dir, output_dir):
        return SiteTrainer(task=spec.task, local_epochs=spec.local_epochs, options=dict(spec.options), data_dir=data_dir,
                           output_dir=output_dir, first_round=spec.first_round)

    if sites is None:
        job.to_clients(executor(None, None), tasks=[TRAIN_TASK])
        job.to_clients(OutgoingAudit(), filter_type=FilterType.TASK_RESULT, tasks=[TRAIN_TASK])
    else:
        for name, (data_dir, output_dir) in sites.items():
            job.to(executor(data_dir, output_dir), check_site_name(name), tasks=[TRAIN_TASK])
            job.to(OutgoingAudit(output_dir=output_dir), name, filter_type=FilterType.TASK_RESULT, tasks=[TRAIN_TASK])
    return job


def _recipe(job):
    from nvflare.recipe.spec import Recipe

    class _JobRecipe(Recipe):
        """A recipe around a job built here (the stock recipes add a shipped training script)."""

    return _JobRecipe(job)


def _allow_components(workspace: Path) -> None:
    """Give the simulated sites the component policy a real site sets: FLARE's default allow list plus
    the segtransfer multi-site components."""
    local = workspace / "local"
    local.mkdir(parents=True, exist_ok=True)
    resources = {"format_version": 2, **site_resources()}
    write_text(local / "resources.json", json.dumps(resources, indent=2) + "\n")


def site_folders(sites: dict[str, str | os.PathLike]) -> dict[str, Path]:
    """``{site: folder}`` with each folder resolved; ``InputError`` naming a folder that is missing."""
    folders = {}
    for name, folder in sites.items():
        path = Path(folder).resolve()
        if not path.is_dir():
            raise InputError(folder, f"data folder of site {name} not found")
        folders[name] = path
    return folders


def site_resources() -> dict:
    """The ``local/resources.json`` entries a deployed site and server add (component allow list)."""
    from nvflare.app_common.default_component_policy import DEFAULT_CLASS_ALLOW_LIST
    from nvflare.app_common.widgets.component_path_authorizer import CLASS_ALLOW_LIST

    from .flare_eval import EVAL_CLASSES

    return {CLASS_ALLOW_LIST: list(DEFAULT_CLASS_ALLOW_LIST) + list(dict.fromkeys(ALLOWED_CLASSES + EVAL_CLASSES))}


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _summarise(out: Path, spec: JobSpec, sites: list[str], requested: int, attempts: list[dict]) -> dict:
    from .flare_server import GLOBAL_MODEL, GLOBAL_STATE, LAST_MODEL
    from .flare_site import STATUS_FILE

    site_info, done_sets = {}, []
    for name in sites:
        status = _read_json(out / "sites" / name / STATUS_FILE) or {"rounds": [], "error": None}
        rounds = sorted({int(r["round"]) for r in status.get("rounds", [])})
        site_info[name] = {"rounds_done": rounds, "error": status.get("error")}
        done_sets.append(set(rounds))
    common = set.intersection(*done_sets) if done_sets else set()
    completed = 0
    while completed in common:
        completed += 1
    failures = [{"site": n, **info["error"]} for n, info in site_info.items() if info["error"]]
    state = _read_json(out / GLOBAL_STATE)
    convergence = (state or {}).get("convergence") or None
    stop_reason = convergence and convergence.get("stop_reason")
    if convergence and len(convergence["history"]) < completed:
        stop_reason = None  # the rule's record stops before the rounds the sites finished: the last round did not complete
    return {"workflow": spec.workflow, "task": spec.task, "options": spec.options, "local_epochs": spec.local_epochs, "seed": spec.seed,
            "patience": int(spec.patience), "min_delta": float(spec.min_delta),
            "sites": site_info, "rounds_requested": requested, "completed_rounds": completed, "failures": failures,
            "stop_reason": None if failures else stop_reason, "best_round": convergence and convergence.get("best_round"),
            "best_val_loss": convergence and convergence.get("best_val_loss"),
            "val_loss_history": [h["val_loss"] for h in convergence["history"]] if convergence else [],
            "global_model": {"path": str(out / GLOBAL_MODEL), "sha256": state and state.get("sha256")} if state else None,
            "last_model": {"path": str(out / LAST_MODEL), "sha256": state.get("last_sha256")} if state and state.get("last_sha256") else None,
            "attempts": attempts, "complete": bool(stop_reason) and not failures}


def _run_attempt(spec: JobSpec, site_dirs: dict, names: list[str], out: Path, requested: int, attempts: list[dict],
                 suffix: str, progress: ProgressCallback) -> tuple[dict, str | None]:
    """Run ``spec`` once in the FLARE simulator as the last entry of ``attempts`` (its workspace is
    ``out/flare/<job>-<attempt><suffix>``); returns the run summary (written to ``out/run.json``) and the
    simulator's error message, if any."""
    from nvflare.recipe import SimEnv

    from .flare_server import GLOBAL_STATE

    job = build_job(spec, site_dirs, server_output=str(out.resolve()))
    job.name = f"{job.name}-{attempts[-1]['attempt']}{suffix}"
    flare_root = (out / "flare").resolve()
    _allow_components(flare_root / job.name)
    attempts[-1]["flare_workspace"] = str(flare_root / job.name)
    write_text(out / RUN_FILE, json.dumps(_summarise(out, spec, names, requested, attempts), indent=2) + "\n")

    stop = threading.Event()

    def watch():  # progress from the global model the server saves after each round
        seen = None
        while not stop.wait(1.0):
            state = _read_json(out / GLOBAL_STATE)
            if state and state.get("saves") != seen and state.get("round") is not None:
                seen = state.get("saves")
                progress(min((state["round"] + 1) / requested, 1.0), f"{spec.workflow}: global model after round {state['round'] + 1}/{requested}")

    progress(spec.first_round / requested, f"{spec.workflow}: {len(names)} sites, rounds {spec.first_round + 1}-{spec.first_round + spec.rounds}")
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    error = None
    try:
        with warnings.catch_warnings():
            # FLARE flags 64-hex-digit strings in job configs as possible secrets; ours is the public package ID
            warnings.filterwarnings("ignore", message="Potential secret value")
            _recipe(job).execute(SimEnv(clients=names, num_threads=len(names), workspace_root=str(flare_root)))
    except RuntimeError as exc:  # the simulator reports a failed run; the site statuses say why
        error = str(exc)
    finally:
        stop.set()
        watcher.join()
    summary = _summarise(out, spec, names, requested, attempts)
    if error:
        summary["engine_error"] = error
    write_text(out / RUN_FILE, json.dumps(summary, indent=2) + "\n")
    return summary, error


def simulate(spec: JobSpec, sites: dict[str, str | os.PathLike], out: str | os.PathLike, resume: bool = False,
             progress: ProgressCallback | None = None) -> dict:
    """Run ``spec`` in the FLARE simulator with one simulated site per entry of ``sites`` (name -> the
    site's own data folder; each site reads only its folder) and write the outputs to ``out``.

    Returns the run summary (also ``out/run.json``).  Raises :class:`RunIncomplete` when a site failed:
    the summary names it, the last good global model stays in ``out/global_model``, and calling again
    with ``resume=True`` continues from that model with the rounds still to do.  A simulator that stops
    before any site finished a round or reported an error (FLARE did not start) is started once more.
    """
    require_nvflare()
    from .flare_server import GLOBAL_MODEL, GLOBAL_STATE, LAST_MODEL

    progress = progress or print_progress
    out = Path(out)
    names = [check_site_name(n) for n in sites]
    if len(names) < 2:
        raise InputError("sites", f"a multi-site job needs at least 2 sites, got {len(names)}")
    folders = site_folders(sites)
    requested = int(spec.rounds)
    attempts: list[dict] = []
    if resume:
        previous = _read_json(out / RUN_FILE)
        if previous is None:
            raise InputError(out, f"nothing to resume: no {RUN_FILE}")
        if previous["workflow"] != spec.workflow or sorted(previous["sites"]) != sorted(names) or previous["task"] != spec.task \
                or previous["options"] != spec.options or previous["local_epochs"] != spec.local_epochs \
                or previous.get("patience") != int(spec.patience) or previous.get("min_delta") != float(spec.min_delta):
            raise InputError(out / RUN_FILE, "was written by a run with another workflow, task, options, rule or sites; resume with the same ones")
        requested = int(previous["rounds_requested"])
        attempts = list(previous.get("attempts", []))
        done = int(previous["completed_rounds"])
        state = _read_json(out / GLOBAL_STATE)
        if previous.get("complete"):
            raise InputError(out, f"run already complete ({done} of {requested} rounds)")
        if done >= requested and not previous.get("failures"):
            raise InputError(out, f"run already complete ({done} of {requested} rounds)")
        if state and state.get("last_sha256"):  # continue from the last good model, with the rule's record of the rounds done
            history = [h for h in ((state.get("convergence") or {}).get("history") or []) if h["round"] < done]
            spec = JobSpec(**{**asdict(spec), "initial_package": str(out / LAST_MODEL), "initial_sha256": state["last_sha256"],
                              "first_round": done, "rounds": max(requested - done, 1), "history": history})
        else:  # the first round never finished anywhere: start again from the original model
            spec = JobSpec(**{**asdict(spec), "rounds": requested})
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(out, "output folder exists and is not empty (resume an interrupted run with --resume)")
    spec.check()
    out.mkdir(parents=True, exist_ok=True)
    site_dirs = {n: (str(folders[n]), str((out / "sites" / n).resolve())) for n in names}
    attempts.append({"attempt": len(attempts) + 1, "first_round": spec.first_round, "rounds": spec.rounds})
    summary, error = _run_attempt(spec, site_dirs, names, out, requested, attempts, "", progress)
    if not summary["complete"] and not summary["failures"] and summary["completed_rounds"] <= spec.first_round:
        # The simulator stopped before any site finished a round or reported an error: FLARE itself did not
        # start (for example a local port it had chosen was taken by another process before its site
        # bound it).  Nothing was trained, so the same attempt starts once more, in a new workspace.
        attempts[-1]["restarted_after"] = error or "the simulator stopped before any round"
        progress(spec.first_round / requested, f"{spec.workflow}: the FLARE simulator stopped before any round "
                 f"({attempts[-1]['restarted_after']}); starting it once more")
        summary, error = _run_attempt(spec, site_dirs, names, out, requested, attempts, "-restart", progress)
    if not summary["complete"]:
        failed = "; ".join(f"site {f['site']} failed in round {f['round'] + 1}: {f['message']}" for f in summary["failures"]) or (error or "rounds missing")
        raise RunIncomplete(f"{out}: {summary['completed_rounds']} of {requested} rounds completed ({failed}); the last good global model "
                            f"is kept in {out / GLOBAL_MODEL}; fix the site and rerun with --resume")
    progress(1.0, f"{spec.workflow}: stopped after round {summary['completed_rounds']} ({summary['stop_reason']}); "
                  f"best round {summary['best_round'] + 1}, weighted validation loss {summary['best_val_loss']:.4f}")
    return summary


def export_job(spec: JobSpec, n_sites: int, out: str | os.PathLike) -> Path:
    """Write the deployable FLARE job folder for ``spec`` with ``n_sites`` sites into ``out`` (atomic) and
    return the job folder.  Sites take their data and output folders from ``SEGTRANSFER_SITE_DATA`` and
    ``SEGTRANSFER_SITE_OUTPUT``; the job holds no code."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(out, "output folder exists and is not empty")
    return write_job_folder(build_job(spec, None, n_sites=n_sites), out)


def write_job_folder(job, out: Path) -> Path:
    """Export a FLARE job built here into the new folder ``out`` (atomic) with ``site_resources.json``;
    refuses a job that would ship code.  Returns the job folder."""
    from ..io import atomic_dir

    with atomic_dir(out) as tmp:
        job.export_job(str(tmp))
        custom = [p for p in Path(tmp).rglob("custom") if p.is_dir() and any(p.iterdir())]
        if custom:  # never ship code to the sites
            raise SegTransferError(f"{out}: the exported job would ship code ({custom[0]}); refusing")
        write_text(Path(tmp) / "site_resources.json", json.dumps(site_resources(), indent=2) + "\n")
    return out / job.name

"""FLARE components a site runs, from the installed ``segtransfer`` package (no job code is shipped).

* :class:`SiteTrainer` (executor of the ``train`` task): receives the global weights, trains the
  task's local epochs on the site's own folder, and returns the weights with the sample count (FedAvg's
  aggregation weight) and the validation loss of the returned model (the server's convergence rule),
  nothing else.  After every round it writes, in the site's output folder only, the local
  model package (``local_model/``), ``status.json`` (rounds done, local metrics, the error of a
  failed round) and ``training_log.csv``.
* :class:`OutgoingAudit` (task-result filter): records what actually leaves the site in every round
  (``outgoing.jsonl``: data kind, each array's name, shape and dtype, the metadata keys and values).

Folders: ``data_dir`` and ``output_dir`` arguments (the simulator sets them per site); where a
deployed job leaves them empty, the site's own environment gives them: ``SEGTRANSFER_SITE_DATA``
(required) and ``SEGTRANSFER_SITE_OUTPUT`` (default: ``segtransfer/`` in the site's FLARE run folder).
"""

from __future__ import annotations

import csv
import io
import json
import os
import traceback
from pathlib import Path

import numpy as np
from nvflare.apis.dxo import DXO, DataKind, MetaKey, from_shareable
from nvflare.apis.executor import Executor
from nvflare.apis.filter import Filter
from nvflare.apis.fl_constant import ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable, make_reply
from nvflare.apis.signal import Signal
from nvflare.app_common.app_constant import AppConstants

from ..errors import InputError
from ..io import write_text
from .convergence import VAL_LOSS

DATA_ENV = "SEGTRANSFER_SITE_DATA"
OUTPUT_ENV = "SEGTRANSFER_SITE_OUTPUT"
STATUS_FILE = "status.json"
AUDIT_FILE = "outgoing.jsonl"
LOG_FILE = "training_log.csv"
LOCAL_MODEL = "local_model"
TRAIN_TASK = "train"


def site_output_dir(fl_ctx: FLContext, output_dir: str | None) -> Path:
    """The site's output folder: the argument, else ``$SEGTRANSFER_SITE_OUTPUT``, else the run folder's ``segtransfer/``."""
    return run_output_dir(fl_ctx, output_dir or os.environ.get(OUTPUT_ENV))


def run_output_dir(fl_ctx: FLContext, chosen: str | None) -> Path:
    """``chosen`` (created), or ``segtransfer/`` in this participant's FLARE run folder (server or site)."""
    if not chosen:
        workspace = fl_ctx.get_engine().get_workspace()
        chosen = os.path.join(workspace.get_run_dir(fl_ctx.get_job_id()), "segtransfer")
    path = Path(chosen)
    path.mkdir(parents=True, exist_ok=True)
    return path


class SiteTrainer(Executor):
    """Executor of the ``train`` task: ``local_epochs`` epochs of the ``task`` kind's training step per round.

    ``options``: the task's training options (see the kind's ``defaults``), the same at every site;
    ``first_round``: rounds done before this job (a resumed run), so rounds and epochs keep their numbers.
    """

    def __init__(self, task: str = "hemorrhage", local_epochs: int = 1, options: dict | None = None, data_dir: str | None = None,
                 output_dir: str | None = None, first_round: int = 0):
        super().__init__()
        self.task = task
        self.local_epochs = int(local_epochs)
        self.options = dict(options or {})
        self.data_dir = data_dir
        self.output_dir = output_dir
        self.first_round = int(first_round)
        self._site_task = None
        self._status: dict | None = None

    def _open(self, fl_ctx: FLContext):
        from .task import open_site_task

        if self._site_task is None:
            folder = self.data_dir or os.environ.get(DATA_ENV)
            if not folder:
                raise InputError(fl_ctx.get_identity_name(), f"no site data folder: set {DATA_ENV} in the site's environment")
            self._site_task = open_site_task(self.task, folder, self.options, progress=lambda f, m: self.log_info(fl_ctx, m))
        return self._site_task

    def _write_status(self, out: Path) -> None:
        write_text(out / STATUS_FILE, json.dumps(self._status, indent=2) + "\n")
        rows = [dict(round=r["round"], **h) for r in self._status["rounds"] for h in r.get("history", [])]
        if rows:
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            write_text(out / LOG_FILE, buf.getvalue())

    def execute(self, task_name: str, shareable: Shareable, fl_ctx: FLContext, abort_signal: Signal) -> Shareable:
        if task_name != TRAIN_TASK:
            return make_reply(ReturnCode.TASK_UNKNOWN)
        site = fl_ctx.get_identity_name()
        out = site_output_dir(fl_ctx, self.output_dir)
        if self._status is None:  # a resumed run continues the site's earlier status
            try:
                self._status = json.loads((out / STATUS_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self._status = {"site": site, "task": self.task, "local_epochs": self.local_epochs, "rounds": [], "error": None}
        round_index = self.first_round + int(shareable.get_header(AppConstants.CURRENT_ROUND, 0) or 0)
        try:
            site_task = self._open(fl_ctx)
            incoming = from_shareable(shareable)
            if incoming.data_kind != DataKind.WEIGHTS:
                raise InputError(f"round {round_index}", f"expected full weights from the server, got {incoming.data_kind}")
            first_epoch = round_index * self.local_epochs + 1
            result = site_task.train(incoming.data, self.local_epochs, first_epoch)
            if abort_signal.triggered:
                return make_reply(ReturnCode.TASK_ABORTED)
            from .weights import save_weights_package

            card = {"name": f"{self.task} local model of {site}", "provenance": {"site": site, "trained_with": "segtransfer multisite (FLARE)"},
                    "intended_use": "Multi-site research model; evaluate before use.",
                    "training_data": site_task.training_data(),
                    "training": {"round": round_index, "local_epochs": self.local_epochs, "last_epoch": first_epoch + self.local_epochs - 1},
                    "validation": {k: float(v) for k, v in result.metrics.items() if k != "epoch"}}
            save_weights_package(site_task.description(), result.weights, card, out / LOCAL_MODEL)
            self._status["rounds"].append({"round": round_index, "epochs": self.local_epochs, "n_samples": result.n_samples,
                                           "metrics": result.metrics, "history": result.history})
            self._status["error"] = None
            self._write_status(out)
        except Exception as exc:  # the round fails at this site: report it, send nothing but the error code
            message = str(exc) if str(exc) else type(exc).__name__
            self.log_error(fl_ctx, f"round {round_index} failed at {site}: {message}\n{traceback.format_exc()}")
            self._status["error"] = {"round": round_index, "message": message, "type": type(exc).__name__}
            self._write_status(out)
            return make_reply(ReturnCode.EXECUTION_EXCEPTION)
        # the weights, the sample count (FedAvg's weight and the rule's) and the validation loss of the returned
        # model on this site's validation patches (the server's convergence rule): nothing else leaves the site
        meta = {MetaKey.NUM_STEPS_CURRENT_ROUND: int(result.n_samples), MetaKey.INITIAL_METRICS: {VAL_LOSS: float(result.metrics["val_loss"])}}
        reply = DXO(data_kind=DataKind.WEIGHTS, data=dict(result.weights), meta=meta).to_shareable()
        reply.set_header(AppConstants.CURRENT_ROUND, shareable.get_header(AppConstants.CURRENT_ROUND))
        return reply


def _plain(value):
    """A value as recorded: scalars, and dicts and lists of them, as they are; anything else as its ``repr``."""
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return repr(value)


class OutgoingAudit(Filter):
    """Task-result filter that appends one JSON line per outgoing result to the site's ``outgoing.jsonl``:
    ``round``, ``return_code``, ``data_kind``, ``arrays`` (name -> {shape, dtype}), ``non_array_data``
    (keys of anything else in the payload), ``meta`` (metadata key -> value), ``bytes`` (array payload
    size) and, for a metrics result (cross-site evaluation), ``metrics``: the payload itself.  The result
    itself passes unchanged."""

    def __init__(self, output_dir: str | None = None):
        super().__init__()
        self.output_dir = output_dir

    def process(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        record = {"site": fl_ctx.get_identity_name(), "round_in_job": shareable.get_header(AppConstants.CURRENT_ROUND),
                  "return_code": shareable.get_return_code(), "data_kind": None, "arrays": {}, "non_array_data": [], "meta": {}, "bytes": 0}
        try:
            dxo = from_shareable(shareable)
        except Exception:  # an error reply carries no DXO
            dxo = None
        if dxo is not None:
            record["data_kind"] = str(getattr(dxo.data_kind, "value", dxo.data_kind))
            for key, value in (dxo.data or {}).items():
                if isinstance(value, np.ndarray):
                    record["arrays"][key] = {"shape": list(value.shape), "dtype": str(value.dtype)}
                    record["bytes"] += int(value.nbytes)
                else:
                    record["non_array_data"].append(key)
            record["meta"] = {str(k): _plain(v) for k, v in dxo.meta.items()}
            if dxo.data_kind == DataKind.METRICS:  # a cross-site evaluation result: the numbers themselves
                record["metrics"] = _plain(dxo.data)
        out = site_output_dir(fl_ctx, self.output_dir) / AUDIT_FILE
        with open(out, "a", encoding="utf-8") as f:  # append-only log, one line per round
            f.write(json.dumps(record) + "\n")
        return shareable

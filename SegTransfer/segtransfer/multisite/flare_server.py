"""FLARE components the server runs, from the installed package: the two workflows with the source
study's convergence rule, and the global model persistor.

* :class:`ConvergingCyclic` (cyclic weight transfer) extends FLARE's ``CyclicController`` and
  :class:`ConvergingFedAvg` (federated averaging) extends FLARE's ``FedAvg``.  After every completed
  round both apply :class:`segtransfer.multisite.convergence.ConvergenceRule` to the validation losses
  and sample counts the sites returned with their weights (cyclic: each site's report of the round,
  collected as the model is relayed; FedAvg: each site's report, taken as FLARE aggregates its
  result), mark the round's model as the best when its weighted loss is the lowest so far, and stop the
  workflow when the rule holds or at the maximum number of rounds.
* :class:`GlobalModelPersistor` creates the first global model without any data (the task kind's
  network, seeded random initialisation) or takes it from a verified model package (``initial_package``,
  e.g. a partner's model or the kept model of an interrupted run).  After every round it saves the
  round's global model as ``last_model/`` (what a resumed run continues from) and, when it is the best so
  far, as ``global_model/`` (the run's result); ``global_model.json`` records rounds, package IDs and the
  convergence rule's state (history, best round, stop reason).  Packages are safetensors with checksums,
  written atomically; a failed round leaves both in place.  Nothing is pickled.
"""

from __future__ import annotations

import json

from nvflare.apis.controller_spec import ClientTask
from nvflare.apis.dxo import MetaKey, from_shareable
from nvflare.apis.fl_constant import ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.app_common.abstract.fl_model import FLModel
from nvflare.app_common.abstract.model import ModelLearnable, ModelLearnableKey, make_model_learnable
from nvflare.app_common.abstract.model_persistor import ModelPersistor
from nvflare.app_common.app_constant import AppConstants
from nvflare.app_common.workflows.cyclic_ctl import CyclicController
from nvflare.app_common.workflows.fedavg import FedAvg

from ..io import write_text
from .convergence import VAL_LOSS, ConvergenceRule
from .flare_site import run_output_dir

GLOBAL_MODEL = "global_model"
LAST_MODEL = "last_model"
GLOBAL_STATE = "global_model.json"


def _init_rule(controller, first_round: int, patience: int, min_delta: float, max_rounds: int, history: list | None) -> None:
    """Keep the rule's arguments as attributes of the same names (FLARE's job API reads a component's
    arguments back from them when it writes the job configuration) and build the rule."""
    controller.first_round = int(first_round)
    controller.patience = int(patience)
    controller.min_delta = float(min_delta)
    controller.max_rounds = int(max_rounds)
    controller.history = list(history or [])
    controller.rule = ConvergenceRule(patience=controller.patience, min_delta=controller.min_delta, max_rounds=controller.max_rounds,
                                      history=controller.history)


class ConvergingCyclic(CyclicController):
    """FLARE's cyclic relay (one round visits every site once, in a fixed order) that stops on the
    convergence rule.  ``num_rounds``: rounds of this job; ``first_round``: rounds done before it (a
    resumed run; ``history`` then holds their rule records); ``patience``, ``min_delta``: the rule;
    ``max_rounds``: the run's total maximum.  Other arguments: ``CyclicController``'s."""

    def __init__(self, num_rounds: int = 5, first_round: int = 0, patience: int = 10, min_delta: float = 1e-4, max_rounds: int | None = None,
                 history: list | None = None, **kwargs):
        super().__init__(num_rounds=num_rounds, **kwargs)
        _init_rule(self, first_round, patience, min_delta, max_rounds or first_round + num_rounds, history)
        self._reports: dict[int, dict] = {}

    def _get_relay_orders(self, fl_ctx: FLContext):
        targets = super()._get_relay_orders(fl_ctx)
        self._round_sites = [t.name for t in targets] if targets else []
        return targets

    def _process_result(self, client_task: ClientTask, fl_ctx: FLContext):
        result, site = client_task.result, client_task.client.name
        report = None
        if result is not None and result.get_return_code() == ReturnCode.OK:
            meta = from_shareable(result).get_meta_props()
            report = {"val_loss": float(meta[MetaKey.INITIAL_METRICS][VAL_LOSS]), "n_samples": int(meta[MetaKey.NUM_STEPS_CURRENT_ROUND])}
        super()._process_result(client_task, fl_ctx)
        if report is None or self._is_done:
            return
        # the next site gets the weights only, not this site's report (FLARE would relay the result's metadata)
        self._last_learnable[ModelLearnableKey.META] = {}
        task = client_task.task
        task.data = self.shareable_generator.learnable_to_shareable(self._last_learnable, fl_ctx)
        task.data.set_header(AppConstants.CURRENT_ROUND, self._current_round)
        task.data.set_header(AppConstants.NUM_ROUNDS, self._num_rounds)
        task.data.add_cookie(AppConstants.CONTRIBUTION_ROUND, self._current_round)
        reports = self._reports.setdefault(self._current_round, {})
        reports[site] = report
        if len(reports) == len(self._round_sites):  # the round is complete: apply the rule before the model is persisted
            round_index = self.first_round + self._current_round
            best = self.rule.add_round(round_index, reports)
            self.persistor.set_round(round_index, best, self.rule.state())
            reason = self.rule.stop_reason()
            if reason:
                self.log_info(fl_ctx, f"stopping after round {round_index + 1}: {reason} (best round {self.rule.best_round() + 1})")
                self._is_done = True


class ConvergingFedAvg(FedAvg):
    """FLARE's FedAvg (sample-weighted mean of the sites' weights) that keeps the best global model and stops on the convergence rule.  ``first_round``,
    ``patience``, ``min_delta``, ``max_rounds``, ``history``: as for :class:`ConvergingCyclic`; other
    arguments: ``FedAvg``'s."""

    def __init__(self, *args, first_round: int = 0, patience: int = 10, min_delta: float = 1e-4, max_rounds: int | None = None,
                 history: list | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        _init_rule(self, first_round, patience, min_delta, max_rounds or first_round + self.num_rounds, history)
        # FedAvg's run() applies early stopping (is_curr_model_better, then should_stop) only when a stop
        # condition is set; ours is the study's rule, evaluated by the two overrides below, not FLARE's
        # "<metric> <op> <value>" criterion, so the parsed form is set directly.
        self.stop_condition = (VAL_LOSS, None, None)
        self._reports: dict[str, dict] = {}

    def _aggregate_one_result(self, result: FLModel) -> bool:
        # FLARE's streaming aggregation callback (one site's result); the site's report is kept for the rule first
        if result.params:
            site = (result.meta or {}).get("client_name") or f"site{len(self._reports) + 1}"
            self._reports[site] = {"val_loss": float((result.metrics or {})[VAL_LOSS]), "n_samples": int(result.meta[MetaKey.NUM_STEPS_CURRENT_ROUND])}
        return super()._aggregate_one_result(result)

    def is_curr_model_better(self, curr_model: FLModel) -> bool:
        """Apply the rule to the round just aggregated; always True, so that every round's model reaches the
        persistor, which keeps it as the last model and, when the rule marks it best, as the best."""
        round_index = self.first_round + int(self.current_round)
        best = self.rule.add_round(round_index, self._reports)
        self._reports = {}
        self.persistor.set_round(round_index, best, self.rule.state())
        return True

    def should_stop(self, metrics=None) -> bool:
        reason = self.rule.stop_reason()
        if reason:
            self.info(f"stopping after round {self.first_round + int(self.current_round) + 1}: {reason} (best round {self.rule.best_round() + 1})")
        return reason is not None


class GlobalModelPersistor(ModelPersistor):
    """``task``: task kind; ``workflow``: ``"cyclic"`` or ``"fedavg"`` (recorded); ``output_dir``: where the
    model packages go (default: ``segtransfer/`` in the server's run folder); ``initial_package`` and
    ``initial_sha256``: start from this package's weights; ``seed``: initialisation seed otherwise;
    ``first_round``: the number of rounds already done before this job (a resumed run)."""

    def __init__(self, task: str = "hemorrhage", workflow: str = "fedavg", output_dir: str | None = None,
                 initial_package: str | None = None, initial_sha256: str | None = None, seed: int = 0, first_round: int = 0):
        super().__init__()
        self.task = task
        self.workflow = workflow
        self.output_dir = output_dir
        self.initial_package = initial_package
        self.initial_sha256 = initial_sha256
        self.seed = int(seed)
        self.first_round = int(first_round)
        self._saves = 0
        self._round: tuple[int, bool, dict] | None = None

    def set_round(self, round_index: int, best: bool, convergence: dict) -> None:
        """Called by the controller when a round completes, before it persists the round's model."""
        self._round = (int(round_index), bool(best), convergence)

    def _description(self) -> dict:
        from .task import get_task_kind

        return get_task_kind(self.task).description()

    def load_model(self, fl_ctx: FLContext) -> ModelLearnable:
        from .weights import initial_weights, load_package_weights

        desc = self._description()
        if self.initial_package:
            weights = load_package_weights(self.initial_package, desc, self.initial_sha256)
            self.log_info(fl_ctx, f"initial global model from {self.initial_package}")
        else:
            weights = initial_weights(desc, self.seed)
        return make_model_learnable(weights, {})

    def save_model(self, model: ModelLearnable, fl_ctx: FLContext):
        from .weights import save_weights_package

        weights = model[ModelLearnableKey.WEIGHTS]
        if not weights:
            return
        out = run_output_dir(fl_ctx, self.output_dir)
        state_file = out / GLOBAL_STATE
        try:
            previous = json.loads(state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = {}
        current = fl_ctx.get_prop(AppConstants.CURRENT_ROUND)
        round_index = None if current is None else int(current) + self.first_round
        clients = sorted(c.name for c in fl_ctx.get_engine().get_clients())
        completed, best, convergence = self._round or (previous.get("completed_round"), False, previous.get("convergence"))
        self._round = None  # a round's verdict applies to the one save that follows it
        card = {"name": f"{self.task} {self.workflow} global model",
                "provenance": {"site": f"multi-site ({self.workflow}): {', '.join(clients)}", "trained_with": "segtransfer multisite (FLARE)"},
                "intended_use": "Multi-site research model; evaluate before use.",
                "training_data": {"sites": len(clients), "site_names": clients},
                "training": {"workflow": self.workflow, "round": round_index}}
        last = save_weights_package(self._description(), weights, card, out / LAST_MODEL)
        best_sha = previous.get("sha256")
        if best or not (out / GLOBAL_MODEL).is_dir():  # the best round so far, or the only model there is yet
            if convergence and convergence.get("best_round") is not None:
                card["validation"] = {"round": convergence["best_round"], "weighted_val_loss": convergence["best_val_loss"]}
            best_sha = save_weights_package(self._description(), weights, card, out / GLOBAL_MODEL).sha256
        self._saves += 1
        write_text(state_file, json.dumps({"workflow": self.workflow, "task": self.task, "sites": clients, "round": round_index,
                                           "completed_round": completed, "first_round": self.first_round, "saves": self._saves,
                                           "sha256": best_sha, "last_sha256": last.sha256, "convergence": convergence}, indent=2) + "\n")

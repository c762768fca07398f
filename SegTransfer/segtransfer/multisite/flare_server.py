"""FLARE component the server runs, from the installed package: the global model persistor.

:class:`GlobalModelPersistor` creates the first global model without any data (the task kind's
network, seeded random initialisation) or takes it from a verified model package (``initial_package``,
e.g. a partner's model or the kept global model of an interrupted run), and after every round saves
the global model as a model package (safetensors and checksums, written atomically) with
``global_model.json`` (workflow, last completed round).  A failed round therefore leaves the last good
global model in place.  Nothing is pickled.
"""

from __future__ import annotations

import json

from nvflare.apis.fl_context import FLContext
from nvflare.app_common.abstract.model import ModelLearnable, ModelLearnableKey, make_model_learnable
from nvflare.app_common.abstract.model_persistor import ModelPersistor
from nvflare.app_common.app_constant import AppConstants

from ..io import write_text
from .flare_site import run_output_dir

GLOBAL_MODEL = "global_model"
GLOBAL_STATE = "global_model.json"


class GlobalModelPersistor(ModelPersistor):
    """``task``: task kind; ``workflow``: ``"cyclic"`` or ``"fedavg"`` (recorded); ``output_dir``: where the
    global model package goes (default: ``segtransfer/`` in the server's run folder); ``initial_package``
    and ``initial_sha256``: start from this package's weights; ``seed``: initialisation seed otherwise;
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
        current = fl_ctx.get_prop(AppConstants.CURRENT_ROUND)
        clients = sorted(c.name for c in fl_ctx.get_engine().get_clients())
        card = {"name": f"{self.task} {self.workflow} global model",
                "provenance": {"site": f"multi-site ({self.workflow}): {', '.join(clients)}", "trained_with": "segtransfer multisite (FLARE)"},
                "intended_use": "Multi-site research model; evaluate before use.",
                "training_data": {"sites": len(clients), "site_names": clients},
                "training": {"workflow": self.workflow, "round": None if current is None else int(current) + self.first_round}}
        package = save_weights_package(self._description(), weights, card, out / GLOBAL_MODEL)
        self._saves += 1
        write_text(out / GLOBAL_STATE, json.dumps({"workflow": self.workflow, "task": self.task, "sites": clients,
                                                   "round": card["training"]["round"], "first_round": self.first_round,
                                                   "saves": self._saves, "sha256": package.sha256}, indent=2) + "\n")

"""The source study's convergence rule across sites, as the FLARE server applies it after every round.

Each site returns, with its weights, the validation loss of the model it returns (on its own validation
patches) and its training sample count.  The round's validation loss is the sample-weighted mean of the
sites' losses, ``sum(n_i * loss_i) / sum(n_i)``.  The best global model is the one of the round with the
lowest such loss; the run stops when the best loss has improved by less than ``min_delta`` over the last
``patience`` rounds (:func:`segtransfer.hemorrhage.train.converged`, the rule of single-site training)
or after ``max_rounds`` rounds.

No engine here: :class:`ConvergenceRule` is plain Python that the FLARE controllers of
:mod:`segtransfer.multisite.flare_server` hold, and its :meth:`~ConvergenceRule.state` (a JSON-able dict)
travels with the global model to the persistor, which records it in ``global_model.json``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import InputError

#: Stop reasons recorded in the run summary.
CONVERGED = "converged"
MAX_ROUNDS = "max_rounds"
#: Metric name a site reports with its weights.
VAL_LOSS = "val_loss"


def weighted_val_loss(sites: dict[str, dict]) -> float:
    """Sample-weighted mean validation loss of ``{site: {"val_loss": float, "n_samples": int}}``."""
    total = sum(int(s["n_samples"]) for s in sites.values())
    if total <= 0:
        raise InputError("round results", "no samples reported by the sites")
    return sum(float(s["val_loss"]) * int(s["n_samples"]) for s in sites.values()) / total


@dataclass
class ConvergenceRule:
    """The rule's state over the rounds of a run (resumed runs pass the earlier ``history``).

    ``history``: one record per completed round, ``{"round": r (0-based), "val_loss": weighted loss,
    "sites": {site: {"val_loss", "n_samples"}}}``.
    """

    patience: int = 10
    min_delta: float = 1e-4
    max_rounds: int = 200
    history: list[dict] = field(default_factory=list)

    def __post_init__(self):
        if int(self.patience) < 1 or int(self.max_rounds) < 1 or not float(self.min_delta) >= 0:
            raise InputError("convergence rule", f"need patience >= 1, max rounds >= 1 and min delta >= 0, got "
                                                 f"{self.patience}, {self.max_rounds} and {self.min_delta}")
        self.history = [dict(h) for h in self.history]

    def add_round(self, round_index: int, sites: dict[str, dict]) -> bool:
        """Record round ``round_index`` (0-based) from the sites' reports; True when its model is the best so far."""
        loss = weighted_val_loss(sites)
        if not math.isfinite(loss):
            raise InputError(f"round {round_index + 1}", f"weighted validation loss is {loss}")
        self.history = [h for h in self.history if h["round"] != round_index]
        self.history.append({"round": int(round_index), "val_loss": float(loss),
                             "sites": {k: {"val_loss": float(v["val_loss"]), "n_samples": int(v["n_samples"])} for k, v in sites.items()}})
        return self.best_round() == round_index

    def best_round(self) -> int | None:
        """The round with the lowest weighted validation loss (the earliest of equal ones)."""
        if not self.history:
            return None
        return min(self.history, key=lambda h: (h["val_loss"], h["round"]))["round"]

    def converged(self) -> bool:
        """The study's rule on the weighted losses so far."""
        from ..hemorrhage.train import converged

        return converged([h["val_loss"] for h in self.history], int(self.patience), float(self.min_delta))

    def stop_reason(self) -> str | None:
        """``"converged"``, ``"max_rounds"`` or None (go on)."""
        if self.converged():
            return CONVERGED
        if len(self.history) >= int(self.max_rounds):
            return MAX_ROUNDS
        return None

    def state(self) -> dict:
        """JSON-able summary: settings, history, best round and its loss, stop reason."""
        best = self.best_round()
        return {"patience": int(self.patience), "min_delta": float(self.min_delta), "max_rounds": int(self.max_rounds),
                "history": self.history, "best_round": best,
                "best_val_loss": None if best is None else next(h["val_loss"] for h in self.history if h["round"] == best),
                "stop_reason": self.stop_reason()}

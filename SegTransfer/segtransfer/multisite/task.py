"""The site task: what one site does in a round, independent of the engine that schedules it.

A task kind (:class:`TaskKind`) names a model family (``"hemorrhage"``; the cardiac model can register
its own) and gives the package description of the network it trains, which the server needs to
create the initial global model without any data, and a way to open a site's task on the site's own
folder.  A :class:`SiteTask` trains ``epochs`` local epochs from given weights and returns a
:class:`LocalResult`; the weights and the sample count are what leave the site, the metrics stay in
the site's own log.

Weights are ``{state_dict key: numpy array}`` (the full ``state_dict``, normalisation running
statistics included; see :mod:`segtransfer.multisite.weights`).
"""

from __future__ import annotations

import importlib
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InputError
from ..progress import ProgressCallback


@dataclass
class LocalResult:
    """The outcome of local training at one site.

    ``weights``: the full state dict after training (numpy arrays); ``n_samples``: the number of
    training samples (patches) the site trained on, FedAvg's aggregation weight; ``metrics``: local
    training and validation figures of the last epoch (kept at the site); ``history``: one record
    per epoch (kept at the site).
    """

    weights: dict[str, np.ndarray]
    n_samples: int
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)


class SiteTask(ABC):
    """One site's training task on its own data folder (nothing else is read)."""

    #: the task kind's name, e.g. ``"hemorrhage"``
    kind: str

    @abstractmethod
    def description(self) -> dict:
        """Package description of the network trained (validated; see :mod:`segtransfer.models`)."""

    @abstractmethod
    def train(self, weights: dict[str, np.ndarray], epochs: int, first_epoch: int) -> LocalResult:
        """Train ``epochs`` local epochs starting from ``weights``.  ``first_epoch`` (1-based) numbers the
        site's epochs across rounds so that each epoch's randomness differs and is reproducible."""

    @abstractmethod
    def training_data(self) -> dict:
        """Counts describing the site's training data for a model card (no voxel data)."""


@dataclass(frozen=True)
class TaskKind:
    """A registered task kind: ``description()`` gives the network's package description (the server
    builds the initial model from it); ``open_site(folder, options, progress)`` opens a site's task;
    ``defaults`` are the training options a site may override (unknown options are refused); ``check(options)``,
    where given, refuses option values the task cannot use (raises InputError) before any site starts."""

    name: str
    description: Callable[[], dict]
    open_site: Callable[[Path, dict, ProgressCallback | None], SiteTask]
    defaults: dict
    check: Callable[[dict], None] | None = None


#: Registered kinds: name -> TaskKind, or "module:attribute" resolved on first use (keeps imports lazy).
_KINDS: dict[str, TaskKind | str] = {"hemorrhage": "segtransfer.multisite.hemorrhage_task:KIND"}


def register_task_kind(kind: TaskKind) -> None:
    """Add (or replace) a task kind, e.g. a cardiac model, so multi-site jobs can train it."""
    _KINDS[kind.name] = kind


def task_kinds() -> list[str]:
    """Names of the registered task kinds, sorted."""
    return sorted(_KINDS)


def get_task_kind(name: str) -> TaskKind:
    """The registered kind ``name``; ``InputError`` for an unknown one."""
    entry = _KINDS.get(str(name))
    if entry is None:
        raise InputError("task", f"unknown task kind {name!r} (known: {', '.join(task_kinds())})")
    if isinstance(entry, str):
        module, attr = entry.split(":")
        entry = getattr(importlib.import_module(module), attr)
        _KINDS[str(name)] = entry
    return entry


def check_options(kind: TaskKind, options: dict | None) -> dict:
    """``kind.defaults`` updated with ``options``; refuses unknown option names, values of another type than the
    default's and values the kind's ``check`` refuses."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(kind.defaults))
    if unknown:
        raise InputError(f"{kind.name} options", f"unknown option(s) {', '.join(unknown)} (known: {', '.join(sorted(kind.defaults))})")
    out = dict(kind.defaults)
    for key, value in options.items():
        default = kind.defaults[key]
        try:
            out[key] = type(default)(value)
        except (TypeError, ValueError):
            raise InputError(f"{kind.name} options", f"{key} must be a {type(default).__name__}, got {value!r}") from None
    if kind.check is not None:
        kind.check(out)
    return out


def open_site_task(kind: str, folder: str | os.PathLike, options: dict | None = None, progress: ProgressCallback | None = None) -> SiteTask:
    """Open the site task of ``kind`` on the site's ``folder`` with training ``options``."""
    k = get_task_kind(kind)
    root = Path(folder)
    if not root.is_dir():
        raise InputError(root, "site data folder not found")
    return k.open_site(root, check_options(k, options), progress)

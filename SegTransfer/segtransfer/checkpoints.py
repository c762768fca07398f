"""Training checkpoints shared by every training loop (hemorrhage, cardiac): atomic, exact resume.

A checkpoint is a folder rewritten whole after every epoch (:func:`~segtransfer.io.atomic_dir`: a
temporary sibling, then a rename), holding

- ``checkpoint_weights.safetensors``: the network's full ``state_dict`` after the epoch;
- ``checkpoint_optimizer.safetensors``: the optimizer's per-parameter tensors (Adam moments, step);
- ``best_weights.safetensors``: the best weights so far (by the loop's own criterion);
- ``checkpoint.json``: epoch, history and the training settings (plus anything else the loop keeps,
  e.g. the learning-rate scheduler state), JSON only;
- ``training_log.csv``: the history as CSV, one row per epoch.

A ``kill -9`` at any moment leaves either the previous epoch's folder or the new one, never a mix.
Nothing is pickled: tensors go to safetensors, the rest to JSON.  A loop that derives all randomness
of an epoch from ``(seed, epoch)`` and reloads this state continues exactly as an uninterrupted run.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from .errors import InputError
from .io import atomic_dir

CHECKPOINT_WEIGHTS = "checkpoint_weights.safetensors"
CHECKPOINT_OPTIMIZER = "checkpoint_optimizer.safetensors"
CHECKPOINT_STATE = "checkpoint.json"
BEST_WEIGHTS = "best_weights.safetensors"
LOG = "training_log.csv"
#: Everything a checkpoint folder holds; it is rewritten whole (atomically) after every epoch.
CHECKPOINT_FILES = (CHECKPOINT_WEIGHTS, CHECKPOINT_OPTIMIZER, CHECKPOINT_STATE, BEST_WEIGHTS, LOG)


def history_csv(history: list[dict], fieldnames: Sequence[str]) -> str:
    """The per-epoch history (list of dicts) as CSV text with the given columns."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fieldnames), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    return buf.getvalue()


def save_checkpoint(folder: str | os.PathLike, network: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict,
                    best_weights: dict[str, torch.Tensor], log_text: str) -> None:
    """Write the epoch's checkpoint (see the module docstring) into a temporary folder that then
    replaces ``folder``.  ``state`` must be JSON-serialisable; ``log_text`` is the CSV log."""
    from safetensors.torch import save_file

    opt = optimizer.state_dict()
    tensors = {f"{pid}.{name}": value.contiguous() for pid, s in opt["state"].items() for name, value in s.items() if torch.is_tensor(value)}
    with atomic_dir(folder) as tmp:
        save_file({k: v.detach().clone().contiguous() for k, v in network.state_dict().items()}, str(tmp / CHECKPOINT_WEIGHTS))
        save_file(tensors, str(tmp / CHECKPOINT_OPTIMIZER))
        save_file({k: v.contiguous() for k, v in best_weights.items()}, str(tmp / BEST_WEIGHTS))
        (tmp / LOG).write_text(log_text, encoding="utf-8")
        (tmp / CHECKPOINT_STATE).write_text(json.dumps(state, indent=2), encoding="utf-8")


def check_checkpoint_folder(folder: str | os.PathLike, resume: bool, settings: dict, allowed: Sequence[str] = CHECKPOINT_FILES) -> bool:
    """Whether ``folder`` holds a checkpoint to resume.  Refuses (``InputError``) a folder with files
    other than ``allowed`` (it is replaced whole after every epoch), an earlier run's checkpoint
    without ``resume`` (that would discard it), and resuming with other settings than the checkpoint's."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(folder, "checkpoint folder exists and is not a folder")
    if not folder.is_dir():
        return False
    others = sorted(p.name for p in folder.iterdir() if p.name not in allowed)
    if others:
        raise InputError(folder, f"checkpoint folder holds other files ({', '.join(others[:3])}); choose a new folder")
    if not (folder / CHECKPOINT_STATE).is_file():
        return False
    if not resume:
        raise InputError(folder, "holds the checkpoint of an earlier run: resume it (--resume) or choose another checkpoint folder")
    try:
        saved = json.loads((folder / CHECKPOINT_STATE).read_text(encoding="utf-8")).get("settings")
    except ValueError:
        raise InputError(folder / CHECKPOINT_STATE, "corrupt checkpoint state (not JSON)") from None
    if saved is not None and saved != settings:
        changed = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
        raise InputError(folder, f"checkpoint was written with other settings ({', '.join(changed)}); resume with the same ones")
    return True


def load_checkpoint(folder: str | os.PathLike, network: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict[str, torch.Tensor]]:
    """Restore network weights and optimizer state from a checkpoint folder (in place).
    Returns ``(state dict from checkpoint.json, best weights)``."""
    from safetensors.torch import load_file

    folder = Path(folder)
    state = json.loads((folder / CHECKPOINT_STATE).read_text(encoding="utf-8"))
    network.load_state_dict(load_file(str(folder / CHECKPOINT_WEIGHTS)))
    tensors = load_file(str(folder / CHECKPOINT_OPTIMIZER))
    opt = optimizer.state_dict()
    restored: dict[int, dict] = {}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        restored.setdefault(int(pid), {})[name] = value
    for s in restored.values():
        if "step" in s and s["step"].ndim == 0:
            s["step"] = s["step"].float()
    opt["state"] = restored
    optimizer.load_state_dict(opt)
    return state, load_file(str(folder / BEST_WEIGHTS))

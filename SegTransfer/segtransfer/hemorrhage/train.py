"""Single-site training of the hemorrhage model on 2D axial patches.

Per volume, positive patches (centred on hemorrhage voxels) and negative patches (centred on brain
voxels without hemorrhage, half of them within 3 mm of the skull) are drawn; patches are cut from the preprocessed volumes on the fly (only
their centres are stored).  Continuous Dice loss (MONAI ``DiceLoss`` with sigmoid), Adam.  The
source study's convergence rule: stop when the best validation loss has improved by less than
``min_delta`` (1e-4) over the last ``patience`` (10) epochs, or at ``max_epochs``.

The epoch step (:func:`train_epoch`) is the unit multi-site training reuses.  Checkpoints are
safetensors (weights, Adam state) plus JSON (epoch, history), written atomically after every
epoch; all randomness of an epoch is derived from ``(seed, epoch)``, so a run resumed after a crash
continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

from ..errors import InputError
from ..io import atomic_dir, check_same_grid, read_image, read_labels
from ..progress import ProgressCallback, print_progress
from .network import description as model_description
from .preprocess import model_input, preprocess

CHECKPOINT_WEIGHTS = "checkpoint_weights.safetensors"
CHECKPOINT_OPTIMIZER = "checkpoint_optimizer.safetensors"
CHECKPOINT_STATE = "checkpoint.json"
BEST_WEIGHTS = "best_weights.safetensors"
LOG = "training_log.csv"
#: Everything the checkpoint folder holds; it is rewritten whole (atomically) after every epoch.
CHECKPOINT_FILES = (CHECKPOINT_WEIGHTS, CHECKPOINT_OPTIMIZER, CHECKPOINT_STATE, BEST_WEIGHTS, LOG)


@dataclass
class Volume:
    """A preprocessed training volume: model input ``x`` and ``target`` ``[k, y, x]``, and patch centres
    (``positives``/``negatives``: (n, 3) voxel indices)."""

    name: str
    x: np.ndarray
    target: np.ndarray
    positives: np.ndarray
    negatives: np.ndarray


def prepare(image: sitk.Image, mask: sitk.Image, name: str, n_pos: int, n_neg: int, rng: np.random.Generator) -> Volume:
    """Preprocess one CT with its 0/1 mask (same grid) and draw patch centres."""
    check_same_grid(image, mask, name, f"{name} mask")
    pre = preprocess(image, name)
    oriented_mask = sitk.DICOMOrient(mask, "LPS")
    target = sitk.GetArrayFromImage(oriented_mask) > 0
    brain = sitk.GetArrayFromImage(pre.brain).astype(bool)
    x = model_input(sitk.GetArrayFromImage(pre.image), brain, model_description()["input"]["intensity"])
    # half of the negatives next to the skull (within 3 mm of the brain border), where partial volume of
    # bone with brain or CSF looks like blood
    inner = ndimage.binary_erosion(brain, iterations=max(1, int(round(3.0 / min(pre.image.GetSpacing())))))
    pos = np.argwhere(target & brain)
    neg_border, neg_inner = np.argwhere(brain & ~inner & ~target), np.argwhere(inner & ~target)
    pick = lambda idx, n: idx[rng.choice(len(idx), size=min(n, len(idx)), replace=False)] if len(idx) else idx.reshape(0, 3)
    negatives = np.concatenate([pick(neg_border, n_neg // 2), pick(neg_inner, n_neg - n_neg // 2)])
    return Volume(name, x, target.astype(np.float32), pick(pos, n_pos), negatives)


def _patch(vol: Volume, centre: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A ``size`` x ``size`` axial patch around ``centre`` (zero-padded at the slice border)."""
    k, j, i = centre
    half = size // 2
    x = np.zeros((size, size), np.float32)
    y = np.zeros((size, size), np.float32)
    j0, i0 = j - half, i - half
    sj = slice(max(j0, 0), min(j0 + size, vol.x.shape[1]))
    si = slice(max(i0, 0), min(i0 + size, vol.x.shape[2]))
    dj = slice(sj.start - j0, sj.stop - j0)
    di = slice(si.start - i0, si.stop - i0)
    x[dj, di] = vol.x[k, sj, si]
    y[dj, di] = vol.target[k, sj, si]
    return x, y


def patches(volumes: list[Volume], size: int) -> tuple[np.ndarray, np.ndarray]:
    """All patches ``[n, 1, size, size]`` (inputs, targets) of the volumes' positive and negative centres."""
    xs, ys = [], []
    for vol in volumes:
        for centre in np.concatenate([vol.positives, vol.negatives]):
            x, y = _patch(vol, centre, size)
            xs.append(x)
            ys.append(y)
    return np.stack(xs)[:, None], np.stack(ys)[:, None]


def train_epoch(network, optimizer, loss_fn, x: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator) -> float:
    """One pass over the patches in a random order; returns the mean training loss."""
    network.train()
    order = rng.permutation(len(x))
    total = 0.0
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        xb, yb = torch.from_numpy(x[idx]), torch.from_numpy(y[idx])
        optimizer.zero_grad()
        loss = loss_fn(network(xb), yb)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(idx)
    return total / len(order)


def evaluate(network, loss_fn, x: np.ndarray, y: np.ndarray, batch_size: int = 64) -> tuple[float, float]:
    """Mean loss and Dice (threshold 0.5) over validation patches."""
    network.eval()
    losses, inter, total = [], 0.0, 0.0
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            xb, yb = torch.from_numpy(x[start:start + batch_size]), torch.from_numpy(y[start:start + batch_size])
            out = network(xb)
            losses.append(float(loss_fn(out, yb)) * len(xb))
            pred = (torch.sigmoid(out) > 0.5).float()
            inter += float((pred * yb).sum())
            total += float(pred.sum() + yb.sum())
    return sum(losses) / len(x), (2 * inter / total if total else 1.0)


def converged(val_losses: list[float], patience: int, min_delta: float) -> bool:
    """The study's rule: the best validation loss improved by less than ``min_delta`` over the last ``patience`` epochs."""
    if len(val_losses) <= patience:
        return False
    return min(val_losses[:-patience]) - min(val_losses) < min_delta


def _save_checkpoint(folder: Path, network, optimizer, state: dict, best_weights: dict) -> None:
    """Write the epoch's checkpoint: weights, Adam state, best weights so far, ``state`` (epoch,
    history, settings) and the CSV log, all into a temporary folder that then replaces ``folder``, so
    a crash at any moment leaves either the previous epoch's checkpoint or this one, never a mix."""
    from safetensors.torch import save_file

    opt = optimizer.state_dict()
    tensors = {f"{pid}.{name}": value.contiguous() for pid, s in opt["state"].items() for name, value in s.items() if torch.is_tensor(value)}
    with atomic_dir(folder) as tmp:
        save_file({k: v.detach().clone().contiguous() for k, v in network.state_dict().items()}, str(tmp / CHECKPOINT_WEIGHTS))
        save_file(tensors, str(tmp / CHECKPOINT_OPTIMIZER))
        save_file({k: v.contiguous() for k, v in best_weights.items()}, str(tmp / BEST_WEIGHTS))
        (tmp / LOG).write_text(_log_csv(state["history"]), encoding="utf-8")
        (tmp / CHECKPOINT_STATE).write_text(json.dumps(state, indent=2), encoding="utf-8")


def _check_checkpoint_folder(folder: Path, resume: bool, settings: dict) -> bool:
    """Whether ``folder`` holds a checkpoint to resume.  Refuses a folder with other files (it is
    replaced whole after every epoch), an earlier run's checkpoint without ``resume`` (that would
    discard it), and resuming with other training settings than the checkpoint's."""
    if folder.exists() and not folder.is_dir():
        raise InputError(folder, "checkpoint folder exists and is not a folder")
    if not folder.is_dir():
        return False
    others = sorted(p.name for p in folder.iterdir() if p.name not in CHECKPOINT_FILES)
    if others:
        raise InputError(folder, f"checkpoint folder holds other files ({', '.join(others[:3])}); choose a new folder")
    if not (folder / CHECKPOINT_STATE).is_file():
        return False
    if not resume:
        raise InputError(folder, "holds the checkpoint of an earlier run: resume it (--resume) or choose another checkpoint folder")
    try:
        saved = json.loads((folder / CHECKPOINT_STATE).read_text()).get("settings")
    except ValueError:
        raise InputError(folder / CHECKPOINT_STATE, "corrupt checkpoint state (not JSON)") from None
    if saved is not None and saved != settings:
        changed = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
        raise InputError(folder, f"checkpoint was written with other settings ({', '.join(changed)}); resume with the same ones")
    return True


def _load_checkpoint(folder: Path, network, optimizer) -> dict:
    from safetensors.torch import load_file

    state = json.loads((folder / CHECKPOINT_STATE).read_text())
    network.load_state_dict(load_file(str(folder / CHECKPOINT_WEIGHTS)))
    tensors = load_file(str(folder / CHECKPOINT_OPTIMIZER))
    opt = optimizer.state_dict()
    restored = {}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        restored.setdefault(int(pid), {})[name] = value
    for pid, s in restored.items():
        if "step" in s and s["step"].ndim == 0:
            s["step"] = s["step"].float()
    opt["state"] = restored
    optimizer.load_state_dict(opt)
    return state


def load_cases(folder: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """Training cases of a folder: ``<case>/image.nii.gz`` with ``<case>/mask.nii.gz`` (the phantom layout),
    or ``<name>.nii.gz`` with ``<name>_mask.nii.gz`` side by side."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(root, "not a folder")
    cases = [(d.name, d / "image.nii.gz", d / "mask.nii.gz") for d in sorted(root.iterdir()) if (d / "image.nii.gz").exists() and (d / "mask.nii.gz").exists()]
    for f in sorted(root.glob("*_mask.nii.gz")):
        img = f.with_name(f.name.replace("_mask.nii.gz", ".nii.gz"))
        if img.exists():
            cases.append((img.name[:-7], img, f))
    if not cases:
        raise InputError(root, "no training cases (case/image.nii.gz + case/mask.nii.gz, or X.nii.gz + X_mask.nii.gz)")
    return cases


def train(cases: list[tuple[str, sitk.Image | Path, sitk.Image | Path]], out: str | os.PathLike, *, site: str = "local",
          patch_size: int = 128, positives: int = 1000, negatives: int = 1000, validation_fraction: float = 0.2,
          lr: float = 1e-4, batch_size: int = 32, max_epochs: int = 200, patience: int = 10, min_delta: float = 1e-4,
          seed: int = 0, checkpoint_dir: str | os.PathLike | None = None, resume: bool = False,
          initial_weights: dict | None = None, card_extra: dict | None = None, progress: ProgressCallback | None = None):
    """Train the hemorrhage model and write a model package to ``out``; returns the saved package.

    ``cases``: (name, CT, 0/1 mask) with images or paths; split by case into training and validation
    (``validation_fraction``, at least one case each).  ``checkpoint_dir`` (default ``out`` + ``.checkpoints``)
    holds the per-epoch checkpoint and the CSV log; ``resume`` continues from it.
    """
    from monai.losses import DiceLoss

    from ..models import ModelPackage, build_network, save_package

    progress = progress or print_progress
    if len(cases) < 2:
        raise InputError("training cases", f"need at least 2 cases (training and validation), got {len(cases)}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    volumes = []
    for n, (name, image, mask) in enumerate(cases):
        progress(0.05 * n / len(cases), f"preprocessing {name}")
        img = read_image(image) if isinstance(image, (str, Path)) else image
        msk = read_labels(mask).image if isinstance(mask, (str, Path)) else mask
        volumes.append(prepare(img, msk, name, positives, negatives, rng))
    n_val = max(1, int(round(validation_fraction * len(volumes))))
    order = rng.permutation(len(volumes))
    val_vols, train_vols = [volumes[i] for i in order[:n_val]], [volumes[i] for i in order[n_val:]]
    x_train, y_train = patches(train_vols, patch_size)
    x_val, y_val = patches(val_vols, patch_size)
    desc = model_description()
    network = build_network(desc)
    if initial_weights is not None:
        network.load_state_dict(initial_weights)
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    loss_fn = DiceLoss(sigmoid=True, batch=True)  # Dice over the whole batch: negative patches have empty targets
    ckpt = Path(checkpoint_dir) if checkpoint_dir else Path(str(out) + ".checkpoints")
    settings = {"cases": [name for name, _, _ in cases], "seed": seed, "patch_size": patch_size, "positives": positives,
                "negatives": negatives, "validation_fraction": validation_fraction, "lr": lr, "batch_size": batch_size}
    state = {"epoch": 0, "history": [], "best_val_loss": None, "settings": settings}
    best_weights = {k: v.clone() for k, v in network.state_dict().items()}
    if _check_checkpoint_folder(ckpt, resume, settings):
        from safetensors.torch import load_file

        state = _load_checkpoint(ckpt, network, optimizer)
        best_weights = load_file(str(ckpt / BEST_WEIGHTS))
        progress(0.05, f"resumed after epoch {state['epoch']}")
    while state["epoch"] < max_epochs and not converged([h["val_loss"] for h in state["history"]], patience, min_delta):
        epoch = state["epoch"] + 1
        torch.manual_seed(seed * 100003 + epoch)
        train_loss = train_epoch(network, optimizer, loss_fn, x_train, y_train, batch_size, np.random.default_rng([seed, epoch]))
        val_loss, val_dice = evaluate(network, loss_fn, x_val, y_val)
        state["history"].append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_dice": val_dice})
        state["epoch"] = epoch
        if state["best_val_loss"] is None or val_loss < state["best_val_loss"]:
            state["best_val_loss"] = val_loss
            best_weights = {k: v.detach().clone() for k, v in network.state_dict().items()}
        _save_checkpoint(ckpt, network, optimizer, state, best_weights)
        progress(0.05 + 0.95 * epoch / max_epochs, f"epoch {epoch}: train loss {train_loss:.4f}, val loss {val_loss:.4f}, val Dice {val_dice:.3f}")
    best = min(state["history"], key=lambda h: h["val_loss"])
    card = {
        "name": desc["name"], "provenance": {"site": site, "trained_with": "segtransfer hemorrhage train"},
        "intended_use": "Segmentation of intracranial hemorrhage on head CT.",
        "training_data": {"scans": len(train_vols), "validation_scans": len(val_vols), "patches": int(len(x_train)),
                          "patch_size": patch_size, "positives_per_scan": positives, "negatives_per_scan": negatives},
        "validation": {"best_epoch": best["epoch"], "val_loss": best["val_loss"], "val_patch_dice": best["val_dice"]},
        "training": {"optimizer": "Adam", "lr": lr, "loss": "continuous Dice (sigmoid)", "epochs": state["epoch"], "seed": seed,
                     "convergence": f"best validation loss improved < {min_delta} over {patience} epochs, max {max_epochs}"},
        **(card_extra or {}),
    }
    network.load_state_dict(best_weights)
    return save_package(ModelPackage.from_network(network, desc, card), out)


def _log_csv(history: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["epoch", "train_loss", "val_loss", "val_dice"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return buf.getvalue()

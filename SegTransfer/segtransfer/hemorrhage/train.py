"""Single-site training of the hemorrhage model on 2D axial patches.

Per volume, positive patches (centred on hemorrhage voxels) and negative patches (centred on brain
voxels without hemorrhage, half of them within 3 mm of the skull) are drawn; patches are cut from the preprocessed volumes on the fly (only
their centres are stored).  Continuous Dice loss (MONAI ``DiceLoss`` with sigmoid), Adam.  The source study's convergence rule: stop when the best validation loss has improved by less than
``min_delta`` (1e-4) over the last ``patience`` (10) epochs, or at ``max_epochs``.

:func:`prepare_site` (preprocess a site's cases, draw patches, split by case) and :func:`run_epoch`
(one seeded training epoch plus validation) are the pieces multi-site training reuses
(``segtransfer.multisite``): the same step runs in single-site training and at each site.  Checkpoints are
safetensors (weights, Adam state) plus JSON (epoch, history), written atomically after every
epoch; all randomness of an epoch is derived from ``(seed, epoch)``, so a run resumed after a crash
continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

from ..errors import InputError
from ..checkpoints import (  # the checkpoint folder (rewritten whole, atomically, each epoch) is shared with the cardiac loop
    BEST_WEIGHTS,
    CHECKPOINT_FILES,
    CHECKPOINT_OPTIMIZER,
    CHECKPOINT_STATE,
    CHECKPOINT_WEIGHTS,
    LOG,
    check_checkpoint_folder,
    history_csv,
    load_checkpoint,
    save_checkpoint,
)
from ..io import check_same_grid, read_image, read_labels
from ..progress import ProgressCallback, print_progress
from .network import description as model_description
from .preprocess import model_input, preprocess


@dataclass
class Volume:
    """A preprocessed training volume: model input ``x`` and ``target`` ``[k, y, x]``, and patch centres
    (``positives``/``negatives``: (n, 3) voxel indices)."""

    name: str
    x: np.ndarray
    target: np.ndarray
    positives: np.ndarray
    negatives: np.ndarray


#: How positive patch centres are drawn (``train(positive_sampling=...)``): ``uniform`` over the hemorrhage voxels
#: (the default), or ``balanced`` (:func:`balanced_centres`).
POSITIVE_SAMPLING = ("uniform", "balanced")


def check_positive_sampling(name: str) -> None:
    """InputError unless ``name`` is one of :data:`POSITIVE_SAMPLING`."""
    if name not in POSITIVE_SAMPLING:
        raise InputError("positive sampling", f"unknown positive sampling {name!r} (known: {', '.join(POSITIVE_SAMPLING)})")


def patch_hemorrhage(target: np.ndarray, size: int) -> np.ndarray:
    """Per voxel of ``target`` ``[k, y, x]`` (0/1), the number of hemorrhage pixels in the ``size`` x ``size``
    axial patch centred on it (the window of :func:`_patch`, zero outside the slice)."""
    box = ndimage.uniform_filter(target.astype(np.float64), size=(1, size, size), mode="constant") * (size * size)
    return np.rint(box)


def balanced_centres(target: np.ndarray, size: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` positive centres ``(n, 3)`` drawn without replacement from the hemorrhage voxels of ``target``, each
    with probability inversely proportional to the hemorrhage pixels of its ``size``-pixel patch
    (:func:`patch_hemorrhage`).  Each lesion section (one lesion on one slice) that fits in a patch then gets
    about the same share of the positive patches whatever its area: large bleeds no longer take most of them,
    small lesions and lesion borders get more, and the positive patches carry less hemorrhage (about 30 %
    less on the phantom study's sites), so the batch Dice weighs the negative patches' false positives more.
    Hand-written: MONAI's ``RandWeightedCrop`` draws with replacement from a weight map, not a fixed set of
    distinct centres per scan."""
    pos = np.argwhere(target > 0)
    if len(pos) == 0:
        return pos.reshape(0, 3)
    weight = 1.0 / np.maximum(patch_hemorrhage(target, size)[tuple(pos.T)], 1.0)
    return pos[rng.choice(len(pos), size=min(n, len(pos)), replace=False, p=weight / weight.sum())]


def prepare(image: sitk.Image, mask: sitk.Image, name: str, n_pos: int, n_neg: int, rng: np.random.Generator,
            positive_sampling: str = "uniform", patch_size: int | None = None, balance_rng: np.random.Generator | None = None) -> Volume:
    """Preprocess one CT with its 0/1 mask (same grid) and draw patch centres.  ``positive_sampling``
    ``balanced`` draws the positives with :func:`balanced_centres` (``patch_size`` pixels) from ``balance_rng``."""
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
    # the target is restricted to the brain mask: the input is zero outside it and inference predicts only inside it,
    # so hemorrhage labels outside it (bone-bright partial-volume voxels) would only teach false positives at the border
    positives = pick(pos, n_pos)  # drawn in every mode, so that rng's later draws (negatives, split) do not depend on it
    if positive_sampling == "balanced":
        positives = balanced_centres(target & brain, patch_size, n_pos, balance_rng)
    return Volume(name, x, (target & brain).astype(np.float32), positives, negatives)


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


@dataclass
class SitePatches:
    """One site's training material: patches ``[n, 1, size, size]`` (float32 inputs, 0/1 targets) for
    training and validation, and the scans each split came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    train_scans: list[str]
    val_scans: list[str]


def prepare_site(cases: list[tuple[str, sitk.Image | Path, sitk.Image | Path]], *, patch_size: int, positives: int, negatives: int,
                 validation_fraction: float, seed: int, positive_sampling: str = "uniform",
                 progress: ProgressCallback | None = None) -> SitePatches:
    """Read and preprocess ``cases`` (name, CT, 0/1 mask as images or paths), draw patch centres
    (positives as ``positive_sampling`` says, :data:`POSITIVE_SAMPLING`) and split by case into training and
    validation (``validation_fraction``, at least one case each).  Deterministic from ``seed``; the split
    and the negatives are the same for either positive sampling."""
    progress = progress or print_progress
    check_positive_sampling(positive_sampling)
    if len(cases) < 2:
        raise InputError("training cases", f"need at least 2 cases (training and validation), got {len(cases)}")
    rng = np.random.default_rng(seed)
    volumes = []
    for n, (name, image, mask) in enumerate(cases):
        progress(0.05 * n / len(cases), f"preprocessing {name}")
        img = read_image(image) if isinstance(image, (str, Path)) else image
        msk = read_labels(mask).image if isinstance(mask, (str, Path)) else mask
        volumes.append(prepare(img, msk, name, positives, negatives, rng, positive_sampling, patch_size, np.random.default_rng([seed, 1, n])))
    n_val = max(1, int(round(validation_fraction * len(volumes))))
    order = rng.permutation(len(volumes))
    val_vols, train_vols = [volumes[i] for i in order[:n_val]], [volumes[i] for i in order[n_val:]]
    x_train, y_train = patches(train_vols, patch_size)
    x_val, y_val = patches(val_vols, patch_size)
    return SitePatches(x_train, y_train, x_val, y_val, [v.name for v in train_vols], [v.name for v in val_vols])


def dice_loss():
    """The training loss: continuous Dice over the whole batch (MONAI), sigmoid output; batch-wise because
    negative patches have empty targets."""
    from monai.losses import DiceLoss

    return DiceLoss(sigmoid=True, batch=True)



def run_epoch(network, optimizer, loss_fn, data: SitePatches, batch_size: int, seed: int, epoch: int) -> dict:
    """Training epoch number ``epoch`` (1-based) on ``data`` followed by validation; all randomness comes
    from ``(seed, epoch)``.  Returns ``{"epoch", "train_loss", "val_loss", "val_dice"}``."""
    torch.manual_seed(seed * 100003 + epoch)
    train_loss = train_epoch(network, optimizer, loss_fn, data.x_train, data.y_train, batch_size, np.random.default_rng([seed, epoch]))
    val_loss, val_dice = evaluate(network, loss_fn, data.x_val, data.y_val)
    return {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_dice": val_dice}


def converged(val_losses: list[float], patience: int, min_delta: float) -> bool:
    """The study's rule: the best validation loss improved by less than ``min_delta`` over the last ``patience`` epochs."""
    if len(val_losses) <= patience:
        return False
    return min(val_losses[:-patience]) - min(val_losses) < min_delta


def _save_checkpoint(folder: Path, network, optimizer, state: dict, best_weights: dict) -> None:
    """Write the epoch's checkpoint (weights, Adam state, best weights, state JSON, CSV log) atomically;
    see :mod:`segtransfer.checkpoints`."""
    save_checkpoint(folder, network, optimizer, state, best_weights, _log_csv(state["history"]))


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
          seed: int = 0, positive_sampling: str = "uniform", checkpoint_dir: str | os.PathLike | None = None, resume: bool = False,
          initial_weights: dict | None = None, card_extra: dict | None = None, description_extra: dict | None = None,
          progress: ProgressCallback | None = None):
    """Train the hemorrhage model and write a model package to ``out``; returns the saved package.

    ``cases``: (name, CT, 0/1 mask) with images or paths; split by case into training and validation
    (``validation_fraction``, at least one case each).  ``checkpoint_dir`` (default ``out`` + ``.checkpoints``)
    holds the per-epoch checkpoint and the CSV log; ``resume`` continues from it.  ``initial_weights``: a
    state dict to start from (warm start); ``description_extra``: the package description's ``extra``
    (inference options, see :mod:`.network`).  ``positive_sampling``: how positive patch centres are
    drawn (:data:`POSITIVE_SAMPLING`; ``balanced``: :func:`balanced_centres`, training and validation patches).
    """
    from ..models import ModelPackage, build_network, save_package

    progress = progress or print_progress
    if len(cases) < 2:
        raise InputError("training cases", f"need at least 2 cases (training and validation), got {len(cases)}")
    check_positive_sampling(positive_sampling)  # an unknown name fails before the work
    torch.manual_seed(seed)
    data = prepare_site(cases, patch_size=patch_size, positives=positives, negatives=negatives,
                        validation_fraction=validation_fraction, seed=seed, positive_sampling=positive_sampling, progress=progress)
    desc = model_description(extra=description_extra)
    network = build_network(desc)
    if initial_weights is not None:
        network.load_state_dict(initial_weights)
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    loss_fn = dice_loss()
    ckpt = Path(checkpoint_dir) if checkpoint_dir else Path(str(out) + ".checkpoints")
    settings = {"cases": [name for name, _, _ in cases], "seed": seed, "patch_size": patch_size, "positives": positives,
                "negatives": negatives, "validation_fraction": validation_fraction, "lr": lr, "batch_size": batch_size,
                "positive_sampling": positive_sampling}
    state = {"epoch": 0, "history": [], "best_val_loss": None, "settings": settings}
    best_weights = {k: v.clone() for k, v in network.state_dict().items()}
    if check_checkpoint_folder(ckpt, resume, settings):
        state, best_weights = load_checkpoint(ckpt, network, optimizer)
        progress(0.05, f"resumed after epoch {state['epoch']}")
    while state["epoch"] < max_epochs and not converged([h["val_loss"] for h in state["history"]], patience, min_delta):
        epoch = state["epoch"] + 1
        record = run_epoch(network, optimizer, loss_fn, data, batch_size, seed, epoch)
        train_loss, val_loss, val_dice = record["train_loss"], record["val_loss"], record["val_dice"]
        state["history"].append(record)
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
        "training_data": {"scans": len(data.train_scans), "validation_scans": len(data.val_scans), "patches": int(len(data.x_train)),
                          "patch_size": patch_size, "positives_per_scan": positives, "negatives_per_scan": negatives,
                          "positive_sampling": positive_sampling},
        "validation": {"best_epoch": best["epoch"], "val_loss": best["val_loss"], "val_patch_dice": best["val_dice"]},
        "training": {"optimizer": "Adam", "lr": lr, "loss": "continuous Dice (sigmoid)", "epochs": state["epoch"], "seed": seed,
                     "convergence": f"best validation loss improved < {min_delta} over {patience} epochs, max {max_epochs}"},
        **(card_extra or {}),
    }
    network.load_state_dict(best_weights)
    return save_package(ModelPackage.from_network(network, desc, card), out)


def _log_csv(history: list[dict]) -> str:
    return history_csv(history, ["epoch", "train_loss", "val_loss", "val_dice"])

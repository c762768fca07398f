"""The head-CT hemorrhage model as a site task: the single-site training step of
:mod:`segtransfer.hemorrhage.train` (patches, continuous Dice loss, Adam) run for N local epochs
from the weights a round brings.

Site folder: ``train/`` holds the training cases (``CASE/image.nii.gz`` + ``CASE/mask.nii.gz``, or
``X.nii.gz`` + ``X_mask.nii.gz``), split by case into training and validation; a folder without
``train/`` is itself the training folder.  Patches are drawn once per site process and reused in
every round.  Adam starts fresh at every visit: optimizer state is local and never sent.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..hemorrhage import train as single_site
from ..hemorrhage.network import description as hemorrhage_description
from ..progress import ProgressCallback, print_progress
from .task import LocalResult, SiteTask, TaskKind
from .weights import network_from_weights, to_numpy

#: Training options a job may set; the defaults are those of ``segtransfer hemorrhage train``.
DEFAULTS = {"patch_size": 128, "positives": 1000, "negatives": 1000, "validation_fraction": 0.2, "lr": 1e-4,
            "batch_size": 32, "seed": 0,
            "positive_sampling": "uniform"}


class HemorrhageSiteTask(SiteTask):
    """Hemorrhage training at one site; reads only ``folder``."""

    kind = "hemorrhage"

    def __init__(self, folder: Path, options: dict, progress: ProgressCallback | None = None):
        self.folder = Path(folder)
        self.options = dict(options)
        self.progress = progress or print_progress
        train_dir = self.folder / "train" if (self.folder / "train").is_dir() else self.folder
        self.cases = single_site.load_cases(train_dir)
        self._data: single_site.SitePatches | None = None

    def description(self) -> dict:
        return hemorrhage_description()

    def data(self) -> single_site.SitePatches:
        """The site's patches, drawn on first use."""
        if self._data is None:
            o = self.options
            self._data = single_site.prepare_site(self.cases, patch_size=o["patch_size"], positives=o["positives"], negatives=o["negatives"],
                                                  validation_fraction=o["validation_fraction"], seed=o["seed"],
                                                  positive_sampling=o["positive_sampling"], progress=self.progress)
        return self._data

    def train(self, weights, epochs: int, first_epoch: int) -> LocalResult:
        data = self.data()
        network = network_from_weights(self.description(), weights, f"weights received at {self.folder}")
        optimizer = torch.optim.Adam(network.parameters(), lr=self.options["lr"])
        loss_fn = single_site.dice_loss()
        history = []
        for epoch in range(first_epoch, first_epoch + epochs):
            history.append(single_site.run_epoch(network, optimizer, loss_fn, data, self.options["batch_size"], self.options["seed"], epoch))
            h = history[-1]
            self.progress(len(history) / epochs, f"local epoch {epoch}: train loss {h['train_loss']:.4f}, val loss {h['val_loss']:.4f}, val Dice {h['val_dice']:.3f}")
        return LocalResult(to_numpy(network.state_dict()), int(len(data.x_train)), dict(history[-1]), history)

    def training_data(self) -> dict:
        data = self.data()
        return {"scans": len(data.train_scans), "validation_scans": len(data.val_scans), "patches": int(len(data.x_train)),
                "patch_size": self.options["patch_size"]}


def check_options(options: dict) -> None:
    """Refuse an unknown ``positive_sampling`` name (InputError) before the job starts."""
    single_site.check_positive_sampling(options["positive_sampling"])


KIND = TaskKind("hemorrhage", hemorrhage_description, HemorrhageSiteTask, DEFAULTS, check_options)

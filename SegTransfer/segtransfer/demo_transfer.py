"""The demo's cardiac transfer-learning step: a partner's model, fine-tuned locally on ED/ES labels.

The partner site (appearance profile ``site_a``) trains the partner model from random
initialisation on dense labels (every other phase labelled); the local site (``site_b``: lower dose,
softer kernel, weaker enhancement) has only ED/ES-labelled sparse 4D pairs and fine-tunes the
partner package (verified by its SHA-256, lr 1e-4).  Both models are scored on held-out local pairs
(Dice of LV blood pool and myocardium at ED and ES, :func:`segtransfer.cardiac.experiment.case_dice`).
The building blocks are those of the transfer-learning experiment (:mod:`segtransfer.cardiac.experiment`,
:mod:`segtransfer.cardiac.phantom_data`), in a configuration small enough for the demo.

Outputs in ``folder`` (``OUT/transfer`` of the demo)::

    partner_site/pairs/<id>/   the partner's dense-label sparse 4D pairs; partner_site/dataset.json
    partner_site/model/        the partner model package (and model.checkpoints/: training log, curves)
    local_site/pairs/<id>/     the local ED/ES pairs (train, validation, held-out test); local_site/dataset.json
    local_site/model/          the fine-tuned package (card: parent sha256, local cases)
    transfer.json              configuration, phantom seeds, both packages' sha256, held-out Dice per model

Phantom seeds: partner ``1000 seed + 100 + k``, local ``1000 seed + 500 + k``; the demo's own
studies use ``seed + offset`` (offsets below 1000), so none of them is a training or test case.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .batch.pipelines import _scaled
from .cardiac.experiment import SITE1, SITE2, case_dice
from .cardiac.network import choose_device
from .cardiac.phantom_data import phantom_pair, split_manifest
from .cardiac.train import train_cardiac
from .io import write_text
from .progress import ProgressCallback

#: The full demo: a few minutes on two CPU cores (one PyTorch thread).  Same grid, widths and batch
#: as the experiment's quick mode, with fewer studies and epochs.
FULL = {"partner_train": 4, "partner_validation": 1, "local_train": 5, "local_validation": 2, "local_test": 3,
        "n_phases": 10, "spacing_mm": 4.0, "partner_epochs": 25, "finetune_epochs": 10, "patience": 5,
        "channels": [8, 16, 32], "batch_size": 1}
#: ``--quick`` (tests): the smallest configuration that still runs every step; it checks the wiring,
#: the model it gives is not meant to segment well.
QUICK = {"partner_train": 1, "partner_validation": 1, "local_train": 1, "local_validation": 1, "local_test": 1,
         "n_phases": 4, "spacing_mm": 6.0, "partner_epochs": 2, "finetune_epochs": 1, "patience": 2,
         "channels": [4, 8], "batch_size": 1}
TRANSFER_FILE = "transfer.json"


def _mean_dice(cases: list[dict]) -> dict:
    """Mean over held-out cases of the per-case Dice (pool, myocardium, their mean) and per-case rows."""
    return {"dice_blood_pool": float(np.mean([c["dice_blood_pool"] for c in cases])),
            "dice_myocardium": float(np.mean([c["dice_myocardium"] for c in cases])),
            "dice": float(np.mean([c["dice"] for c in cases])),
            "cases": [{"study": c["study"], "phases": c["phases"], "dice_blood_pool": c["dice_blood_pool"],
                       "dice_myocardium": c["dice_myocardium"], "dice": c["dice"]} for c in cases]}


def run_transfer(folder: str | Path, seed: int = 0, quick: bool = False, device: str | None = "auto",
                 progress: ProgressCallback | None = None) -> dict:
    """Run the step (see the module docstring) into ``folder`` and return the ``transfer.json`` content
    (also written, last).  ``progress(fraction, message)`` is called throughout."""
    progress = progress or (lambda *_: None)
    cfg = QUICK if quick else FULL
    folder = Path(folder)
    started = time.monotonic()
    n, spacing = cfg["n_phases"], cfg["spacing_mm"]
    partner_dir, local_dir = folder / "partner_site", folder / "local_site"
    n_partner = cfg["partner_train"] + cfg["partner_validation"]
    n_local = cfg["local_train"] + cfg["local_validation"] + cfg["local_test"]
    partner_seeds = [1000 * seed + 100 + k for k in range(n_partner)]
    local_seeds = [1000 * seed + 500 + k for k in range(n_local)]
    pairs1, pairs2 = [], []
    for k, s in enumerate(partner_seeds):
        progress(0.15 * k / (n_partner + n_local), f"partner phantom {k + 1}/{n_partner}")
        pairs1.append(phantom_pair(partner_dir / "pairs" / f"partner_{k:02d}", s, SITE1, "dense", n, spacing))
    for k, s in enumerate(local_seeds):
        progress(0.15 * (n_partner + k) / (n_partner + n_local), f"local phantom {k + 1}/{n_local}")
        pairs2.append(phantom_pair(local_dir / "pairs" / f"local_{k:02d}", s, SITE2, "ed-es", n, spacing))
    a, b = cfg["local_train"], cfg["local_train"] + cfg["local_validation"]
    test = pairs2[b:]
    m1 = split_manifest({"train": pairs1[cfg["partner_validation"]:], "validation": pairs1[:cfg["partner_validation"]]},
                        partner_dir / "dataset.json")
    m2 = split_manifest({"train": pairs2[:a], "validation": pairs2[a:b], "test": test}, local_dir / "dataset.json")
    common = {"patience": cfg["patience"], "batch_size": cfg["batch_size"], "seed": seed, "device": device}

    progress(0.15, "partner site: training the partner model (random init, lr 1e-3)")
    t0 = time.monotonic()
    partner = train_cardiac(m1, partner_dir / "model", max_epochs=cfg["partner_epochs"], spacing_mm=(spacing,) * 3,
                            channels=cfg["channels"], name="demo-partner-lv-model", site="partner site (phantom site_a)",
                            progress=_scaled(progress, 0.15, 0.6, "partner training"), **common)
    partner_seconds = time.monotonic() - t0
    progress(0.6, "local site: fine-tuning the partner model on ED/ES labels (lr 1e-4)")
    t0 = time.monotonic()
    local = train_cardiac(m2, local_dir / "model", partner=partner_dir / "model", partner_sha256=partner.sha256,
                          max_epochs=cfg["finetune_epochs"], name="demo-local-lv-model", site="local site (phantom site_b)",
                          progress=_scaled(progress, 0.6, 0.9, "fine-tuning"), **common)
    finetune_seconds = time.monotonic() - t0
    progress(0.9, "both models on the held-out local studies")
    dev = choose_device(device)
    partner_test = _mean_dice(case_dice(partner_dir / "model", test, dev))
    local_test = _mean_dice(case_dice(local_dir / "model", test, dev))
    result = {"config": {**cfg, "partner_site": SITE1, "local_site": SITE2, "seed": seed},
              "seeds": {"partner": partner_seeds, "local_train": local_seeds[:a], "local_validation": local_seeds[a:b],
                        "local_test": local_seeds[b:]},
              "partner_model": {"package": "partner_site/model", "sha256": partner.sha256, "epochs": partner.card["training"]["epochs"],
                                "validation": partner.card["validation"], "seconds": round(partner_seconds, 1)},
              "finetuned_model": {"package": "local_site/model", "sha256": local.sha256, "parent_sha256": local.card["parent"]["sha256"],
                                  "epochs": local.card["training"]["epochs"], "validation": local.card["validation"],
                                  "seconds": round(finetune_seconds, 1)},
              "held_out_local": {"studies": len(test), "partner": partner_test, "finetuned": local_test},
              "seconds": round(time.monotonic() - started, 1)}
    write_text(folder / TRANSFER_FILE, json.dumps(result, indent=2))
    progress(1.0, f"held-out local Dice: partner {partner_test['dice']:.3f}, fine-tuned {local_test['dice']:.3f}")
    return result

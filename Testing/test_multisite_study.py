"""The source study's two expectations on phantom hospitals (slow: about 35 minutes on two shared CPU
cores), with every model trained until the study's convergence rule holds: the multi-site models (cyclic
weight transfer and federated averaging on the FLARE simulator) reach a mean Dice over the two held-out
sites at least the mean of the single-site models', and each single-site model is the best single-site
model on its own site's test set.  The second does not hold for site_b (its model over-segments; see
docs/multisite.md, "The phantom study") and is marked as an expected failure until the training step is
fixed.  The mechanics (both workflows and the rule on FLARE, the evaluation table) are covered by the fast
tests of test_multisite.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("nvflare")

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "multisite_phantom_experiment.py"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("multisite_phantom_experiment", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    options = {"patch_size": 64, "positives": 60, "negatives": 60, "lr": 1e-3, "batch_size": 8,
               "positive_sampling": "uniform", "seed": 0}
    return module.experiment(tmp_path_factory.mktemp("study"), train=8, test=6, epochs=100, spacing=None, options=options, in_plane=2.0,
                             fedavg_local_epochs=2, patience=10, min_delta=1e-4)  # the script's defaults


@pytest.mark.slow
def test_multi_site_models_beat_single_site_models_on_held_out_sites(study):
    assert all(study["training_length"][w]["stop"] == "converged" for w in ("cyclic", "fedavg")), study["training_length"]
    assert study["multi_site_at_least_single_site_mean"], study["held_out_mean_dice"]


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="site_b's single-site model over-segments and is beaten by site_a's on site_b, with uniform and "
                   "with balanced positive sampling (docs/multisite.md)")
def test_each_single_site_model_is_best_on_its_own_site(study):
    assert study["own_site_best_single"] == {"site_a": True, "site_b": True}, study["own_site_dice"]

"""The TL-vs-scratch experiment command in a tiny configuration writes its tables and plot, with
the values the runs measured (each arm's Dice recomputed from the per-study table)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from segtransfer.cli import main


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_tiny_experiment_writes_dice_and_thickness_tables_and_plot(tmp_path, capsys):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two OpenMP threads oversubscribe a shared 2-core machine (see test_cardiac_training.py)
    out = tmp_path / "experiment"
    argv = ["cardiac", "experiment", "--out", str(out), "--sizes", "1", "2", "--epochs", "2", "--partner-epochs", "2", "--device", "cpu"]
    import segtransfer.cardiac.experiment as experiment

    tiny = {**experiment.QUICK, "site1_cases": 2, "validation_cases": 1, "test_cases": 3, "n_phases": 4, "spacing_mm": 6.0}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(experiment, "QUICK", tiny)
        assert main(argv) == 0
    torch.set_num_threads(threads)
    assert "Experiment written to" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["dice.csv", "dice.png", "experiment.json", "runs.csv", "thickness.csv"]
    assert (out / "dice.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dice = _rows(out / "dice.csv")
    assert [int(r["n_cases"]) for r in dice] == [1, 2]
    runs = _rows(out / "runs.csv")
    for row in dice:
        for arm in ("scratch", "finetuned"):
            values = [float(r["dice"]) for r in runs if r["model"] == arm and int(r["n_cases"]) == int(row["n_cases"])]
            assert len(values) == 3  # every test study scored
            assert float(row[f"{arm}_mean_dice"]) == pytest.approx(np.mean(values), abs=1e-4)
            assert float(row[f"{arm}_max_dice"]) == pytest.approx(np.max(values), abs=1e-4)
            assert all(0.0 <= v <= 1.0 for v in values)
    partner = [float(r["dice"]) for r in runs if r["model"] == "partner"]
    assert float(dice[0]["partner_mean_dice"]) == pytest.approx(np.mean(partner), abs=1e-4)
    thickness = _rows(out / "thickness.csv")
    assert {(r["model"].split(" ")[0], r["role"], r["metric"]) for r in thickness} == {
        (m, role, metric) for m in ("partner", "fine-tuned") for role in ("ED", "ES") for metric in ("median_mm", "p95_mm", "max_mm")}
    record = json.loads((out / "experiment.json").read_text(encoding="utf-8"))
    assert record["config"]["sizes"] == [1, 2] and len(record["partner"]["sha256"]) == 64

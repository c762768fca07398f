"""Hemorrhage training checkpoints: a crash while a checkpoint is being written loses at most that
epoch, and the resumed run ends with the weights of an uninterrupted one; a checkpoint folder is
never silently discarded or mixed with other settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import safetensors.torch
from safetensors.torch import load_file

from segtransfer.errors import InputError
from segtransfer.hemorrhage import train as training
from segtransfer.phantoms import head_ct

COMMON = dict(patch_size=32, positives=6, negatives=6, lr=1e-3, batch_size=4, seed=5, patience=50, progress=lambda *_: None)


@pytest.fixture(scope="module")
def cases():
    out = []
    for i in range(2):
        h = head_ct(seed=40 + i, site="site_a", spacing=(3.0, 3.0, 8.0), hemorrhage=["intraparenchymal", "subdural"])
        out.append((f"c{i}", h.image, h.mask))
    return out


def test_crash_while_writing_a_checkpoint_keeps_the_previous_epoch(cases, tmp_path, monkeypatch):
    straight = tmp_path / "ck_straight"
    training.train(cases, tmp_path / "straight", max_epochs=3, checkpoint_dir=straight, **COMMON)

    real_save = safetensors.torch.save_file
    calls = {"n": 0}

    def crash_in_second_checkpoint(tensors, filename, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # epoch 2: weights written, Adam state not yet
            raise KeyboardInterrupt
        return real_save(tensors, filename, *args, **kwargs)

    crashed = tmp_path / "ck_crashed"
    monkeypatch.setattr(safetensors.torch, "save_file", crash_in_second_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        training.train(cases, tmp_path / "crashed", max_epochs=3, checkpoint_dir=crashed, **COMMON)
    monkeypatch.setattr(safetensors.torch, "save_file", real_save)

    state = json.loads((crashed / training.CHECKPOINT_STATE).read_text(encoding="utf-8"))
    assert state["epoch"] == 1 and len(state["history"]) == 1
    assert sorted(p.name for p in crashed.iterdir()) == sorted(training.CHECKPOINT_FILES)
    assert len((crashed / training.LOG).read_text(encoding="utf-8").splitlines()) == 2  # header + epoch 1
    assert not list(tmp_path.glob(".ck_crashed*"))  # no half-written folder left beside it
    assert not (tmp_path / "crashed").exists()  # no package from an unfinished run

    training.train(cases, tmp_path / "crashed", max_epochs=3, checkpoint_dir=crashed, resume=True, **COMMON)
    a = load_file(str(crashed / training.CHECKPOINT_WEIGHTS))
    b = load_file(str(straight / training.CHECKPOINT_WEIGHTS))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), atol=1e-5)
    assert json.loads((crashed / training.CHECKPOINT_STATE).read_text(encoding="utf-8"))["history"] == json.loads((straight / training.CHECKPOINT_STATE).read_text(encoding="utf-8"))["history"]


def test_checkpoint_folder_is_never_silently_discarded(cases, tmp_path):
    ckpt = tmp_path / "ck"
    training.train(cases, tmp_path / "pkg", max_epochs=1, checkpoint_dir=ckpt, **COMMON)
    with pytest.raises(InputError, match="--resume"):
        training.train(cases, tmp_path / "pkg", max_epochs=2, checkpoint_dir=ckpt, **COMMON)
    with pytest.raises(InputError, match="other settings.*lr"):
        training.train(cases, tmp_path / "pkg", max_epochs=2, checkpoint_dir=ckpt, resume=True, **{**COMMON, "lr": 1e-4})
    assert json.loads((ckpt / training.CHECKPOINT_STATE).read_text(encoding="utf-8"))["epoch"] == 1  # untouched
    other = tmp_path / "documents"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="other files"):
        training.train(cases, tmp_path / "pkg2", max_epochs=1, checkpoint_dir=other, **COMMON)
    assert (other / "notes.txt").read_text(encoding="utf-8") == "keep me"

"""Balanced positive patch sampling of hemorrhage training (``positive_sampling="balanced"``): the patch
statistics it promises, that it leaves the split and the negatives alone, and its option in single-site
training, on the command line and in the multi-site task."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from segtransfer.cli import main
from segtransfer.errors import InputError
from segtransfer.hemorrhage.train import Volume, _patch, balanced_centres, dice_loss, patch_hemorrhage, prepare_site, train
from segtransfer.phantoms import head_ct

QUIET = lambda *_: None  # noqa: E731


def _batch(radius: int, false_positive: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Two 32x32 patches: a disc lesion of ``radius`` pixels (predicted exactly) and an empty patch, in which a
    4x4 block is marked (16 false-positive pixels) when ``false_positive``.  Logits +-6."""
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    lesion = (((yy - 16) ** 2 + (xx - 16) ** 2) <= radius ** 2).float()
    target = torch.stack([lesion, torch.zeros(32, 32)])[:, None]
    logits = torch.where(target > 0, 6.0, -6.0)
    if false_positive:
        logits[1, 0, 4:8, 4:8] = 6.0
    return logits, target


def test_batch_dice_charges_false_positives_less_the_more_hemorrhage_the_batch_holds():
    # why positive patches that carry much hemorrhage matter: the same 16 false-positive pixels in a negative
    # patch cost the batch Dice loss 2I/D - 2I/(D + 16(2s - 1)) (I: soft intersection, D: soft sums, s =
    # sigmoid(6)), about 10x less next to a 441-pixel lesion than next to a 29-pixel one
    loss = dice_loss()
    s = float(torch.sigmoid(torch.tensor(6.0)))
    cost = {r: float(loss(*_batch(r, True)) - loss(*_batch(r, False))) for r in (3, 6, 12)}
    for r in cost:
        lesion = float(_batch(r, False)[1].sum())
        inter, sums = lesion * s, lesion * s + (2048 - lesion) * (1 - s) + lesion
        assert cost[r] == pytest.approx(2 * inter / sums - 2 * inter / (sums + 16 * (2 * s - 1)), rel=1e-4)
    assert cost[3] > cost[6] > cost[12] and cost[12] < 0.15 * cost[3]


def _two_lesions() -> np.ndarray:
    """``[3, 80, 80]`` target: a disc of radius 20 (1257 pixels) on slice 0, radius 3 (29 pixels) on slice 2."""
    yy, xx = np.mgrid[:80, :80]
    target = np.zeros((3, 80, 80), np.float32)
    target[0] = (yy - 40) ** 2 + (xx - 40) ** 2 <= 20 ** 2
    target[2] = (yy - 60) ** 2 + (xx - 15) ** 2 <= 3 ** 2
    return target


def test_patch_hemorrhage_counts_the_pixels_of_the_training_patch():
    target = _two_lesions()
    vol = Volume("t", np.zeros_like(target), target, np.zeros((0, 3), int), np.zeros((0, 3), int))
    counts = patch_hemorrhage(target, 32)
    rng = np.random.default_rng(0)
    for centre in np.concatenate([np.argwhere(target > 0)[rng.choice(1286, 30)], rng.integers(0, [3, 80, 80], (30, 3))]):
        assert counts[tuple(centre)] == _patch(vol, centre, 32)[1].sum()


def test_balanced_centres_give_each_lesion_section_a_like_share():
    target = _two_lesions()
    small = lambda centres: int((centres[:, 0] == 2).sum())  # noqa: E731
    pos = np.argwhere(target > 0)
    uniform = [small(pos[np.random.default_rng(s).choice(len(pos), 40, replace=False)]) for s in range(20)]
    balanced = [balanced_centres(target, 64, 40, np.random.default_rng(s)) for s in range(20)]
    # uniform: the small lesion gets its share of voxels, 29 / 1286 of 40 patches (about 1);
    # balanced: both patch windows hold the whole lesion, so about half of the patches each
    assert np.mean(uniform) < 2.5
    assert 15 <= np.mean([small(c) for c in balanced]) <= 25
    for c in balanced:
        assert len(c) == 40 and len({tuple(x) for x in c}) == 40 and target[tuple(c.T)].all()  # distinct, on hemorrhage
    np.testing.assert_array_equal(balanced_centres(target, 64, 40, np.random.default_rng(3)), balanced[3])
    assert balanced_centres(np.zeros((2, 8, 8)), 64, 5, np.random.default_rng(0)).shape == (0, 3)


@pytest.fixture(scope="module")
def cases():
    out = []
    for i in range(3):
        h = head_ct(seed=40 + i, site="site_b", spacing=(2.0, 2.0, 6.0), hemorrhage="random")
        out.append((f"c{i}", h.image, h.mask))
    return out


def test_balanced_sampling_changes_only_the_positives(cases):
    kw = dict(patch_size=64, positives=30, negatives=30, validation_fraction=0.34, seed=2, progress=QUIET)
    u = prepare_site(cases, positive_sampling="uniform", **kw)
    b = prepare_site(cases, positive_sampling="balanced", **kw)
    assert u.val_scans == b.val_scans and u.train_scans == b.train_scans
    per_scan = [(x[i * 60:i * 60 + 30], y[i * 60:i * 60 + 30], x[i * 60 + 30:(i + 1) * 60])
                for x, y in ((u.x_train, u.y_train), (b.x_train, b.y_train)) for i in range(2)]
    for (_, _, neg_u), (_, _, neg_b) in zip(per_scan[:2], per_scan[2:]):
        np.testing.assert_array_equal(neg_u, neg_b)  # the same negative patches
    hem_u = np.mean([y.sum() for _, y, _ in per_scan[:2]])
    hem_b = np.mean([y.sum() for _, y, _ in per_scan[2:]])
    assert hem_b < 0.95 * hem_u  # the positive patches carry less hemorrhage
    assert (b.y_train[:30].reshape(30, -1)[:, 64 * 32 + 32] == 1).all()  # still centred on hemorrhage
    with pytest.raises(InputError, match="unknown positive sampling 'even'"):
        prepare_site(cases, positive_sampling="even", **kw)
    with pytest.raises(InputError, match="unknown positive sampling"):
        train(cases, "/nonexistent/never_written", positive_sampling="even", progress=QUIET)


def _write(cases, folder):
    for name, image, mask in cases:
        (folder / name).mkdir(parents=True)
        sitk.WriteImage(image, str(folder / name / "image.nii.gz"))
        sitk.WriteImage(mask, str(folder / name / "mask.nii.gz"))
    return folder


def test_cli_flag_records_the_sampling_and_resume_keeps_it(cases, tmp_path):
    folder = _write(cases, tmp_path / "cases")
    args = ["hemorrhage", "train", str(folder), "--patch-size", "64", "--positives", "8", "--negatives", "8", "--max-epochs", "1"]
    assert main([*args, "--out", str(tmp_path / "m"), "--positive-sampling", "balanced"]) == 0
    card = json.loads((tmp_path / "m" / "model_card.json").read_text(encoding="utf-8"))
    assert card["training_data"]["positive_sampling"] == "balanced"
    # resuming the checkpoint with the other sampling is refused (exit 2), naming the setting
    assert main([*args, "--out", str(tmp_path / "m"), "--max-epochs", "2", "--resume"]) == 2
    assert main([*args, "--out", str(tmp_path / "d")]) == 0  # the default stays uniform
    assert json.loads((tmp_path / "d" / "model_card.json").read_text(encoding="utf-8"))["training_data"]["positive_sampling"] == "uniform"
    with pytest.raises(SystemExit) as exc:
        main([*args, "--out", str(tmp_path / "x"), "--positive-sampling", "even"])
    assert exc.value.code == 2 and not (tmp_path / "x").exists()


def test_multisite_task_option(cases, tmp_path):
    from segtransfer.multisite.task import check_options, get_task_kind, open_site_task

    kind = get_task_kind("hemorrhage")
    assert check_options(kind, {})["positive_sampling"] == "uniform"
    with pytest.raises(InputError, match="unknown positive sampling 'even'"):
        check_options(kind, {"positive_sampling": "even"})
    _write(cases, tmp_path / "site" / "train")
    options = {"patch_size": 64, "positives": 8, "negatives": 8, "validation_fraction": 0.34, "seed": 2}
    data = {s: open_site_task("hemorrhage", tmp_path / "site", {**options, "positive_sampling": s}, progress=QUIET).data()
            for s in ("uniform", "balanced")}
    ref = {s: prepare_site(cases, patch_size=64, positives=8, negatives=8, validation_fraction=0.34, seed=2, positive_sampling=s,
                           progress=QUIET) for s in ("uniform", "balanced")}
    for s in data:  # the site draws the patches single-site training draws with the same option
        np.testing.assert_array_equal(data[s].y_train, ref[s].y_train)
    assert not np.array_equal(data["uniform"].y_train, data["balanced"].y_train)

"""CT hemorrhage: preprocessing, the shipped model's quality on a site it never saw, outputs, training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from segtransfer.cli import main
from segtransfer.errors import InputError
from segtransfer.hemorrhage import MIN_DETECTION_ML, default_model_path, preprocess, segment
from segtransfer.models import load_network
from segtransfer.phantoms import head_ct

CRANIUM = Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3")


@pytest.fixture(scope="module")
def model():
    return load_network(default_model_path())


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


def test_shipped_model_is_a_small_phantom_package():
    path = default_model_path()
    size = sum(f.stat().st_size for f in path.iterdir())
    assert size < 20 * 1024 * 1024
    card = json.loads((path / "model_card.json").read_text(encoding="utf-8"))
    assert "not for clinical use" in card["limitations"].lower() and "phantom" in card["limitations"].lower()
    model_json = json.loads((path / "model.json").read_text(encoding="utf-8"))
    assert model_json["output"]["threshold"] == 0.5 and model_json["input"]["patch_size"] == [256, 256]
    assert model_json["extra"]["test_time_flip"] == "left-right"  # the inference the quality below was measured with


def test_quality_on_a_site_never_used_in_training(model):
    """site_c was held out of the shipped model's training (site_a, site_b and randomised variants of them;
    site_c's profile and scans never) and of every choice of recipe and inference rule (made on held-out
    variants of site_a/site_b, scripts/evaluate_hemorrhage_model.py).  The issue's targets: mean Dice >= 0.80
    (measured: 0.93) and Pearson correlation of predicted vs true volume over the positive scans >= 0.95
    (measured: 0.98).  Every positive scan is detected; the negative scan is not (measured: 0 mL marked, the
    bound is the detection minimum).
    """
    network, package = model
    dices, predicted, true = [], [], []
    for seed in range(5):
        h = head_ct(seed=500 + seed, site="site_c", hemorrhage="random")
        result = segment(h.image, network, package.description)
        truth = sitk.GetArrayFromImage(h.mask) > 0
        dices.append(dice(sitk.GetArrayFromImage(result.mask) > 0, truth))
        predicted.append(result.volume_ml)
        true.append(h.truth.total_volume_ml)
        assert result.detected
    assert np.mean(dices) >= 0.80, dices
    assert np.corrcoef(predicted, true)[0, 1] >= 0.95, (predicted, true)
    negative = head_ct(seed=600, site="site_c", hemorrhage=False)
    result = segment(negative.image, network, package.description)
    assert result.volume_ml < MIN_DETECTION_ML and not result.detected, result.volume_ml


def test_mask_maps_back_to_the_input_grid_and_orientation(model):
    network, package = model
    h = head_ct(seed=3, site="site_a", spacing=(1.0, 1.0, 4.0))
    flipped = sitk.DICOMOrient(h.image, "RAS")  # same voxels, other index order and direction
    a = segment(h.image, network, package.description)
    b = segment(flipped, network, package.description)
    assert b.mask.GetDirection() == flipped.GetDirection() and b.mask.GetOrigin() == flipped.GetOrigin()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.DICOMOrient(b.mask, "LPS")), sitk.GetArrayFromImage(sitk.DICOMOrient(a.mask, "LPS")))
    assert abs(a.volume_ml - b.volume_ml) < 1e-9


def test_bad_inputs_are_refused(tmp_path):
    h = head_ct(seed=1, site="site_a", spacing=(2.0, 2.0, 6.0))
    arr = sitk.GetArrayFromImage(h.image)
    scaled = sitk.GetImageFromArray(((arr + 1024) / 4096).astype(np.float32))  # a 0..1 rescaled image
    scaled.CopyInformation(h.image)
    with pytest.raises(InputError, match="do not look like CT in Hounsfield units"):
        preprocess(scaled, "scaled.nii.gz")
    mr = sitk.GetImageFromArray(np.clip(arr, 0, None).astype(np.float32) + 100.0)
    with pytest.raises(InputError, match="Hounsfield"):
        preprocess(mr, "mr.nii.gz")
    nan = sitk.GetImageFromArray(np.where(arr > 2000, np.nan, arr).astype(np.float32) if (arr > 2000).any() else np.full(arr.shape, np.nan, np.float32))
    with pytest.raises(InputError, match="NaN"):
        preprocess(nan, "nan.nii.gz")
    with pytest.raises(InputError, match="3D"):
        preprocess(h.image[:, :, 5], "slice.nii.gz")
    air_and_bone = np.full(arr.shape, -1000.0, np.float32)
    air_and_bone[:, 10:12, :] = 1200.0
    with pytest.raises(InputError, match="brain"):
        preprocess(sitk.GetImageFromArray(air_and_bone), "empty.nii.gz")


@pytest.mark.skipif(not CRANIUM.exists(), reason="real head CT not installed (apt-get install invesalius-examples)")
def test_real_head_ct_skull_stripping_and_pipeline(tmp_path):
    from segtransfer.io.invesalius import read_inv3

    image = read_inv3(CRANIUM)
    assert image.GetSize() == (256, 256, 108)
    pre = preprocess(image, CRANIUM)
    brain = sitk.GetArrayFromImage(pre.brain) > 0
    hu = sitk.GetArrayFromImage(pre.image)
    brain_ml = brain.sum() * np.prod(image.GetSpacing()) / 1000.0
    assert 900.0 < brain_ml < 1800.0  # adult brain and CSF
    assert (hu[brain] > 300).sum() == 0  # no bone inside
    assert np.median(hu[brain]) == pytest.approx(30.0, abs=15.0)  # brain parenchyma
    assert main(["hemorrhage", "segment", str(CRANIUM), "--out", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert 900.0 < summary["brain_ml"] < 1800.0


def test_cli_segment_outputs_and_refusal(tmp_path):
    h = head_ct(seed=11, site="site_b", spacing=(1.0, 1.0, 5.0))
    sitk.WriteImage(h.image, str(tmp_path / "ct.nii.gz"))
    assert main(["hemorrhage", "segment", str(tmp_path / "ct.nii.gz"), "--out", str(tmp_path / "out")]) == 0
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == {"hemorrhage.seg.nrrd", "hemorrhage.nii.gz", "overlay.png", "summary.json", "summary.csv"}
    from segtransfer.io import read_labels

    seg = read_labels(out / "hemorrhage.seg.nrrd")
    assert seg.segments[0].name == "Hemorrhage" and seg.image.GetSize() == h.image.GetSize()
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["detected"] and summary["lesions"]
    assert abs(sum(les["volume_ml"] for les in summary["lesions"]) - summary["volume_ml"]) < 1e-6
    from PIL import Image

    assert Image.open(out / "overlay.png").size[0] > 100
    mr = tmp_path / "mr.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.random.default_rng(0).uniform(0, 1, (8, 32, 32)).astype(np.float32)), str(mr))
    assert main(["hemorrhage", "segment", str(mr), "--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()
    assert main(["hemorrhage", "segment", str(tmp_path / "ct.nii.gz"), "--out", str(tmp_path / "bad"), "--threads", "0"]) == 2
    assert not (tmp_path / "bad").exists()


def test_training_decreases_loss_writes_a_package_and_resumes_exactly(tmp_path):
    from safetensors.torch import load_file

    from segtransfer.hemorrhage.train import train

    cases = []
    for i in range(3):
        h = head_ct(seed=20 + i, site="site_a", spacing=(2.0, 2.0, 6.0), hemorrhage="random")
        cases.append((f"c{i}", h.image, h.mask))
    common = dict(patch_size=64, positives=24, negatives=24, lr=1e-3, batch_size=8, seed=3, patience=50)
    full = train(cases, tmp_path / "full", max_epochs=3, checkpoint_dir=tmp_path / "ck_full", progress=lambda *_: None, **common)
    log = (tmp_path / "ck_full" / "training_log.csv").read_text(encoding="utf-8").splitlines()
    losses = [float(line.split(",")[1]) for line in log[1:]]
    assert losses[-1] < losses[0]
    network, package = load_network(tmp_path / "full")
    assert package.card["training_data"]["scans"] == 2
    # interrupted after 2 epochs, resumed to 3: the same weights as the uninterrupted run
    train(cases, tmp_path / "part", max_epochs=2, checkpoint_dir=tmp_path / "ck_part", progress=lambda *_: None, **common)
    resumed = train(cases, tmp_path / "part", max_epochs=3, checkpoint_dir=tmp_path / "ck_part", resume=True, progress=lambda *_: None, **common)
    straight = train(cases, tmp_path / "straight", max_epochs=3, checkpoint_dir=tmp_path / "ck_straight", progress=lambda *_: None, **common)
    a = load_file(str(tmp_path / "ck_part" / "checkpoint_weights.safetensors"))
    b = load_file(str(tmp_path / "ck_straight" / "checkpoint_weights.safetensors"))
    for key in a:
        np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), atol=1e-5)
    assert resumed.sha256 and straight.sha256


def test_batch_keeps_going_past_a_broken_scan(tmp_path):
    import csv
    import subprocess
    import sys

    src = tmp_path / "in"
    src.mkdir()
    h = head_ct(seed=12, site="site_a", spacing=(2.0, 2.0, 6.0))
    sitk.WriteImage(h.image, str(src / "good.nii.gz"))
    (src / "broken.nii.gz").write_bytes(b"not an image")
    script = Path(__file__).resolve().parents[1] / "scripts" / "batch_hemorrhage.py"
    run = subprocess.run([sys.executable, str(script), "--", str(src), str(tmp_path / "out")], capture_output=True, text=True, timeout=600)
    assert run.returncode == 1, run.stderr
    rows = {r["scan"]: r for r in csv.DictReader(open(tmp_path / "out" / "hemorrhage_summary.csv"))}
    assert rows["good"]["status"] == "ok" and rows["good"]["detected"] == "True"
    assert rows["broken"]["status"].startswith("error") and "broken.nii.gz" in rows["broken"]["status"]


@pytest.mark.parametrize("radius", [[9, 9, 1], [4, 4, 2], [2, 2, 0], [8, 9, 1]])
def test_ball_morphology_gives_the_voxels_of_simpleitks_filters(radius):
    """The per-slice distance-transform erosion and dilation used by the skull stripping equal
    SimpleITK's BinaryErode / BinaryDilate with a ball, voxel for voxel, also with foreground on the
    image border and slices that are all foreground or all background ([8, 9, 1]: not discs, the
    filter itself is used)."""
    from scipy import ndimage

    from segtransfer.hemorrhage.preprocess import ball_morphology

    rng = np.random.default_rng(sum(radius))
    arr = ndimage.gaussian_filter(rng.random((12, 50, 60)), 2) > 0.5
    arr[:, :3] = True
    arr[2], arr[5] = True, False
    # foreground far from the border in some slices only (each slice's transform runs on the box around
    # its foreground): a noisy blob whose extent changes from slice to slice, and a speck
    zz, yy, xx = np.mgrid[:12, :50, :60]
    blob = ((yy - 24) ** 2 / 300.0 + (xx - 31) ** 2 / (40.0 + 40 * zz) < 1) & (rng.random(zz.shape) > 0.005) & (zz != 9)
    blob[6, 5, 50] = True
    for arr in (arr, blob):
        mask = sitk.GetImageFromArray(arr.astype(np.uint8))
        mask.SetSpacing((0.45, 0.45, 4.0))
        for erode, ref in ((True, sitk.BinaryErode), (False, sitk.BinaryDilate)):
            expected = sitk.GetArrayFromImage(ref(mask, radius, sitk.sitkBall))
            got = sitk.GetArrayFromImage(ball_morphology(mask, radius, erode))
            assert 0 < expected.sum() < expected.size
            np.testing.assert_array_equal(got, expected)


def test_per_slice_hole_filling_equals_scipy_slice_by_slice():
    from scipy import ndimage

    from segtransfer.hemorrhage.preprocess import fill_holes_per_slice

    rng = np.random.default_rng(3)
    arr = ndimage.binary_opening(rng.random((8, 70, 80)) > 0.45)
    arr[:, 20:50, 30:60] = True
    arr[:, 30:40, 40:50] = rng.random((8, 10, 10)) > 0.5  # pockets enclosed in-plane
    # each slice is labelled on the box around its foreground: rings away from the border, one cut open,
    # one touching the border, a speck, and an empty slice
    yy, xx = np.mgrid[:70, :80]
    rings = np.zeros_like(arr)
    for k in range(6):
        r2 = (yy - 20 - 6 * k) ** 2 + (xx - 15 - 10 * k) ** 2
        rings[k] = (r2 >= 36) & (r2 <= 100 + 20 * k)
    rings[2, 20:40, 34:37] = False  # an open ring: nothing to fill
    rings[6, 60, 5] = True
    for arr in (arr, rings):
        expected = np.stack([ndimage.binary_fill_holes(s) for s in arr])
        assert (expected & ~arr).sum() > 100
        np.testing.assert_array_equal(fill_holes_per_slice(arr), expected)

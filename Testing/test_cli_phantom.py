"""``segtransfer phantom``: outputs load with the right geometry and hold the generator's truth;
bad input exits non-zero and leaves nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from segtransfer.cli import main
from segtransfer.io import read_labels, read_series4d
from segtransfer.phantoms import SITES, beating_lv, head_ct, list_sites

LV_SPACING = ["--spacing", "2.5", "2.5", "3"]


def arr(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


def test_lv_series_folder_loads_with_labels_for_every_phase(tmp_path, capsys):
    out = tmp_path / "lv"
    assert main(["phantom", "lv", "--out", str(out), "--seed", "1", *LV_SPACING]) == 0
    assert str(out) in capsys.readouterr().out
    series = read_series4d(out)
    assert len(series) == 20 and sorted(series.labels) == list(range(20))
    assert series.percent_rr == pytest.approx([5.0 * i for i in range(20)])
    ph = beating_lv(seed=1, spacing=(2.5, 2.5, 3.0))
    for i in (0, 7, 19):
        assert series.phases[i].GetSpacing() == pytest.approx((2.5, 2.5, 3.0))
        np.testing.assert_array_equal(arr(series.phases[i]), arr(ph.series.phases[i]))
        np.testing.assert_array_equal(arr(series.labels[i]), arr(ph.clean_labels[i]))
    truth = json.loads((out / "truth.json").read_text(encoding="utf-8"))
    assert truth["truth"]["cavity_ml"] == pytest.approx(ph.truth.cavity_ml)
    assert truth["truth"]["ed_index"] == ph.truth.ed_index and truth["truth"]["es_index"] == ph.truth.es_index
    # The labels on disk give the truth's volumes (coarse grid: within 4 %).
    vml = np.prod(series.phases[0].GetSpacing()) / 1000.0
    for i in (ph.truth.ed_index, ph.truth.es_index):
        assert np.count_nonzero(arr(series.labels[i]) == 1) * vml == pytest.approx(truth["truth"]["cavity_ml"][i], rel=0.04)
    # Read back through SimpleITK directly as well.
    img = sitk.ReadImage(str(out / "phase_00.nii.gz"))
    assert img.GetSpacing() == pytest.approx((2.5, 2.5, 3.0)) and img.GetPixelID() == sitk.sitkFloat32


def test_lv_nifti_form_with_defects(tmp_path):
    out = tmp_path / "lv4d"
    assert main(["phantom", "lv", "--out", str(out), "--form", "nifti", "--defects", "--phases", "6", "--site", "site_b", *LV_SPACING]) == 0
    image4d = sitk.ReadImage(str(out / "image4d.nii.gz"))
    assert image4d.GetDimension() == 4 and image4d.GetSize()[3] == 6
    assert image4d.GetSpacing()[:3] == pytest.approx((2.5, 2.5, 3.0))
    series = read_series4d(out / "image4d.nii.gz", out / "labels4d.nii.gz")
    assert len(series) == 6 and sorted(series.labels) == list(range(6))
    clean4d = arr(sitk.ReadImage(str(out / "clean_labels4d.nii.gz")))
    truth = json.loads((out / "truth.json").read_text(encoding="utf-8"))
    assert truth["defects"] is True and truth["site"]["name"] == "site_b"
    for i in range(6):
        clean, bad = clean4d[i], arr(series.labels[i])
        changed = clean != bad
        rec = truth["annotation_defects"][str(i)]
        assert changed.sum() == rec["hole_voxels"] + rec["gap_voxels"] > 0
        assert np.all(clean[changed] == 1) and np.all(bad[changed] == 0)


def test_head_writes_image_masks_and_truth(tmp_path):
    out = tmp_path / "head"
    assert main(["phantom", "head", "--out", str(out), "--seed", "3", "--spacing", "2", "2", "4"]) == 0
    image = sitk.ReadImage(str(out / "image.nii.gz"))
    assert image.GetSpacing() == pytest.approx((2.0, 2.0, 4.0))
    mask = sitk.ReadImage(str(out / "mask.nii.gz"))
    assert mask.GetSpacing() == pytest.approx((2.0, 2.0, 4.0)) and mask.GetSize() == image.GetSize()
    seg = read_labels(out / "mask.seg.nrrd")
    assert [s.name for s in seg.segments] == ["Hemorrhage"]
    np.testing.assert_array_equal(arr(seg.image), arr(mask))
    assert np.allclose(seg.image.GetOrigin(), image.GetOrigin()) and np.allclose(seg.image.GetSpacing(), image.GetSpacing())
    ph = head_ct(seed=3, spacing=(2.0, 2.0, 4.0))
    np.testing.assert_array_equal(arr(image), arr(ph.image))
    np.testing.assert_array_equal(arr(mask), arr(ph.mask))
    truth = json.loads((out / "truth.json").read_text(encoding="utf-8"))
    assert truth["truth"]["has_hemorrhage"] is True
    assert [h["volume_ml"] for h in truth["truth"]["lesions"]] == pytest.approx([h.volume_ml for h in ph.truth.lesions])
    lesions, brain = arr(sitk.ReadImage(str(out / "lesions.nii.gz"))), arr(sitk.ReadImage(str(out / "brain_mask.nii.gz")))
    assert sorted(int(v) for v in np.unique(lesions) if v) == [h["label"] for h in truth["truth"]["lesions"]]
    assert not np.any((arr(mask) > 0) & (brain == 0))


def test_head_negative_scan_has_empty_mask(tmp_path, capsys):
    out = tmp_path / "neg"
    assert main(["phantom", "head", "--out", str(out), "--hemorrhage", "none", "--spacing", "3", "3", "5", "--site", "site_c"]) == 0
    assert "no hemorrhage" in capsys.readouterr().out
    assert not arr(sitk.ReadImage(str(out / "mask.nii.gz"))).any()
    assert not arr(read_labels(out / "mask.seg.nrrd").image).any()
    truth = json.loads((out / "truth.json").read_text(encoding="utf-8"))
    assert truth["truth"]["lesions"] == [] and truth["truth"]["total_volume_ml"] == 0.0


def test_shell_label_file_and_truth(tmp_path):
    out = tmp_path / "shell"
    assert main(["phantom", "shell", "--out", str(out), "--r-inner", "12", "--r-outer", "18", "--spacing", "1", "1", "1.5"]) == 0
    labels = read_labels(out / "labels.nii.gz")
    truth = json.loads((out / "truth.json").read_text(encoding="utf-8"))["truth"]
    assert truth["thickness_mm"] == pytest.approx(6.0)
    assert labels.image.GetSpacing() == pytest.approx((1.0, 1.0, 1.5))
    a = labels.array()
    vml = 1.5 / 1000.0
    assert np.count_nonzero(a == 1) * vml == pytest.approx(4.0 / 3.0 * np.pi * 12**3 / 1000.0, rel=0.02)
    assert np.count_nonzero(a == 2) * vml == pytest.approx(truth["wall_volume_ml"], rel=0.02)
    out2 = tmp_path / "cyl"
    assert main(["phantom", "shell", "--out", str(out2), "--kind", "cylinder", "--label-format", "seg.nrrd"]) == 0
    seg = read_labels(out2 / "labels.seg.nrrd")
    assert {s.value for s in seg.segments} == {1, 2}
    assert json.loads((out2 / "truth.json").read_text(encoding="utf-8"))["truth"]["axis"] == [0.0, 0.0, 1.0]


def test_sites_listing(capsys):
    assert main(["phantom", "sites"]) == 0
    text = capsys.readouterr().out
    for name in list_sites():
        assert name in text
    assert main(["phantom", "sites", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted(listed) == list_sites()
    assert listed["site_b"]["cardiac_noise_hu"] == SITES["site_b"].cardiac_noise_hu


@pytest.mark.parametrize("argv", [["phantom"], ["phantom", "lv"], ["phantom", "head"], ["phantom", "shell"], ["phantom", "sites"]])
def test_help_on_every_command(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    assert f"usage: segtransfer {' '.join(argv)}" in capsys.readouterr().out


def test_module_entry_point_help():
    done = subprocess.run([sys.executable, "-m", "segtransfer", "phantom", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for kind in ("lv", "head", "shell", "sites"):
        assert kind in done.stdout


def test_bad_options_exit_non_zero_and_write_nothing(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["phantom", "lv", "--out", str(tmp_path / "x"), "--bogus"])
    assert exc.value.code != 0
    with pytest.raises(SystemExit) as exc:
        main(["phantom", "head", "--out", str(tmp_path / "x"), "--site", "site_z"])
    assert exc.value.code != 0
    capsys.readouterr()
    assert main(["phantom", "lv", "--out", str(tmp_path / "x"), "--spacing", "-1"]) == 2
    assert main(["phantom", "lv", "--out", str(tmp_path / "x"), "--spacing", "1", "2"]) == 2
    assert main(["phantom", "head", "--out", str(tmp_path / "x"), "--hemorrhage", "bleed"]) == 2
    assert main(["phantom", "shell", "--out", str(tmp_path / "x"), "--r-inner", "5", "--r-outer", "4"]) == 2
    err = capsys.readouterr().err
    assert "--spacing" in err and "bleed" in err and "r-inner" in err
    assert len(err.strip().splitlines()) == 4  # one line per error
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_protected(tmp_path, capsys):
    other = tmp_path / "data"
    other.mkdir()
    (other / "keep.txt").write_text("precious")
    argv = ["phantom", "shell", "--r-inner", "5", "--r-outer", "8"]
    assert main([*argv, "--out", str(other)]) == 2
    assert main([*argv, "--out", str(other), "--force"]) == 2  # not a phantom folder: never replaced
    assert (other / "keep.txt").read_text(encoding="utf-8") == "precious"
    out = tmp_path / "shell"
    assert main([*argv, "--out", str(out)]) == 0
    assert main([*argv, "--out", str(out)]) == 2
    assert main([*argv[:-1], "9", "--out", str(out), "--force"]) == 0
    assert json.loads((out / "truth.json").read_text(encoding="utf-8"))["truth"]["r_outer_mm"] == 9.0
    assert "--force" in capsys.readouterr().err


def test_failure_mid_write_leaves_no_output(tmp_path, monkeypatch):
    from segtransfer.commands import phantom as cmd

    def fail(folder, record):
        raise RuntimeError("disk full")

    monkeypatch.setattr(cmd, "_write_truth", fail)
    out = tmp_path / "lv"
    with pytest.raises(RuntimeError, match="disk full"):
        main(["phantom", "lv", "--out", str(out), "--phases", "2", *LV_SPACING])
    assert list(tmp_path.iterdir()) == []

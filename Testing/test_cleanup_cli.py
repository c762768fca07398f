"""``segtransfer cleanup`` commands, the headless batch script, and an end-to-end repair of the
beating-LV phantom's annotation defects."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from segtransfer.cleanup import close_labels, compare_labels, fill_holes
from segtransfer.cli import main
from segtransfer.io import LabelImage, read_labels, write_labels
from segtransfer.labels import Segment
from segtransfer.phantoms import spherical_shell

REPO = Path(__file__).resolve().parent.parent
SEGMENTS = [Segment(1, "Blood pool (rater A)", (0.9, 0.2, 0.1)), Segment(2, "LV wall (rater A)", (0.1, 0.7, 0.3))]


def shell_with_hole(n_hole: int = 12):
    """Spherical shell (r 10 / 16 mm at 1 mm) with an enclosed pool hole of ``n_hole`` voxels (a row)."""
    lab, _ = spherical_shell(10.0, 16.0, spacing=(1.0, 1.0, 1.0))
    clean = lab.array()
    bad = clean.copy()
    c = np.array(clean.shape) // 2
    bad[c[0], c[1], c[2] - n_hole // 2:c[2] - n_hole // 2 + n_hole] = 0
    img = sitk.GetImageFromArray(bad)
    img.CopyInformation(lab.image)
    return LabelImage(img, SEGMENTS), clean


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_close_keeps_names_and_colours_and_writes_a_report(tmp_path, capsys):
    lab, clean = shell_with_hole(12)
    src = write_labels(lab, tmp_path / "case.seg.nrrd")
    out = tmp_path / "out" / "case_closed.seg.nrrd"
    code, stdout, _ = run_cli(capsys, "cleanup", "close", src, "-o", out, "--radius", "5", "--changes", tmp_path / "changes.nii.gz")
    assert code == 0
    back = read_labels(out)
    np.testing.assert_array_equal(back.array(), clean)
    assert [(s.value, s.name) for s in back.segments] == [(1, "Blood pool (rater A)"), (2, "LV wall (rater A)")]
    np.testing.assert_allclose(back.segments[0].color, (0.9, 0.2, 0.1), atol=1e-3)
    report = json.loads((tmp_path / "out" / "case_closed.report.json").read_text(encoding="utf-8"))
    added = {c["value"]: c["voxels_added"] for c in report["labels"]}
    assert added == {1: 12, 2: 0} and report["voxels_changed"] == 12
    assert report["regions"][0]["kind"] == "hole" and report["regions"][0]["labels"] == {"1": 12}
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "changes.nii.gz"))).sum() == 12
    assert "PROGRESS" in stdout and "+12" in stdout


def test_close_radius_in_mm_and_fill_holes_with_limits(tmp_path, capsys):
    lab, clean = shell_with_hole(4)
    src = write_labels(lab, tmp_path / "case.nii.gz")
    code, _, _ = run_cli(capsys, "cleanup", "close", src, "-o", tmp_path / "a.nii.gz", "--radius", "1", "--radius-unit", "mm")
    assert code == 0
    np.testing.assert_array_equal(read_labels(tmp_path / "a.nii.gz").array(), clean)  # a 1-voxel-wide hole closes at 1 mm
    # 4 voxels of 1 mm^3 = 0.004 mL: kept with a 0.003 mL limit, filled with 0.004 mL
    code, _, _ = run_cli(capsys, "cleanup", "fill-holes", src, "-o", tmp_path / "b.nii.gz", "--max-hole-size", "0.003", "--size-unit", "ml")
    assert code == 0 and json.loads((tmp_path / "b.report.json").read_text(encoding="utf-8"))["voxels_changed"] == 0
    code, _, _ = run_cli(capsys, "cleanup", "fill-holes", src, "-o", tmp_path / "c.nii.gz", "--max-hole-size", "0.004", "--size-unit", "ml")
    assert code == 0 and json.loads((tmp_path / "c.report.json").read_text(encoding="utf-8"))["voxels_changed"] == 4


def test_bad_input_exits_2_with_one_line_and_no_output(tmp_path, capsys):
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(b"not a nifti file at all")
    out = tmp_path / "out.nii.gz"
    code, _, err = run_cli(capsys, "cleanup", "close", corrupt, "-o", out)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "corrupt.nii.gz" in err
    assert not out.exists() and not (tmp_path / "out.report.json").exists()
    empty = sitk.Image([5, 5, 5], sitk.sitkUInt8)
    src = write_labels(empty, tmp_path / "empty.nii.gz")
    code, _, err = run_cli(capsys, "cleanup", "close", src, "-o", out)
    assert code == 2 and "no labelled voxels" in err and not out.exists()
    code, _, err = run_cli(capsys, "cleanup", "close", src, "-o", tmp_path / "out.txt")
    assert code == 2 and "output must end with" in err
    code, _, err = run_cli(capsys, "cleanup", "close", src, "-o", out, "--max-hole-size", "10")
    assert code == 2 and "--fill-holes" in err
    with pytest.raises(SystemExit) as exc:
        main(["cleanup", "close", str(src), "-o", str(out), "--radius", "0"])
    assert exc.value.code == 2
    assert list(tmp_path.glob(".*tmp*")) == []  # no temporary files left behind


@pytest.mark.parametrize("sub", ["close", "fill-holes", "agreement", "fuse"])
def test_every_subcommand_has_help(sub, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["cleanup", sub, "--help"])
    assert exc.value.code == 0 and "usage: segtransfer cleanup " + sub in capsys.readouterr().out


def test_agreement_over_folders_writes_csv_and_summary(tmp_path, capsys):
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    lab, clean = shell_with_hole(12)
    for case in ("p01", "p02"):
        write_labels(lab, tmp_path / "A" / f"{case}.seg.nrrd")
        img = sitk.GetImageFromArray(clean)
        img.CopyInformation(lab.image)
        write_labels(img, tmp_path / "B" / f"{case}.nii.gz")
    code, stdout, _ = run_cli(capsys, "cleanup", "agreement", tmp_path / "A", tmp_path / "B",
                              "--csv", tmp_path / "agree.csv", "--summary", tmp_path / "summary.json")
    assert code == 0
    rows = list(csv.DictReader((tmp_path / "agree.csv").open()))
    assert [(r["case"], r["label"]) for r in rows] == [("p01", "1"), ("p01", "2"), ("p02", "1"), ("p02", "2")]
    n_pool = int((clean == 1).sum())
    expected_dice = 2 * (n_pool - 12) / (2 * n_pool - 12)
    assert float(rows[0]["dice"]) == pytest.approx(expected_dice, abs=1e-5) and float(rows[1]["dice"]) == 1.0
    assert float(rows[0]["volume_diff_ml"]) == pytest.approx(0.012)
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert summary["cases"] == ["p01", "p02"] and summary["labels"]["1"]["dice"]["n"] == 2
    assert "p01" in stdout


def test_mismatched_raters_exit_2_without_output(tmp_path, capsys):
    lab, clean = shell_with_hole(12)
    a = write_labels(lab, tmp_path / "a.nii.gz")
    moved = sitk.Image(lab.image)
    moved.SetOrigin((1.0, 2.0, 3.0))
    b = write_labels(moved, tmp_path / "b.nii.gz")
    code, _, err = run_cli(capsys, "cleanup", "agreement", a, b, "--csv", tmp_path / "x.csv")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "origin" in err and not (tmp_path / "x.csv").exists()
    code, _, err = run_cli(capsys, "cleanup", "fuse", a, a, b, "-o", tmp_path / "f.nii.gz")
    assert code == 2 and "b.nii.gz" in err and not (tmp_path / "f.nii.gz").exists()


def test_fuse_three_raters(tmp_path, capsys):
    lab, clean = shell_with_hole(12)
    truth = sitk.GetImageFromArray(clean)
    truth.CopyInformation(lab.image)
    wrong = clean.copy()
    wrong[:, :, : clean.shape[2] // 2][wrong[:, :, : clean.shape[2] // 2] == 1] = 2
    w = sitk.GetImageFromArray(wrong)
    w.CopyInformation(lab.image)
    paths = [write_labels(LabelImage(truth, SEGMENTS), tmp_path / "r1.seg.nrrd"), write_labels(lab, tmp_path / "r2.nii.gz"),
             write_labels(w, tmp_path / "r3.nii.gz")]
    for method in ("majority", "staple"):
        out = tmp_path / f"fused_{method}.seg.nrrd"
        code, _, _ = run_cli(capsys, "cleanup", "fuse", *paths, "-o", out, "--method", method)
        assert code == 0
        fused = read_labels(out)
        np.testing.assert_array_equal(fused.array(), clean)
        assert fused.segments[0].name == "Blood pool (rater A)"
        assert json.loads((tmp_path / f"fused_{method}.report.json").read_text(encoding="utf-8"))["method"] == method


def test_batch_script_keeps_going_past_a_broken_file(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    lab, clean = shell_with_hole(12)
    write_labels(lab, inp / "good1.seg.nrrd")
    write_labels(lab.image, inp / "good2.nii.gz")
    (inp / "broken.nii.gz").write_bytes(b"\x00garbage")
    (inp / "notes.txt").write_text("not a label map")
    # "--" first, as Slicer passes it: Slicer --no-main-window --python-script scripts/batch_cleanup.py -- ...
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "batch_cleanup.py"), "--", str(inp), str(out), "--radius", "5"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    rows = {r["case"]: r for r in csv.DictReader((out / "cleanup_summary.csv").open())}
    assert set(rows) == {"good1", "good2", "broken"}
    assert rows["broken"]["status"] == "error" and "broken.nii.gz" in rows["broken"]["error"]
    for case, ext in (("good1", ".seg.nrrd"), ("good2", ".nii.gz")):
        assert rows[case]["status"] == "ok" and rows[case]["added_voxels_1"] == "12" and rows[case]["added_voxels_2"] == "0"
        np.testing.assert_array_equal(read_labels(out / f"{case}{ext}").array(), clean)
        assert (out / f"{case}.report.json").exists()
    assert "2 of 3 cases cleaned" in proc.stdout


def test_beating_lv_defects_are_repaired():
    """End to end on the beating-LV phantom: its flood-fill defects (enclosed pool holes, pool/wall
    gaps) are all closed, and the labels match the defect-free truth."""
    from segtransfer.phantoms import beating_lv

    ph = beating_lv(seed=1, n_phases=2, defects=True)
    for phase in range(2):
        bad, clean = ph.series.labels[phase], ph.clean_labels[phase]
        record = ph.defects[phase]
        assert record["hole_voxels"] > 0 and record["gap_voxels"] > 0
        result = close_labels(bad, 5, "voxel")
        out = sitk.GetArrayFromImage(result.labels.image)
        clean_arr = sitk.GetArrayFromImage(clean)
        # every defect voxel is filled and nothing else
        np.testing.assert_array_equal(out != 0, clean_arr != 0)
        assert result.report.voxels_changed == record["hole_voxels"] + record["gap_voxels"]
        assert {r.kind for r in result.report.regions} >= {"hole", "gap"}
        # enclosed pool holes all went back to the pool
        for region in result.report.regions:
            if region.kind == "hole":
                assert set(region.labels) == {1}
        for row in compare_labels(result.labels, clean):
            assert row.dice > 0.99
        assert fill_holes(result.labels).report.voxels_changed == 0  # no hole left

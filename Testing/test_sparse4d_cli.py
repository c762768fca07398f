"""``segtransfer sparse4d export|curve|manifest`` and ``scripts/batch_sparse4d.py`` on 20-phase phantoms:
outputs and records match the phantom's truth; bad input gives one line, exit 2 and no output; the
batch goes on past broken studies and records them."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from segtransfer.cli import main
from segtransfer.io import Series4D, write_image, write_series4d
from segtransfer.io.series4d import join_4d
from segtransfer.phantoms import beating_lv
from segtransfer.sparse4d import read_manifest, read_sparse4d

ROOT = Path(__file__).resolve().parent.parent
COARSE = (2.5, 2.5, 2.5)


@pytest.fixture(scope="module")
def lv():
    return beating_lv(seed=2, spacing=COARSE)


@pytest.fixture(scope="module")
def study(lv, tmp_path_factory):
    """A series folder labelled at ED and ES only (site 2's practice)."""
    t = lv.truth
    s = lv.series
    folder = tmp_path_factory.mktemp("studies") / "lv_seed2"
    write_series4d(Series4D(s.phases, s.percent_rr, {i: s.labels[i] for i in (t.ed_index, t.es_index)}), folder)
    return folder


def test_export_and_curve(lv, study, tmp_path, capsys):
    t = lv.truth
    out = tmp_path / "pair"
    assert main(["sparse4d", "export", str(study), "--out", str(out), "--spacing", "2"]) == 0
    printed = capsys.readouterr().out
    assert f"ED phase {t.ed_index}, ES phase {t.es_index}" in printed and "PROGRESS 100.0%" in printed
    pair = read_sparse4d(out)
    assert pair.labelled_phases() == [t.ed_index, t.es_index]
    assert pair.image.GetSpacing()[:3] == (2.0, 2.0, 2.0)
    r = pair.record
    assert r["study_id"] == "pair" and r["sources"]["form"] == "series folder"
    assert r["ejection_fraction"] == pytest.approx(t.ejection_fraction, abs=0.01)
    assert r["percent_rr"] == t.percent_rr

    assert main(["sparse4d", "curve", str(study), "--json", "--csv", str(tmp_path / "curve.csv")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["ed_index"], result["es_index"]) == (t.ed_index, t.es_index)
    assert result["ejection_fraction"] == pytest.approx(t.ejection_fraction, abs=0.01)
    rows = list(csv.DictReader((tmp_path / "curve.csv").open()))
    assert len(rows) == 20
    assert float(rows[t.es_index]["pool_labels_ml"]) == pytest.approx(t.cavity_ml[t.es_index], rel=0.03)
    assert rows[3]["pool_labels_ml"] == ""  # unlabelled: not measured, not zero


def test_export_from_4d_nifti_with_predicted_curve_and_crop(lv, tmp_path, capsys):
    t = lv.truth
    write_image(join_4d(lv.series.phases), tmp_path / "image4d.nii.gz")
    sparse_labels = [lv.series.labels[i] if i in (t.ed_index, t.es_index) else sitk.Image(lv.series.labels[i]) * 0 for i in range(20)]
    write_image(join_4d(sparse_labels), tmp_path / "labels4d.nii.gz")
    (tmp_path / "pred.json").write_text(json.dumps(t.cavity_ml))
    out = tmp_path / "pair"
    code = main(["sparse4d", "export", str(tmp_path / "image4d.nii.gz"), "--labels4d", str(tmp_path / "labels4d.nii.gz"),
                 "--percent-rr", *map(str, t.percent_rr), "--predicted-volumes", str(tmp_path / "pred.json"),
                 "--out", str(out), "--spacing", "2", "--crop-margin", "8", "--image-type", "int16"])
    assert code == 0
    pair = read_sparse4d(out)
    r = pair.record
    assert r["ed_es_method"] == "prediction" and (r["ed_index"], r["es_index"]) == (t.ed_index, t.es_index)
    assert r["volumes_ml"]["blood_pool_predicted"] == pytest.approx(t.cavity_ml, abs=1e-6)
    assert r["ejection_fraction_source"] == "labels"
    assert r["grid"]["crop"]["margin_mm"] == 8.0 and r["grid"]["size"] == r["grid"]["crop"]["size"]
    assert pair.image.GetPixelID() == sitk.sitkInt16
    assert all(s < 81 for s in pair.image.GetSize()[:3])


def test_bad_input_one_line_exit_2_no_output(lv, study, tmp_path, capsys):
    out = tmp_path / "pair"
    write_image(join_4d(lv.series.phases[:5]), tmp_path / "short.nii.gz")  # a 5-phase label file for a 20-phase series
    cases = [
        ["sparse4d", "export", str(study), "--labels4d", str(tmp_path / "short.nii.gz"), "--out", str(out)],
        ["sparse4d", "export", str(study), "--label", f"3={tmp_path / 'missing.nii.gz'}", "--out", str(out)],
        ["sparse4d", "export", str(study), "--percent-rr", "0", "50", "--out", str(out)],
        ["sparse4d", "export", str(tmp_path / "nothing_here"), "--out", str(out)],
        ["sparse4d", "export", str(study), "--ed", "3", "--out", str(out)],
        ["sparse4d", "curve", str(study), "--label", f"25={study / 'labels_00.nii.gz'}"],
    ]
    expected = ["expected a 4D label image with 20 phases", "missing.nii.gz: file not found", "2 R-R percentages for 20 phases",
                "file or folder not found", "give both the ED and the ES phase index", "labels given for phase 25"]
    for argv, message in zip(cases, expected):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
        assert not out.exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "short.nii.gz"]  # no temporary leftovers either

    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "notes.txt").write_text("mine")
    assert main(["sparse4d", "export", str(study), "--out", str(tmp_path / "keep")]) == 2
    assert "holds no sparse4d.json; refusing to replace it" in capsys.readouterr().err
    assert (tmp_path / "keep" / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_manifest_command(study, tmp_path, capsys):
    for k in range(5):
        assert main(["sparse4d", "export", str(study), "--out", str(tmp_path / "pairs" / f"s{k}"), "--spacing", "5"]) == 0
    capsys.readouterr()
    args = ["sparse4d", "manifest", "--studies", str(tmp_path / "pairs"), "--out", str(tmp_path / "dataset.json"),
            "--split", "0.6", "0.2", "0.2", "--seed", "3"]
    assert main(args) == 0
    assert "5 studies (train 3, validation 1, test 1), seed 3" in capsys.readouterr().out
    first = json.loads((tmp_path / "dataset.json").read_text(encoding="utf-8"))
    assert main(args) == 0
    assert json.loads((tmp_path / "dataset.json").read_text(encoding="utf-8")) == first
    ids = [s["id"] for s in read_manifest(tmp_path / "dataset.json")]
    assert ids == [f"s{k}" for k in range(5)]
    assert main(["sparse4d", "manifest", "--studies", str(tmp_path / "pairs"), "--out", str(tmp_path / "x.json"),
                 "--split", "0.5", "0.5", "0.5"]) == 2
    assert not (tmp_path / "x.json").exists()


def test_batch_script_goes_on_past_broken_studies(lv, study, tmp_path):
    t = lv.truth
    root = tmp_path / "studies"
    root.mkdir()
    # 1. a series folder; 2. a 4D NIfTI study with labels4d (all phases labelled, kept to ED/ES);
    # 3. a broken study whose label file has the wrong number of phases; 4. an empty folder.
    write_series4d(lv.series.__class__(lv.series.phases, lv.series.percent_rr,
                                       {i: lv.series.labels[i] for i in (t.ed_index, t.es_index)}), root / "a_series")
    (root / "b_nifti").mkdir()
    write_image(join_4d(lv.series.phases), root / "b_nifti" / "image4d.nii.gz")
    write_image(join_4d([lv.series.labels[i] for i in range(20)]), root / "b_nifti" / "labels4d.nii.gz")
    (root / "c_broken").mkdir()
    write_image(join_4d(lv.series.phases), root / "c_broken" / "image4d.nii.gz")
    write_image(join_4d([lv.series.labels[i] for i in range(7)]), root / "c_broken" / "labels4d.nii.gz")
    (root / "d_empty").mkdir()
    out = tmp_path / "pairs"
    cmd = [sys.executable, str(ROOT / "scripts" / "batch_sparse4d.py"), "--root", str(root), "--out", str(out), "--spacing", "5",
           "--keep-labels", "ed-es"]
    run = subprocess.run(cmd + ["--manifest", str(out / "dataset.json"), "--split", "0.5", "0.5", "0"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 1, run.stderr
    report = json.loads((out / "batch_report.json").read_text(encoding="utf-8"))["studies"]
    status = {r["study"]: r["status"] for r in report}
    assert status == {"a_series": "ok", "b_nifti": "ok", "c_broken": "failed", "d_empty": "failed"}
    errors = {r["study"]: r["error"] for r in report}
    assert "expected a 4D label image with 20 phases" in errors["c_broken"]
    assert "no DICOM series found" in errors["d_empty"]
    for name in ("a_series", "b_nifti"):
        pair = read_sparse4d(out / name)
        assert pair.labelled_phases() == [t.ed_index, t.es_index]
        assert pair.record["ejection_fraction"] == pytest.approx(t.ejection_fraction, abs=0.02)
    assert not (out / "c_broken").exists() and not (out / "d_empty").exists()
    manifest = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert sorted(s["id"] for s in manifest["studies"]) == ["a_series", "b_nifti"]
    assert len(list(csv.DictReader((out / "batch_report.csv").open()))) == 4

    # Run again, with the "--" separator Slicer's --python-script passes through: existing pairs are skipped.
    stamp = (out / "a_series" / "image4d.nii.gz").stat().st_mtime_ns
    again = subprocess.run(cmd[:2] + ["--"] + cmd[2:], capture_output=True, text=True, timeout=120)
    assert again.returncode == 1
    report = {r["study"]: r["status"] for r in json.loads((out / "batch_report.json").read_text(encoding="utf-8"))["studies"]}
    assert report["a_series"] == "skipped" and report["b_nifti"] == "skipped"
    assert (out / "a_series" / "image4d.nii.gz").stat().st_mtime_ns == stamp
    np.testing.assert_equal(read_sparse4d(out / "b_nifti").labelled_phases(), [t.ed_index, t.es_index])

"""Batch over phantom studies with one broken study, the review report in a real headless browser,
re-runs that skip finished studies, manifests, and the AHA segment geometry of the bullseye."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from segtransfer.batch import discover, read_manifest
from segtransfer.cli import main
from segtransfer.errors import InputError
from segtransfer.io import read_labels, same_grid
from segtransfer.io.dicom_seg import read_dicom_seg
from segtransfer.io import write_image
from segtransfer.io.dicom_series import DicomIdentity, write_dicom_series
from segtransfer.phantoms import beating_lv, head_ct
from segtransfer.review.figures import aha_segments, segment_means
from segtransfer.thickness.vtkio import read_surface

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _rows(path: Path) -> dict[str, dict]:
    with open(path, newline="") as f:
        return {r["study"]: r for r in csv.DictReader(f)}


def _multiphase_dicom(lv, study: Path) -> None:
    """The phases of an LV phantom as DICOM (one series per phase) in study/dicom, ED/ES labels in study/labels."""
    (study / "dicom").mkdir(parents=True)
    for i, phase in enumerate(lv.series.phases):
        write_dicom_series(phase, study / f"p{i}", DicomIdentity(series_number=i + 1, series_description=f"phase {i}"))
        for f in (study / f"p{i}").iterdir():
            f.rename(study / "dicom" / f"phase{i:02d}_{f.name}")
        (study / f"p{i}").rmdir()
    for i in (lv.truth.ed_index, lv.truth.es_index):
        write_image(lv.series.labels[i], study / "labels" / f"labels_{i:02d}.nii.gz")


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """Four studies: a small 8-phase LV series with annotation defects, a 6-phase LV as multi-phase DICOM
    labelled at ED and ES only, a head CT (unseen site) as a DICOM series, and a corrupt file; the
    batch runs with --dicom-seg."""
    root = tmp_path_factory.mktemp("batch")
    studies = root / "studies"
    studies.mkdir()
    assert main(["phantom", "lv", "--out", str(studies / "lv01"), "--seed", "2", "--defects", "--phases", "8",
                 "--spacing", "2", "2", "2.5"]) == 0
    lv_dicom = beating_lv(seed=3, n_phases=6, spacing=(2.5, 2.5, 2.5), site="site_a")
    _multiphase_dicom(lv_dicom, studies / "lv02")
    head = head_ct(seed=5, site="site_c")
    write_dicom_series(head.image, studies / "head01")
    (studies / "broken.nii.gz").write_bytes(b"\x1f\x8b not really a gzip NIfTI")
    out = root / "out"
    proc = subprocess.run([sys.executable, "-m", "segtransfer", "batch", str(studies), "--out", str(out), "--dicom-seg"],
                          capture_output=True, text=True, timeout=600)
    return {"root": root, "studies": studies, "out": out, "proc": proc, "head": head, "lv_dicom": lv_dicom.truth,
            "lv_truth": json.loads((studies / "lv01" / "truth.json").read_text(encoding="utf-8"))["truth"]}


def test_batch_finishes_the_good_studies_and_reports_the_broken_one(batch):
    proc, out = batch["proc"], batch["out"]
    assert proc.returncode == 1, proc.stderr  # some study failed
    rows = _rows(out / "results.csv")
    assert set(rows) == {"lv01", "lv02", "head01", "broken"}
    assert rows["broken"]["status"] == "failed"
    assert "broken.nii.gz" in rows["broken"]["reason"] and "cannot be read" in rows["broken"]["reason"]
    assert not (out / "studies" / "broken").exists()  # nothing half-written for the failure
    assert rows["lv01"]["status"] == rows["lv02"]["status"] == rows["head01"]["status"] == "ok"
    # overall progress: monotone PROGRESS lines up to 100 %
    pct = [float(m) for m in re.findall(r"^PROGRESS (\d+(?:\.\d+)?)%", proc.stdout, re.M)]
    assert pct and pct[-1] == 100.0 and all(b >= a for a, b in zip(pct, pct[1:]))
    assert "failed: broken" in proc.stdout


def test_batch_cardiac_measurements_match_the_phantom(batch):
    truth, out = batch["lv_truth"], batch["out"]
    rec = json.loads((out / "studies" / "lv01" / "study.json").read_text(encoding="utf-8"))
    m = rec["metrics"]
    assert (m["ed_phase"], m["es_phase"]) == (truth["ed_index"], truth["es_index"])
    assert abs(m["ejection_fraction"] - truth["ejection_fraction"]) < 0.02
    assert m["cleanup_voxels_changed"]["ED"] > 0 and m["cleanup_voxels_changed"]["ES"] > 0
    assert m["sparse4d_labelled_phases"] == [truth["ed_index"], truth["es_index"]]
    for role, phase in (("ed", truth["ed_index"]), ("es", truth["es_index"])):
        assert abs(m[f"thickness_{role}_median_mm"] - truth["wall_thickness_mm"][phase]) < 0.75
    # the AHA segments of the measured ED surface: axis along the phantom's long axis, apex at its apex
    points, triangles, arrays = read_surface(out / "studies" / "lv01" / "thickness" / "phase_00_ED_epicardium.vtk")
    assert len(triangles) > 1000 and np.isfinite(arrays["thickness_mm"]).mean() > 0.95
    seg, info = aha_segments(points)
    assert abs(float(np.dot(info["axis"], truth["long_axis"]))) > 0.97
    assert np.linalg.norm(np.asarray(info["apex_mm"]) - truth["apex_mm"]) < 12.0
    assert set(np.unique(seg)) == set(range(1, 18))  # every segment has vertices
    means = segment_means(seg, arrays["thickness_mm"])
    assert all(abs(v - truth["wall_thickness_mm"][0]) < 2.0 for v in means.values())


def test_batch_cardiac_from_multiphase_dicom_labelled_at_ed_es(batch):
    truth = batch["lv_dicom"]
    rec = json.loads((batch["out"] / "studies" / "lv02" / "study.json").read_text(encoding="utf-8"))
    m = rec["metrics"]
    assert rec["kind"] == "cardiac" and m["phases"] == 6
    assert m["labelled_phases"] == [truth.ed_index, truth.es_index]
    assert (m["ed_phase"], m["es_phase"]) == (truth.ed_index, truth.es_index)
    assert abs(m["ejection_fraction"] - truth.ejection_fraction) < 0.03
    assert abs(m["thickness_ed_median_mm"] - truth.wall_thickness_mm[truth.ed_index]) < 1.25  # 2.5 mm voxels
    # the volume curve has values on the labelled phases only: unlabelled is not "no blood pool"
    assert [v is not None for v in m["volume_curve_ml"]] == [i in (truth.ed_index, truth.es_index) for i in range(6)]


def test_batch_head_ct_from_dicom_with_dicom_seg(batch):
    out, head = batch["out"], batch["head"]
    rec = json.loads((out / "studies" / "head01" / "study.json").read_text(encoding="utf-8"))
    m = rec["metrics"]
    assert m["hemorrhage_detected"] is True
    assert abs(m["hemorrhage_ml"] - head.truth.total_volume_ml) < 0.35 * head.truth.total_volume_ml
    mask = read_labels(out / "studies" / "head01" / "hemorrhage" / "hemorrhage.nii.gz").array() > 0
    truth = sitk.GetArrayFromImage(head.mask) > 0
    assert 2 * (mask & truth).sum() / (mask.sum() + truth.sum()) > 0.6  # unseen site, shipped model
    # the DICOM SEG references the source series and holds the same mask on its grid
    seg = read_dicom_seg(out / "studies" / "head01" / rec["files"]["dicom_seg"], batch["studies"] / "head01")
    assert [(s.value, s.name) for s in seg.segments] == [(1, "Hemorrhage")]
    assert same_grid(seg.image, head.image)
    assert np.array_equal(seg.array() > 0, mask)
    assert _rows(out / "results.csv")["head01"]["dicom_seg"] == "dicom/hemorrhage_seg.dcm"


def _chromium_dom(html: Path, profile: Path) -> tuple[str, str]:
    profile.mkdir(parents=True, exist_ok=True)
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom", html.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/test.sh installs Debian's chromium)")
def test_report_in_headless_chromium(batch, tmp_path):
    out = batch["out"]
    report = out / "report.html"
    text = report.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", text)  # nothing from the network: opens offline
    dom, log = _chromium_dom(report, tmp_path / "profile")
    assert ":CONSOLE" not in log, [line for line in log.splitlines() if ":CONSOLE" in line]  # no JS errors or console output
    body = re.search(r"<body[^>]*>", dom).group(0)
    images = re.findall(r"<img [^>]*src=\"([^\"]+)\"", dom)
    assert f'data-images-loaded="{len(images)}"' in body and 'data-images-broken="0"' in body  # naturalWidth > 0 for all
    # every study is shown: in the summary, the two done ones with their sections, the broken one with its reason
    for study in ("lv01", "lv02", "head01", "broken"):
        assert f'data-study="{study}"' in dom
    assert 'id="study-lv01"' in dom and 'id="study-head01"' in dom
    assert "failed-study" in dom and "cannot be read" in dom
    # the figures each study should have, present and not blank
    assert len([s for s in images if "/lv01/" in s]) == 7 and len([s for s in images if "/head01/" in s]) == 2
    assert len(images) == 16
    for src in images:
        with Image.open(out / src) as im:
            assert im.width > 100 and im.height > 100
            assert np.asarray(im.convert("L"), float).std() > 5.0
    # the check catches a missing image (so the assertion above can fail)
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    os.remove(copy / images[0])
    dom2, _ = _chromium_dom(copy / "report.html", tmp_path / "profile2")
    assert 'data-images-broken="1"' in dom2 and "Image missing" in dom2


def test_rerun_skips_finished_studies_headless_script(batch, tmp_path):
    """scripts/batch.py (plain Python; the same under Slicer --python-script) with the same arguments."""
    out = tmp_path / "out"
    shutil.copytree(batch["out"], out)
    before = (out / "studies" / "lv01" / "study.json").stat().st_mtime_ns
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "batch.py"), "--", str(batch["studies"]), "--out", str(out),
                           "--dicom-seg"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    rows = _rows(out / "results.csv")
    assert {r["status"] for k, r in rows.items() if k != "broken"} == {"skipped"} and rows["broken"]["status"] == "failed"
    assert rows["lv01"]["ejection_fraction"] == _rows(batch["out"] / "results.csv")["lv01"]["ejection_fraction"]
    assert (out / "studies" / "lv01" / "study.json").stat().st_mtime_ns == before


def test_manifest_chooses_studies_and_capabilities(batch, tmp_path):
    studies = batch["studies"]
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"study,path,kind,capabilities\nlv_wall,{studies / 'lv01'},cardiac,thickness\n"
                        f"missing,{tmp_path / 'nowhere'},,\n")
    found = read_manifest(manifest)
    assert [(s.study_id, s.kind, s.capabilities) for s in found] == [("lv_wall", "cardiac", ("thickness",)), ("missing", "unknown", None)]
    assert {s.study_id: s.kind for s in discover(studies)} == {"lv01": "cardiac", "lv02": "cardiac", "head01": "head", "broken": "unknown"}
    out = tmp_path / "out"
    assert main(["batch", "--manifest", str(manifest), "--out", str(out), "--no-report"]) == 1
    rec = json.loads((out / "batch.json").read_text(encoding="utf-8"))["studies"]
    assert rec[0]["status"] == "ok" and rec[0]["capabilities"] == ["thickness"]
    assert not (out / "studies" / "lv_wall" / "sparse4d").exists() and (out / "studies" / "lv_wall" / "thickness").is_dir()
    assert rec[1]["status"] == "failed" and "nowhere" in rec[1]["reason"]
    bad = tmp_path / "bad.csv"
    bad.write_text(f"study,path,kind,capabilities\nx,{studies / 'lv01'},cardiac,hemorrhage\n")
    with pytest.raises(InputError, match="line 2.*hemorrhage"):
        read_manifest(bad)


def test_batch_refuses_a_foreign_output_folder(batch, tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("someone's file")
    assert main(["batch", str(batch["studies"]), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "batch.json" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_fingerprint_follows_the_input_files(tmp_path):
    from segtransfer.batch.runner import fingerprint

    study = tmp_path / "s"
    study.mkdir()
    (study / "a.dcm").write_bytes(b"1")
    first = fingerprint(study)
    assert fingerprint(study) == first
    os.utime(study / "a.dcm", ns=(1, 10**18))
    touched = fingerprint(study)
    (study / "b.dcm").write_bytes(b"2")
    assert len({first, touched, fingerprint(study)}) == 3  # modified, then a file added: a re-run redoes the study


def test_batch_segment_capability_with_a_cardiac_model(batch, tmp_path, capsys):
    """With --cardiac-model every phase is segmented: the batch records the model's volume curve (the same
    as segtransfer.cardiac gives directly), keeps expert-label ED/ES where there are labels, and measures
    an unlabelled study on the model's segmentation.  The model is a tiny one trained here: this checks
    the wiring, not the quality of the model."""
    from segtransfer.cardiac.infer import segment_series
    from segtransfer.cardiac.phantom_data import phantom_pair, split_manifest
    from segtransfer.cardiac.train import load_cardiac_network, train_cardiac
    from segtransfer.io import read_image
    from segtransfer.sparse4d import load_study

    pairs = [phantom_pair(tmp_path / f"pair{i}", seed=300 + i, site="site_a", labelling="dense", n_phases=4, spacing_mm=6.0)
             for i in range(2)]
    split_manifest({"train": pairs[:1], "validation": pairs[1:]}, tmp_path / "pairs.json")
    train_cardiac(tmp_path / "pairs.json", tmp_path / "model", max_epochs=3, patience=3, channels=[4, 8], spacing_mm=(6, 6, 6),
                  device="cpu", progress=lambda f, m="": None)
    shutil.copytree(batch["studies"] / "lv02" / "dicom", tmp_path / "lv_new" / "dicom")  # no labels
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"study,path,kind,capabilities\nlv_new,{tmp_path / 'lv_new'},,segment cleanup thickness\n"
                        f"lv01,{batch['studies'] / 'lv01'},,segment\n")
    assert main(["batch", "--manifest", str(manifest), "--out", str(tmp_path / "out"), "--capabilities", "segment"]) == 2
    assert "--cardiac-model" in capsys.readouterr().err
    out = tmp_path / "out"
    assert main(["batch", "--manifest", str(manifest), "--out", str(out), "--cardiac-model", str(tmp_path / "model"),
                 "--device", "cpu", "--no-report"]) == 0
    new = json.loads((out / "studies" / "lv_new" / "study.json").read_text(encoding="utf-8"))
    m = new["metrics"]
    network, package = load_cardiac_network(tmp_path / "model")
    series, _ = load_study(tmp_path / "lv_new" / "dicom")
    direct = segment_series(series, network, package.description)
    assert np.allclose(m["predicted_curve_ml"], direct.pool_ml, atol=0.01)
    assert (m["ed_phase"], m["es_phase"]) == (direct.ed_index, direct.es_index) == (m["model_ed_phase"], m["model_es_phase"])
    assert m["measured_on"] == "model" and "thickness_ed_median_mm" in m
    assert any("cleanup" in note for note in new["notes"]) and not (out / "studies" / "lv_new" / "cleanup").exists()
    labels4d = read_image(out / "studies" / "lv_new" / new["files"]["model_segmentation"], dimension=4)
    assert labels4d.GetSize()[3] == 6 and labels4d.GetSize()[:3] == series.phases[0].GetSize()
    old = json.loads((out / "studies" / "lv01" / "study.json").read_text(encoding="utf-8"))["metrics"]
    truth = batch["lv_truth"]
    assert (old["ed_phase"], old["es_phase"]) == (truth["ed_index"], truth["es_index"])  # expert labels decide ED/ES
    assert old["measured_on"] == "labels" and len(old["predicted_curve_ml"]) == 8

"""The main job: the demo runs a batch of phantom studies end to end and its measurements agree with
the phantom truth; it writes the review report and says where it is."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from segtransfer.cli import main
from segtransfer.io import read_image, read_labels, read_series4d
from segtransfer.io.dicom_seg import read_dicom_seg
from segtransfer.models import load_package
from segtransfer.sparse4d import read_sparse4d


def test_demo_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    studies = summary["studies"]
    assert set(studies) == {"lv_site_b", "head_positive_dicom"}
    assert all(r["status"] == "ok" for r in studies.values())
    lv = studies["lv_site_b"]
    t, m = lv["truth"], lv["measured"]
    # ED/ES and EF of the phantom found from the (defective) labels
    assert (m["ed_phase"], m["es_phase"]) == (t["ed_index"], t["es_index"])
    assert abs(m["ejection_fraction"] - t["ejection_fraction"]) < 0.02
    # cleanup repaired the annotation defects: closer to the clean truth than before
    for role in ("ED", "ES"):
        d = lv["pool_dice_to_truth"][role]
        assert d["after"] > d["before"] and d["after"] > 0.99
    # wall thickness close to the phantom's nominal wall, thicker at ES
    assert abs(m["thickness_ed_median_mm"] - t["wall_thickness_ed_mm"]) < 0.75
    assert abs(m["thickness_es_median_mm"] - t["wall_thickness_es_mm"]) < 0.75
    assert m["thickness_es_median_mm"] > m["thickness_ed_median_mm"] + 2.0
    pair = read_sparse4d(out / "batch" / "studies" / "lv_site_b" / "sparse4d")
    assert pair.labelled_phases() == [t["ed_index"], t["es_index"]]
    check_transfer_step(out, summary)
    # hemorrhage on a CT from a site the shipped model never saw, read from DICOM, written back as DICOM SEG
    head = studies["head_positive_dicom"]
    assert head["measured"]["hemorrhage_detected"] and head["dice"] > 0.6
    seg = read_dicom_seg(out / "batch" / "studies" / "head_positive_dicom" / head["dicom_seg"], out / "studies" / "head_positive_dicom")
    assert [s.name for s in seg.segments] == ["Hemorrhage"] and seg.array().sum() > 0
    # the batch's table and the report
    with open(out / summary["results"], newline="") as f:
        assert sorted(r["study"] for r in csv.DictReader(f)) == ["head_positive_dicom", "lv_site_b"]
    report = (out / summary["report"]).read_text(encoding="utf-8")
    assert "lv_site_b" in report and "head_positive_dicom" in report
    printed = capsys.readouterr().out
    assert f"Review report (open in a browser): {(out / 'batch' / 'report.html').resolve()}" in printed
    # a second run refuses to overwrite without --force; a folder that is not a demo output is never replaced
    assert main(["demo", "--out", str(out)]) == 2
    assert (out / "summary.json").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    assert main(["demo", "--out", str(other), "--force"]) == 2
    assert (other / "notes.txt").read_text(encoding="utf-8") == "keep"


def check_transfer_step(out, summary):
    """The cardiac transfer-learning step of the quick demo: a partner package, a package fine-tuned from
    it (verified, parent recorded) on local phantoms that are none of the demo's studies, and the batch
    segmented every phase of the cardiac study with the fine-tuned model while expert labels kept deciding
    ED/ES.  The quick model trains for a few epochs on 6 mm phantoms: its quality is not asserted."""
    tr = summary["transfer"]
    partner = load_package(out / "transfer" / tr["partner_model"]["package"], tr["partner_model"]["sha256"])
    tuned = load_package(out / "transfer" / tr["finetuned_model"]["package"], tr["finetuned_model"]["sha256"])
    assert tuned.card["parent"]["sha256"] == partner.sha256 == tr["finetuned_model"]["parent_sha256"]
    assert tuned.card["training_data"]["local_cases"] == 1 and partner.card["parent"] is None
    detail = json.loads((out / "transfer" / "transfer.json").read_text(encoding="utf-8"))
    demo_seeds = {summary["seed"] + 1, summary["seed"] + 900}  # lv_site_b, head CT
    assert not demo_seeds & {s for seeds in detail["seeds"].values() for s in seeds}
    held = tr["held_out_local"]
    assert held["studies"] == 1 and [c["study"] for c in held["finetuned"]["cases"]] == ["local_02"]
    assert all(0.0 <= held[k][d] <= 1.0 for k in ("partner", "finetuned") for d in ("dice_blood_pool", "dice_myocardium"))
    # the batch ran the fine-tuned package on every phase of the demo's cardiac study
    lv = summary["studies"]["lv_site_b"]
    folder = out / "batch" / "studies" / "lv_site_b"
    record = json.loads((folder / "study.json").read_text(encoding="utf-8"))
    assert record["capabilities"][0] == "segment" and record["metrics"]["measured_on"] == "labels"
    seg_summary = json.loads((folder / "segment" / "summary.json").read_text(encoding="utf-8"))
    assert seg_summary["model"]["sha256"] == tuned.sha256
    series = read_series4d(out / "studies" / "lv_site_b")
    labels4d = read_image(folder / record["files"]["model_segmentation"], dimension=4)
    assert labels4d.GetSize() == (*series.phases[0].GetSize(), 8)
    t, model = lv["truth"], lv["model"]
    voxel_ml = float(np.prod(series.phases[0].GetSpacing())) / 1000.0
    pool_ml = [float((read_labels(folder / "segment" / f"phase_{i:02d}.seg.nrrd").array() == 1).sum()) * voxel_ml for i in range(8)]
    assert np.allclose(record["metrics"]["predicted_curve_ml"], pool_ml, atol=0.01)
    assert model["phases_segmented"] == 8 and model["edv_ml"] == pytest.approx(pool_ml[t["ed_index"]], abs=0.01)
    # Dice against the clean truth at the true ED and ES, for the fine-tuned and the partner model
    clean_ed = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "truth" / "lv_site_b" / "ed_clean_labels.nii.gz")))
    ed_labels = read_labels(folder / "segment" / f"phase_{t['ed_index']:02d}.seg.nrrd").array()
    both = (ed_labels == 1) & (clean_ed == 1)
    expected = 2.0 * both.sum() / ((ed_labels == 1).sum() + (clean_ed == 1).sum())
    assert model["dice"]["ED"]["blood_pool"] == pytest.approx(expected, abs=1e-6)
    assert set(model["partner_dice"]) == {"ED", "ES"}
    assert "Model: ED phase" in (out / summary["report"]).read_text(encoding="utf-8")


def test_demo_refuses_a_bad_device_or_thread_count_before_writing(tmp_path, capsys):
    for args in (["--device", "tpu9"], ["--threads", "0"]):
        out = tmp_path / args[0].strip("-")
        assert main(["demo", "--quick", "--out", str(out), *args]) == 2
        assert args[0] in capsys.readouterr().err and not out.exists()


@pytest.mark.slow
def test_full_transfer_step_beats_the_partner_on_held_out_local_studies(tmp_path):
    """The full demo's transfer step (about 2 minutes on two cores): fine-tuning on 5 ED/ES-labelled local
    studies improves the partner model on every held-out local study."""
    import torch

    from segtransfer.demo_transfer import run_transfer

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = run_transfer(tmp_path / "transfer", device="cpu")
    finally:
        torch.set_num_threads(before)
    held = result["held_out_local"]
    assert held["partner"]["dice"] > 0.85  # the partner transfers to the local site
    assert all(f["dice"] > p["dice"] for f, p in zip(held["finetuned"]["cases"], held["partner"]["cases"]))
    assert held["finetuned"]["dice_myocardium"] > held["partner"]["dice_myocardium"]

"""The main job: the demo runs a batch of phantom studies end to end and its measurements agree with
the phantom truth; it writes the review report and says where it is."""

from __future__ import annotations

import csv
import json

from segtransfer.cli import main
from segtransfer.io.dicom_seg import read_dicom_seg
from segtransfer.sparse4d import read_sparse4d


def test_demo_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
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
    # hemorrhage on a CT from a site the shipped model never saw, read from DICOM, written back as DICOM SEG
    head = studies["head_positive_dicom"]
    assert head["measured"]["hemorrhage_detected"] and head["dice"] > 0.6
    seg = read_dicom_seg(out / "batch" / "studies" / "head_positive_dicom" / head["dicom_seg"], out / "studies" / "head_positive_dicom")
    assert [s.name for s in seg.segments] == ["Hemorrhage"] and seg.array().sum() > 0
    # the batch's table and the report
    with open(out / summary["results"], newline="") as f:
        assert sorted(r["study"] for r in csv.DictReader(f)) == ["head_positive_dicom", "lv_site_b"]
    report = (out / summary["report"]).read_text()
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
    assert (other / "notes.txt").read_text() == "keep"

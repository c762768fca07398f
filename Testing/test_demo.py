"""The main job: the demo runs end to end and its measurements agree with the phantom truth."""

from __future__ import annotations

import json

from segtransfer.cli import main
from segtransfer.sparse4d import read_sparse4d


def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    steps = summary["steps"]
    truth = steps["cardiac phantom"]["truth"]
    # cleanup repaired the annotation defects: closer to the clean truth than before, for both phases
    for phase in ("ED", "ES"):
        rec = steps["annotation cleanup"][phase]
        assert rec["voxels_changed"] > 0
        assert rec["dice_to_truth_after"]["1"] > rec["dice_to_truth_before"]["1"]
        assert rec["dice_to_truth_after"]["1"] > 0.99
    # the sparse pair found ED/ES and the EF of the phantom
    sparse = steps["sparse 4D pair"]
    assert (sparse["ed_index"], sparse["es_index"]) == (truth["ed_index"], truth["es_index"])
    assert abs(sparse["ejection_fraction"] - truth["ejection_fraction"]) < 0.01
    pair = read_sparse4d(out / "cardiac" / "sparse4d")
    assert pair.labelled_phases() == [truth["ed_index"], truth["es_index"]]
    # wall thickness at ED and ES close to the phantom's nominal thickness, thicker at ES
    thick = steps["wall thickness"]
    for role in ("ED", "ES"):
        assert abs(thick[role]["median_mm"] - thick[role]["nominal_mm"]) < 0.75
    assert thick["ES"]["median_mm"] > thick["ED"]["median_mm"] + 2.0
    assert (out / "cardiac" / "thickness" / "statistics.csv").exists()
    # hemorrhage: the shipped model on an unseen site finds the positive scan's hemorrhage; the negative
    # scan gets far less (border false positives, see docs/hemorrhage.md)
    hem = steps["hemorrhage"]
    assert hem["positive"]["detected"] and hem["positive"]["dice"] > 0.6
    assert hem["negative"]["volume_ml"] < 0.25 * hem["positive"]["volume_ml"]
    assert (out / "head" / "positive" / "hemorrhage.seg.nrrd").exists()
    printed = capsys.readouterr().out
    assert "Demo outputs:" in printed
    # a second run refuses to overwrite without --force, then replaces with it
    assert main(["demo", "--out", str(out)]) == 2
    assert (out / "summary.json").exists()

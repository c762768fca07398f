"""Logic of SegTransferThickness and SegTransferHemorrhage on real scenes (SegTransferTraining: test_module_training.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import SegTransferHemorrhage
import SegTransferThickness
from SegTransferHemorrhage import SegTransferHemorrhageLogic
from SegTransferLib import nodes
from SegTransferThickness import SegTransferThicknessLogic
from segtransfer.io import LabelImage, read_labels, write_labels
from segtransfer.labels import HEMORRHAGE_SEGMENTS, Segment
from segtransfer.phantoms import cylindrical_shell

OBLIQUE = tuple(np.array([[0.9396926, 0.0, 0.3420201], [0.0, 1.0, 0.0], [-0.3420201, 0.0, 0.9396926]]).ravel())


def test_thickness_segments_export_as_0_1_2_on_oblique_grid(scene, tmp_path):
    shell, _ = cylindrical_shell(5.0, 8.0, length=12.0, spacing=(0.7, 0.9, 1.6), direction=OBLIQUE, margin_mm=2.0)
    # the segmentation lists myocardium first and a distractor segment: the user picks pool and wall
    arr = shell.array()
    mixed = np.where(arr == 1, 3, np.where(arr == 2, 1, 0)).astype(np.uint8)
    mixed[0, 0, 0] = 2
    img = sitk.GetImageFromArray(mixed)
    img.CopyInformation(shell.image)
    segs = [Segment(1, "Myo", (0.9, 0.6, 0.3)), Segment(2, "Other", (0.2, 0.2, 0.9)), Segment(3, "Pool", (0.9, 0.1, 0.1))]
    seg_node = nodes.segmentation_node_from_label_image(scene, LabelImage(img, segs), "lv")
    ref = nodes.volume_node_from_image(scene, shell.image, "ct")
    s = seg_node.GetSegmentation()
    logic = SegTransferThicknessLogic(scene)
    labels = logic.labelsFromSegments(seg_node, s.GetSegmentIdBySegmentName("Pool"), s.GetSegmentIdBySegmentName("Myo"), ref)
    np.testing.assert_array_equal(labels.array(), arr)
    assert [(x.value, x.name) for x in labels.segments] == [(1, "Pool"), (2, "Myo")]
    path = logic.writeLabels(seg_node, s.GetSegmentIdBySegmentName("Pool"), s.GetSegmentIdBySegmentName("Myo"), ref, tmp_path / "lv.nii.gz")
    back = read_labels(path)
    np.testing.assert_allclose(back.image.GetDirection(), OBLIQUE, atol=1e-6)
    np.testing.assert_array_equal(back.array(), arr)
    with pytest.raises(ValueError, match="no segment with ID 'nope'"):
        logic.labelsFromSegments(seg_node, "nope", s.GetSegmentIdBySegmentName("Myo"), ref)


def test_thickness_results_load_as_coloured_model_and_table(scene, tmp_path):
    (tmp_path / "ed_epicardium.vtk").write_text(
        "# vtk DataFile Version 3.0\nSPACE=LPS\nASCII\nDATASET POLYDATA\nPOINTS 3 float\n0 0 0 5 0 0 0 5 0\n"
        "POLYGONS 1 4\n3 0 1 2\nPOINT_DATA 3\nSCALARS thickness_mm float 1\nLOOKUP_TABLE default\n9 10 11\n")
    (tmp_path / "statistics.csv").write_text("phase,median_mm,p95_mm,max_mm\nED,10,10.9,11\n")
    models, tables = SegTransferThicknessLogic(scene).loadResults(tmp_path)
    assert len(models) == 1 and models[0].GetDisplayNode().GetActiveScalarName() == "thickness_mm"
    assert nodes.rows_from_table_node(tables[0]) == [{"phase": "ED", "median_mm": 10.0, "p95_mm": 10.9, "max_mm": 11.0}]
    with pytest.raises(ValueError, match="no thickness surface"):
        SegTransferThicknessLogic(scene).loadResults(tmp_path / "empty")


def test_hemorrhage_input_and_results_round_trip(scene, tmp_path):
    ct = sitk.GetImageFromArray(np.full((5, 12, 10), 35, np.int16))
    ct.SetSpacing((0.45, 0.45, 5.0))
    ct.SetDirection(OBLIQUE)
    ct.SetOrigin((90.0, 120.0, -40.0))
    node = nodes.volume_node_from_image(scene, ct, "head")
    logic = SegTransferHemorrhageLogic(scene)
    written = sitk.ReadImage(str(logic.writeInput(node, tmp_path / "in")))
    np.testing.assert_allclose(written.GetOrigin(), ct.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(written.GetDirection(), ct.GetDirection(), atol=1e-6)
    mask = np.zeros((5, 12, 10), np.uint8)
    mask[2, 3:6, 4:7] = 1
    m = sitk.GetImageFromArray(mask)
    m.CopyInformation(ct)
    out = tmp_path / "out"
    write_labels(LabelImage(m, list(HEMORRHAGE_SEGMENTS)), out / "hemorrhage.seg.nrrd")
    (out / "summary.json").write_text(json.dumps({"volume_ml": 0.0091, "detected": True}))
    seg, summary = logic.loadResults(out, node)
    assert seg.GetSegmentation().GetNthSegment(0).GetName() == "Hemorrhage"
    back = nodes.label_image_from_segmentation_node(seg, node)
    np.testing.assert_array_equal(back.array(), mask)
    assert logic.summaryText(summary) == "Hemorrhage present: 0.01 mL"


@pytest.mark.parametrize("module", [SegTransferThickness, SegTransferHemorrhage])
def test_module_self_tests_run_on_scene(scene, monkeypatch, module):
    import slicer

    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    getattr(module, f"{module.__name__}Test")().runTest()


def test_thickness_runs_in_background_and_loads_coloured_model(scene, tmp_path):
    """Segmentation node -> background `segtransfer thickness compute` -> model node with thickness_mm,
    placed in RAS exactly where the core's LPS surface is."""
    from segtransfer.phantoms import spherical_shell

    shell, truth = spherical_shell(8.0, 12.0, spacing=(1.0, 1.0, 1.2), direction=OBLIQUE)
    shell.image.SetOrigin((10.0, -20.0, 30.0))
    seg = nodes.segmentation_node_from_label_image(scene, shell, "lv")
    ref = nodes.volume_node_from_image(scene, shell.image, "ct")
    logic = SegTransferThicknessLogic(scene)
    ids = dict((name, sid) for sid, name in logic.segments(seg))
    process = logic.start(seg, ids["LV blood pool"], ids["LV myocardium"], ref, str(tmp_path / "out"))
    result = process.wait(timeout=300)
    assert result.returncode == 0, process.log
    assert result.progress == 1.0
    assert process.temporary and not any(Path(p).exists() for p in process.temporary)  # the label map written for it
    models, tables = logic.loadResults(tmp_path / "out")
    import slicer

    thickness = slicer.util.arrayFromModelPointData(models[0], "thickness_mm")
    assert abs(np.nanmedian(thickness) - truth.thickness) < 0.15
    ras = slicer.util.arrayFromModelPoints(models[0])
    lps = ras * np.array([-1.0, -1.0, 1.0])
    centre = np.array(shell.image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in shell.image.GetSize()]))
    assert abs(np.median(np.linalg.norm(lps - centre, axis=1)) - truth.r_outer) < 0.6
    rows = nodes.rows_from_table_node(tables[0])
    assert rows[0]["study"] == "lv" and abs(rows[0]["median_mm"] - truth.thickness) < 0.15


def test_hemorrhage_runs_in_background_with_the_shipped_model(scene, tmp_path):
    """CT volume node -> background `segtransfer hemorrhage segment` -> segmentation node on the CT's grid."""
    from segtransfer.phantoms import head_ct

    head = head_ct(seed=21, site="site_b", spacing=(1.0, 1.0, 5.0))
    node = nodes.volume_node_from_image(scene, head.image, "head")
    logic = SegTransferHemorrhageLogic(scene)
    process = logic.start(node, str(tmp_path / "out"))
    result = process.wait(timeout=300)
    assert result.returncode == 0, process.log
    seg, summary = logic.loadResults(tmp_path / "out", node)
    assert summary["detected"] and logic.summaryText(summary).startswith("Hemorrhage present")
    mask = nodes.label_image_from_segmentation_node(seg, node).array() > 0
    truth = sitk.GetArrayFromImage(head.mask) > 0
    assert 2 * (mask & truth).sum() / (mask.sum() + truth.sum()) > 0.6

"""SegTransferCleanup's Logic end to end on a real scene: nodes in, core cleanup, nodes out."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

import SegTransferCleanup
from SegTransferCleanup import CHANGED_SEGMENT_NAME, SegTransferCleanupLogic
from SegTransferLib import nodes
from segtransfer.cleanup import clean_labels
from segtransfer.io import LabelImage
from segtransfer.labels import Segment
from segtransfer.phantoms import spherical_shell

OBLIQUE = tuple(np.array([[0.8660254, -0.5, 0.0], [0.5, 0.8660254, 0.0], [0.0, 0.0, 1.0]]).ravel())


def defective_shell():
    """Oblique, anisotropic shell with a 3-voxel hole in the pool and a pool/wall gap."""
    labels, _ = spherical_shell(7.0, 11.0, spacing=(0.9, 1.2, 2.0), direction=OBLIQUE, margin_mm=3.0)
    labels.image.SetOrigin((5.0, -7.5, 40.0))
    arr = labels.array()
    c = tuple(s // 2 for s in arr.shape)
    arr[c[0], c[1], c[2] - 1:c[2] + 2] = 0
    ring = (arr == 2) & (np.roll(arr, 1, axis=2) == 1)
    ring[: c[0]] = False
    arr[ring] = 0
    image = sitk.GetImageFromArray(arr)
    image.CopyInformation(labels.image)
    segs = [Segment(1, "Pool", (0.9, 0.2, 0.2)), Segment(2, "Wall", (0.8, 0.7, 0.3))]
    return LabelImage(image, segs)


def test_cleanup_logic_matches_core_voxel_for_voxel(scene):
    labels = defective_shell()
    ct = sitk.Cast(labels.image, sitk.sitkFloat32) * 100.0
    ct_node = nodes.volume_node_from_image(scene, ct, "ct")
    seg_node = nodes.segmentation_node_from_label_image(scene, labels, "rater")
    logic = SegTransferCleanupLogic(scene)
    output, report = logic.clean(seg_node, ct_node, radius=3, unit="voxel")
    expected = clean_labels(labels, radius=3, radius_unit="voxel")
    assert report.voxels_changed == expected.report.voxels_changed > 3
    segmentation = output.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert names == ["Pool", "Wall", CHANGED_SEGMENT_NAME]
    back = nodes.label_image_from_segmentation_node(output, ct_node, [segmentation.GetSegmentIdBySegmentName(n) for n in ("Pool", "Wall")])
    np.testing.assert_array_equal(back.array(), expected.labels.array())
    # physical space: the output lies on the input grid (oblique, anisotropic, offset)
    np.testing.assert_allclose(back.image.GetOrigin(), labels.image.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(back.image.GetDirection(), labels.image.GetDirection(), atol=1e-6)
    changed = nodes.label_image_from_segmentation_node(output, ct_node, [segmentation.GetSegmentIdBySegmentName(CHANGED_SEGMENT_NAME)])
    np.testing.assert_array_equal(changed.array() > 0, sitk.GetArrayFromImage(expected.changes) > 0)


def test_cleanup_in_background_matches_in_process(scene, tmp_path):
    """The panel's path: `segtransfer cleanup close` in a background process, loaded back as a segmentation with
    the input's segment names and colours, voxel for voxel what the in-process cleanup gives."""
    labels = defective_shell()
    ct_node = nodes.volume_node_from_image(scene, sitk.Cast(labels.image, sitk.sitkFloat32) * 100.0, "ct")
    seg_node = nodes.segmentation_node_from_label_image(scene, labels, "rater")
    logic = SegTransferCleanupLogic(scene)
    process, work, segments = logic.start(seg_node, ct_node, radius=3, unit="voxel", workFolder=tmp_path / "work")
    result = process.wait(timeout=120)
    assert result.returncode == 0, process.log
    assert result.progress == 1.0 and "voxels changed" in result.message
    output, report = logic.loadResults(work, segments, seg_node.GetName())
    expected = clean_labels(labels, radius=3, radius_unit="voxel")
    assert report["voxels_changed"] == expected.report.voxels_changed
    segmentation = output.GetSegmentation()
    assert [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())] == ["Pool", "Wall", CHANGED_SEGMENT_NAME]
    np.testing.assert_allclose(segmentation.GetNthSegment(1).GetColor(), (0.8, 0.7, 0.3), atol=1e-6)
    ids = [segmentation.GetSegmentIdBySegmentName(n) for n in ("Pool", "Wall")]
    back = nodes.label_image_from_segmentation_node(output, ct_node, ids)
    np.testing.assert_array_equal(back.array(), expected.labels.array())
    changed = nodes.label_image_from_segmentation_node(output, ct_node, [segmentation.GetSegmentIdBySegmentName(CHANGED_SEGMENT_NAME)])
    np.testing.assert_array_equal(changed.array() > 0, sitk.GetArrayFromImage(expected.changes) > 0)


def test_cleanup_background_work_folder_is_removed_after_loading(scene):
    """Without a work folder, start() uses a temporary one: the results load in the process's onFinished
    callback (as the panel does), then the folder with the written labels is removed."""
    labels = defective_shell()
    lab_node = nodes.volume_node_from_image(scene, labels.image, "labels", labelmap=True)
    logic = SegTransferCleanupLogic(scene)
    process, work, segments = logic.start(lab_node, radius=2, fill=True)
    loaded = []
    process.onFinished = lambda code: loaded.append(logic.loadResults(work, segments, "labels", preview=False))
    assert process.wait(timeout=120).returncode == 0, process.log
    assert "--fill-holes" in process.command
    output, report = loaded[0]
    assert output.GetSegmentation().GetNumberOfSegments() == 2 and report["operation"] == "close+fill-holes"
    assert not work.exists()


def test_cleanup_logic_on_labelmap_node_and_agreement_table(scene):
    labels = defective_shell()
    lab_node = nodes.volume_node_from_image(scene, labels.image, "labels", labelmap=True)
    logic = SegTransferCleanupLogic(scene)
    output, report = logic.clean(lab_node, radius=3, preview=False)
    assert output.GetSegmentation().GetNumberOfSegments() == 2
    clean, _ = spherical_shell(7.0, 11.0, spacing=(0.9, 1.2, 2.0), direction=OBLIQUE, margin_mm=3.0)
    clean.image.SetOrigin((5.0, -7.5, 40.0))
    truth_node = nodes.volume_node_from_image(scene, clean.image, "truth", labelmap=True)
    table = logic.agreementTable(lab_node, truth_node)
    rows = nodes.rows_from_table_node(table)
    assert [r["label"] for r in rows] == [1.0, 2.0]
    assert all(0.9 < r["dice"] < 1.0 for r in rows)  # the defects cost some agreement, not all


def test_module_self_test_runs_on_scene(scene, monkeypatch):
    import slicer

    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    SegTransferCleanup.SegTransferCleanupTest().runTest()

"""Node <-> core exchange on real MRML nodes (slicer-core): geometry, segments, sequences, models, tables."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

import slicer
import vtk
from SegTransferLib import nodes
from segtransfer.io import LabelImage, Series4D, read_labels, write_labels
from segtransfer.labels import CARDIAC_SEGMENTS, Segment
from segtransfer.phantoms import spherical_shell

OBLIQUE = tuple(np.array([[0.9396926, -0.3213938, 0.1169778], [0.3420201, 0.8830222, -0.3213938], [0.0, 0.3420201, 0.9396926]]).ravel())
SPACING = (0.8, 1.1, 2.5)


@pytest.fixture
def shell():
    """An oblique, anisotropic 0/1/2 shell and a CT-like image on its grid."""
    labels, _ = spherical_shell(6.0, 10.0, spacing=SPACING, direction=OBLIQUE, margin_mm=3.0)
    labels.image.SetOrigin((12.0, -30.5, 88.25))
    arr = labels.array().astype(np.float32) * 200.0 - 50.0
    ct = sitk.GetImageFromArray(arr + np.arange(arr.size, dtype=np.float32).reshape(arr.shape) * 1e-3)
    ct.CopyInformation(labels.image)
    return ct, labels


def physical_lps_of_voxel_in_node(node, ijk) -> np.ndarray:
    """LPS position of voxel (i, j, k) as Slicer itself places it (IJK-to-RAS), flipped to LPS."""
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    ras = m.MultiplyPoint((*ijk, 1.0))[:3]
    return np.array([-ras[0], -ras[1], ras[2]])


def test_volume_round_trip_keeps_geometry_voxel_for_voxel(scene, shell):
    ct, _ = shell
    node = nodes.volume_node_from_image(scene, ct, "ct")
    np.testing.assert_allclose(node.GetSpacing(), SPACING, atol=1e-9)
    for ijk in [(0, 0, 0), (3, 7, 2), tuple(s - 1 for s in ct.GetSize())]:
        np.testing.assert_allclose(physical_lps_of_voxel_in_node(node, ijk), ct.TransformIndexToPhysicalPoint(ijk), atol=1e-6)
    # Slicer's array view is [k, j, i] like SimpleITK's
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), sitk.GetArrayFromImage(ct))
    back = nodes.image_from_volume_node(node)
    np.testing.assert_allclose(back.GetOrigin(), ct.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(back.GetDirection(), ct.GetDirection(), atol=1e-9)
    np.testing.assert_allclose(back.GetSpacing(), ct.GetSpacing(), atol=1e-9)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(ct))


def test_wrong_ras_lps_handling_is_caught(scene, shell):
    """Placing LPS values straight into the RAS matrix (the classic bug) moves voxels: the check above fails."""
    ct, _ = shell
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "wrong")
    slicer.util.updateVolumeFromArray(node, sitk.GetArrayFromImage(ct))
    node.SetIJKToRASMatrix(nodes._numpy_to_matrix(nodes.ijk_to_lps(ct)))  # no flip
    expected = np.array(ct.TransformIndexToPhysicalPoint((3, 7, 2)))
    assert np.linalg.norm(physical_lps_of_voxel_in_node(node, (3, 7, 2)) - expected) > 1.0
    wrong_back = nodes.image_from_volume_node(node)
    assert not np.allclose(wrong_back.GetOrigin(), ct.GetOrigin(), atol=1e-3)


def test_segmentation_round_trip_keeps_names_colours_terminology(scene, shell):
    ct, labels = shell
    entry = ("Segmentation category and type - 3D Slicer General Anatomy list~SCT^85756007^Tissue"
             "~SCT^4906002^Myocardium~^^~Anatomic codes - DICOM master list~^^~^^")
    segs = [Segment(1, "LV blood pool", (0.8, 0.2, 0.2)), Segment(2, "LV myocardium", (0.7, 0.6, 0.3), entry)]
    ct_node = nodes.volume_node_from_image(scene, ct, "ct")
    seg_node = nodes.segmentation_node_from_label_image(scene, LabelImage(labels.image, segs), "lv")
    assert seg_node.GetSegmentation().GetNumberOfSegments() == 2
    back = nodes.label_image_from_segmentation_node(seg_node, ct_node)
    assert [(s.value, s.name) for s in back.segments] == [(1, "LV blood pool"), (2, "LV myocardium")]
    np.testing.assert_allclose(back.segments[1].color, (0.7, 0.6, 0.3), atol=1e-6)
    assert "SCT^4906002^Myocardium" in back.segments[1].terminology
    np.testing.assert_array_equal(back.array(), labels.array())
    np.testing.assert_allclose(back.image.GetOrigin(), ct.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(back.image.GetDirection(), ct.GetDirection(), atol=1e-6)


def test_seg_nrrd_written_by_slicer_reads_in_core_and_reverse(scene, shell, tmp_path):
    ct, labels = shell
    segs = [Segment(1, "Pool (rater A)", (0.1, 0.9, 0.2)), Segment(2, "Wall (rater A)", (0.9, 0.8, 0.1))]
    seg_node = nodes.segmentation_node_from_label_image(scene, LabelImage(labels.image, segs), "lv")
    # Slicer's own storage node writes the file ...
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(tmp_path / "slicer.seg.nrrd"))
    assert storage.WriteData(seg_node)
    # ... and the core reads it with names, colours and geometry
    core = read_labels(tmp_path / "slicer.seg.nrrd")
    assert {s.name for s in core.segments} == {"Pool (rater A)", "Wall (rater A)"}
    by_name = {s.name: s for s in core.segments}
    np.testing.assert_allclose(by_name["Wall (rater A)"].color, (0.9, 0.8, 0.1), atol=1e-5)
    resampled = sitk.Resample(core.image, ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    pool = sitk.GetArrayFromImage(resampled) == by_name["Pool (rater A)"].value
    np.testing.assert_array_equal(pool, labels.array() == 1)
    # Reverse: the core writes, Slicer's storage node reads
    write_labels(LabelImage(labels.image, segs), tmp_path / "core.seg.nrrd")
    read_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "from core")
    storage2 = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage2.SetFileName(str(tmp_path / "core.seg.nrrd"))
    assert storage2.ReadData(read_node)
    segmentation = read_node.GetSegmentation()
    names = {segmentation.GetNthSegment(i).GetName(): segmentation.GetNthSegment(i) for i in range(segmentation.GetNumberOfSegments())}
    assert set(names) == {"Pool (rater A)", "Wall (rater A)"}
    np.testing.assert_allclose(names["Pool (rater A)"].GetColor(), (0.1, 0.9, 0.2), atol=1e-5)
    ct_node = nodes.volume_node_from_image(scene, ct, "ct")
    exported = nodes.label_image_from_segmentation_node(read_node, ct_node)
    pool_value = next(s.value for s in exported.segments if s.name == "Pool (rater A)")
    np.testing.assert_array_equal(exported.array() == pool_value, labels.array() == 1)


def test_sequence_round_trip_20_phases(scene, shell):
    ct, labels = shell
    phases = [sitk.Cast(ct + float(10 * t), sitk.sitkFloat32) for t in range(20)]
    percents = [5.0 * t for t in range(20)]
    series = Series4D(phases, percents, {0: labels.image, 8: labels.image})
    images, label_seq = nodes.sequence_nodes_from_series(scene, series, "study")
    assert images.GetNumberOfDataNodes() == 20 and label_seq.GetNumberOfDataNodes() == 2
    back = nodes.series_from_sequence_nodes(images, label_seq)
    assert back.percent_rr == percents and sorted(back.labels) == [0, 8]
    for a, b in zip(series.phases, back.phases):
        np.testing.assert_allclose(b.GetOrigin(), a.GetOrigin(), atol=1e-6)
        np.testing.assert_allclose(b.GetDirection(), a.GetDirection(), atol=1e-6)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(b), sitk.GetArrayFromImage(a))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back.labels[8]), labels.array())


SURFACE_LPS = (
    "# vtk DataFile Version 3.0\nSPACE=LPS\nASCII\nDATASET POLYDATA\nPOINTS 3 float\n"
    "0 0 0 10 0 0 0 10 5\nPOLYGONS 1 4\n3 0 1 2\nPOINT_DATA 3\nSCALARS thickness_mm float 1\n"
    "LOOKUP_TABLE default\n8.5 9.0 12.25\n"
)


def test_sequence_of_segmentations_round_trip(scene, shell):
    """Labels as a sequence of segmentation nodes (names and colours per phase) come back on each phase's grid."""
    ct, labels = shell
    phases = [sitk.Cast(ct * float(1 + t), sitk.sitkFloat32) for t in range(4)]
    series = Series4D(phases, None, {1: labels.image, 3: labels.image})
    images, label_seq = nodes.sequence_nodes_from_series(scene, series, "study", labels_as="segmentation", segments=list(CARDIAC_SEGMENTS))
    assert images.GetIndexUnit() == "" and label_seq.GetNumberOfDataNodes() == 2
    seg = label_seq.GetNthDataNode(1)
    assert seg.IsA("vtkMRMLSegmentationNode")
    names = [seg.GetSegmentation().GetNthSegment(i).GetName() for i in range(seg.GetSegmentation().GetNumberOfSegments())]
    assert names == ["LV blood pool", "LV myocardium"]
    back = nodes.series_from_sequence_nodes(images, label_seq)
    assert back.percent_rr is None and sorted(back.labels) == [1, 3]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back.labels[3]), labels.array())
    np.testing.assert_allclose(back.labels[3].GetDirection(), OBLIQUE, atol=1e-6)
    # no helper nodes are left behind in the scene
    assert scene.GetNumberOfNodesByClass("vtkMRMLLabelMapVolumeNode") == 0
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 0


def test_sequence_label_at_unknown_phase_is_refused(scene, shell):
    ct, labels = shell
    images, _ = nodes.sequence_nodes_from_series(scene, Series4D([ct, ct], [0.0, 50.0]), "two")
    stray = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "stray")
    node = nodes.volume_node_from_image(scene, labels.image, "l", labelmap=True, display=False)
    stray.SetDataNodeAtValue(node, "25")
    with pytest.raises(ValueError, match="label index value 25 is not a phase of two"):
        nodes.series_from_sequence_nodes(images, stray)


def test_segmentation_file_read_by_slicers_storage_node(scene, shell, tmp_path):
    _ct, labels = shell
    write_labels(LabelImage(labels.image, list(CARDIAC_SEGMENTS)), tmp_path / "lv.seg.nrrd")
    seg = nodes.segmentation_node_from_file(scene, tmp_path / "lv.seg.nrrd")
    assert seg.GetName() == "lv" and seg.GetDisplayNode() is not None
    assert seg.GetSegmentation().GetSegment(seg.GetSegmentation().GetSegmentIdBySegmentName("LV myocardium")) is not None
    # corrupt header and truncated data: a clear error, not a crash of the process
    (tmp_path / "bad.seg.nrrd").write_bytes(b"NRRD0004\ngarbage")
    data = (tmp_path / "lv.seg.nrrd").read_bytes()
    (tmp_path / "cut.seg.nrrd").write_bytes(data[: len(data) - 50])
    for name in ("bad.seg.nrrd", "cut.seg.nrrd"):
        with pytest.raises(ValueError, match=f"{name}: cannot be read as a segmentation"):
            nodes.segmentation_node_from_file(scene, tmp_path / name)
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 1


def test_model_node_shows_thickness_array(scene, tmp_path):
    path = tmp_path / "surface.vtk"
    path.write_text(SURFACE_LPS)
    model = nodes.model_node_from_file(scene, path, scalar_name="thickness_mm")
    np.testing.assert_allclose(slicer.util.arrayFromModelPointData(model, "thickness_mm"), [8.5, 9.0, 12.25])
    # the file is LPS, the node RAS
    np.testing.assert_allclose(slicer.util.arrayFromModelPoints(model), [[0, 0, 0], [-10, 0, 0], [0, -10, 5]])
    display = model.GetDisplayNode()
    assert display.GetActiveScalarName() == "thickness_mm" and display.GetScalarVisibility()
    assert display.GetActiveAttributeLocation() == vtk.vtkAssignAttribute.POINT_DATA
    np.testing.assert_allclose(display.GetScalarRange(), (8.5, 12.25))
    # a bare scene has no Viridis table: Slicer's built-in Rainbow table is added once and used
    assert display.GetColorNodeID() == "vtkMRMLColorTableNodeRainbow" and display.GetColorNode().GetType() == display.GetColorNode().Rainbow
    again = nodes.model_node_from_file(scene, path, scalar_name="thickness_mm")
    assert again.GetDisplayNode().GetColorNodeID() == "vtkMRMLColorTableNodeRainbow"
    assert scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode") == 1
    with pytest.raises(ValueError, match="no per-vertex array 'wall'"):
        nodes.model_node_from_file(scene, path, scalar_name="wall")
    (tmp_path / "broken.vtk").write_text("not a surface")
    with pytest.raises(ValueError, match="broken.vtk: cannot be read"):
        nodes.model_node_from_file(scene, tmp_path / "broken.vtk")


def test_model_node_uses_viridis_where_the_application_has_it(scene, tmp_path):
    """Inside Slicer the colour logic provides vtkMRMLColorTableNodeFileViridis.txt; it is preferred."""
    viridis = slicer.vtkMRMLColorTableNode()
    viridis.SetTypeToFile()
    viridis.SetSingletonTag("FileViridis.txt")
    scene.AddNode(viridis)
    assert viridis.GetID() == nodes.VIRIDIS_COLOR_NODE_ID
    (tmp_path / "s.vtk").write_text(SURFACE_LPS)
    model = nodes.model_node_from_file(scene, tmp_path / "s.vtk", scalar_name="thickness_mm")
    assert model.GetDisplayNode().GetColorNodeID() == nodes.VIRIDIS_COLOR_NODE_ID
    assert scene.GetNodeByID("vtkMRMLColorTableNodeRainbow") is None


def test_table_node_from_rows_and_csv(scene, tmp_path):
    rows = [{"phase": "ED", "median_mm": 9.5, "n": 3}, {"phase": "ES", "median_mm": 12.0, "n": 4}]
    table = nodes.table_node_from_rows(scene, rows, "stats")
    assert table.GetNumberOfColumns() == 3 and table.GetNumberOfRows() == 2
    assert nodes.rows_from_table_node(table)[1] == {"phase": "ES", "median_mm": 12.0, "n": 4.0}
    (tmp_path / "s.csv").write_text("label,dice\n1,0.95\n2,0.81\n")
    t2 = nodes.table_node_from_csv(scene, tmp_path / "s.csv")
    assert nodes.rows_from_table_node(t2) == [{"label": 1.0, "dice": 0.95}, {"label": 2.0, "dice": 0.81}]


def test_table_columns_with_missing_values_and_text(scene, tmp_path):
    rows = [{"phase": 0, "pool_ml": 120.5, "flag": True}, {"phase": 1, "pool_ml": None, "flag": False}]
    table = nodes.table_node_from_rows(scene, rows, "curve")
    back = nodes.rows_from_table_node(table)
    assert back[0] == {"phase": 0.0, "pool_ml": 120.5, "flag": "True"} and np.isnan(back[1]["pool_ml"])
    (tmp_path / "c.csv").write_text("epoch,val_loss,note\n1,0.5,\n2,,best\n")
    csv_rows = nodes.rows_from_table_node(nodes.table_node_from_csv(scene, tmp_path / "c.csv"))
    assert csv_rows[0]["epoch"] == 1.0 and np.isnan(csv_rows[1]["val_loss"]) and csv_rows[1]["note"] == "best"


def test_plot_chart_from_table(scene):
    table = nodes.table_node_from_rows(scene, [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e} for e in (1, 2, 3)], "log")
    chart = nodes.plot_chart_from_table(scene, table, "epoch", ["train_loss", "val_loss"], "loss")
    assert chart.GetNumberOfPlotSeriesNodes() == 2
    assert [chart.GetNthPlotSeriesNode(i).GetYColumnName() for i in range(2)] == ["train_loss", "val_loss"]
    with pytest.raises(ValueError, match="no column dice"):
        nodes.plot_chart_from_table(scene, table, "epoch", ["dice"], "dice")

"""Node <-> core exchange on real MRML nodes (slicer-core): geometry, segments, sequences, models, tables."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

import slicer
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


def test_model_node_shows_thickness_array(scene, tmp_path):
    path = tmp_path / "surface.vtk"
    path.write_text(
        "# vtk DataFile Version 3.0\nSPACE=LPS\nASCII\nDATASET POLYDATA\nPOINTS 3 float\n"
        "0 0 0 10 0 0 0 10 0\nPOLYGONS 1 4\n3 0 1 2\nPOINT_DATA 3\nSCALARS thickness_mm float 1\n"
        "LOOKUP_TABLE default\n8.5 9.0 12.25\n"
    )
    model = nodes.model_node_from_file(scene, path, scalar_name="thickness_mm")
    arr = slicer.util.arrayFromModelPointData(model, "thickness_mm")
    np.testing.assert_allclose(arr, [8.5, 9.0, 12.25])
    display = model.GetDisplayNode()
    assert display.GetActiveScalarName() == "thickness_mm" and display.GetScalarVisibility()
    with pytest.raises(ValueError, match="no per-vertex array 'wall'"):
        nodes.model_node_from_file(scene, path, scalar_name="wall")


def test_table_node_from_rows_and_csv(scene, tmp_path):
    rows = [{"phase": "ED", "median_mm": 9.5, "n": 3}, {"phase": "ES", "median_mm": 12.0, "n": 4}]
    table = nodes.table_node_from_rows(scene, rows, "stats")
    assert table.GetNumberOfColumns() == 3 and table.GetNumberOfRows() == 2
    assert nodes.rows_from_table_node(table)[1] == {"phase": "ES", "median_mm": 12.0, "n": 4.0}
    (tmp_path / "s.csv").write_text("label,dice\n1,0.95\n2,0.81\n")
    t2 = nodes.table_node_from_csv(scene, tmp_path / "s.csv")
    assert nodes.rows_from_table_node(t2) == [{"label": 1.0, "dice": 0.95}, {"label": 2.0, "dice": 0.81}]

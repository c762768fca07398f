"""SegTransferSparse4D's Logic on a real scene: a 20-phase sequence node through the sparse-4D path."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

import SegTransferSparse4D
from SegTransferLib import nodes
from SegTransferSparse4D import SegTransferSparse4DLogic
from segtransfer.io import Series4D
from segtransfer.labels import CARDIAC_SEGMENTS
from segtransfer.phantoms import beating_lv
from segtransfer.sparse4d import build_sparse4d, read_sparse4d

OBLIQUE = tuple(np.array([[0.9848078, -0.1736482, 0.0], [0.1736482, 0.9848078, 0.0], [0.0, 0.0, 1.0]]).ravel())


@pytest.fixture(scope="module")
def study():
    """A 20-phase phantom on an oblique, anisotropic grid, labelled at ED and ES only."""
    lv = beating_lv(seed=3, n_phases=20, spacing=(2.5, 2.5, 3.5))

    def turned(img):
        out = sitk.Image(img)
        out.SetDirection(OBLIQUE)
        out.SetOrigin((-20.0, 15.0, 100.0))
        return out

    ed, es = lv.truth.ed_index, lv.truth.es_index
    series = Series4D([turned(p) for p in lv.series.phases], lv.series.percent_rr,
                      {ed: turned(lv.series.labels[ed]), es: turned(lv.series.labels[es])})
    return lv, series


def test_sequence_through_sparse4d_matches_core(scene, study, tmp_path):
    lv, series = study
    images, labels = nodes.sequence_nodes_from_series(scene, series, "study")
    logic = SegTransferSparse4DLogic(scene)
    summary, table = logic.volumeCurve(images, labels)
    assert (summary.choice.ed_index, summary.choice.es_index) == (lv.truth.ed_index, lv.truth.es_index)
    assert abs(summary.ejection_fraction - lv.truth.ejection_fraction) < 0.02
    rows = nodes.rows_from_table_node(table)
    assert len(rows) == 20 and [r["role"] for r in rows].count("ED") == 1
    assert np.isnan(rows[1]["pool_ml"]) and rows[lv.truth.ed_index]["labelled"] == "yes"

    pair = logic.export(images, labels, str(tmp_path / "pair"), spacing_mm=3.0)
    expected = build_sparse4d(series, spacing_mm=3.0, study_id="study")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(pair.labels), sitk.GetArrayFromImage(expected.labels))
    np.testing.assert_allclose(pair.image.GetOrigin(), expected.image.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(pair.image.GetDirection(), expected.image.GetDirection(), atol=1e-6)
    written = read_sparse4d(tmp_path / "pair")
    assert written.labelled_phases() == sorted([lv.truth.ed_index, lv.truth.es_index])

    img_seq, lab_seq = logic.loadPair(tmp_path / "pair", "loaded")
    assert img_seq.GetNumberOfDataNodes() == 20 and lab_seq.GetNumberOfDataNodes() == 2
    ed_node = lab_seq.GetNthDataNode(0)
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(nodes.image_from_volume_node(ed_node)), sitk.GetArrayFromImage(written.phase_labels(lv.truth.ed_index))
    )


def test_background_export_from_segmentation_sequence_matches_core(scene, study, tmp_path):
    """Labels as a sequence of segmentation nodes -> series folder -> background `segtransfer sparse4d export`:
    the pair equals the core's in-process pair, and the panel's summary reads it."""
    lv, series = study
    images, labels = nodes.sequence_nodes_from_series(scene, series, "study", labels_as="segmentation", segments=list(CARDIAC_SEGMENTS))
    assert labels.GetNthDataNode(0).IsA("vtkMRMLSegmentationNode")
    logic = SegTransferSparse4DLogic(scene)
    process = logic.start(images, labels, str(tmp_path / "pair"), spacing_mm=3.0, workFolder=tmp_path / "work")
    result = process.wait(timeout=300)
    assert result.returncode == 0, process.log
    assert result.progress == 1.0
    written = read_sparse4d(tmp_path / "pair")
    expected = build_sparse4d(series, spacing_mm=3.0, study_id="study")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written.labels), sitk.GetArrayFromImage(expected.labels))
    np.testing.assert_allclose(sitk.GetArrayFromImage(written.image), sitk.GetArrayFromImage(expected.image), atol=0.05)
    np.testing.assert_allclose(written.image.GetDirection(), expected.image.GetDirection(), atol=1e-6)
    assert written.record["study_id"] == "study"
    summary = logic.pairSummary(tmp_path / "pair")
    assert f"ED {lv.truth.ed_index}, ES {lv.truth.es_index}" in summary and "EF" in summary


def test_export_refuses_half_a_phase_choice(scene, study, tmp_path):
    _lv, series = study
    images, labels = nodes.sequence_nodes_from_series(scene, series, "study")
    with pytest.raises(ValueError, match="both the ED and the ES"):
        SegTransferSparse4DLogic(scene).start(images, labels, str(tmp_path / "pair"), ed_index=3)


def test_missing_sequence_is_refused(scene):
    with pytest.raises(ValueError, match="Select the image sequence"):
        SegTransferSparse4DLogic(scene).volumeCurve(None)


def test_module_self_test_runs_on_scene(scene, monkeypatch):
    import slicer

    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    SegTransferSparse4D.SegTransferSparse4DTest().runTest()

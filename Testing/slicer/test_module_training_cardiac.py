"""SegTransferTraining's cardiac Logic on real scenes: a background `segtransfer cardiac train` from a
dataset manifest, then the trained package run on a sequence node in the background and the
per-phase segmentation loaded back as a sequence, identical to what the core computes on the same
phases, on the phases' own grids."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from SegTransferLib import nodes
from SegTransferTraining import SegTransferTrainingLogic
from segtransfer.io import Series4D


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    from segtransfer.cardiac.phantom_data import phantom_pair, split_manifest

    root = tmp_path_factory.mktemp("cardiac_slicer")
    pairs = [phantom_pair(root / f"p{k}", 600 + k, "site_a", "dense", n_phases=4, spacing_mm=6.0) for k in range(4)]
    return split_manifest({"train": pairs[:3], "validation": pairs[3:]}, root / "dataset.json")


@pytest.fixture
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_cardiac_training_then_sequence_segmentation_in_the_background(scene, manifest, tmp_path, monkeypatch, one_thread):
    from segtransfer.cardiac import load_cardiac_network, segment_series
    from segtransfer.phantoms import beating_lv

    # one OpenMP thread per process: two oversubscribe a shared 2-core machine (see test_cardiac_training.py)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    logic = SegTransferTrainingLogic(scene)
    package = tmp_path / "cardiac_pkg"
    process = logic.startCardiacTraining(str(manifest), str(package), maxEpochs=20, patience=20, site="site_a", device="cpu")
    result = process.wait(timeout=600)
    assert result.returncode == 0, process.log
    assert result.progress == 1.0 and result.message.startswith(f"wrote {package}")
    info, table, curve, chart = logic.loadTrainingResults(str(package))
    assert info["card"]["training_data"]["local_cases"] == 3 and info["card"]["parent"] is None
    assert [r["epoch"] for r in nodes.rows_from_table_node(curve)] == [float(e) for e in range(1, 21)]

    ph = beating_lv(seed=700, n_phases=4, spacing=(5.0, 5.5, 6.0), site="site_a")
    images, _ = nodes.sequence_nodes_from_series(scene, Series4D(ph.series.phases, ph.series.percent_rr), "heart")
    out = tmp_path / "seg"
    process = logic.startCardiacSegmentation(images, str(package), str(out), device="cpu")
    result = process.wait(timeout=300)
    assert result.returncode == 0, process.log
    summary, segmentations, volumes, chart = logic.loadCardiacSegmentation(str(out), images)
    assert segmentations.GetNumberOfDataNodes() == 4
    assert [segmentations.GetNthIndexValue(i) for i in range(4)] == [images.GetNthIndexValue(i) for i in range(4)]
    assert [r["phase"] for r in nodes.rows_from_table_node(volumes)] == [0.0, 1.0, 2.0, 3.0]

    network, pkg = load_cardiac_network(package)
    expected = segment_series(nodes.series_from_sequence_nodes(images), network, pkg.description)
    assert summary["ed_index"] == expected.ed_index and summary["es_index"] == expected.es_index
    assert summary["blood_pool_ml"] == pytest.approx(expected.pool_ml, rel=1e-6)
    for i in range(4):
        seg = segmentations.GetNthDataNode(i)
        labels = nodes.label_image_from_segmentation_node(seg, images.GetNthDataNode(i))
        names = sorted(labels.segments, key=lambda s: s.value)
        assert [s.name for s in names][:1] == ["LV blood pool"]
        np.testing.assert_array_equal(sitk.GetArrayFromImage(labels.image), sitk.GetArrayFromImage(expected.labels[i]))
        assert labels.image.GetSpacing() == pytest.approx(ph.series.phases[i].GetSpacing(), rel=1e-5)
    assert json.loads((out / "summary.json").read_text(encoding="utf-8"))["n_phases"] == 4


def test_cardiac_logic_refuses_missing_inputs(scene, tmp_path):
    logic = SegTransferTrainingLogic(scene)
    with pytest.raises(ValueError, match="dataset manifest"):
        logic.startCardiacTraining(str(tmp_path / "none.json"), str(tmp_path / "pkg"))
    with pytest.raises(ValueError, match="sequence of cardiac phases"):
        logic.startCardiacSegmentation(None, str(tmp_path / "pkg"), str(tmp_path / "out"))
    with pytest.raises(ValueError, match="not a cardiac segmentation output"):
        logic.loadCardiacSegmentation(str(tmp_path), None)

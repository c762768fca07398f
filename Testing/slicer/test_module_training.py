"""SegTransferTraining's Logic on real scenes: package verification, training cases from nodes, the
sparse-4D dataset manifest, and a background training run loaded back as tables and a plot."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

import SegTransferTraining
from SegTransferLib import nodes
from SegTransferTraining import CASE_IMAGE, CASE_LABELS, SegTransferTrainingLogic
from segtransfer.errors import InputError
from segtransfer.io import LabelImage, Series4D
from segtransfer.labels import HEMORRHAGE_SEGMENTS

OBLIQUE = tuple(np.array([[0.8660254, 0.0, -0.5], [0.0, 1.0, 0.0], [0.5, 0.0, 0.8660254]]).ravel())


def test_package_table_and_refusal_of_a_tampered_package(scene, tmp_path):
    from monai.networks.nets import UNet

    from segtransfer.models import ModelPackage, make_description, save_package

    net = UNet(spatial_dims=2, in_channels=1, out_channels=1, channels=(4, 8), strides=(2,), num_res_units=0)
    description = make_description("monai.networks.nets.UNet",
                                   {"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "channels": [4, 8], "strides": [2], "num_res_units": 0},
                                   name="tiny", spacing_mm=[1.0, 1.0, None], intensity={"kind": "zscore"},
                                   labels=list(HEMORRHAGE_SEGMENTS), activation="sigmoid")
    pkg = ModelPackage.from_network(net, description, {"provenance": {"site": "partner"}, "intended_use": "testing"})
    saved = save_package(pkg, tmp_path / "pkg")
    logic = SegTransferTrainingLogic(scene)
    info, table = logic.packageTable(str(tmp_path / "pkg"), expected_sha256=saved.sha256)
    rows = {r["field"]: r["value"] for r in nodes.rows_from_table_node(table)}
    assert rows["architecture"] == "monai.networks.nets.UNet" and rows["sha256"] == saved.sha256
    assert rows["parameters"] == str(sum(p.numel() for p in net.parameters()))
    assert rows["card.provenance.site"] == "partner"
    with pytest.raises(InputError, match="sha256"):
        logic.packageTable(str(tmp_path / "pkg"), expected_sha256="0" * 64)
    weights = tmp_path / "pkg" / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(InputError, match="checksum mismatch"):
        logic.packageTable(str(tmp_path / "pkg"))


def test_training_case_from_nodes_keeps_grid_and_labels(scene, tmp_path):
    """Volume + segmentation on an oblique, anisotropic grid -> the case layout the training CLI reads."""
    from segtransfer.hemorrhage.train import load_cases

    ct = sitk.GetImageFromArray(np.arange(6 * 9 * 11, dtype=np.int16).reshape(6, 9, 11) - 200)
    ct.SetSpacing((0.7, 0.9, 4.0))
    ct.SetDirection(OBLIQUE)
    ct.SetOrigin((-12.0, 30.0, 55.5))
    mask = np.zeros((6, 9, 11), np.uint8)
    mask[2:4, 3:7, 2:5] = 1
    m = sitk.GetImageFromArray(mask)
    m.CopyInformation(ct)
    volume = nodes.volume_node_from_image(scene, ct, "head 01")
    segmentation = nodes.segmentation_node_from_label_image(scene, LabelImage(m, list(HEMORRHAGE_SEGMENTS)), "bleed")
    logic = SegTransferTrainingLogic(scene)
    case = logic.exportCase(volume, segmentation, tmp_path / "cases")
    assert case.name == "head_01"
    name, image_path, mask_path = load_cases(tmp_path / "cases")[0]
    assert (name, image_path.name, mask_path.name) == ("head_01", CASE_IMAGE, CASE_LABELS)
    image, labels = sitk.ReadImage(str(image_path)), sitk.ReadImage(str(mask_path))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(ct))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(labels), mask)
    for out in (image, labels):
        np.testing.assert_allclose(out.GetOrigin(), ct.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(out.GetDirection(), OBLIQUE, atol=1e-5)
        np.testing.assert_allclose(out.GetSpacing(), ct.GetSpacing(), atol=1e-6)
    with pytest.raises(ValueError, match="already exists"):
        logic.exportCase(volume, segmentation, tmp_path / "cases")
    # a label map on another grid is refused, not resampled
    shifted = sitk.Image(m)
    shifted.SetOrigin((-11.0, 30.0, 55.5))
    other = nodes.volume_node_from_image(scene, shifted, "shifted", labelmap=True)
    with pytest.raises(InputError, match="shifted"):
        logic.exportCase(volume, other, tmp_path / "cases", "case2")
    assert not (tmp_path / "cases" / "case2").exists()


def test_dataset_manifest_splits_by_study(scene, tmp_path):
    from segtransfer.phantoms import spherical_shell
    from segtransfer.sparse4d import build_sparse4d, write_sparse4d

    for k in range(4):
        shell, _ = spherical_shell(4.0 + 0.2 * k, 6.0, spacing=(1.5, 1.5, 1.5))
        phases = [sitk.Cast(shell.image, sitk.sitkFloat32) * 100.0 for _ in range(4)]
        smaller, _ = spherical_shell(2.5, 6.0, spacing=(1.5, 1.5, 1.5))
        series = Series4D(phases, None, {0: shell.image, 2: smaller.image})
        write_sparse4d(build_sparse4d(series, spacing_mm=2.0, study_id=f"study{k}"), tmp_path / "pairs" / f"study{k}")
    logic = SegTransferTrainingLogic(scene)
    manifest, table = logic.buildManifest([str(tmp_path / "pairs")], str(tmp_path / "pairs" / "dataset.json"), (0.5, 0.25, 0.25), seed=3)
    rows = nodes.rows_from_table_node(table)
    assert sorted(r["study"] for r in rows) == [f"study{k}" for k in range(4)]
    assert sorted(r["split"] for r in rows) == ["test", "train", "train", "validation"]
    assert all(r["phases"] == 4.0 and r["labelled_phases"] == "0 2" for r in rows)
    assert all((r["ed_index"], r["es_index"]) == (0.0, 2.0) for r in rows)
    assert (tmp_path / "pairs" / "dataset.json").is_file()
    again, _ = logic.buildManifest([str(tmp_path / "pairs")], str(tmp_path / "again.json"), (0.5, 0.25, 0.25), seed=3)
    assert again["splits"] == manifest["splits"]


def test_training_runs_in_background_and_loads_package_and_curve(scene, tmp_path):
    """Cases from nodes -> background `segtransfer hemorrhage train` -> verified package table, training log
    table and its loss plot."""
    from segtransfer.phantoms import head_ct

    logic = SegTransferTrainingLogic(scene)
    head = head_ct(seed=0, site="site_a", spacing=(3.5, 3.5, 8.0))
    volume = nodes.volume_node_from_image(scene, head.image, "head")
    mask = nodes.volume_node_from_image(scene, head.mask, "mask", labelmap=True)
    for case in ("case0", "case1"):  # training and validation need a case each; the run is what is tested here
        logic.exportCase(volume, mask, tmp_path / "cases", case)
    package = tmp_path / "pkg"
    process = logic.startTraining(str(tmp_path / "cases"), str(package), site="site_a", maxEpochs=2, patience=5,
                                  positives=4, negatives=4, patchSize=32, batchSize=8)
    result = process.wait(timeout=300)
    assert result.returncode == 0, process.log
    assert result.progress == 1.0 and result.message.startswith("epoch 2")
    info, table, curve, chart = logic.loadTrainingResults(str(package))
    rows = {r["field"]: r["value"] for r in nodes.rows_from_table_node(table)}
    assert rows["card.provenance.site"] == "site_a" and rows["card.training.epochs"] == "2"
    assert [r["epoch"] for r in nodes.rows_from_table_node(curve)] == [1.0, 2.0]
    assert chart.GetNumberOfPlotSeriesNodes() == 2
    series = chart.GetNthPlotSeriesNode(1)
    assert (series.GetXColumnName(), series.GetYColumnName(), series.GetTableNodeID()) == ("epoch", "val_loss", curve.GetID())


def test_training_refuses_missing_cases_folder(scene, tmp_path):
    with pytest.raises(ValueError, match="folder of training cases"):
        SegTransferTrainingLogic(scene).startTraining(str(tmp_path / "nope"), str(tmp_path / "pkg"))


def test_module_self_test_runs_on_scene(scene, monkeypatch):
    import slicer

    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    SegTransferTraining.SegTransferTrainingTest().runTest()

"""Sparse-4D files: the labelled-phase record in NIfTI headers and sidecar (and refusal when they
disagree), multi-phase DICOM reading, volume-curve files, and the dataset manifest split by study."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from segtransfer.errors import InputError
from segtransfer.io import Series4D, write_image
from segtransfer.io.dicom4d import read_dicom4d
from segtransfer.sparse4d import (
    IMAGE_FILE,
    LABELS_FILE,
    SIDECAR,
    build_manifest,
    build_sparse4d,
    header_note,
    load_study,
    parse_header_note,
    read_manifest,
    read_sparse4d,
    read_volume_curve,
    split_studies,
    write_manifest,
    write_sparse4d,
)

SPACING = (0.8, 0.9, 2.0)
ORIGIN = (-10.0, 20.0, 50.0)


def blob_phase(t: int, n: int = 4) -> tuple[sitk.Image, sitk.Image]:
    """Image (int16 HU) and 0/1/2 labels of phase ``t``: a box-shaped 'pool' that shrinks then grows
    (largest at t = 0, smallest at t = n // 2) inside a one-voxel 'wall'."""
    arr = np.full((6, 16, 14), -100, np.int16)  # [z, y, x]
    lab = np.zeros(arr.shape, np.uint8)
    half = 5 - min(t, n - t)  # 5, 4, 3, 4 for n = 4
    lab[1:5, 8 - half - 1:8 + half + 1, 2:12] = 2
    lab[1:5, 8 - half:8 + half, 3:11] = 1
    arr[lab == 1] = 400
    arr[lab == 2] = 120
    out = []
    for a in (arr, lab):
        img = sitk.GetImageFromArray(a)
        img.SetSpacing(SPACING)
        img.SetOrigin(ORIGIN)
        out.append(img)
    return out[0], out[1]


def blob_series(n: int = 4, labelled=(0, 2)) -> Series4D:
    phases, labels = [], {}
    for t in range(n):
        img, lab = blob_phase(t, n)
        phases.append(img)
        if t in labelled:
            labels[t] = lab
    return Series4D(phases, [100.0 * t / n for t in range(n)], labels)


def write_multiphase_dicom(folder, phases, phase_tags, drop=None):
    """Write each phase as single-frame DICOM slices in one series; file names are shuffled so that
    file order says nothing about phase or position.  ``phase_tags[t]``: extra tags of phase t.
    ``drop``: (phase, slice) to leave out."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    n_slices = phases[0].GetDepth()
    names = np.random.default_rng(0).permutation(len(phases) * n_slices)
    n = 0
    for t, image in enumerate(phases):
        for k in range(n_slices):
            if drop == (t, k):
                n += 1
                continue
            sl = image[:, :, k]
            pos = image.TransformIndexToPhysicalPoint((0, 0, k))
            tags = {
                "0008|0060": "CT",
                "0020|000d": "1.2.826.0.1.3680043.2.1125.1.41",
                "0020|000e": "1.2.826.0.1.3680043.2.1125.1.42",
                "0020|0032": "\\".join(f"{v:.4f}" for v in pos),
                "0020|0037": "1\\0\\0\\0\\1\\0",
                "0020|0013": str(n + 1),
                "0018|0050": f"{image.GetSpacing()[2]:g}",
                "0028|0030": f"{image.GetSpacing()[1]:g}\\{image.GetSpacing()[0]:g}",
                **phase_tags[t],
            }
            for tag, value in tags.items():
                sl.SetMetaData(tag, value)
            writer.SetFileName(str(folder / f"im{names[n]:04d}.dcm"))
            writer.Execute(sl)
            n += 1


# ----------------------------------------------------------------------------------------------
# Header note and the sidecar


def test_header_note_round_trip():
    flags = [i in (0, 8) for i in range(20)]
    assert header_note(flags) == "segtransfer sparse4d n=20 labelled=0,8"
    assert parse_header_note(header_note(flags)) == flags
    dense = [True] * 5 + [False] * 3 + [True, True]
    assert header_note(dense) == "segtransfer sparse4d n=10 labelled=0-4,8-9"
    assert parse_header_note(header_note(dense)) == dense
    alternating = [i % 2 == 0 for i in range(120)]  # ranges would exceed the 79-character field
    note = header_note(alternating)
    assert "mask=" in note and len(note) <= 79
    assert parse_header_note(note) == alternating
    assert parse_header_note("") is None and parse_header_note("segtransfer sparse4d n=3 labelled=5") is None


def test_labelled_phases_survive_in_nifti_header(tmp_path):
    pair = build_sparse4d(blob_series(), spacing_mm=1.0)
    write_sparse4d(pair, tmp_path / "pair")
    for name in (IMAGE_FILE, LABELS_FILE):
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(tmp_path / "pair" / name))
        reader.ReadImageInformation()
        assert reader.GetMetaData("descrip") == "segtransfer sparse4d n=4 labelled=0,2"
        assert reader.GetMetaData("aux_file") == SIDECAR
    side = json.loads((tmp_path / "pair" / SIDECAR).read_text(encoding="utf-8"))
    assert side["labelled"] == [True, False, True, False] and side["labelled_phases"] == [0, 2]
    assert side["study_id"] == "pair" and side["header_note"] == "segtransfer sparse4d n=4 labelled=0,2"
    # pool volumes of the boxes: 4 x 10 x 8 and 4 x 6 x 8 voxels of 0.8 x 0.9 x 2 mm
    assert side["volumes_ml"]["blood_pool_labels"] == [pytest.approx(4 * 10 * 8 * 1.44e-3), None, pytest.approx(4 * 6 * 8 * 1.44e-3), None]
    assert (side["ed_index"], side["es_index"]) == (0, 2)
    assert side["ejection_fraction"] == pytest.approx(1 - 6 / 10)


def _rewrite_labels(folder, arr4d, note):
    ref = sitk.ReadImage(str(folder / LABELS_FILE))
    img = sitk.GetImageFromArray(arr4d, isVector=False)
    img.CopyInformation(ref)
    img.SetMetaData("ITK_FileNotes", note)
    write_image(img, folder / LABELS_FILE)


def test_read_refuses_disagreeing_or_unsafe_pairs(tmp_path):
    folder = tmp_path / "pair"
    write_sparse4d(build_sparse4d(blob_series(), spacing_mm=1.0), folder)
    good = read_sparse4d(folder)
    assert good.labelled_phases() == [0, 2] and good.phase_labels(1) is None

    side = json.loads((folder / SIDECAR).read_text(encoding="utf-8"))
    bad = dict(side, labelled=[True, True, False, False], labelled_phases=[0, 1])
    (folder / SIDECAR).write_text(json.dumps(bad))
    with pytest.raises(InputError, match=r"header says labelled phases \[0, 2\] of 4, the sidecar sparse4d.json says \[0, 1\]"):
        read_sparse4d(folder)
    (folder / SIDECAR).write_text(json.dumps(side))

    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / LABELS_FILE)))
    _rewrite_labels(folder, arr, "segtransfer sparse4d n=4 labelled=0-2")
    with pytest.raises(InputError, match=r"labels4d.nii.gz: header says labelled phases \[0, 1, 2\]"):
        read_sparse4d(folder)
    _rewrite_labels(folder, arr, "")
    with pytest.raises(InputError, match="does not record the labelled phases"):
        read_sparse4d(folder)

    leaked = arr.copy()
    leaked[3] = arr[0]  # labels on phase 3, which is marked unlabelled
    _rewrite_labels(folder, leaked, "segtransfer sparse4d n=4 labelled=0,2")
    with pytest.raises(InputError, match=r"phase 3 is marked unlabelled but holds labels \[1, 2\]"):
        read_sparse4d(folder)
    empty = arr.copy()
    empty[2] = 0
    _rewrite_labels(folder, empty, "segtransfer sparse4d n=4 labelled=0,2")
    with pytest.raises(InputError, match="phase 2 is marked labelled but holds no labels"):
        read_sparse4d(folder)

    (folder / IMAGE_FILE).unlink()
    with pytest.raises(InputError, match="image4d.nii.gz is missing"):
        read_sparse4d(folder)
    with pytest.raises(InputError, match="no sparse4d.json sidecar"):
        read_sparse4d(tmp_path)


def test_pair_can_be_exported_again_at_another_spacing(tmp_path):
    write_sparse4d(build_sparse4d(blob_series(), spacing_mm=1.0), tmp_path / "a")
    series, sources = load_study(tmp_path / "a")
    assert sources["form"] == "sparse4d pair"
    assert sorted(series.labels) == [0, 2] and series.percent_rr == [0.0, 25.0, 50.0, 75.0]
    again = build_sparse4d(series, spacing_mm=2.0)
    assert again.labelled_phases() == [0, 2]
    assert again.image.GetSpacing()[:3] == (2.0, 2.0, 2.0)


# ----------------------------------------------------------------------------------------------
# Multi-phase DICOM


@pytest.mark.parametrize("kind", ["temporal", "percent", "trigger", "series"])
def test_multiphase_dicom_reads_phases_in_order(tmp_path, kind):
    phases = [blob_phase(t)[0] for t in range(4)]
    percents = [0.0, 25.0, 50.0, 75.0]
    tags = {
        "temporal": [{"0020|0100": str(t + 1), "0018|9241": f"{percents[t]:g}"} for t in range(4)],
        "percent": [{"0018|9241": f"{percents[t]:g}"} for t in range(4)],
        "trigger": [{"0018|1060": f"{8.0 * percents[t]:g}", "0018|1062": "800"} for t in range(4)],
        # one series per phase, no phase tag; series numbers give the order (UIDs sort the other way)
        "series": [{"0020|000e": f"1.2.826.0.1.3680043.2.1125.9.{9 - t}", "0020|0011": str(t + 1)} for t in range(4)],
    }[kind]
    write_multiphase_dicom(tmp_path / "dcm", phases, tags)
    series = read_dicom4d(tmp_path / "dcm")
    assert len(series) == 4
    if kind == "series":
        assert series.percent_rr is None
    else:
        assert series.percent_rr == pytest.approx(percents)
    for got, want in zip(series.phases, phases):
        assert got.GetSize() == want.GetSize()
        np.testing.assert_allclose(got.GetSpacing(), want.GetSpacing(), atol=1e-4)
        np.testing.assert_allclose(got.GetOrigin(), want.GetOrigin(), atol=1e-3)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(got), sitk.GetArrayFromImage(want))


def test_dicom_study_exports_with_phase_label_files(tmp_path):
    series = blob_series(labelled=())
    tags = [{"0020|0100": str(t + 1), "0018|9241": f"{p:g}"} for t, p in enumerate(series.percent_rr)]
    write_multiphase_dicom(tmp_path / "dcm", series.phases, tags)
    for t in (0, 2):
        write_image(blob_phase(t)[1], tmp_path / f"labels_{t}.nii.gz")
    study, sources = load_study(tmp_path / "dcm", phase_labels={0: tmp_path / "labels_0.nii.gz", 2: tmp_path / "labels_2.nii.gz"})
    assert sources["form"] == "multi-phase DICOM"
    pair = build_sparse4d(study, spacing_mm=1.0)
    assert pair.labelled_phases() == [0, 2]
    assert (pair.record["ed_index"], pair.record["es_index"]) == (0, 2)
    assert pair.record["ejection_fraction"] == pytest.approx(0.4)


def test_incomplete_or_mismatched_dicom_is_refused(tmp_path):
    phases = [blob_phase(t)[0] for t in range(4)]
    tags = [{"0020|0100": str(t + 1)} for t in range(4)]
    write_multiphase_dicom(tmp_path / "missing", phases, tags, drop=(2, 5))
    with pytest.raises(InputError, match=r"incomplete series: phase 2 \(TemporalPositionIdentifier 3.0\) has 5 slices, the other phases 6"):
        read_dicom4d(tmp_path / "missing")
    write_multiphase_dicom(tmp_path / "gap", phases, tags, drop=(1, 3))
    with pytest.raises(InputError, match=r"phase 1 .* is incomplete: slice spacing varies from 2 to 4 mm"):
        read_dicom4d(tmp_path / "gap")

    odd = sitk.Image(phases[3])
    odd.SetSpacing((0.7, 0.9, 2.0))
    write_multiphase_dicom(tmp_path / "mismatch", phases[:3] + [odd], tags)
    with pytest.raises(InputError, match="phase 3 is not on the grid of phase 0: spacing"):
        read_dicom4d(tmp_path / "mismatch")

    write_multiphase_dicom(tmp_path / "single", phases[:1], tags[:1])
    with pytest.raises(InputError, match="one phase only"):
        read_dicom4d(tmp_path / "single")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no DICOM series found"):
        read_dicom4d(tmp_path / "empty")


# ----------------------------------------------------------------------------------------------
# Volume curves


def test_volume_curve_files(tmp_path):
    values = [120.0, 100.0, 60.0, 90.0]
    (tmp_path / "a.json").write_text(json.dumps(values))
    (tmp_path / "b.csv").write_text("phase,volume_ml\n2,60\n0,120\n3,90\n1,100\n")
    (tmp_path / "c.csv").write_text("120\n100\n60\n90\n")
    for name in ("a.json", "b.csv", "c.csv"):
        assert read_volume_curve(tmp_path / name, 4) == values
    with pytest.raises(InputError, match="volume curve has 4 phases, the series has 20"):
        read_volume_curve(tmp_path / "a.json", 20)
    (tmp_path / "bad.json").write_text(json.dumps([120, float("nan"), 60, 90]).replace("NaN", "null"))
    with pytest.raises(InputError, match="volume of phase 1 is not a number"):
        read_volume_curve(tmp_path / "bad.json", 4)
    (tmp_path / "neg.csv").write_text("volume_ml\n10\n-1\n")
    with pytest.raises(InputError, match="finite, non-negative"):
        read_volume_curve(tmp_path / "neg.csv")


# ----------------------------------------------------------------------------------------------
# Dataset manifest


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    pair = build_sparse4d(blob_series(), spacing_mm=2.0)
    for k in range(10):
        pair.record["study_id"] = None
        write_sparse4d(pair, root / f"study_{k:02d}")
    return root


def test_split_by_study_is_reproducible_and_complete(pairs, tmp_path):
    ids = [f"study_{k:02d}" for k in range(10)]
    s0 = split_studies(ids, (0.6, 0.2, 0.2), seed=0)
    assert [len(s0[k]) for k in ("train", "validation", "test")] == [6, 2, 2]
    assert sorted(s0["train"] + s0["validation"] + s0["test"]) == ids  # every study once
    assert split_studies(list(reversed(ids)), (0.6, 0.2, 0.2), seed=0) == s0  # order does not matter
    assert split_studies(ids, (0.6, 0.2, 0.2), seed=1) != s0
    assert [len(v) for v in split_studies(ids[:7], (0.6, 0.2, 0.2), 0).values()] == [4, 2, 1]  # 4.2, 1.4, 1.4 -> 4, 2, 1

    out = tmp_path / "dataset.json"
    manifest = build_manifest([pairs], out, (0.6, 0.2, 0.2), seed=0)
    write_manifest(manifest, out)
    assert manifest["splits"] == s0
    studies = read_manifest(out)
    assert len(studies) == 10 and all(s["labelled_phases"] == [0, 2] for s in studies)
    test = read_manifest(out, "test")
    assert sorted(s["id"] for s in test) == s0["test"]
    back = read_sparse4d(test[0]["folder"])
    assert back.labelled_phases() == [0, 2]
    assert test[0]["image"].endswith("image4d.nii.gz")


def test_manifest_refuses_bad_input(pairs, tmp_path):
    with pytest.raises(InputError, match="adding up to 1"):
        build_manifest([pairs], tmp_path / "d.json", (0.6, 0.3, 0.3))
    with pytest.raises(InputError, match="repeated: study_00"):
        build_manifest([pairs / "study_00", pairs / "study_00"], tmp_path / "d.json")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(InputError, match="no sparse4d.json found"):
        build_manifest([tmp_path / "nothing"], tmp_path / "d.json")
    with pytest.raises(InputError, match="unknown split"):
        out = tmp_path / "d.json"
        write_manifest(build_manifest([pairs], out), out)
        read_manifest(out, "holdout")


def test_batch_layout_of_a_dicom_study(tmp_path):
    from segtransfer.sparse4d import load_predicted_volumes, study_inputs

    series = blob_series(labelled=())
    tags = [{"0018|1060": f"{8.0 * p:g}", "0018|1088": "75"} for p in series.percent_rr]  # 75 bpm: R-R 800 ms
    study = tmp_path / "patient_7"
    write_multiphase_dicom(study / "dicom", series.phases, tags)
    (study / "labels").mkdir()
    write_image(blob_phase(2)[1], study / "labels" / "labels_02.nii.gz")
    (study / "predicted_volumes.csv").write_text("phase,volume_ml\n0,0.46\n1,0.37\n2,0.28\n3,0.37\n")
    inputs = study_inputs(study)
    assert inputs["study_id"] == "patient_7" and inputs["series"] == study / "dicom"
    assert inputs["phase_labels"] == {2: study / "labels" / "labels_02.nii.gz"} and inputs["labels4d"] is None
    loaded, _ = load_study(inputs["series"], phase_labels=inputs["phase_labels"])
    assert loaded.percent_rr == pytest.approx([0.0, 25.0, 50.0, 75.0])
    predicted, source = load_predicted_volumes(len(loaded), inputs["predicted_volumes_file"], inputs["predicted_labels_file"])
    assert source.endswith("predicted_volumes.csv")
    pair = build_sparse4d(loaded, spacing_mm=2.0, predicted_volumes=predicted)
    assert pair.labelled_phases() == [2]
    assert (pair.record["ed_index"], pair.record["es_index"], pair.record["ed_es_method"]) == (0, 2, "prediction")
    assert pair.record["ejection_fraction"] == pytest.approx(1 - 0.28 / 0.46, abs=1e-6)
    assert pair.record["ejection_fraction_source"] == "prediction"

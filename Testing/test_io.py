"""I/O round trips keep geometry, values and segment names; bad input is refused with one clear line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from segtransfer.errors import GeometryError, InputError
from segtransfer.io import (
    LabelImage,
    Series4D,
    check_same_grid,
    read_dicom_series,
    read_image,
    read_labels,
    read_series4d,
    write_image,
    write_labels,
    write_series4d,
)
from segtransfer.labels import Segment


def assert_same_geometry(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)


def labels_like(image: sitk.Image) -> sitk.Image:
    arr = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
    arr[2:5, 3:6, 4:8] = 1
    arr[3, 4, 5] = 2
    arr[1, 1, 1] = 2
    lab = sitk.GetImageFromArray(arr)
    lab.CopyInformation(image)
    return lab


@pytest.mark.parametrize("ext", [".nii.gz", ".nrrd", ".mha"])
def test_image_round_trip_keeps_geometry_and_values(tmp_path, oblique_image, ext):
    path = write_image(oblique_image, tmp_path / f"img{ext}")
    back = read_image(path)
    assert_same_geometry(oblique_image, back)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(oblique_image))
    # a physical point maps to the same voxel in both
    p = oblique_image.TransformIndexToPhysicalPoint((3, 4, 5))
    assert back.TransformPhysicalPointToIndex(p) == (3, 4, 5)


@pytest.mark.parametrize("ext", [".seg.nrrd", ".nii.gz", ".nrrd"])
def test_label_round_trip_keeps_geometry_values_and_names(tmp_path, oblique_image, ext):
    lab = labels_like(oblique_image)
    segments = [Segment(1, "LV blood pool", (0.9, 0.1, 0.1)), Segment(2, "LV myocardium", (0.2, 0.6, 0.3))]
    path = write_labels(LabelImage(lab, segments), tmp_path / f"lab{ext}")
    back = read_labels(path)
    assert_same_geometry(oblique_image, back.image)
    np.testing.assert_array_equal(back.array(), sitk.GetArrayFromImage(lab))
    assert [s.name for s in back.segments] == ["LV blood pool", "LV myocardium"]
    if ext == ".seg.nrrd":
        np.testing.assert_allclose(back.segments[0].color, (0.9, 0.1, 0.1), atol=1e-5)
        np.testing.assert_allclose(back.segments[1].color, (0.2, 0.6, 0.3), atol=1e-5)


def test_seg_nrrd_custom_names_are_kept(tmp_path, oblique_image):
    lab = labels_like(oblique_image)
    segs = [Segment(1, "Rater A pool", (0.1, 0.2, 0.3)), Segment(2, "Rater A wall", (0.4, 0.5, 0.6))]
    back = read_labels(write_labels(lab, tmp_path / "x.seg.nrrd", segs))
    assert [(s.value, s.name) for s in back.segments] == [(1, "Rater A pool"), (2, "Rater A wall")]


def test_seg_nrrd_header_is_slicer_segmentation(tmp_path, oblique_image):
    """The file carries Slicer's segment fields, so Slicer loads it as a segmentation."""
    path = write_labels(labels_like(oblique_image), tmp_path / "x.seg.nrrd")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    keys = set(reader.GetMetaDataKeys())
    assert {"Segment0_Name", "Segment0_LabelValue", "Segment1_Color"} <= keys
    assert reader.GetMetaData("Segment1_Name") == "LV myocardium"


def test_mismatched_grid_is_refused_naming_both(oblique_image):
    lab = labels_like(oblique_image)
    check_same_grid(oblique_image, lab, "ct.nii.gz", "lab.nii.gz")
    shifted = sitk.Image(lab)
    shifted.SetOrigin(tuple(np.array(lab.GetOrigin()) + (0.0, 0.0, 1.0)))
    with pytest.raises(GeometryError, match=r"lab.nii.gz: geometry does not match ct.nii.gz: origin"):
        check_same_grid(oblique_image, shifted, "ct.nii.gz", "lab.nii.gz")
    spaced = sitk.Image(lab)
    spaced.SetSpacing((0.7, 0.9, 2.0))
    with pytest.raises(GeometryError, match="spacing"):
        check_same_grid(oblique_image, spaced)
    resized = sitk.Image([11, 9, 8], sitk.sitkUInt8)
    with pytest.raises(GeometryError, match="size"):
        check_same_grid(oblique_image, resized)
    turned = sitk.Image(lab)
    turned.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, 1))
    with pytest.raises(GeometryError, match="direction"):
        check_same_grid(oblique_image, turned)


def test_bad_files_get_one_line_errors(tmp_path, oblique_image):
    with pytest.raises(InputError, match="missing.nii.gz: file not found"):
        read_image(tmp_path / "missing.nii.gz")
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(b"this is not an image")
    with pytest.raises(InputError, match="corrupt.nii.gz: cannot be read as an image") as err:
        read_image(corrupt)
    assert "\n" not in str(err.value)
    img2d = write_image(sitk.Image([5, 6], sitk.sitkFloat32), tmp_path / "flat.nii.gz")
    with pytest.raises(InputError, match="expected a 3D image, got 2D"):
        read_image(img2d)
    # an intensity image passed as labels
    with pytest.raises(InputError, match="non-integer"):
        read_labels(write_image(oblique_image, tmp_path / "ct.nii.gz"))
    neg = sitk.Cast(labels_like(oblique_image), sitk.sitkInt16) - 1
    with pytest.raises(InputError, match="negative"):
        read_labels(write_image(neg, tmp_path / "neg.nii.gz"))
    bad_seg = tmp_path / "bad.seg.nrrd"
    bad_seg.write_text("NRRD0004\ntype: garbage\n")
    with pytest.raises(InputError, match="bad.seg.nrrd: cannot be read as a Slicer segmentation"):
        read_labels(bad_seg)


def test_failed_write_leaves_no_partial_file(tmp_path, oblique_image):
    target = tmp_path / "out.nii.gz"
    with pytest.raises(InputError):
        write_labels(oblique_image, target)  # float intensities are not labels
    assert list(tmp_path.iterdir()) == []


def make_series(image: sitk.Image, n: int = 4) -> Series4D:
    phases = []
    for t in range(n):
        ph = sitk.Image(image) + float(t)
        phases.append(ph)
    return Series4D(phases, [100.0 * t / n for t in range(n)], {0: labels_like(image), 2: labels_like(image)})


def test_series4d_folder_round_trip(tmp_path, oblique_image):
    series = make_series(oblique_image)
    write_series4d(series, tmp_path / "study")
    manifest = json.loads((tmp_path / "study" / "series.json").read_text(encoding="utf-8"))
    assert [("labels" in e) for e in manifest["phases"]] == [True, False, True, False]
    back = read_series4d(tmp_path / "study")
    assert len(back) == 4 and sorted(back.labels) == [0, 2]
    assert back.percent_rr == [0.0, 25.0, 50.0, 75.0]
    for a, b in zip(series.phases, back.phases):
        assert_same_geometry(a, b)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))


def test_series4d_nifti_round_trip(tmp_path, oblique_image):
    series = make_series(oblique_image, 3)
    path = write_series4d(series, tmp_path / "study.nii.gz", form="nifti")
    img4 = sitk.ReadImage(str(path))
    assert img4.GetDimension() == 4 and img4.GetSize()[3] == 3
    back = read_series4d(path)
    assert len(back) == 3
    for a, b in zip(series.phases, back.phases):
        assert_same_geometry(a, b)
        np.testing.assert_allclose(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))


def test_series4d_refuses_mismatched_phase(tmp_path, oblique_image):
    series = make_series(oblique_image)
    moved = sitk.Image(series.phases[3])
    moved.SetOrigin((0.0, 0.0, 0.0))
    series.phases[3] = moved
    with pytest.raises(InputError, match="phase 3 is not on the grid of phase 0: origin"):
        write_series4d(series, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    with pytest.raises(InputError, match="no series.json manifest"):
        (tmp_path / "empty").mkdir()
        read_series4d(tmp_path / "empty")


def test_dicom_series_reads_with_geometry(tmp_path, oblique_image):
    """A DICOM series written slice by slice reads back as one volume with its spacing and origin."""
    image = sitk.Cast(sitk.RescaleIntensity(oblique_image, 0, 1000), sitk.sitkInt16)
    image.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, 1))
    folder = tmp_path / "dicom"
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series_uid = "1.2.826.0.1.3680043.2.1125.1.42"
    for k in range(image.GetDepth()):
        sl = image[:, :, k]
        pos = image.TransformIndexToPhysicalPoint((0, 0, k))
        for tag, value in {
            "0008|0060": "CT",
            "0020|000e": series_uid,
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1.41",
            "0020|0032": "\\".join(f"{v:.4f}" for v in pos),
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0020|0013": str(k + 1),
            "0018|0050": "2.5",
            "0028|0030": "0.9\\0.7",
        }.items():
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"s{k:03d}.dcm"))
        writer.Execute(sl)
    back = read_dicom_series(folder)
    assert back.GetSize() == image.GetSize()
    np.testing.assert_allclose(back.GetSpacing(), image.GetSpacing(), atol=1e-3)
    np.testing.assert_allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-3)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))
    assert read_image(folder).GetSize() == image.GetSize()
    with pytest.raises(InputError, match="not found"):
        read_dicom_series(folder, series_uid="1.2.3")


def test_seg_nrrd_keeps_terminology(tmp_path, oblique_image):
    entry = ("Segmentation category and type - 3D Slicer General Anatomy list~SCT^85756007^Tissue"
             "~SCT^4906002^Myocardium~^^~Anatomic codes - DICOM master list~^^~^^")
    segs = [Segment(1, "pool", (0.1, 0.2, 0.3)), Segment(2, "wall", (0.4, 0.5, 0.6), entry)]
    back = read_labels(write_labels(labels_like(oblique_image), tmp_path / "t.seg.nrrd", segs))
    assert back.segments[0].terminology is None
    assert back.segments[1].terminology is not None
    assert "SCT^4906002^Myocardium" in back.segments[1].terminology


def test_label_values_are_the_values_present():
    """Both ways of listing a label map's values (one comparison per value up to 8, a histogram above)
    give exactly the non-zero values present."""
    from segtransfer.io.images import label_values

    arr = np.zeros((4, 5, 6), np.uint8)
    assert label_values(arr) == []
    arr[1, 2, 3] = 1
    assert label_values(arr) == [1]
    arr[0, 0, 0], arr[3, 4, 5] = 5, 8
    assert label_values(arr) == [1, 5, 8]
    wide = arr.astype(np.uint16)
    wide[2, 2, 2], wide[2, 3, 3] = 300, 9
    assert label_values(wide) == [1, 5, 8, 9, 300]

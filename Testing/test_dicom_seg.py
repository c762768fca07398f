"""DICOM out: a phantom written as a DICOM series reads back voxel-exact; a DICOM SEG written on it
references the series and reads back with the right segments and geometry; bad inputs are refused."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from geometry_helpers import oblique_direction
from segtransfer.cli import main
from segtransfer.errors import GeometryError, InputError
from segtransfer.io import LabelImage, read_dicom_series, read_labels, same_grid, write_labels
from segtransfer.io.dicom_seg import read_dicom_seg, write_dicom_seg
from segtransfer.io.dicom_series import write_dicom_series
from segtransfer.labels import CARDIAC_SEGMENTS, HEMORRHAGE_SEGMENTS
from segtransfer.phantoms import head_ct, spherical_shell


@pytest.fixture(scope="module")
def shell_series(tmp_path_factory):
    """A 0/1/2 spherical shell on an oblique anisotropic grid, its CT-like image as a DICOM series."""
    labels, _ = spherical_shell(6.0, 10.0, spacing=(1.0, 1.2, 1.5), direction=oblique_direction())
    image = sitk.Cast(labels.image, sitk.sitkInt16) * 200 - 100  # -100 / 100 / 300 HU
    folder = tmp_path_factory.mktemp("dicom") / "series"
    uids = write_dicom_series(image, folder)
    return labels, image, folder, uids


def test_dicom_series_round_trip_is_voxel_exact(shell_series):
    labels, image, folder, uids = shell_series
    back = read_dicom_series(folder)
    assert same_grid(back, image)
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))
    assert len(list(folder.glob("*.dcm"))) == image.GetDepth()
    ds = pydicom.dcmread(next(folder.glob("*.dcm")))
    assert ds.SeriesInstanceUID == uids["series_instance_uid"] and ds.Modality == "CT"


def test_dicom_seg_reads_back_with_segments_and_geometry(shell_series, tmp_path):
    labels, image, folder, uids = shell_series
    seg_path = write_dicom_seg(LabelImage(labels.image, list(CARDIAC_SEGMENTS)), folder, tmp_path / "lv.seg.dcm")
    ds = pydicom.dcmread(seg_path)
    assert ds.Modality == "SEG"
    # it belongs to the source study and frame of reference, and references every source slice
    assert ds.StudyInstanceUID == uids["study_instance_uid"] and ds.FrameOfReferenceUID == uids["frame_of_reference_uid"]
    referenced = {i.ReferencedSOPInstanceUID for s in ds.ReferencedSeriesSequence for i in s.ReferencedInstanceSequence}
    assert referenced == {pydicom.dcmread(f).SOPInstanceUID for f in folder.glob("*.dcm")}
    assert [(int(s.SegmentNumber), s.SegmentLabel) for s in ds.SegmentSequence] == [(1, "LV blood pool"), (2, "LV myocardium")]
    back = read_dicom_seg(seg_path, folder)
    assert [(s.value, s.name) for s in back.segments] == [(1, "LV blood pool"), (2, "LV myocardium")]
    assert np.allclose(back.segments[0].color, CARDIAC_SEGMENTS[0].color, atol=0.02)  # CIELab round trip
    assert same_grid(back.image, image)
    assert np.array_equal(back.array(), labels.array())  # voxel-exact on the source grid


def test_dicom_seg_cli_on_head_phantom(tmp_path, capsys):
    """The CLI path: head CT phantom as DICOM, its hemorrhage mask as .seg.nrrd -> SEG -> reads back."""
    head = head_ct(seed=3, spacing=(1.8, 1.8, 6.0), hemorrhage=["intraparenchymal", "subdural"])
    write_dicom_series(head.image, tmp_path / "ct")
    write_labels(LabelImage(head.mask, list(HEMORRHAGE_SEGMENTS)), tmp_path / "mask.seg.nrrd")
    out = tmp_path / "hemorrhage.dcm"
    assert main(["dicomseg", "write", str(tmp_path / "mask.seg.nrrd"), "--source", str(tmp_path / "ct"), "--out", str(out)]) == 0
    assert main(["dicomseg", "read", str(out), "--source", str(tmp_path / "ct"), "--out", str(tmp_path / "back.seg.nrrd")]) == 0
    back = read_labels(tmp_path / "back.seg.nrrd")
    assert [(s.value, s.name) for s in back.segments] == [(1, "Hemorrhage")]
    assert np.array_equal(back.array(), sitk.GetArrayFromImage(head.mask))
    assert back.array().sum() > 0


def test_dicom_seg_refuses_bad_input(shell_series, tmp_path, capsys):
    labels, image, folder, _ = shell_series
    shifted = sitk.Image(labels.image)
    shifted.SetOrigin(tuple(o + 2.0 for o in labels.image.GetOrigin()))
    with pytest.raises(GeometryError, match="origin"):
        write_dicom_seg(LabelImage(shifted, list(CARDIAC_SEGMENTS)), folder, tmp_path / "x.dcm")
    gaps = sitk.Cast(labels.image, sitk.sitkUInt8) * 2  # values 2 and 4
    with pytest.raises(InputError, match="gaps"):
        write_dicom_seg(LabelImage(gaps, []), folder, tmp_path / "x.dcm")
    with pytest.raises(InputError, match="no DICOM series"):
        write_dicom_seg(labels, tmp_path, tmp_path / "x.dcm")
    assert not (tmp_path / "x.dcm").exists() and not list(tmp_path.glob(".x.dcm*"))  # nothing half-written
    # a CT slice is not a SEG: one line, exit 2
    not_seg = next(folder.glob("*.dcm"))
    assert main(["dicomseg", "read", str(not_seg), "--source", str(folder), "--out", str(tmp_path / "y.seg.nrrd")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(not_seg) in err[0]

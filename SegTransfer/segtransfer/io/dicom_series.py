"""Writing a 3D image as a single-frame DICOM series (one CT slice per file) with SimpleITK.

Used to hand phantoms to DICOM readers and to PACS-style tools (DICOM SEG needs a source series to
reference).  The geometry is kept: ImagePositionPatient per slice, ImageOrientationPatient from the
image direction, PixelSpacing and SliceThickness from the spacing (LPS millimetres, as DICOM uses).
Voxel values are stored as int16 with RescaleSlope 1 and RescaleIntercept 0, so Hounsfield units
read back unchanged (float input is rounded to the nearest HU).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from .atomic import atomic_dir

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


@dataclass(frozen=True)
class DicomIdentity:
    """Patient and study attributes written into every slice (phantoms: made-up, never real patients)."""

    patient_name: str = "PHANTOM^SEGTRANSFER"
    patient_id: str = "PHANTOM"
    study_description: str = "SegTransfer phantom"
    series_description: str = "phantom CT"
    study_id: str = "1"
    accession_number: str = "0"
    series_number: int = 1


def new_uid() -> str:
    """A fresh DICOM UID (pydicom's generator, UUID-derived under the 2.25 root)."""
    from pydicom.uid import generate_uid

    return str(generate_uid())


def write_dicom_series(image: sitk.Image, folder: str | os.PathLike, identity: DicomIdentity | None = None,
                       modality: str = "CT") -> dict:
    """Write ``image`` (3D, scalar, HU) as one DICOM file per axial slice ``slice_NNNN.dcm`` into
    ``folder`` (atomically: the folder appears complete or not at all).

    Returns the UIDs written: ``{"study_instance_uid", "series_instance_uid", "frame_of_reference_uid"}``.
    Reading the folder back with :func:`segtransfer.io.read_dicom_series` gives the same voxels and
    grid (origin, spacing, direction within 1e-4 mm).
    """
    identity = identity or DicomIdentity()
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(folder, f"a DICOM series needs a 3D scalar image, got {image.GetDimension()}D with "
                         f"{image.GetNumberOfComponentsPerPixel()} components")
    arr = sitk.GetArrayFromImage(image)
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise InputError(folder, "image holds NaN or infinite voxels; cannot be written as DICOM")
    if arr.min() < -32768 or arr.max() > 32767:
        raise InputError(folder, f"values {arr.min()}..{arr.max()} do not fit DICOM int16 Hounsfield units")
    pixels = sitk.Cast(sitk.Round(image) if np.issubdtype(arr.dtype, np.floating) else image, sitk.sitkInt16)
    uids = {"study_instance_uid": new_uid(), "series_instance_uid": new_uid(), "frame_of_reference_uid": new_uid()}
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    orientation = "\\".join(f"{v:.10g}" for v in (*direction[:, 0], *direction[:, 1]))
    sx, sy, sz = image.GetSpacing()
    now_date, now_time = time.strftime("%Y%m%d"), time.strftime("%H%M%S")
    shared = {
        "0008|0016": CT_IMAGE_STORAGE, "0008|0060": modality, "0008|0020": now_date, "0008|0030": now_time,
        "0008|0021": now_date, "0008|0031": now_time, "0008|0050": identity.accession_number, "0008|0090": "",
        "0008|0070": "SegTransfer", "0008|1030": identity.study_description, "0008|103e": identity.series_description,
        "0010|0010": identity.patient_name, "0010|0020": identity.patient_id, "0010|0030": "", "0010|0040": "O",
        "0020|000d": uids["study_instance_uid"], "0020|000e": uids["series_instance_uid"], "0020|0010": identity.study_id,
        "0020|0011": str(identity.series_number), "0020|0052": uids["frame_of_reference_uid"], "0020|1040": "",
        "0020|0037": orientation, "0018|0050": f"{sz:.10g}", "0028|0030": f"{sy:.10g}\\{sx:.10g}",
        "0028|1052": "0", "0028|1053": "1", "0028|1054": "HU",
    }
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()  # use our UIDs instead of GDCM's generated ones
    with atomic_dir(folder) as tmp:
        for k in range(pixels.GetDepth()):
            sl = pixels[:, :, k]
            for tag, value in shared.items():
                sl.SetMetaData(tag, value)
            position = image.TransformIndexToPhysicalPoint((0, 0, k))
            sl.SetMetaData("0020|0032", "\\".join(f"{v:.10g}" for v in position))
            sl.SetMetaData("0020|0013", str(k + 1))
            sl.SetMetaData("0008|0018", new_uid())
            writer.SetFileName(str(tmp / f"slice_{k:04d}.dcm"))
            writer.Execute(sl)
    return uids

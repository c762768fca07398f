"""DICOM SEG (segmentation objects for PACS) with highdicom, referencing the source CT series.

:func:`write_dicom_seg` turns a label map on the grid of a DICOM series into one binary DICOM SEG
instance: one segment per non-zero label value (segment number = label value, segment label = the
segment's name, display colour from the segment's RGB colour, coded category/type from
:data:`SEGMENT_CODES` where the name is known).  Each frame references its source slice (SOP
Instance UID), and the SEG shares the series' Frame of Reference, patient and study, so PACS
viewers overlay it on the source.  :func:`read_dicom_seg` reads it back onto the source grid.

The label map must be on the grid of the series exactly (size, origin, spacing, direction, LPS):
a mismatch is a ``GeometryError``, never a silent resample.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .. import __version__
from ..errors import GeometryError, InputError
from ..labels import Segment
from .atomic import atomic_path
from .images import LabelImage, as_label_pixels, check_same_grid, read_dicom_series

#: Coded (SNOMED CT) category and type per known segment name: (category, type) as (value, meaning).
SEGMENT_CODES: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "Hemorrhage": (("49755003", "Morphologically Altered Structure"), ("50960005", "Hemorrhage")),
    "LV blood pool": (("91723000", "Anatomical Structure"), ("87878005", "Left ventricle")),
    "LV myocardium": (("91723000", "Anatomical Structure"), ("49848007", "Left Ventricle Myocardium")),
}
#: Used for segments whose name is not in :data:`SEGMENT_CODES`.
FALLBACK_CODES = (("85756007", "Tissue"), ("85756007", "Tissue"))


def _series_files(folder: Path, series_uid: str | None) -> list[str]:
    """The series' files in the slice order SimpleITK/GDCM reads them (the label array's z order)."""
    reader = sitk.ImageSeriesReader()
    uids = list(reader.GetGDCMSeriesIDs(str(folder)))
    if series_uid is None:
        series_uid = uids[0] if len(uids) == 1 else None
    if series_uid is None or series_uid not in uids:
        read_dicom_series(folder, series_uid)  # raises the InputError that names the problem
    return list(reader.GetGDCMSeriesFileNames(str(folder), series_uid))


def _read_datasets(files: list[str]):
    import pydicom

    out = []
    for f in files:
        try:
            out.append(pydicom.dcmread(f))
        except Exception as exc:  # pydicom raises several types for damaged files
            raise InputError(f, f"cannot be read as DICOM ({exc})") from None
    return out


def _description(segment: Segment, number: int):
    import highdicom as hd
    from pydicom.sr.coding import Code

    (cat_value, cat_meaning), (type_value, type_meaning) = SEGMENT_CODES.get(segment.name, FALLBACK_CODES)
    algorithm = hd.AlgorithmIdentificationSequence(name="SegTransfer", version=__version__,
                                                   family=Code("113037", "DCM", "Learning Algorithm"))
    r, g, b = (np.clip(np.asarray(segment.color, dtype=float), 0.0, 1.0) * 255).round()
    return hd.seg.SegmentDescription(
        segment_number=number, segment_label=segment.name[:64],
        segmented_property_category=Code(cat_value, "SCT", cat_meaning),
        segmented_property_type=Code(type_value, "SCT", type_meaning),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm,
        display_color=hd.color.CIELabColor.from_rgb(float(r), float(g), float(b)),
    )


def write_dicom_seg(labels: LabelImage, source_folder: str | os.PathLike, path: str | os.PathLike,
                    series_uid: str | None = None, series_description: str = "SegTransfer segmentation",
                    series_number: int = 900) -> Path:
    """Write ``labels`` (on the grid of the DICOM series in ``source_folder``) as a binary DICOM SEG
    file at ``path`` (atomically).  Segment numbers are the label values, which must therefore be
    1, 2, ... N without gaps (DICOM numbers segments from 1 consecutively).  Empty slices are kept as
    frames, so every source slice has its frame.  Returns ``path``.
    """
    import highdicom as hd

    folder = Path(source_folder)
    source = read_dicom_series(folder, series_uid)
    image = as_label_pixels(labels.image, path)
    check_same_grid(source, image, folder, "label map")
    arr = sitk.GetArrayFromImage(image)
    values = sorted(int(v) for v in np.unique(arr) if v != 0)
    by_value = {s.value: s for s in labels.segments}
    numbers = sorted(set(values) | set(by_value))
    if not numbers:
        raise InputError(path, "label map has no segment to write")
    if numbers != list(range(1, len(numbers) + 1)):
        raise InputError(path, f"DICOM SEG numbers segments 1..N; label values {numbers} have gaps (relabel them first)")
    segments = [by_value.get(v, Segment(v, f"Label {v}", (0.5, 0.5, 0.5))) for v in numbers]
    datasets = _read_datasets(_series_files(folder, series_uid))
    if len(datasets) != arr.shape[0]:
        raise GeometryError(folder, f"{len(datasets)} DICOM files for {arr.shape[0]} slices")
    missing = [k for k in ("FrameOfReferenceUID", "StudyInstanceUID", "SeriesInstanceUID") if k not in datasets[0]]
    if missing:
        raise InputError(datasets[0].filename, f"source DICOM lacks {', '.join(missing)}; cannot be referenced by a SEG")
    # One binary frame per (source slice, segment): pixel array (slices, rows, columns, segments).
    masks = np.stack([arr == v for v in numbers], axis=-1).astype(np.uint8)
    try:
        seg = hd.seg.Segmentation(
            source_images=datasets, pixel_array=masks, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[_description(s, n) for n, s in enumerate(segments, start=1)],
            series_instance_uid=hd.UID(), series_number=series_number, sop_instance_uid=hd.UID(), instance_number=1,
            manufacturer="SegTransfer", manufacturer_model_name="segtransfer", software_versions=__version__,
            device_serial_number="0", series_description=series_description, omit_empty_frames=False,
        )
    except (ValueError, TypeError, AttributeError) as exc:  # highdicom's checks of the source attributes
        raise InputError(folder, f"source series cannot be referenced by a DICOM SEG ({exc})") from None
    with atomic_path(path) as tmp:
        seg.save_as(str(tmp))
    return Path(path)


def read_dicom_seg(path: str | os.PathLike, source_folder: str | os.PathLike, series_uid: str | None = None) -> LabelImage:
    """Read a DICOM SEG onto the grid of its source series in ``source_folder``: a label map whose value
    is the segment number, with the segments' labels as names.  Raises ``InputError`` when the file
    is not a SEG, or references none of the series' slices."""
    import highdicom as hd

    p = Path(path)
    if not p.is_file():
        raise InputError(p, "file not found")
    try:
        seg = hd.seg.segread(str(p))
    except Exception as exc:  # pydicom/highdicom raise several types for non-SEG files
        raise InputError(p, f"cannot be read as a DICOM SEG ({exc})") from None
    folder = Path(source_folder)
    source = read_dicom_series(folder, series_uid)
    datasets = _read_datasets(_series_files(folder, series_uid))
    uids = [str(d.SOPInstanceUID) for d in datasets]
    try:
        arr = seg.get_pixels_by_source_instance(uids, combine_segments=True, assert_missing_frames_are_empty=True)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise InputError(p, f"does not match the series in {folder} ({exc})") from None
    image = sitk.GetImageFromArray(np.ascontiguousarray(arr.astype(np.uint16)))
    image.CopyInformation(source)
    segments = []
    for n in seg.segment_numbers:
        d = seg.get_segment_description(n)
        segments.append(Segment(int(n), str(d.segment_label), _rgb(d)))
    return LabelImage(as_label_pixels(image, p), segments)


def _rgb(description) -> tuple[float, float, float]:
    """The segment's display colour in 0..1 RGB (grey when it has none)."""
    import highdicom as hd

    lab = getattr(description, "RecommendedDisplayCIELabValue", None)
    if lab is None:
        return (0.5, 0.5, 0.5)
    return tuple(float(c) / 255.0 for c in hd.color.CIELabColor.from_dicom_value(list(lab)).to_rgb(clip=True))

"""3D images and label maps: NIfTI, NRRD, MetaImage, Slicer ``.seg.nrrd`` and DICOM series.

Geometry (origin, spacing, direction; LPS millimetres) is kept through every read and write.
Arrays taken from images are indexed ``[z, y, x]``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import GeometryError, InputError
from ..labels import CARDIAC_SEGMENTS, Segment, default_segments
from .atomic import atomic_path

PathLike = str | os.PathLike

#: Tolerances for "the same voxel grid": origin in mm, spacing relative, direction cosine.
GRID_TOLERANCE = {"origin_mm": 1e-3, "spacing_rel": 1e-5, "direction": 1e-5}


@dataclass
class LabelImage:
    """A label map and the segments it holds.

    ``image`` is an unsigned-integer ``SimpleITK.Image`` (0 = background); ``segments`` lists each
    non-zero value with its name and colour.
    """

    image: sitk.Image
    segments: list[Segment] = field(default_factory=list)

    def array(self) -> np.ndarray:
        """Label values as a ``[z, y, x]`` numpy array (a copy)."""
        return sitk.GetArrayFromImage(self.image)


def _is_seg_nrrd(path: Path) -> bool:
    return path.name.lower().endswith(".seg.nrrd")


def read_image(path: PathLike, dimension: int | None = 3) -> sitk.Image:
    """Read an image file (NIfTI, NRRD, MHA, ...) or a folder holding one DICOM series.

    ``dimension``: the number of spatial dimensions required (``None`` accepts any).
    Raises ``InputError`` naming the file for a missing, unreadable, wrong-dimension or
    multi-component image.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(p, "file not found")
    if p.is_dir():
        image = read_dicom_series(p)
    else:
        try:
            image = sitk.ReadImage(str(p))
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown reader error"
            raise InputError(p, f"cannot be read as an image (corrupt or unsupported format: {first})") from None
    if dimension is not None and image.GetDimension() != dimension:
        raise InputError(p, f"expected a {dimension}D image, got {image.GetDimension()}D with size {list(image.GetSize())}")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(p, f"expected a scalar image, got {image.GetNumberOfComponentsPerPixel()} components per voxel")
    return image


def read_dicom_series(folder: PathLike, series_uid: str | None = None) -> sitk.Image:
    """Read one DICOM series from ``folder`` as a 3D image (slices sorted by position, LPS geometry).

    With several series in the folder, ``series_uid`` chooses one; without it that is an error
    listing the series found.
    """
    folder = Path(folder)
    reader = sitk.ImageSeriesReader()
    uids = list(reader.GetGDCMSeriesIDs(str(folder)))
    if not uids:
        raise InputError(folder, "no DICOM series found in this folder")
    if series_uid is None:
        if len(uids) > 1:
            raise InputError(folder, f"{len(uids)} DICOM series found; choose one of: {', '.join(uids)}")
        series_uid = uids[0]
    elif series_uid not in uids:
        raise InputError(folder, f"DICOM series {series_uid} not found; present: {', '.join(uids)}")
    files = reader.GetGDCMSeriesFileNames(str(folder), series_uid)
    reader.SetFileNames(files)
    try:
        return reader.Execute()
    except RuntimeError as exc:
        raise InputError(folder, f"DICOM series {series_uid} cannot be read ({str(exc).strip().splitlines()[-1]})") from None


def check_finite(image: sitk.Image, where: PathLike) -> None:
    """Raise ``InputError`` if the image holds NaN or infinite values."""
    arr = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise InputError(where, f"image holds {int((~np.isfinite(arr)).sum())} NaN or infinite voxels")


def write_image(image: sitk.Image, path: PathLike, compress: bool = True) -> Path:
    """Write ``image`` atomically; the format follows the extension (``.nii.gz``, ``.nrrd``, ``.mha``)."""
    p = Path(path)
    with atomic_path(p) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=compress)
    return p


# ----------------------------------------------------------------------------------------------
# Label maps


def as_label_pixels(image: sitk.Image, where: PathLike) -> sitk.Image:
    """Check label values are non-negative integers (no NaN) and return the image as UInt8/UInt16.

    ``where`` names the source in the ``InputError`` raised for bad values."""
    arr = sitk.GetArrayViewFromImage(image)
    if arr.size == 0:
        raise InputError(where, "label map is empty (no voxels)")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise InputError(where, "label map holds NaN or infinite values")
        if not np.all(arr == np.round(arr)):
            raise InputError(where, "label map holds non-integer values (is this an intensity image?)")
    if arr.min() < 0:
        raise InputError(where, f"label map holds negative values (min {arr.min()})")
    vmax = int(arr.max())
    if vmax > 65535:
        raise InputError(where, f"label map values up to {vmax} (at most 65535 supported)")
    pixel = sitk.sitkUInt8 if vmax < 256 else sitk.sitkUInt16
    return image if image.GetPixelID() == pixel else sitk.Cast(image, pixel)


def _read_seg_nrrd(p: Path) -> LabelImage:
    """Read a Slicer ``.seg.nrrd`` (names and colours kept) into one label map.

    Segments on several layers are merged when no two overlap; overlapping segments cannot be
    one label map and are refused.
    """
    import slicerio

    try:
        seg = slicerio.read_segmentation(str(p))
    except Exception as exc:  # slicerio/pynrrd raise many types for a corrupt header or payload
        raise InputError(p, f"cannot be read as a Slicer segmentation ({exc})") from None
    voxels = np.asarray(seg["voxels"])
    if voxels.ndim == 3:
        voxels = voxels[np.newaxis]
    if voxels.ndim != 4:
        raise InputError(p, f"unexpected segmentation array shape {voxels.shape}")
    out = np.zeros(voxels.shape[1:], dtype=np.uint16)
    segments: list[Segment] = []
    used_values = {int(s.get("labelValue", 0)) for s in seg["segments"]}
    keep_values = len(used_values) == len(seg["segments"])  # values unique across layers: keep them
    for index, s in enumerate(seg["segments"]):
        layer = int(s.get("layer", 0))
        mask = voxels[layer] == int(s.get("labelValue", 1))
        value = int(s["labelValue"]) if keep_values else index + 1
        if np.any(out[mask] != 0):
            raise InputError(p, f"segment '{s.get('name')}' overlaps another segment; overlapping segments cannot form one label map")
        out[mask] = value
        color = tuple(float(c) for c in s.get("color", (0.5, 0.5, 0.5)))[:3]
        terminology = slicerio.segmentation.terminology_entry_to_string(s["terminology"]) if s.get("terminology") else None
        segments.append(Segment(value, str(s.get("name", s.get("id", f"Segment {value}"))), color, terminology))
    # pynrrd reads in Fortran order: voxels[i, j, k]; SimpleITK arrays are [k, j, i].
    image = sitk.GetImageFromArray(np.ascontiguousarray(out.transpose(2, 1, 0)))
    ijk_to_lps = np.asarray(seg["ijkToLPS"], dtype=float)
    columns = ijk_to_lps[:3, :3]
    spacing = np.linalg.norm(columns, axis=0)
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetDirection(tuple(float(d) for d in (columns / spacing).ravel()))
    image.SetOrigin(tuple(float(o) for o in ijk_to_lps[:3, 3]))
    return LabelImage(as_label_pixels(image, p), segments)


def read_labels(path: PathLike, known: tuple[Segment, ...] = CARDIAC_SEGMENTS) -> LabelImage:
    """Read a label map: Slicer ``.seg.nrrd`` (segment names and colours kept), or any image file
    with integer labels (segments named from ``known`` where the value matches).

    Raises ``InputError`` for non-integer, negative or NaN values, or overlapping segments.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(p, "file not found")
    if _is_seg_nrrd(p):
        return _read_seg_nrrd(p)
    image = as_label_pixels(read_image(p), p)
    values = np.unique(sitk.GetArrayViewFromImage(image))
    return LabelImage(image, default_segments(list(values), known))


#: gzip level of ``.seg.nrrd`` files.  Label maps are mostly background, which level 1 already packs
#: tightly: on a 512 x 512 x 40 hemorrhage mask it takes half the time of level 6 (0.03 against 0.07 s)
#: for a file of 80 instead of 32 kB; slicerio's default 9 takes 2.5 times as long as 6.
SEG_NRRD_COMPRESSION = 1


def label_values(arr: np.ndarray) -> list[int]:
    """The non-zero values present in a UInt8/UInt16 label array, ascending.  A few labels (a mask):
    one comparison each, which is many times cheaper than ``np.bincount``'s 64-bit copy of the array."""
    top = int(arr.max()) if arr.size else 0
    if top <= 8:
        return [v for v in range(1, top + 1) if (arr == v).any()]
    return [int(v) for v in np.flatnonzero(np.bincount(arr.ravel())) if v != 0]


def write_labels(labels: LabelImage | sitk.Image, path: PathLike, segments: list[Segment] | None = None) -> Path:
    """Write a label map atomically.  ``.seg.nrrd`` stores one Slicer segment per value with its name and
    colour (values absent from ``segments`` get default ones); other extensions write the plain
    label image."""
    if isinstance(labels, LabelImage):
        image, segments = labels.image, segments if segments is not None else labels.segments
    else:
        image = labels
    image = as_label_pixels(image, path)
    p = Path(path)
    if not _is_seg_nrrd(p):
        return write_image(image, p)

    import slicerio

    arr = sitk.GetArrayViewFromImage(image)  # read only, while ``image`` lives
    present = label_values(arr)
    by_value = {s.value: s for s in (segments or [])}
    defaults = {s.value: s for s in default_segments(present)}
    values = sorted(set(present) | set(by_value))
    seg_fields = []
    for v in values:
        s = by_value.get(v) or defaults[v]
        fields = {"id": f"Segment_{v}", "name": s.name, "color": list(s.color), "labelValue": v, "layer": 0}
        if s.terminology:
            fields["tags"] = {"TerminologyEntry": s.terminology}
        seg_fields.append(fields)
    ijk_to_lps = np.eye(4)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    ijk_to_lps[:3, :3] = direction * np.array(image.GetSpacing())
    ijk_to_lps[:3, 3] = image.GetOrigin()
    # voxels indexed [i, j, k]: the transposed view is Fortran-ordered, which is the order pynrrd writes
    # (index order "F"), so the bytes are copied once instead of being transposed twice
    seg = {"voxels": arr.transpose(2, 1, 0), "ijkToLPS": ijk_to_lps, "segments": seg_fields}
    with atomic_path(p) as tmp:
        slicerio.write_segmentation(str(tmp), seg, compression_level=SEG_NRRD_COMPRESSION)
    return p


# ----------------------------------------------------------------------------------------------
# Geometry


def describe_grid(image: sitk.Image) -> str:
    """One-line description of an image grid: size, spacing (mm), origin (mm, LPS)."""
    size = "x".join(str(s) for s in image.GetSize())
    spacing = "x".join(f"{s:g}" for s in image.GetSpacing())
    origin = ", ".join(f"{o:.2f}" for o in image.GetOrigin())
    return f"{size} voxels at {spacing} mm, origin ({origin})"


def grid_difference(a: sitk.Image, b: sitk.Image) -> str | None:
    """What differs between two grids, or ``None`` when they are the same within tolerance."""
    if a.GetDimension() != b.GetDimension():
        return f"dimension {a.GetDimension()} vs {b.GetDimension()}"
    if a.GetSize() != b.GetSize():
        return f"size {list(a.GetSize())} vs {list(b.GetSize())}"
    sa, sb = np.array(a.GetSpacing()), np.array(b.GetSpacing())
    if np.any(np.abs(sa - sb) > GRID_TOLERANCE["spacing_rel"] * np.maximum(sa, sb)):
        return f"spacing {sa.round(5).tolist()} vs {sb.round(5).tolist()} mm"
    oa, ob = np.array(a.GetOrigin()), np.array(b.GetOrigin())
    if np.any(np.abs(oa - ob) > GRID_TOLERANCE["origin_mm"]):
        return f"origin {oa.round(3).tolist()} vs {ob.round(3).tolist()} mm"
    da, db = np.array(a.GetDirection()), np.array(b.GetDirection())
    if np.any(np.abs(da - db) > GRID_TOLERANCE["direction"]):
        return f"direction {da.round(4).tolist()} vs {db.round(4).tolist()}"
    return None


def same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    """True when ``a`` and ``b`` share size, spacing, origin and direction (within tolerance)."""
    return grid_difference(a, b) is None


def check_same_grid(image: sitk.Image, labels: sitk.Image, image_name: PathLike = "image", labels_name: PathLike = "labels") -> None:
    """Raise ``GeometryError`` naming both inputs when ``labels`` is not on the grid of ``image``.

    Never resamples: a label map on another grid is an error the user must resolve.
    """
    diff = grid_difference(image, labels)
    if diff is not None:
        raise GeometryError(labels_name, f"geometry does not match {image_name}: {diff}")

"""Reader for InVesalius 3 project files (``.inv3``): the image volume as a SimpleITK image.

An ``.inv3`` file is a tar archive (gzip-compressed or plain) holding one folder with
``main.plist`` (an XML property list) and the raw image matrix it names, plus masks and surfaces
that are not read here.  ``main.plist`` gives::

    matrix:   {"filename": "matrix.dat", "shape": [slices, rows, columns], "dtype": "int16"}
    spacing:  [x, y, z] in mm (column spacing, row spacing, slice spacing)
    modality: "CT", ...;  orientation: 1 or "AXIAL" (the acquisition plane)

``matrix.dat`` is the C-ordered array ``[slice, row, column]`` in native little-endian byte order,
in the modality's units (Hounsfield units for CT, as the ``scalar_range`` entry shows).

Geometry.  The project stores no patient orientation or origin.  InVesalius builds the matrix from
an axial DICOM series sorted from inferior to superior and flips each slice vertically (VTK's
lower-left origin), so with the usual axial acquisition (DICOM image orientation
``1\\0\\0\\0\\1\\0``): columns run toward the patient's left, rows toward anterior, slices toward
superior.  The returned image therefore has direction ``diag(1, -1, 1)`` in LPS (orientation code
``"LAS"`` in the "axis points toward" convention of ``SimpleITK.DICOMOrient``), the given spacing
and origin ``(0, 0, 0)``.  Only axial projects are read; coronal and sagittal ones are refused.

The archive is read member by member in memory (``tarfile.extractfile``); nothing is extracted to
disk, and member names are only compared, never used as paths.
"""

from __future__ import annotations

import os
import plistlib
import tarfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

#: Direction cosines (row-major, LPS) of an InVesalius axial matrix: columns +x (left), rows -y
#: (anterior), slices +z (superior).
INVESALIUS_AXIAL_DIRECTION = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)

#: Largest ``main.plist`` read (bytes) and largest matrix accepted (bytes, 4 GiB).
MAX_PLIST_BYTES = 1 << 20
MAX_MATRIX_BYTES = 4 << 30

_DTYPES = {"int16": "<i2", "uint16": "<u2", "int8": "i1", "uint8": "u1", "int32": "<i4", "float32": "<f4", "float64": "<f8"}
_AXIAL = (1, "1", "AXIAL", "axial")


def _member(tar: tarfile.TarFile, name: str, where: Path) -> tarfile.TarInfo:
    """The regular-file member whose base name is ``name`` in the project's single top folder."""
    found = [m for m in tar.getmembers() if m.name.replace("\\", "/").rsplit("/", 1)[-1] == name]
    if not found:
        raise InputError(where, f"not an InVesalius project: no {name} in the archive")
    if len(found) > 1:
        raise InputError(where, f"corrupt InVesalius project: {len(found)} members named {name}")
    member = found[0]
    if not member.isfile():
        raise InputError(where, f"corrupt InVesalius project: {member.name} is not a regular file")
    return member


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, limit: int, where: Path) -> bytes:
    if member.size > limit:
        raise InputError(where, f"{member.name} is {member.size} bytes, more than the {limit} accepted")
    handle = tar.extractfile(member)
    if handle is None:
        raise InputError(where, f"corrupt InVesalius project: {member.name} cannot be read")
    data = handle.read(limit + 1)
    if len(data) != member.size:
        raise InputError(where, f"corrupt InVesalius project: {member.name} is truncated")
    return data


def read_inv3(path: str | os.PathLike) -> sitk.Image:
    """Read the image volume of an InVesalius 3 project (``.inv3``) as a 3D ``SimpleITK.Image``.

    Returns the matrix in its stored type (int16 Hounsfield units for CT) on an LPS grid with
    direction ``diag(1, -1, 1)``, the project's spacing (x, y, z mm) and origin (0, 0, 0); see the
    module docstring for the orientation convention.  Raises ``InputError`` naming the file for a
    missing or unreadable archive, a missing or malformed ``main.plist``, a non-axial project, an
    unsupported data type, or a matrix whose size does not match its declared shape.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "file not found")
    try:
        tar = tarfile.open(p, mode="r:*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InputError(p, f"not an InVesalius project (cannot be read as a tar archive: {exc})") from None
    with tar:
        try:
            plist_bytes = _read_member(tar, _member(tar, "main.plist", p), MAX_PLIST_BYTES, p)
            try:
                project = plistlib.loads(plist_bytes)
            except Exception as exc:  # plistlib raises InvalidFileException, ExpatError, ValueError...
                raise InputError(p, f"corrupt InVesalius project: main.plist cannot be parsed ({exc})") from None
            if not isinstance(project, dict) or not isinstance(project.get("matrix"), dict):
                raise InputError(p, "corrupt InVesalius project: main.plist has no 'matrix' entry")
            matrix = project["matrix"]
            shape, dtype_name, filename = matrix.get("shape"), matrix.get("dtype"), matrix.get("filename")
            if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(s, int) and s > 0 for s in shape)):
                raise InputError(p, f"corrupt InVesalius project: matrix shape {shape!r} is not three positive integers")
            if dtype_name not in _DTYPES:
                raise InputError(p, f"unsupported InVesalius matrix type {dtype_name!r} (supported: {', '.join(_DTYPES)})")
            if not isinstance(filename, str) or not filename or "/" in filename or "\\" in filename:
                raise InputError(p, f"corrupt InVesalius project: matrix file name {filename!r}")
            spacing = project.get("spacing")
            if not (isinstance(spacing, list) and len(spacing) == 3 and all(isinstance(s, (int, float)) and np.isfinite(s) and s > 0 for s in spacing)):
                raise InputError(p, f"corrupt InVesalius project: spacing {spacing!r} is not three positive numbers")
            orientation = project.get("orientation", 1)
            if orientation not in _AXIAL:
                raise InputError(p, f"InVesalius project in orientation {orientation!r}; only axial projects are supported")
            dtype = np.dtype(_DTYPES[dtype_name])
            expected = int(np.prod(shape)) * dtype.itemsize
            if expected > MAX_MATRIX_BYTES:
                raise InputError(p, f"matrix of {expected} bytes exceeds the {MAX_MATRIX_BYTES} accepted")
            data = _read_member(tar, _member(tar, filename, p), expected, p)
        except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
            raise InputError(p, f"corrupt InVesalius project ({exc})") from None
    if len(data) != expected:
        raise InputError(p, f"corrupt InVesalius project: {filename} holds {len(data)} bytes, shape {shape} of {dtype_name} needs {expected}")
    array = np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=True)
    image = sitk.GetImageFromArray(array)  # [slice, row, column] -> x = column, y = row, z = slice
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetDirection(INVESALIUS_AXIAL_DIRECTION)
    image.SetOrigin((0.0, 0.0, 0.0))
    return image

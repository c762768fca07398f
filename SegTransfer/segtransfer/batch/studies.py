"""Which studies a batch runs: found in a folder, or listed in a manifest.

A study is a head CT (``kind="head"``: a 3D image file, an InVesalius ``.inv3`` project, or a folder
holding one DICOM series) or a cardiac series (``kind="cardiac"``: a series folder with
``series.json``, a 4D image file, an earlier sparse4d pair, or a multi-phase DICOM folder, with labels
beside it as :func:`segtransfer.sparse4d.study_inputs` describes: ``labels4d.*``, ``labels/labels_NN.*``,
DICOM slices in a ``dicom/`` subfolder).  The kind of a folder of DICOM files is told by its slices:
several slices at one table position mean several phases (cardiac), otherwise one CT (head).

Manifest (CSV, UTF-8, header row)::

    study,path,kind,capabilities
    patient01_head,scans/p01_ct,head,hemorrhage
    patient02_lv,cardiac/p02,cardiac,cleanup sparse4d thickness

``path`` is relative to the manifest's folder; ``kind`` (head or cardiac) and ``capabilities``
(space- or semicolon-separated) are optional (empty: told from the files, and every capability the
batch runs).
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from ..errors import InputError

KINDS = ("head", "cardiac")
#: Capabilities per kind, in the order they run.
CAPABILITIES: dict[str, tuple[str, ...]] = {"head": ("hemorrhage",), "cardiac": ("segment", "cleanup", "sparse4d", "thickness")}
#: Capabilities that need a model package given to the batch (they are left out without one).
NEEDS_MODEL = ("segment",)
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".inv3")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Study:
    """One study of a batch: ``study_id`` (also its output folder name), ``kind`` ("head", "cardiac",
    or "unknown" when it could not be told: the study then fails with ``problem``), its ``path`` and
    the capabilities asked for it (``None``: all the batch runs)."""

    study_id: str
    kind: str
    path: Path
    capabilities: tuple[str, ...] | None = None
    problem: str | None = None


def _stem(name: str) -> str:
    low = name.lower()
    for s in IMAGE_SUFFIXES:
        if low.endswith(s):
            return name[: -len(s)]
    return name


def _dicom_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and (f.suffix.lower() == ".dcm" or f.suffix == ""))


def dicom_kind(folder: Path) -> str:
    """``"cardiac"`` when several DICOM slices share a table position (several phases), else ``"head"``."""
    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    positions = []
    for f in _dicom_files(folder):
        reader.SetFileName(str(f))
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            continue  # not DICOM (or damaged): the reader of the study says which file, when it runs
        if reader.HasMetaDataKey("0020|0032"):
            positions.append(tuple(round(float(v), 2) for v in reader.GetMetaData("0020|0032").replace("\\", " ").split()))
    return "cardiac" if positions and len(set(positions)) < len(positions) else "head"


def classify(path: Path) -> tuple[str, str | None]:
    """``(kind, problem)`` of one study path; kind ``"unknown"`` with the problem when it cannot be told."""
    if path.is_dir():
        if (path / "series.json").exists() or (path / "sparse4d.json").exists() or any(path.glob("image4d.*")) \
                or (path / "dicom").is_dir() or (path / "labels").is_dir() or any(path.glob("labels4d.*")):
            return "cardiac", None  # the layouts of segtransfer.sparse4d.study_inputs
        if not _dicom_files(path):
            return "unknown", "folder holds no series.json, sparse4d.json, image4d file or DICOM files"
        return dicom_kind(path), None
    if path.name.lower().endswith(".inv3"):
        return "head", None
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown reader error"
        return "unknown", f"cannot be read as an image (corrupt or unsupported format: {last})"
    return ("cardiac" if reader.GetDimension() == 4 else "head"), None


def discover(folder: str | os.PathLike) -> list[Study]:
    """Every study directly in ``folder`` (image files with a known suffix, study folders), sorted by name.
    Hidden entries and other files are left out."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(root, "not a folder")
    found = []
    for p in sorted(root.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_file() and not p.name.lower().endswith(IMAGE_SUFFIXES):
            continue
        kind, problem = classify(p)
        found.append(Study(_stem(p.name), kind, p, None, problem))
    return found


def read_manifest(path: str | os.PathLike) -> list[Study]:
    """The studies listed in a manifest CSV (see the module docstring); ``InputError`` naming the file
    and row for a missing column, unknown kind or capability, duplicate id or missing study path."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "manifest not found")
    try:
        with open(p, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(p, f"cannot be read as a CSV manifest ({exc})") from None
    if not rows or "path" not in rows[0]:
        raise InputError(p, "manifest needs a header row with at least a 'path' column (study,path,kind,capabilities)")
    studies, seen = [], set()
    for n, row in enumerate(rows, start=2):
        where = f"{p} line {n}"
        rel = (row.get("path") or "").strip()
        if not rel:
            raise InputError(where, "empty path")
        sp = (p.parent / rel) if not Path(rel).is_absolute() else Path(rel)
        sid = (row.get("study") or "").strip() or _stem(sp.name)
        if not _ID_RE.match(sid):
            raise InputError(where, f"study id {sid!r} must be letters, digits, '.', '_' or '-' (it names a folder)")
        if sid in seen:
            raise InputError(where, f"study id {sid!r} appears twice")
        seen.add(sid)
        kind = (row.get("kind") or "").strip().lower()
        if kind and kind not in KINDS:
            raise InputError(where, f"unknown kind {kind!r}; use {' or '.join(KINDS)}")
        problem = None
        if not sp.exists():
            kind, problem = kind or "unknown", "study not found"
        elif not kind:
            kind, problem = classify(sp)
        caps = tuple(c for c in re.split(r"[;\s]+", (row.get("capabilities") or "").strip().lower()) if c) or None
        if caps and kind in CAPABILITIES:
            bad = [c for c in caps if c not in CAPABILITIES[kind]]
            if bad:
                raise InputError(where, f"capabilities {', '.join(bad)} do not apply to a {kind} study "
                                 f"(choose from {', '.join(CAPABILITIES[kind])})")
        studies.append(Study(sid, kind, sp, caps, problem))
    return studies

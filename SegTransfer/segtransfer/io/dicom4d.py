"""Multi-phase cardiac CT from one DICOM folder: one 3D image per phase, as a :class:`Series4D`.

Scanners store a retrospectively gated study as one folder of single-frame slices, several phases
at each table position.  The phase of a slice is read from the first of these tags that is present
in every slice and takes more than one value (or from the tag named by ``phase_tag``):

* ``temporal``: TemporalPositionIdentifier (0020,0100);
* ``percent``: NominalPercentageOfCardiacPhase (0018,9241);
* ``trigger``: TriggerTime (0018,1060), ms after the R wave.

When no tag separates the phases but the folder holds several series, each series is one phase,
ordered by SeriesNumber (0020,0011).  Phases are ordered by the tag's value.  The R-R position of
each phase comes from NominalPercentageOfCardiacPhase, or from TriggerTime divided by
NominalInterval (0018,1062, the R-R interval in ms) or by 60000 / HeartRate (0018,1088); otherwise
it stays unknown.

Tags are read per file with ``SimpleITK.ImageFileReader`` (header only); each phase's slices are
read with ``SimpleITK.ImageSeriesReader`` (GDCM), which gives the LPS geometry.  Every phase must
have the same number of slices at uniform spacing and lie on one grid; otherwise an ``InputError``
names the phase.  Multi-frame (enhanced) DICOM is not handled here.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from .series4d import Series4D

#: Phase tags, in the order ``phase_tag="auto"`` tries them: name -> (tag, DICOM keyword).
PHASE_TAGS = {
    "temporal": ("0020|0100", "TemporalPositionIdentifier"),
    "percent": ("0018|9241", "NominalPercentageOfCardiacPhase"),
    "trigger": ("0018|1060", "TriggerTime"),
}
_SERIES_UID, _SERIES_NUMBER = "0020|000e", "0020|0011"
_POSITION, _ORIENTATION = "0020|0032", "0020|0037"
_NOMINAL_INTERVAL, _HEART_RATE = "0018|1062", "0018|1088"
#: Relative tolerance on slice spacing within one phase before it counts as missing slices.
SLICE_GAP_TOLERANCE = 0.05


def _numbers(text: str) -> list[float]:
    return [float(v) for v in text.replace("\\", " ").split()]


def _read_headers(files: list[str], folder: Path) -> list[dict]:
    """Tag values (stripped strings) of every file, header only."""
    wanted = [t for t, _ in PHASE_TAGS.values()] + [_SERIES_UID, _SERIES_NUMBER, _POSITION, _ORIENTATION, _NOMINAL_INTERVAL, _HEART_RATE]
    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    out = []
    for f in files:
        reader.SetFileName(f)
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            raise InputError(f, "cannot be read as DICOM (corrupt file?)") from None
        tags = {t: reader.GetMetaData(t).strip() for t in wanted if reader.HasMetaDataKey(t)}
        tags["file"] = f
        out.append(tags)
    for tags in out:
        for t, name in ((_POSITION, "ImagePositionPatient"), (_ORIENTATION, "ImageOrientationPatient")):
            if not tags.get(t):
                raise InputError(tags["file"], f"DICOM slice has no {name} ({t.replace('|', ',')}); cannot place it in a 3D phase")
    return out


def _tag_value(tags: dict, tag: str) -> float | None:
    try:
        return float(tags[tag]) if tags.get(tag) else None
    except ValueError:
        return None


def _choose_phase_key(headers: list[dict], phase_tag: str, folder: Path) -> str:
    """The tag (or ``"series"``) that separates phases."""
    if phase_tag != "auto":
        if phase_tag == "series":
            return "series"
        if phase_tag not in PHASE_TAGS:
            raise InputError(folder, f"unknown phase tag {phase_tag!r}; use auto, series or one of {', '.join(PHASE_TAGS)}")
        tag, name = PHASE_TAGS[phase_tag]
        missing = [h["file"] for h in headers if _tag_value(h, tag) is None]
        if missing:
            raise InputError(missing[0], f"DICOM slice has no numeric {name} ({tag.replace('|', ',')}) to tell its phase")
        return tag
    for tag, _ in PHASE_TAGS.values():
        values = [_tag_value(h, tag) for h in headers]
        if all(v is not None for v in values) and len(set(values)) > 1:
            return tag
    if len({h.get(_SERIES_UID) for h in headers}) > 1:
        return "series"
    names = ", ".join(f"{n} ({t.replace('|', ',')})" for t, n in PHASE_TAGS.values())
    raise InputError(folder, f"one phase only: no tag tells phases apart (looked for {names}) and the folder holds one series")


def _slice_positions(group: list[dict], where: str) -> tuple[list[dict], np.ndarray]:
    """Slices of one phase sorted along the slice normal, and their positions along it (mm)."""
    orient = _numbers(group[0][_ORIENTATION])
    if len(orient) != 6:
        raise InputError(group[0]["file"], f"ImageOrientationPatient needs 6 values, got {group[0][_ORIENTATION]!r}")
    # The order of slices along the normal is the definition of a 3D volume; GDCM's sorter works per
    # series, not per phase, so sorting within a phase is done here.
    normal = np.cross(orient[:3], orient[3:])
    for h in group:
        if np.max(np.abs(np.asarray(_numbers(h[_ORIENTATION])) - orient)) > 1e-4:
            raise InputError(h["file"], f"{where}: slice orientation differs from the other slices of this phase")
    pos = np.array([float(np.dot(_numbers(h[_POSITION])[:3], normal)) for h in group])
    order = np.argsort(pos, kind="stable")
    return [group[i] for i in order], pos[order]


def _percent_rr(group: list[dict]) -> float | None:
    """R-R position (%) of a phase from its first slice, or ``None`` when the tags do not give it."""
    h = group[0]
    pct = _tag_value(h, PHASE_TAGS["percent"][0])
    if pct is not None:
        return pct
    trigger = _tag_value(h, PHASE_TAGS["trigger"][0])
    if trigger is None:
        return None
    rr_ms = _tag_value(h, _NOMINAL_INTERVAL)
    if not rr_ms:
        hr = _tag_value(h, _HEART_RATE)
        rr_ms = 60000.0 / hr if hr else None
    return 100.0 * trigger / rr_ms if rr_ms else None


def read_dicom4d(folder: str | os.PathLike, series_uid: str | None = None, phase_tag: str = "auto") -> Series4D:
    """Read a multi-phase DICOM folder into a :class:`Series4D` (phases in tag order, LPS geometry).

    ``series_uid``: read only this series (default: every series in the folder).  ``phase_tag``:
    ``auto`` (default), ``temporal``, ``percent``, ``trigger`` or ``series`` (see the module docstring).
    Raises ``InputError`` for a folder without DICOM, a single phase, a phase with missing or
    duplicate slices, or phases on different grids.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a folder (a multi-phase DICOM study is a folder of slices)")
    series_reader = sitk.ImageSeriesReader()
    uids = list(series_reader.GetGDCMSeriesIDs(str(folder)))
    if not uids:
        raise InputError(folder, "no DICOM series found in this folder")
    if series_uid is not None:
        if series_uid not in uids:
            raise InputError(folder, f"DICOM series {series_uid} not found; present: {', '.join(uids)}")
        uids = [series_uid]
    files = [f for uid in uids for f in series_reader.GetGDCMSeriesFileNames(str(folder), uid)]
    headers = _read_headers(files, folder)
    key = _choose_phase_key(headers, phase_tag, folder)

    groups: dict = defaultdict(list)
    for h in headers:
        groups[h.get(_SERIES_UID) if key == "series" else _tag_value(h, key)].append(h)
    if len(groups) < 2:
        raise InputError(folder, "one phase only: every slice has the same phase tag value")
    if key == "series":
        ordered = sorted(groups.items(), key=lambda kv: (_tag_value(kv[1][0], _SERIES_NUMBER) or 0.0, kv[0]))
        label = "series"
    else:
        ordered = sorted(groups.items(), key=lambda kv: kv[0])
        label = next(n for t, n in PHASE_TAGS.values() if t == key)

    sorted_groups, counts = [], []
    for i, (value, group) in enumerate(ordered):
        where = f"phase {i} ({label} {value})"
        slices, pos = _slice_positions(group, where)
        gaps = np.diff(pos)
        if gaps.size and np.min(np.abs(gaps)) < 1e-3:
            dup = slices[int(np.argmin(np.abs(gaps))) + 1]["file"]
            raise InputError(folder, f"{where} has two slices at the same position ({Path(dup).name}); mixed-up phases?")
        if gaps.size > 1 and (gaps.max() - gaps.min()) > SLICE_GAP_TOLERANCE * np.median(gaps):
            raise InputError(folder, f"{where} is incomplete: slice spacing varies from {gaps.min():.3g} to {gaps.max():.3g} mm (missing slices?)")
        sorted_groups.append((where, slices))
        counts.append(len(slices))
    expected = int(np.median(counts))
    for (where, slices), n in zip(sorted_groups, counts):
        if n != expected:
            raise InputError(folder, f"incomplete series: {where} has {n} slices, the other phases {expected}")

    phases, percents = [], []
    for where, slices in sorted_groups:
        series_reader.SetFileNames([h["file"] for h in slices])
        try:
            phases.append(series_reader.Execute())
        except RuntimeError as exc:
            raise InputError(folder, f"{where} cannot be read ({str(exc).strip().splitlines()[-1]})") from None
        percents.append(_percent_rr(slices))
    series = Series4D(phases, percents if all(p is not None for p in percents) else None)
    series.validate(folder)
    return series

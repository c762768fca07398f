"""Building, writing and reading a sparse 4D training pair.

A pair is a folder with

* ``image4d.nii.gz``: every phase resampled to the common grid (float32 HU, or int16 HU), phases on
  the 4th axis in R-R order;
* ``labels4d.nii.gz``: uint8 labels (0 background, 1 LV blood pool, 2 LV myocardium) on the same
  grid; **all zeros on unlabelled phases**, which are *not* background;
* ``sparse4d.json``: the record (format :data:`FORMAT`): which phases are labelled, ED/ES and how they
  were found, the LV volume curve and ejection fraction, the grid, interpolators, cleanup, sources.

Which phases are labelled is also written into both NIfTI headers (the 80-character ``descrip``
field, e.g. ``segtransfer sparse4d n=20 labelled=0,8``; the ``aux_file`` field names the sidecar).
:func:`read_sparse4d` refuses a pair whose sidecar and headers disagree, or whose unlabelled phases
hold labels, so training and evaluation can never take an unlabelled phase as background.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from .. import __version__
from ..errors import InputError
from ..io import Series4D, atomic_dir, check_finite, check_same_grid, read_image, write_image
from ..io.series4d import join_4d, split_4d
from ..labels import CARDIAC_SEGMENTS
from ..progress import ProgressCallback, Steps
from .phases import CARDIAC_VALUES, DEFAULT_ES_PERCENT, check_cardiac_labels, summarise_phases
from .resample import Grid, crop_grid, output_grid, resample_image, resample_labels

FORMAT = "segtransfer.sparse4d"
VERSION = 1
IMAGE_FILE = "image4d.nii.gz"
LABELS_FILE = "labels4d.nii.gz"
SIDECAR = "sparse4d.json"
#: NIfTI ``descrip`` holds at most 79 characters; ``aux_file`` at most 23.
_DESCRIP_MAX = 79
_NOTE_RE = re.compile(r"^segtransfer sparse4d n=(\d+) (labelled|mask)=([0-9a-f,\-]*)$")
KEEP_LABELS = ("all", "ed-es")


@dataclass
class Sparse4DPair:
    """A sparse 4D training pair.

    ``image``: 4D (x, y, z, t) intensity image (HU).  ``labels``: 4D uint8 label map on the same grid,
    all zeros on unlabelled phases.  ``labelled``: per phase, True when the phase is labelled.
    ``record``: the sidecar contents (see :mod:`segtransfer.sparse4d.export`).
    """

    image: sitk.Image
    labels: sitk.Image
    labelled: list[bool]
    record: dict = field(default_factory=dict)

    @property
    def n_phases(self) -> int:
        """Number of phases (time points)."""
        return len(self.labelled)

    def labelled_phases(self) -> list[int]:
        """Indices of the labelled phases."""
        return [i for i, f in enumerate(self.labelled) if f]

    def labelled_mask(self) -> np.ndarray:
        """Boolean array (n_phases,): True on labelled phases; use it to mask a loss or a metric."""
        return np.asarray(self.labelled, dtype=bool)

    def phase_image(self, i: int) -> sitk.Image:
        """3D image of phase ``i``."""
        size = list(self.image.GetSize())
        return sitk.Extract(self.image, size[:3] + [0], [0, 0, 0, i])

    def phase_labels(self, i: int) -> sitk.Image | None:
        """3D label map of phase ``i``, or ``None`` when the phase is unlabelled (never "all background")."""
        if not self.labelled[i]:
            return None
        size = list(self.labels.GetSize())
        return sitk.Extract(self.labels, size[:3] + [0], [0, 0, 0, i])

    def to_series(self) -> Series4D:
        """The pair as a :class:`Series4D` (labels only for the labelled phases)."""
        phases = split_4d(self.image)
        labels = {i: self.phase_labels(i) for i in self.labelled_phases()}
        return Series4D(phases, self.record.get("percent_rr"), labels)


# ----------------------------------------------------------------------------------------------
# Header note


def _ranges(indices: Sequence[int]) -> str:
    """``[0, 1, 2, 5, 8, 9]`` -> ``"0-2,5,8-9"``."""
    parts, idx = [], list(indices)
    k = 0
    while k < len(idx):
        j = k
        while j + 1 < len(idx) and idx[j + 1] == idx[j] + 1:
            j += 1
        parts.append(str(idx[k]) if j == k else f"{idx[k]}-{idx[j]}")
        k = j + 1
    return ",".join(parts)


def header_note(labelled: Sequence[bool]) -> str:
    """The NIfTI ``descrip`` text recording the labelled phases: ``segtransfer sparse4d n=N labelled=RANGES``
    (e.g. ``labelled=0,8``); when that exceeds 79 characters, ``mask=HEX`` (bit i = phase i)."""
    n = len(labelled)
    text = f"segtransfer sparse4d n={n} labelled={_ranges([i for i, f in enumerate(labelled) if f])}"
    if len(text) > _DESCRIP_MAX:
        bits = sum(1 << i for i, f in enumerate(labelled) if f)
        text = f"segtransfer sparse4d n={n} mask={bits:x}"
        if len(text) > _DESCRIP_MAX:
            raise InputError("sparse4d header", f"{n} phases are too many to record in a NIfTI header")
    return text


def parse_header_note(text: str) -> list[bool] | None:
    """Labelled flags from a :func:`header_note` text; ``None`` when ``text`` is not such a note."""
    m = _NOTE_RE.match((text or "").strip())
    if not m:
        return None
    n, kind, body = int(m.group(1)), m.group(2), m.group(3)
    flags = [False] * n
    if kind == "mask":
        bits = int(body or "0", 16)
        for i in range(n):
            flags[i] = bool(bits >> i & 1)
        return flags
    for part in filter(None, body.split(",")):
        a, _, b = part.partition("-")
        for i in range(int(a), int(b or a) + 1):
            if 0 <= i < n:
                flags[i] = True
            else:
                return None
    return flags


# ----------------------------------------------------------------------------------------------
# Building


def _zeros_like_grid(grid: Grid) -> sitk.Image:
    image = sitk.Image(list(grid.size), sitk.sitkUInt8)
    image.SetSpacing(grid.spacing)
    image.SetOrigin(grid.origin)
    image.SetDirection(grid.direction)
    return image


def _cleanup(labels: dict[int, sitk.Image], radius: float, where: str | os.PathLike) -> tuple[dict[int, sitk.Image], dict]:
    """Close holes and pool/wall gaps in each labelled phase (multi-label closing, ``radius`` in voxels,
    :func:`segtransfer.cleanup.close_labels`); returns the cleaned label maps and a record of what changed."""
    from ..cleanup import close_labels

    out, changed = {}, {}
    for i, lab in sorted(labels.items()):
        result = close_labels(lab, radius=radius, unit="voxel", where=f"{where} labels of phase {i}")
        out[i] = sitk.Cast(result.labels.image, sitk.sitkUInt8)
        kinds: dict[str, int] = {}
        for region in result.report.regions:
            kinds[region.kind] = kinds.get(region.kind, 0) + 1
        changed[str(i)] = {"voxels_changed": int(result.report.voxels_changed), "regions": kinds}
    return out, {"applied": True, "radius_voxels": float(radius), "operation": "segtransfer.cleanup.close_labels "
                 "(multi-label closing: holes and pool/wall gaps filled, outer boundary kept)", "phases": changed}


def _none_or_round(values: Sequence[float | None], digits: int = 6) -> list[float | None]:
    return [None if v is None else round(float(v), digits) for v in values]


def build_sparse4d(
    series: Series4D,
    *,
    spacing_mm: float | Sequence[float] = 1.0,
    interpolator: str = "bspline",
    image_type: str = "float32",
    crop_margin_mm: float | None = None,
    cleanup_radius: float | None = None,
    predicted_volumes: Sequence[float] | None = None,
    method: str = "auto",
    es_percent: float = DEFAULT_ES_PERCENT,
    ed_index: int | None = None,
    es_index: int | None = None,
    keep_labels: str = "all",
    study_id: str | None = None,
    sources: dict | None = None,
    where: str | os.PathLike = "series",
    progress: ProgressCallback | None = None,
) -> Sparse4DPair:
    """Turn a study into a sparse 4D training pair (in memory; write it with :func:`write_sparse4d`).

    ``series``: phases on one grid, labels for some phases (0/1/2), optional R-R percentages.
    ``spacing_mm``: output spacing, one value (isotropic) or x y z; grid rule in
    :mod:`segtransfer.sparse4d.resample`.  ``interpolator``: ``bspline`` or ``linear`` for images
    (labels always nearest).  ``image_type``: ``float32`` or ``int16``.  ``crop_margin_mm``: crop to the
    labelled LV's bounding box plus this margin (``None``: no crop).  ``cleanup_radius``: apply the
    annotation cleanup (radius in voxels) to the labelled phases first, on their own grid.
    ``predicted_volumes``: a model's cavity volume (mL) per phase.  ``method``, ``es_percent``,
    ``ed_index``, ``es_index``: ED/ES choice, see :func:`~segtransfer.sparse4d.phases.identify_ed_es`.
    ``keep_labels``: ``all`` keeps every labelled phase, ``ed-es`` only ED and ES (both must be labelled).
    Volumes in the record are measured on the labelled phases' own grid (after cleanup, if any).
    """
    series.validate(where)
    n = len(series)
    if keep_labels not in KEEP_LABELS:
        raise InputError("keep labels", f"unknown choice {keep_labels!r}; use {' or '.join(KEEP_LABELS)}")
    for i, phase in enumerate(series.phases):
        check_finite(phase, f"{where} phase {i}")
    labels = dict(sorted(series.labels.items()))
    for i, lab in labels.items():
        check_cardiac_labels(lab, f"{where} labels of phase {i}")
    cleanup_record: dict = {"applied": False, "radius_voxels": None}
    if cleanup_radius is not None:
        if not float(cleanup_radius) >= 1.0:
            raise InputError("cleanup radius", f"must be at least 1 voxel, got {cleanup_radius}")
        if not labels:
            raise InputError(where, "cleanup asked for, but no phase is labelled")
        labels, cleanup_record = _cleanup(labels, float(cleanup_radius), where)

    summary = summarise_phases(labels, n, percent_rr=series.percent_rr, predicted_volumes=predicted_volumes, method=method,
                               es_percent=es_percent, ed_index=ed_index, es_index=es_index, where=where)
    ed, es = summary.choice.ed_index, summary.choice.es_index
    pool_ml, myo_ml = list(summary.pool_ml), list(summary.myocardium_ml)
    if keep_labels == "ed-es":
        missing = [(name, i) for name, i in (("ED", ed), ("ES", es)) if i not in labels]
        if missing:
            raise InputError(where, "keeping only ED/ES labels, but " + " and ".join(f"{name} (phase {i})" for name, i in missing)
                             + " is not labelled")
        labels = {i: labels[i] for i in sorted({ed, es})}
        pool_ml = [v if i in labels else None for i, v in enumerate(pool_ml)]
        myo_ml = [v if i in labels else None for i, v in enumerate(myo_ml)]
    labelled = [i in labels for i in range(n)]

    source_grid = Grid.of(series.phases[0])
    grid = output_grid(source_grid, spacing_mm)
    crop_record = None
    if crop_margin_mm is not None:
        if not labels:
            raise InputError(where, "cannot crop around the heart: no phase is labelled")
        grid, crop_record = crop_grid(grid, source_grid, labels.values(), float(crop_margin_mm))

    steps = Steps(n, "resampling phase", progress) if progress is not None else None
    images, label_images = [], []
    for i, phase in enumerate(series.phases):
        images.append(resample_image(phase, grid, interpolator, image_type))
        label_images.append(resample_labels(labels[i], grid) if i in labels else _zeros_like_grid(grid))
        if steps:
            steps.step()
    image4d, labels4d = join_4d(images), join_4d(label_images)

    rr = series.percent_rr
    record = {
        "format": FORMAT,
        "version": VERSION,
        "software": f"segtransfer {__version__}",
        "study_id": study_id,
        "n_phases": n,
        "percent_rr": [float(p) for p in rr] if rr is not None else None,
        "labelled": labelled,
        "labelled_phases": [i for i in range(n) if labelled[i]],
        "unlabelled_phases_are": "all zeros in labels4d; unknown, not background: exclude them from losses and metrics",
        "ed_index": ed,
        "es_index": es,
        "ed_percent_rr": float(rr[ed]) if rr is not None else None,
        "es_percent_rr": float(rr[es]) if rr is not None else None,
        "ed_es_method": summary.choice.method,
        "ed_es_reason": summary.choice.reason,
        "es_percent_rule": float(es_percent),
        "volumes_ml": {
            "blood_pool_labels": _none_or_round(pool_ml),
            "myocardium_labels": _none_or_round(myo_ml),
            "blood_pool_predicted": _none_or_round(summary.predicted_ml) if summary.predicted_ml is not None else None,
            "measured_on": "labelled phases on their source grid" + (" after cleanup" if cleanup_record["applied"] else ""),
        },
        "edv_ml": _none_or_round([summary.edv_ml])[0],
        "esv_ml": _none_or_round([summary.esv_ml])[0],
        "ejection_fraction": _none_or_round([summary.ejection_fraction], 6)[0],
        "ejection_fraction_source": summary.ef_source,
        "grid": {
            **grid.to_dict(),
            "source": source_grid.to_dict(),
            "rule": "source direction and outer corner kept; size round(extent / spacing) per axis",
            "crop": crop_record,
        },
        "image": {"file": IMAGE_FILE, "dtype": image_type, "interpolator": interpolator, "units": "HU",
                  "clamped_to_source_range": True},
        "labels": {"file": LABELS_FILE, "dtype": "uint8", "interpolator": "nearest",
                   "values": {"0": "background", **{str(s.value): s.name for s in CARDIAC_SEGMENTS}}},
        "cleanup": cleanup_record,
        "keep_labels": keep_labels,
        "sources": sources or {},
    }
    return Sparse4DPair(image4d, labels4d, labelled, record)


# ----------------------------------------------------------------------------------------------
# Writing and reading


def write_sparse4d(pair: Sparse4DPair, folder: str | os.PathLike) -> Path:
    """Write the pair atomically into ``folder`` (replaced whole): image, labels, sidecar.

    The labelled phases are recorded in the sidecar and in both NIfTI headers (set as metadata on
    ``pair.image`` and ``pair.labels``); ``pair.record`` is updated with ``study_id`` (default: the
    folder name) and ``header_note``.
    """
    out = Path(folder)
    note = header_note(pair.labelled)
    record = dict(pair.record)
    record["study_id"] = record.get("study_id") or out.name
    record["header_note"] = note
    for img in (pair.image, pair.labels):  # NIfTI descrip and aux_file
        img.SetMetaData("ITK_FileNotes", note)
        img.SetMetaData("aux_file", SIDECAR)
    with atomic_dir(out) as tmp:
        write_image(pair.image, tmp / IMAGE_FILE)
        write_image(pair.labels, tmp / LABELS_FILE)
        (tmp / SIDECAR).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    pair.record = record
    return out


def _read_sidecar(folder: Path) -> dict:
    path = folder / SIDECAR
    if not path.is_file():
        raise InputError(folder, f"no {SIDECAR} sidecar: not a sparse 4D pair folder")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not valid JSON ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise InputError(path, f"not a {FORMAT} sidecar (missing or wrong 'format')")
    labelled = record.get("labelled")
    n = record.get("n_phases")
    if not isinstance(labelled, list) or not all(isinstance(f, bool) for f in labelled) or n != len(labelled):
        raise InputError(path, "'labelled' must be a list of true/false, one per phase ('n_phases')")
    if record.get("labelled_phases") != [i for i, f in enumerate(labelled) if f]:
        raise InputError(path, "'labelled_phases' and 'labelled' disagree")
    return record


def _check_note(text: str, labelled: list[bool], path: Path) -> None:
    flags = parse_header_note(text)
    if flags is None:
        raise InputError(path, f"NIfTI header does not record the labelled phases (descrip is {text!r})")
    if flags != labelled:
        said = [i for i, f in enumerate(flags) if f]
        raise InputError(path, f"header says labelled phases {said} of {len(flags)}, the sidecar {SIDECAR} says "
                         f"{[i for i, f in enumerate(labelled) if f]} of {len(labelled)}")


def inspect_sparse4d(folder: str | os.PathLike) -> dict:
    """Check a pair folder without reading voxels: sidecar valid, both files present, 4D, same size as
    the sidecar says, headers agree with the sidecar.  Returns the sidecar record."""
    folder = Path(folder)
    record = _read_sidecar(folder)
    n = record["n_phases"]
    reader = sitk.ImageFileReader()
    for name in (IMAGE_FILE, LABELS_FILE):
        path = folder / name
        if not path.is_file():
            raise InputError(folder, f"{name} is missing")
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            raise InputError(path, "cannot be read as an image (corrupt?)") from None
        if reader.GetDimension() != 4 or reader.GetSize()[3] != n:
            raise InputError(path, f"expected a 4D image with {n} phases, got size {list(reader.GetSize())}")
        _check_note(reader.GetMetaData("descrip") if reader.HasMetaDataKey("descrip") else "", record["labelled"], path)
    return record


def read_sparse4d(folder: str | os.PathLike) -> Sparse4DPair:
    """Read and verify a pair written by :func:`write_sparse4d`.

    Refuses (``InputError``) a pair whose sidecar and NIfTI headers disagree on the labelled phases,
    whose image and labels are not on one grid, whose unlabelled phases hold any label, or whose
    labelled phases are empty or hold values other than 0/1/2.
    """
    folder = Path(folder)
    record = inspect_sparse4d(folder)
    labelled = record["labelled"]
    image = read_image(folder / IMAGE_FILE, dimension=4)
    labels = read_image(folder / LABELS_FILE, dimension=4)
    check_same_grid(image, labels, folder / IMAGE_FILE, folder / LABELS_FILE)
    arr = sitk.GetArrayViewFromImage(labels)  # [t, z, y, x]
    for i, flag in enumerate(labelled):
        present = np.unique(arr[i])
        if not flag and present.size and present.max() != 0:
            raise InputError(folder / LABELS_FILE, f"phase {i} is marked unlabelled but holds labels {[int(v) for v in present if v]}")
        if flag:
            bad = [int(v) for v in present if int(v) not in CARDIAC_VALUES]
            if bad:
                raise InputError(folder / LABELS_FILE, f"phase {i} holds unexpected label values {bad}")
            if present.max() == 0:
                raise InputError(folder / LABELS_FILE, f"phase {i} is marked labelled but holds no labels")
    if labels.GetPixelID() != sitk.sitkUInt8:
        labels = sitk.Cast(labels, sitk.sitkUInt8)
    return Sparse4DPair(image, labels, list(labelled), record)

"""Loading one cardiac study for sparse-4D export from any supported 4D form.

* a series folder with ``series.json`` (labels listed per phase in the manifest);
* a 4D NIfTI/NRRD file (phases on the 4th axis), with an optional 4D label file whose all-zero
  phases count as unlabelled;
* a folder of multi-phase DICOM (see :mod:`segtransfer.io.dicom4d`);
* an earlier sparse-4D pair folder (``sparse4d.json``), e.g. to export it again at another spacing.

Label maps for single phases (``{phase: file}``, any label format including ``.seg.nrrd``) and R-R
percentages can be added to or override what the series holds.  Every label map must lie on the
grid of the phases (never resampled silently).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping, Sequence

import SimpleITK as sitk

from ..errors import InputError
from ..io import Series4D, read_image, read_labels, read_series4d
from ..io.dicom4d import read_dicom4d
from ..io import as_label_pixels
from ..io.series4d import MANIFEST, split_4d
from .phases import check_percent_rr, read_volume_curve, volume_curve_from_label4d


def read_labels4d(path: str | os.PathLike, n_phases: int) -> dict[int, sitk.Image]:
    """Phase index -> 3D label map from a 4D label file; all-zero phases are left out (unlabelled)."""
    lab4 = read_image(path, dimension=None)
    if lab4.GetDimension() != 4 or lab4.GetSize()[3] != n_phases:
        raise InputError(path, f"expected a 4D label image with {n_phases} phases, got size {list(lab4.GetSize())}")
    return {i: as_label_pixels(lab, path) for i, lab in enumerate(split_4d(lab4)) if sitk.GetArrayViewFromImage(lab).any()}


def load_study(
    path: str | os.PathLike,
    *,
    labels4d: str | os.PathLike | None = None,
    phase_labels: Mapping[int, str | os.PathLike] | None = None,
    percent_rr: Sequence[float] | None = None,
    phase_tag: str = "auto",
) -> tuple[Series4D, dict]:
    """Read a study and its labels as a validated :class:`~segtransfer.io.Series4D`.

    ``labels4d``: a 4D label file (all-zero phases = unlabelled).  ``phase_labels``: phase index ->
    label file; these replace any labels the series already has for that phase.  ``percent_rr``:
    R-R position (%) per phase, replacing the series' own.  ``phase_tag``: for a DICOM folder, which
    tag separates the phases (see :func:`~segtransfer.io.dicom4d.read_dicom4d`).
    Returns the series and a record of the source files (paths as given).
    """
    from .export import SIDECAR, read_sparse4d

    p = Path(path)
    if not p.exists():
        raise InputError(p, "file or folder not found")
    sources: dict = {"series": str(p)}
    if p.is_dir() and (p / SIDECAR).exists():
        pair = read_sparse4d(p)
        series = pair.to_series()
        sources["form"] = "sparse4d pair"
    elif p.is_dir() and (p / MANIFEST).exists():
        series = read_series4d(p)
        sources["form"] = "series folder"
    elif p.is_dir():
        series = read_dicom4d(p, phase_tag=phase_tag)
        sources["form"] = "multi-phase DICOM"
    else:
        series = read_series4d(p)
        sources["form"] = "4D image file"
    n = len(series)
    if labels4d is not None:
        series.labels.update(read_labels4d(labels4d, n))
        sources["labels4d"] = str(labels4d)
    if phase_labels:
        for i, f in sorted(phase_labels.items()):
            if not 0 <= int(i) < n:
                raise InputError(f, f"labels given for phase {i}, but the series has {n} phases (0..{n - 1})")
            series.labels[int(i)] = read_labels(f).image
        sources["phase_labels"] = {str(i): str(f) for i, f in sorted(phase_labels.items())}
    if percent_rr is not None:
        series.percent_rr = check_percent_rr(percent_rr, n, "--percent-rr")
    elif series.percent_rr is not None:
        series.percent_rr = check_percent_rr(series.percent_rr, n, p)
    series.validate(p)
    return series, sources


def load_predicted_volumes(n_phases: int, volumes_file: str | os.PathLike | None = None,
                           labels4d_file: str | os.PathLike | None = None) -> tuple[list[float] | None, str | None]:
    """A model's predicted cavity-volume curve (mL per phase) from a JSON/CSV file
    (:func:`~segtransfer.sparse4d.phases.read_volume_curve`) or measured on a 4D predicted label map
    (value 1 = blood pool; its grid need not match the series).  Returns ``(volumes, source)``, or
    ``(None, None)`` when neither is given; giving both is an error."""
    if volumes_file is not None and labels4d_file is not None:
        raise InputError(labels4d_file, "give a predicted volume curve or a predicted 4D label map, not both")
    if volumes_file is not None:
        return read_volume_curve(volumes_file, n_phases), str(volumes_file)
    if labels4d_file is not None:
        return volume_curve_from_label4d(read_image(labels4d_file, dimension=4), labels4d_file, n_phases), str(labels4d_file)
    return None, None


#: File names :func:`study_inputs` recognises inside a study folder.
IMAGE4D_NAMES = ("image4d.nii.gz", "image4d.nii", "image4d.nrrd", "image4d.mha")
LABELS4D_NAMES = ("labels4d.nii.gz", "labels4d.nii", "labels4d.nrrd", "labels4d.mha")
PREDICTED_VOLUME_NAMES = ("predicted_volumes.json", "predicted_volumes.csv")
PREDICTED_LABELS_NAMES = ("predicted_labels4d.nii.gz", "predicted_labels4d.nrrd")
_PHASE_LABEL_RE = re.compile(r"^(?:labels|phase)_(\d+)\.(?:nii\.gz|nii|nrrd|seg\.nrrd|mha)$")


def _first(folder: Path, names: Sequence[str]) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)


def study_inputs(path: str | os.PathLike) -> dict:
    """Inputs of one study laid out by the batch convention, as keyword arguments of :func:`load_study`
    plus ``predicted_volumes_file`` / ``predicted_labels_file`` (``None`` when absent).

    ``path`` is a 4D image file, or a folder holding one of: ``series.json`` (series folder),
    ``sparse4d.json`` (earlier pair), ``image4d.*`` (4D file, with ``labels4d.*`` if present), or
    DICOM slices (directly or in a ``dicom/`` subfolder).  In a folder, ``labels4d.*`` is the 4D label
    file, ``labels/labels_NN.*`` or ``labels/phase_NN.*`` (NN = 0-based phase index, any label format)
    are single-phase labels, ``predicted_volumes.json|csv`` or ``predicted_labels4d.*`` a model's
    prediction.  The study id is the folder name (or the file name without extension).
    """
    p = Path(path)
    if not p.exists():
        raise InputError(p, "study not found")
    out: dict = {"study_id": p.name, "series": p, "labels4d": None, "phase_labels": None,
                 "predicted_volumes_file": None, "predicted_labels_file": None}
    if p.is_file():
        out["study_id"] = p.name.split(".")[0]
        return out
    if (p / MANIFEST).is_file() or (p / "sparse4d.json").is_file():
        series = p
    else:
        series = _first(p, IMAGE4D_NAMES) or (p / "dicom" if (p / "dicom").is_dir() else p)
    out["series"] = series
    out["labels4d"] = _first(p, LABELS4D_NAMES)
    if (p / "labels").is_dir():
        phase_labels = {}
        for f in sorted((p / "labels").iterdir()):
            m = _PHASE_LABEL_RE.match(f.name)
            if m:
                if int(m.group(1)) in phase_labels:
                    raise InputError(f, f"a second label file for phase {int(m.group(1))}")
                phase_labels[int(m.group(1))] = f
        out["phase_labels"] = phase_labels or None
    out["predicted_volumes_file"] = _first(p, PREDICTED_VOLUME_NAMES)
    out["predicted_labels_file"] = _first(p, PREDICTED_LABELS_NAMES)
    return out

"""End-diastole / end-systole identification, LV volume curve and ejection fraction.

Three sources, in the order ``method="auto"`` uses them:

1. a model's predicted cavity-volume curve, when one is given (per-phase volumes in mL from a
   JSON/CSV file, or measured on a 4D predicted label map): ED = largest, ES = smallest volume;
2. the labels, when two or more phases are labelled: ED = labelled phase with the largest LV blood
   pool, ES = labelled phase with the smallest;
3. the phase metadata (percent of the R-R interval): ED = phase closest to 0 % / 100 % (circular
   distance), ES = phase closest to ``es_percent`` (default 40 %), chosen among the labelled
   phases when two or more are labelled, otherwise among all phases.

The user may also name ED and ES explicitly (``method="manual"``).  Volumes are in mL; the blood
pool is label value 1 (papillary muscles included, by the consensus rule).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..labels import BLOOD_POOL, MYOCARDIUM

#: Default position of end-systole for the phase-metadata rule, % of the R-R interval.
DEFAULT_ES_PERCENT = 40.0
METHODS = ("auto", "labels", "percent", "prediction", "manual")
#: Label values a cardiac label map may hold.
CARDIAC_VALUES = (0, BLOOD_POOL, MYOCARDIUM)


@dataclass(frozen=True)
class PhaseChoice:
    """Chosen ED and ES phase indices (0-based, R-R order), how they were found (``method``: one of
    ``labels``, ``percent``, ``prediction``, ``manual``) and a one-line ``reason``."""

    ed_index: int
    es_index: int
    method: str
    reason: str


def voxel_volume_ml(image: sitk.Image) -> float:
    """Volume of one voxel of a 3D ``image`` in mL (spacing product in mm^3 / 1000)."""
    return float(np.prod(image.GetSpacing()[:3])) / 1000.0


def label_volume_ml(labels: sitk.Image, value: int = BLOOD_POOL) -> float:
    """Volume (mL) of the voxels of a 3D label map equal to ``value`` (count x voxel volume)."""
    count = int(np.count_nonzero(sitk.GetArrayViewFromImage(labels) == value))
    return count * voxel_volume_ml(labels)


def check_cardiac_labels(labels: sitk.Image, where: str | os.PathLike) -> None:
    """Raise ``InputError`` unless a 3D label map holds only 0/1/2 and a non-empty blood pool (1)."""
    values = np.unique(sitk.GetArrayViewFromImage(labels))
    unexpected = [int(v) for v in values if int(v) not in CARDIAC_VALUES]
    if unexpected:
        raise InputError(where, f"unexpected label values {unexpected} (cardiac labels are 0 background, 1 LV blood pool, 2 LV myocardium)")
    if BLOOD_POOL not in values:
        raise InputError(where, "no LV blood pool (label 1) in this labelled phase")


def volume_curve_from_labels(labels: Mapping[int, sitk.Image], n_phases: int, value: int = BLOOD_POOL) -> list[float | None]:
    """Per-phase volume (mL) of label ``value`` for the labelled phases; ``None`` for unlabelled ones.

    ``labels``: phase index -> 3D label map.  Returns a list of length ``n_phases``.
    """
    return [label_volume_ml(labels[i], value) if i in labels else None for i in range(n_phases)]


def volume_curve_from_label4d(image4d: sitk.Image, where: str | os.PathLike, n_phases: int | None = None) -> list[float]:
    """Blood-pool volume (mL) per phase of a 4D predicted label map (x, y, z, t; value 1 = pool).

    The spatial grid need not match the series: volumes are physical.  ``n_phases``, when given, must
    equal the number of time points.
    """
    if image4d.GetDimension() != 4:
        raise InputError(where, f"expected a 4D label map (phases on the 4th axis), got {image4d.GetDimension()}D")
    n = image4d.GetSize()[3]
    if n_phases is not None and n != n_phases:
        raise InputError(where, f"predicted labels have {n} phases, the series has {n_phases}")
    arr = sitk.GetArrayViewFromImage(image4d)  # [t, z, y, x]
    if np.issubdtype(arr.dtype, np.floating) and not np.all(arr == np.round(arr)):
        raise InputError(where, "predicted label map holds non-integer values (expected 0/1/2 labels)")
    voxel_ml = float(np.prod(image4d.GetSpacing()[:3])) / 1000.0
    return [int(np.count_nonzero(arr[t] == BLOOD_POOL)) * voxel_ml for t in range(n)]


def _check_curve(values: Sequence, where: str | os.PathLike, n_phases: int | None) -> list[float]:
    out = []
    for i, v in enumerate(values):
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise InputError(where, f"volume of phase {i} is not a number: {v!r}") from None
        if not math.isfinite(x) or x < 0:
            raise InputError(where, f"volume of phase {i} must be a finite, non-negative number of mL, got {v!r}")
        out.append(x)
    if not out:
        raise InputError(where, "volume curve is empty")
    if n_phases is not None and len(out) != n_phases:
        raise InputError(where, f"volume curve has {len(out)} phases, the series has {n_phases}")
    return out


def read_volume_curve(path: str | os.PathLike, n_phases: int | None = None) -> list[float]:
    """Read a predicted cavity-volume curve (mL per phase, R-R order).

    JSON: a list of numbers, or an object with a ``volumes_ml`` list.  CSV: a header with a
    ``volume_ml`` column (and optionally ``phase``, which then orders the rows and must cover
    0..n-1 once each), or one number per line without header.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "volume curve file not found")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(p, f"cannot be read as text ({exc})") from None
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(p, f"not valid JSON ({exc})") from None
        if isinstance(data, dict):
            data = data.get("volumes_ml")
        if not isinstance(data, list):
            raise InputError(p, "expected a list of volumes (mL) or an object with a 'volumes_ml' list")
        return _check_curve(data, p, n_phases)
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    if not rows:
        raise InputError(p, "volume curve file is empty")
    header = [c.strip().lower() for c in rows[0]]
    if "volume_ml" in header:
        col = header.index("volume_ml")
        body = rows[1:]
        values = [r[col] if col < len(r) else "" for r in body]
        if "phase" in header:
            pcol = header.index("phase")
            try:
                order = [int(r[pcol]) for r in body]
            except (ValueError, IndexError):
                raise InputError(p, "the 'phase' column must hold integer phase indices") from None
            if sorted(order) != list(range(len(order))):
                raise InputError(p, f"the 'phase' column must list phases 0..{len(order) - 1} once each")
            values = [v for _, v in sorted(zip(order, values))]
        return _check_curve(values, p, n_phases)
    if any(len(r) != 1 for r in rows):
        raise InputError(p, "CSV needs a 'volume_ml' column header, or exactly one number per line")
    return _check_curve([r[0] for r in rows], p, n_phases)


def ejection_fraction(edv_ml: float, esv_ml: float) -> float:
    """Ejection fraction ``(EDV - ESV) / EDV`` (0..1) from end-diastolic and end-systolic volumes in mL."""
    if not edv_ml > 0:
        raise InputError("ejection fraction", f"end-diastolic volume must be positive, got {edv_ml} mL")
    return (float(edv_ml) - float(esv_ml)) / float(edv_ml)


def ed_es_from_volumes(volumes: Sequence[float | None], where: str | os.PathLike = "volume curve") -> tuple[int, int]:
    """ED = phase with the largest volume, ES = the smallest, over phases with a volume (not ``None``).

    Ties go to the lowest phase index.  Needs two measured phases with different volumes.
    """
    measured = [(i, float(v)) for i, v in enumerate(volumes) if v is not None]
    if len(measured) < 2:
        raise InputError(where, f"need volumes for at least 2 phases to find ED and ES, got {len(measured)}")
    ed = max(measured, key=lambda iv: (iv[1], -iv[0]))[0]
    es = min(measured, key=lambda iv: (iv[1], iv[0]))[0]
    if volumes[ed] == volumes[es]:
        raise InputError(where, "all measured phases have the same volume; ED and ES cannot be told apart")
    return ed, es


def _circular_distance(a: float, b: float) -> float:
    """Distance between two positions on the R-R cycle, in % (0 % and 100 % are the same point)."""
    d = abs(a - b) % 100.0
    return min(d, 100.0 - d)


def check_percent_rr(percent_rr: Sequence[float], n_phases: int, where: str | os.PathLike = "percent_rr") -> list[float]:
    """Validate R-R positions: ``n_phases`` finite values in 0..100 %, returned as floats."""
    values = [float(p) for p in percent_rr]
    if len(values) != n_phases:
        raise InputError(where, f"{len(values)} R-R percentages for {n_phases} phases")
    bad = [p for p in values if not (math.isfinite(p) and 0.0 <= p <= 100.0)]
    if bad:
        raise InputError(where, f"R-R percentages must lie in 0..100 %, got {bad[0]}")
    return values


def ed_es_from_percent_rr(percent_rr: Sequence[float], es_percent: float = DEFAULT_ES_PERCENT,
                          candidates: Sequence[int] | None = None) -> tuple[int, int]:
    """ED and ES from R-R positions (%).

    ED = candidate phase closest to 0 % / 100 % (circular distance); ES = another candidate phase
    closest to ``es_percent``.  ``candidates``: phase indices to choose from (default all).  Ties go
    to the lowest index.
    """
    pool = sorted(set(range(len(percent_rr)) if candidates is None else (int(c) for c in candidates)))
    if len(pool) < 2:
        raise InputError("percent_rr", f"need at least 2 candidate phases to choose ED and ES, got {len(pool)}")
    ed = min(pool, key=lambda i: (_circular_distance(percent_rr[i], 0.0), i))
    es = min((i for i in pool if i != ed), key=lambda i: (_circular_distance(percent_rr[i], es_percent), i))
    return ed, es


def identify_ed_es(
    n_phases: int,
    *,
    label_volumes: Sequence[float | None] | None = None,
    percent_rr: Sequence[float] | None = None,
    predicted_volumes: Sequence[float] | None = None,
    method: str = "auto",
    es_percent: float = DEFAULT_ES_PERCENT,
    ed_index: int | None = None,
    es_index: int | None = None,
    where: str | os.PathLike = "series",
) -> PhaseChoice:
    """Choose ED and ES phases of an ``n_phases`` series (see the module docstring for the rules).

    ``label_volumes``: blood-pool volume (mL) per phase, ``None`` on unlabelled phases.
    ``percent_rr``: R-R position (%) per phase.  ``predicted_volumes``: a model's cavity volume (mL)
    per phase.  ``method``: ``auto`` (prediction, then labels, then percent), or one source by name,
    or ``manual`` with ``ed_index`` and ``es_index``.  Giving ``ed_index``/``es_index`` implies
    ``manual``.  Raises ``InputError`` when the chosen source cannot decide.
    """
    if method not in METHODS:
        raise InputError("method", f"unknown ED/ES method {method!r}; use one of {', '.join(METHODS)}")
    if ed_index is not None or es_index is not None or method == "manual":
        if ed_index is None or es_index is None:
            raise InputError(where, "manual ED/ES needs both the ED and the ES phase index")
        for name, idx in (("ED", ed_index), ("ES", es_index)):
            if not 0 <= int(idx) < n_phases:
                raise InputError(where, f"{name} phase {idx} is outside the series (phases 0..{n_phases - 1})")
        if int(ed_index) == int(es_index):
            raise InputError(where, f"ED and ES are the same phase ({ed_index})")
        return PhaseChoice(int(ed_index), int(es_index), "manual", "chosen by the user")

    labelled = [i for i, v in enumerate(label_volumes or []) if v is not None]
    if method == "auto":
        if predicted_volumes is not None:
            method = "prediction"
        elif len(labelled) >= 2:
            method = "labels"
        elif percent_rr is not None:
            method = "percent"
        else:
            raise InputError(where, f"cannot identify ED/ES: {len(labelled)} labelled phase(s), no R-R percentages and no predicted "
                             "volume curve (label ED and ES, give --percent-rr, a predicted curve, or --ed/--es)")

    if method == "prediction":
        if predicted_volumes is None:
            raise InputError(where, "ED/ES from a prediction needs a predicted volume curve")
        if len(predicted_volumes) != n_phases:
            raise InputError(where, f"predicted volume curve has {len(predicted_volumes)} phases, the series has {n_phases}")
        ed, es = ed_es_from_volumes(predicted_volumes, "predicted volume curve")
        return PhaseChoice(ed, es, "prediction", f"predicted cavity volume largest at phase {ed} ({predicted_volumes[ed]:.1f} mL), "
                           f"smallest at phase {es} ({predicted_volumes[es]:.1f} mL)")
    if method == "labels":
        if len(labelled) < 2:
            raise InputError(where, f"ED/ES from labels needs at least 2 labelled phases, got {len(labelled)}")
        ed, es = ed_es_from_volumes(label_volumes, f"{where} labels")
        return PhaseChoice(ed, es, "labels", f"labelled blood pool largest at phase {ed} ({label_volumes[ed]:.1f} mL), "
                           f"smallest at phase {es} ({label_volumes[es]:.1f} mL)")
    # method == "percent"
    if percent_rr is None:
        raise InputError(where, "ED/ES from phase metadata needs R-R percentages for every phase")
    rr = check_percent_rr(percent_rr, n_phases, where)
    candidates = labelled if len(labelled) >= 2 else None
    ed, es = ed_es_from_percent_rr(rr, es_percent, candidates)
    among = "labelled phases" if candidates else "all phases"
    return PhaseChoice(ed, es, "percent", f"among {among}: ED closest to 0/100 % R-R (phase {ed} at {rr[ed]:g} %), "
                       f"ES closest to {es_percent:g} % (phase {es} at {rr[es]:g} %)")


@dataclass(frozen=True)
class PhaseSummary:
    """ED/ES choice with the LV volume curve and ejection fraction of one study.

    ``pool_ml`` / ``myocardium_ml``: per phase, volume (mL) of the labelled blood pool / myocardium,
    ``None`` on unlabelled phases.  ``predicted_ml``: the predicted cavity volume per phase, if given.
    ``edv_ml``, ``esv_ml``, ``ejection_fraction`` (0..1): from the labels when ED and ES are both
    labelled, otherwise from the prediction, otherwise ``None``; ``ef_source`` says which.
    """

    choice: PhaseChoice
    pool_ml: list[float | None]
    myocardium_ml: list[float | None]
    predicted_ml: list[float] | None
    edv_ml: float | None
    esv_ml: float | None
    ejection_fraction: float | None
    ef_source: str | None


def summarise_phases(
    labels: Mapping[int, sitk.Image],
    n_phases: int,
    *,
    percent_rr: Sequence[float] | None = None,
    predicted_volumes: Sequence[float] | None = None,
    method: str = "auto",
    es_percent: float = DEFAULT_ES_PERCENT,
    ed_index: int | None = None,
    es_index: int | None = None,
    where: str | os.PathLike = "series",
) -> PhaseSummary:
    """Check the labelled phases (0/1/2, non-empty pool), measure their volumes, choose ED/ES
    (:func:`identify_ed_es`) and compute the ejection fraction.  ``labels``: phase index -> 3D label map."""
    for i, lab in labels.items():
        check_cardiac_labels(lab, f"{where} labels of phase {i}")
    pool = volume_curve_from_labels(labels, n_phases, BLOOD_POOL)
    myo = volume_curve_from_labels(labels, n_phases, MYOCARDIUM)
    predicted = _check_curve(predicted_volumes, "predicted volume curve", n_phases) if predicted_volumes is not None else None
    choice = identify_ed_es(n_phases, label_volumes=pool, percent_rr=percent_rr, predicted_volumes=predicted, method=method,
                            es_percent=es_percent, ed_index=ed_index, es_index=es_index, where=where)
    ed, es = choice.ed_index, choice.es_index
    if pool[ed] is not None and pool[es] is not None:
        edv, esv, source = pool[ed], pool[es], "labels"
    elif predicted is not None:
        edv, esv, source = predicted[ed], predicted[es], "prediction"
    else:
        edv = esv = source = None
    ef = ejection_fraction(edv, esv) if edv is not None else None
    return PhaseSummary(choice, pool, myo, predicted, edv, esv, ef, source)

"""Inter-rater agreement between two label maps of the same case, and over a set of cases.

Per label value: Dice, symmetric 95th-percentile Hausdorff distance (HD95, mm), symmetric mean
surface distance (MSD, mm) and the volume difference.  The metrics are MONAI's (``DiceMetric``,
``HausdorffDistanceMetric(percentile=95)``, ``SurfaceDistanceMetric(symmetric=True)``) with the voxel
spacing: surfaces are the voxels of a mask with a face neighbour outside it (beyond the image counts
as outside); HD95 is the larger of the two directed 95th percentiles; MSD is the mean over the
distances from both surfaces.  Volumes in mL; ``volume_diff_ml`` is B - A and
``volume_diff_percent`` is B - A relative to the mean of the two volumes (symmetric in A and B).

A label absent from both raters is not reported; absent from one rater it is reported with Dice 0,
no distances (NaN) and ``status`` saying which rater lacks it.
"""

from __future__ import annotations

import csv
import io
import math
import os
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..io import LabelImage, check_same_grid, read_labels, write_text
from ..labels import default_segments
from ..progress import ProgressCallback, Steps
from .arrays import PaddedBox, as_label_image, bounding_box, spacing_zyx
from .report import voxel_volume_ml

STATUS_OK = "ok"
#: File name endings recognised as label maps when pairing the cases of two folders.
LABEL_SUFFIXES = (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")


@dataclass
class LabelAgreement:
    """Agreement of two raters on one label of one case.  Distances in mm, volumes in mL; NaN where
    a metric is undefined (the label missing from one rater)."""

    case: str
    label: int
    name: str
    dice: float
    hd95_mm: float
    msd_mm: float
    volume_a_ml: float
    volume_b_ml: float
    volume_diff_ml: float
    volume_diff_percent: float
    status: str


def _monai_metrics(a: np.ndarray, b: np.ndarray, spacing) -> tuple[float, float, float]:
    """Dice, HD95 (mm) and MSD (mm) of two non-empty boolean masks ``[z, y, x]`` by MONAI."""
    import torch
    from monai.metrics import DiceMetric, HausdorffDistanceMetric, SurfaceDistanceMetric

    ta = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]
    tb = torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32))[None, None]
    spacing = [float(s) for s in spacing]
    with warnings.catch_warnings():  # MONAI warns about its own internal use of a deprecated argument
        warnings.simplefilter("ignore", FutureWarning)
        return _monai_call(ta, tb, spacing, DiceMetric, HausdorffDistanceMetric, SurfaceDistanceMetric)


def _monai_call(ta, tb, spacing, DiceMetric, HausdorffDistanceMetric, SurfaceDistanceMetric) -> tuple[float, float, float]:
    dice = DiceMetric(include_background=True, reduction="none")(ta, tb)
    hd95 = HausdorffDistanceMetric(include_background=True, percentile=95, reduction="none")(ta, tb, spacing=spacing)
    msd = SurfaceDistanceMetric(include_background=True, symmetric=True, reduction="none")(ta, tb, spacing=spacing)
    return float(dice.item()), float(hd95.item()), float(msd.item())


def compare_labels(a: LabelImage | sitk.Image, b: LabelImage | sitk.Image, case: str = "", labels: list[int] | None = None,
                   where_a: str = "rater A", where_b: str = "rater B") -> list[LabelAgreement]:
    """Agreement of two label maps of one case, one :class:`LabelAgreement` per label value.

    ``labels``: values to compare (default: every non-zero value present in either map).  The maps
    must share their grid (``GeometryError`` naming both otherwise; never resampled).  Names come from
    the segments of ``a`` (then ``b``, then defaults).
    """
    la, lb = as_label_image(a, where_a), as_label_image(b, where_b)
    check_same_grid(la.image, lb.image, where_a, where_b)
    arr_a, arr_b = sitk.GetArrayFromImage(la.image), sitk.GetArrayFromImage(lb.image)
    present = sorted(({int(v) for v in np.unique(arr_a)} | {int(v) for v in np.unique(arr_b)}) - {0})
    values = present if labels is None else [int(v) for v in labels]
    names = {s.value: s.name for s in default_segments(values)}
    names.update({s.value: s.name for s in lb.segments})
    names.update({s.value: s.name for s in la.segments})
    vml = voxel_volume_ml(la.image)
    spacing = spacing_zyx(la.image)
    rows = []
    for value in values:
        ma, mb = arr_a == value, arr_b == value
        na, nb = int(ma.sum()), int(mb.sum())
        va, vb = na * vml, nb * vml
        diff = vb - va
        pct = 100.0 * diff / (0.5 * (va + vb)) if va + vb > 0 else math.nan
        if na == 0 and nb == 0:
            if labels is not None:
                rows.append(LabelAgreement(case, value, names[value], math.nan, math.nan, math.nan, 0.0, 0.0, 0.0, math.nan,
                                           "absent in both"))
            continue
        if na == 0 or nb == 0:
            status = f"missing in {'A' if na == 0 else 'B'}"
            rows.append(LabelAgreement(case, value, names[value], 0.0, math.nan, math.nan, va, vb, diff, pct, status))
            continue
        box = PaddedBox(ma.shape, bounding_box(ma | mb), (1,) * ma.ndim)  # one voxel of background around both
        dice, hd95, msd = _monai_metrics(box.take(ma), box.take(mb), spacing)
        rows.append(LabelAgreement(case, value, names[value], dice, hd95, msd, va, vb, diff, pct, STATUS_OK))
    return rows


def case_name(path: str | os.PathLike) -> str:
    """Case name of a label file: its name without the label-map extension (``a.seg.nrrd`` -> ``a``)."""
    name = Path(path).name
    for suffix in LABEL_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def label_files(folder: str | os.PathLike) -> dict[str, Path]:
    """Label files in ``folder`` by case name (hidden files skipped).  Raises ``InputError`` for a
    missing folder, a folder without label files, or two files with one case name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "folder not found")
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file() or not p.name.lower().endswith(LABEL_SUFFIXES):
            continue
        name = case_name(p)
        if name in out:
            raise InputError(folder, f"two label files for case '{name}': {out[name].name} and {p.name}")
        out[name] = p
    if not out:
        raise InputError(folder, f"no label files ({', '.join(LABEL_SUFFIXES)}) in this folder")
    return out


def pair_cases(folder_a: str | os.PathLike, folder_b: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """Cases of two raters' folders matched by case name: ``[(case, path_a, path_b), ...]`` sorted by
    case.  Raises ``InputError`` naming the cases found in only one folder."""
    fa, fb = label_files(folder_a), label_files(folder_b)
    only_a, only_b = sorted(set(fa) - set(fb)), sorted(set(fb) - set(fa))
    if only_a or only_b:
        parts = ([f"only in {folder_a}: {', '.join(only_a)}"] if only_a else []) + ([f"only in {folder_b}: {', '.join(only_b)}"] if only_b else [])
        raise InputError(folder_a, "the two raters' folders hold different cases (" + "; ".join(parts) + ")")
    return [(c, fa[c], fb[c]) for c in sorted(fa)]


def agreement_over_cases(pairs: list[tuple[str, str | os.PathLike, str | os.PathLike]], labels: list[int] | None = None,
                         progress: ProgressCallback | None = None) -> list[LabelAgreement]:
    """Agreement rows for every case of ``pairs`` (``(case, path_a, path_b)``), read with
    :func:`segtransfer.io.read_labels`.  Every pair is read and checked before the first one is
    measured, so a bad file or mismatched grid fails fast (``InputError`` naming the file)."""
    loaded = []
    for case, pa, pb in pairs:
        a, b = read_labels(pa), read_labels(pb)
        check_same_grid(a.image, b.image, pa, pb)
        loaded.append((case, a, b, pa, pb))
    steps = Steps(len(loaded), "agreement", progress) if progress else None
    rows: list[LabelAgreement] = []
    for case, a, b, pa, pb in loaded:
        rows += compare_labels(a, b, case, labels, str(pa), str(pb))
        if steps:
            steps.step(case)
    return rows


def _stats(values: list[float]) -> dict:
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=float)
    if v.size == 0:
        return {"n": 0, "mean": None, "std": None, "median": None, "min": None, "max": None}
    return {"n": int(v.size), "mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "median": float(np.median(v)), "min": float(v.min()), "max": float(v.max())}


def summarize(rows: list[LabelAgreement]) -> dict:
    """Summary over cases, per label value: number of cases, cases with the label missing in one rater,
    and mean / std / median / min / max of Dice, HD95, MSD, volume difference (mL, %) and absolute
    volume difference (mL).  NaN values are left out of the statistics."""
    out: dict = {"cases": sorted({r.case for r in rows}), "labels": {}}
    for value in sorted({r.label for r in rows}):
        sel = [r for r in rows if r.label == value]
        out["labels"][str(value)] = {
            "name": sel[0].name,
            "cases": len(sel),
            "cases_not_ok": sorted(f"{r.case}: {r.status}" for r in sel if r.status != STATUS_OK),
            "dice": _stats([r.dice for r in sel]),
            "hd95_mm": _stats([r.hd95_mm for r in sel]),
            "msd_mm": _stats([r.msd_mm for r in sel]),
            "volume_diff_ml": _stats([r.volume_diff_ml for r in sel]),
            "abs_volume_diff_ml": _stats([abs(r.volume_diff_ml) for r in sel]),
            "volume_diff_percent": _stats([r.volume_diff_percent for r in sel]),
        }
    return out


def agreement_csv(rows: list[LabelAgreement]) -> str:
    """The rows as CSV text, one line per case and label, header from :class:`LabelAgreement`'s fields;
    NaN written as an empty cell."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[f.name for f in fields(LabelAgreement)], lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else (f"{v:.6g}" if isinstance(v, float) else v))
                         for k, v in asdict(r).items()})
    return buf.getvalue()


def write_agreement_csv(rows: list[LabelAgreement], path: str | os.PathLike) -> Path:
    """Write :func:`agreement_csv` atomically to ``path``."""
    return write_text(path, agreement_csv(rows))

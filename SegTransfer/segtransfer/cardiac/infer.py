"""Inference of the cardiac model on a 4D series: labels for every phase, LV volume curve, ED/ES, EF.

Each phase is resampled onto the model grid (:func:`~segtransfer.cardiac.data.model_grid`: the
package's orientation and spacing), normalised as the package says, segmented with MONAI
``sliding_window_inference`` (the package's patch size, Gaussian blending, so a large field of view
never has to fit in memory at once), and the arg-max labels are mapped back onto the input phase's
own grid with nearest-neighbour resampling (origin, spacing and direction of the input kept).
The LV blood-pool volume of every phase gives the volume curve; ED is its largest and ES its
smallest phase, and the ejection fraction follows (:mod:`segtransfer.sparse4d.phases`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from ..errors import InputError
from ..io import LabelImage, Series4D, atomic_dir, join_4d, write_image, write_labels
from ..labels import BLOOD_POOL, MYOCARDIUM
from ..models import segments
from ..progress import ProgressCallback, Steps
from ..sparse4d import Grid, ed_es_from_volumes, ejection_fraction, label_volume_ml, resample_labels
from .data import model_grid, normalise, phase_on_grid

SUMMARY = "summary.json"
CURVE = "volume_curve.csv"
LABELS4D = "labels4d.nii.gz"
_OUTPUT_RE = re.compile(r"^(summary\.json|volume_curve\.csv|labels4d\.nii\.gz|phase_\d{2,}\.seg\.nrrd)$")


@dataclass
class CardiacResult:
    """Labels of every phase on the input grid (uint8 0/1/2), and the measurements from them:
    ``pool_ml`` / ``myocardium_ml`` per phase (mL), ``ed_index`` / ``es_index``, ``ejection_fraction`` (0..1)."""

    labels: list[sitk.Image]
    pool_ml: list[float]
    myocardium_ml: list[float]
    ed_index: int
    es_index: int
    ejection_fraction: float

    def summary(self) -> dict:
        """JSON-ready measurements."""
        return {"n_phases": len(self.labels), "ed_index": self.ed_index, "es_index": self.es_index,
                "edv_ml": self.pool_ml[self.ed_index], "esv_ml": self.pool_ml[self.es_index],
                "ejection_fraction": self.ejection_fraction, "blood_pool_ml": self.pool_ml, "myocardium_ml": self.myocardium_ml}


def patch_size_zyx(description: Mapping) -> tuple[int, int, int]:
    """The package's inference patch (``input.patch_size``, x y z voxels) in z, y, x order."""
    patch = description["input"].get("patch_size") or [64, 64, 64]
    return tuple(int(p) for p in reversed(patch))


def predict(network: torch.nn.Module, x: np.ndarray, description: Mapping, device: str | torch.device = "cpu",
            overlap: float = 0.25) -> np.ndarray:
    """Arg-max labels ``[P, z, y, x]`` uint8 of normalised phases ``x`` ``[P, 1, z, y, x]`` on the model
    grid.  A phase that fits in the package's patch goes through the network whole, zero-padded at the
    high end to the network's stride as in training (padding it up to the patch would change what the
    instance normalisation sees); a larger one by MONAI ``sliding_window_inference`` with the patch
    (Gaussian blending), so memory stays bounded."""
    from monai.inferers import sliding_window_inference

    from .data import pad_to, padded_shape, total_stride

    network.eval()
    patch = patch_size_zyx(description)
    out = []
    with torch.inference_mode():
        for k in range(len(x)):
            shape = x.shape[-3:]
            if all(s <= p for s, p in zip(shape, patch)):
                padded = pad_to(x[k:k + 1], padded_shape([shape], total_stride(description)))
                logits = network(torch.from_numpy(np.ascontiguousarray(padded)).to(device))[..., :shape[0], :shape[1], :shape[2]]
            else:
                xb = torch.from_numpy(np.ascontiguousarray(x[k:k + 1])).to(device)
                logits = sliding_window_inference(xb, patch, sw_batch_size=2, predictor=network, overlap=overlap, mode="gaussian")
            out.append(logits.argmax(1)[0].to(torch.uint8).cpu().numpy())
    return np.stack(out)


def segment_phase(image: sitk.Image, network: torch.nn.Module, description: Mapping, device: str | torch.device = "cpu",
                  overlap: float = 0.25) -> sitk.Image:
    """uint8 labels (0/1/2) of one 3D phase (HU), on the phase's own grid."""
    grid = model_grid(image, description)
    x = normalise(phase_on_grid(image, grid), description)[None]
    labels = sitk.GetImageFromArray(predict(network, x, description, device, overlap)[0])
    labels.SetOrigin(grid.origin)
    labels.SetSpacing(grid.spacing)
    labels.SetDirection(grid.direction)
    return resample_labels(labels, Grid.of(image))


def segment_series(series: Series4D, network: torch.nn.Module, description: Mapping, *, device: str | torch.device = "cpu",
                   overlap: float = 0.25, where: str | os.PathLike = "series", progress: ProgressCallback | None = None) -> CardiacResult:
    """Segment every phase of ``series`` and measure the volume curve, ED/ES and ejection fraction."""
    series.validate(where)
    network.eval()
    steps = Steps(len(series), "segmenting phase", progress) if progress is not None else None
    labels = []
    for i, phase in enumerate(series.phases):
        if phase.GetDimension() != 3:
            raise InputError(where, f"phase {i} is not a 3D image")
        labels.append(segment_phase(phase, network, description, device, overlap))
        if steps:
            steps.step()
    pool = [label_volume_ml(lab, BLOOD_POOL) for lab in labels]
    myo = [label_volume_ml(lab, MYOCARDIUM) for lab in labels]
    if max(pool) <= 0:
        raise InputError(where, "the model found no LV blood pool in any phase (is this a contrast-enhanced cardiac CT?)")
    ed, es = ed_es_from_volumes(pool, where)
    return CardiacResult(labels, pool, myo, ed, es, ejection_fraction(pool[ed], pool[es]))


def check_output_folder(folder: str | os.PathLike) -> None:
    """Refuse an output folder that would lose someone's files: it may be absent, empty or an earlier
    ``cardiac segment`` output (replaced whole)."""
    p = Path(folder)
    if p.exists() and not p.is_dir():
        raise InputError(p, "exists and is not a folder")
    if p.is_dir():
        others = sorted(q.name for q in p.iterdir() if not _OUTPUT_RE.match(q.name))
        if others:
            raise InputError(p, f"folder holds files that are not cardiac segmentation outputs ({', '.join(others[:3])}); "
                             "choose a new or empty --out folder")


def write_result(folder: str | os.PathLike, result: CardiacResult, description: Mapping, series: Series4D, model_info: dict,
                 source: str) -> Path:
    """Write ``labels4d.nii.gz`` (4D, the input grid), ``phase_NN.seg.nrrd`` per phase (segment names and
    colours from the package), ``volume_curve.csv`` and ``summary.json`` into ``folder``, atomically."""
    check_output_folder(folder)
    segs = segments(description)
    rr = series.percent_rr
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["phase", "percent_rr", "blood_pool_ml", "myocardium_ml", "role"])
    for i, (v, m) in enumerate(zip(result.pool_ml, result.myocardium_ml)):
        role = "ED" if i == result.ed_index else "ES" if i == result.es_index else ""
        writer.writerow([i, "" if rr is None else f"{rr[i]:g}", f"{v:.3f}", f"{m:.3f}", role])
    summary = {"source": source, **result.summary(), "percent_rr": rr, "model": model_info,
               "grid": "labels are on the input grid (origin, spacing, direction kept)",
               "files": {"labels4d": LABELS4D, "phases": [f"phase_{i:02d}.seg.nrrd" for i in range(len(result.labels))], "curve": CURVE}}
    with atomic_dir(folder) as tmp:
        write_image(join_4d(result.labels), tmp / LABELS4D)
        for i, lab in enumerate(result.labels):
            write_labels(LabelImage(lab, segs), tmp / f"phase_{i:02d}.seg.nrrd")
        (tmp / CURVE).write_text(buf.getvalue(), encoding="utf-8")
        (tmp / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return Path(folder)


def dice_per_label(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Dice of label 1 (pool) and 2 (wall) between two label arrays of one shape, and their mean
    (MONAI ``compute_dice`` on one-hot arrays; an empty label in both counts as 1)."""
    from monai.metrics import compute_dice
    from monai.networks.utils import one_hot

    p = one_hot(torch.from_numpy(np.asarray(pred, dtype=np.int64))[None, None], 3)
    t = one_hot(torch.from_numpy(np.asarray(truth, dtype=np.int64))[None, None], 3)
    d = compute_dice(p, t, include_background=False, ignore_empty=False)[0].numpy()
    return {"blood_pool": float(d[0]), "myocardium": float(d[1]), "mean": float(d.mean())}

"""Hemorrhage outputs: segmentation (.seg.nrrd and NIfTI), overlay montage PNG, JSON and CSV summary."""

from __future__ import annotations

import csv
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..io import LabelImage, atomic_dir, write_labels, write_text
from ..labels import HEMORRHAGE_SEGMENTS

if TYPE_CHECKING:  # only an annotation: checking the output folder must not load torch
    from .infer import HemorrhageResult

MONTAGE_TILES = 12
#: zlib level of the overlay PNG: 1 encodes a 12-tile 512 x 512 montage in half the time of Pillow's default 6,
#: for a file about a fifth larger (about 0.5 MB).
PNG_COMPRESSION = 1
#: Pixels of margin kept around the head in the montage's tiles.
TILE_MARGIN = 8


def overlay_montage(image: sitk.Image, mask: sitk.Image, path: str | os.PathLike, tiles: int = MONTAGE_TILES) -> Path:
    """PNG montage of axial slices (brain window 0..80 HU) with the hemorrhage in red: the slices with
    the most hemorrhage, or evenly spaced slices when there is none.  Uses Pillow."""
    from PIL import Image

    msk = sitk.GetArrayFromImage(sitk.DICOMOrient(mask, "LPS")) > 0
    per_slice = msk.sum(axis=(1, 2))
    if per_slice.any():
        chosen = np.sort(np.argsort(-per_slice)[: min(tiles, int((per_slice > 0).sum()))])
    else:
        chosen = np.linspace(0, msk.shape[0] - 1, min(tiles, msk.shape[0])).round().astype(int)
    oriented = sitk.DICOMOrient(image, "LPS")
    img = sitk.GetArrayViewFromImage(oriented)[chosen]  # the tiles' slices only
    # every tile shows the same box: the head (above -500 HU) and the hemorrhage on the tiles' slices, with a
    # margin; the air around the head is left out (a smaller picture, encoded faster)
    (y0, y1), (x0, x1) = _tile_box((img > -500) | msk[chosen], TILE_MARGIN)
    img, red = img[:, y0:y1, x0:x1].astype(np.float32), msk[chosen, y0:y1, x0:x1]
    gray = (np.clip(img / 80.0, 0, 1) * 255).astype(np.uint8)
    frames = []
    for n in range(len(chosen)):
        rgb = np.stack([gray[n]] * 3, axis=-1)
        rgb[red[n]] = (0.4 * rgb[red[n]] + 0.6 * np.array([230, 30, 30])).astype(np.uint8)
        # Rows of the LPS-oriented array run anterior to posterior and columns from the patient's right
        # to left: drawn as they are, anterior is up and the patient's right on the viewer's left
        # (radiological convention).
        frames.append(rgb)
    cols = min(4, len(frames))
    rows = (len(frames) + cols - 1) // cols
    h, w = frames[0].shape[:2]
    sheet = np.zeros((rows * h, cols * w, 3), np.uint8)
    for n, frame in enumerate(frames):
        r, c = divmod(n, cols)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = frame
    spacing = oriented.GetSpacing()  # along the tiles' columns and rows
    pil = Image.fromarray(sheet)
    if abs(spacing[0] - spacing[1]) > 1e-6:  # square pixels in the picture
        pil = pil.resize((int(pil.width * spacing[0] / spacing[1]), pil.height))
    with open(path, "wb") as f:
        pil.save(f, format="PNG", compress_level=PNG_COMPRESSION)
    return Path(path)


def _tile_box(region: np.ndarray, margin: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Row and column ranges ``((y0, y1), (x0, x1))`` of the box around ``region`` (boolean ``[n, y, x]``)
    in every slice together, widened by ``margin`` pixels within the slice; the whole slice when empty."""
    ranges = []
    for axis in (1, 2):
        hit = np.flatnonzero(region.any(axis=(0, 3 - axis)))
        n = region.shape[axis]
        ranges.append((max(int(hit[0]) - margin, 0), min(int(hit[-1]) + margin + 1, n)) if hit.size else (0, n))
    return ranges[0], ranges[1]


def summary_csv(name: str, summary: dict) -> str:
    """One row per lesion (or one row with no lesion) with the scan's volume and detection."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["scan", "detected", "volume_ml", "lesion", "lesion_volume_ml", "centroid_l_mm", "centroid_p_mm", "centroid_s_mm",
                "first_slice", "last_slice"])
    lesions = summary["lesions"] or [None]
    for n, les in enumerate(lesions, start=1):
        row = [name, summary["detected"], f"{summary['volume_ml']:.3f}"]
        row += [n, f"{les['volume_ml']:.3f}", *(f"{c:.1f}" for c in les["centroid_lps"]), *les["slices"]] if les else [""] * 7
        w.writerow(row)
    return buf.getvalue()


OUTPUT_FILES = ("hemorrhage.seg.nrrd", "hemorrhage.nii.gz", "overlay.png", "summary.json", "summary.csv")


def check_output_folder(folder: str | os.PathLike) -> None:
    """Refuse an output folder that would lose someone's files: ``folder`` may be absent, empty, or an
    earlier hemorrhage output (only the files :func:`write_outputs` writes); it is replaced whole."""
    p = Path(folder)
    if p.exists() and not p.is_dir():
        raise InputError(p, "exists and is not a folder")
    if p.is_dir():
        others = sorted(q.name for q in p.iterdir() if q.name not in OUTPUT_FILES)
        if others:
            raise InputError(p, f"folder holds files that are not hemorrhage outputs ({', '.join(others[:3])}"
                             f"{', ...' if len(others) > 3 else ''}); choose a new or empty --out folder")


def write_outputs(folder: str | os.PathLike, name: str, image: sitk.Image, result: HemorrhageResult, model_info: dict) -> Path:
    """Write every output into ``folder`` atomically (all files or none).  ``folder`` must pass
    :func:`check_output_folder` (absent, empty or an earlier output, which is replaced)."""
    check_output_folder(folder)
    summary = {"scan": name, **result.summary(), "model": model_info}
    with atomic_dir(folder) as tmp, ThreadPoolExecutor(2) as threads:
        labels = LabelImage(result.mask, list(HEMORRHAGE_SEGMENTS))
        # the three image files are written side by side: compression and PNG encoding release the GIL
        jobs = [threads.submit(write_labels, labels, tmp / "hemorrhage.nii.gz"),
                threads.submit(overlay_montage, image, result.mask, tmp / "overlay.png")]
        write_labels(labels, tmp / "hemorrhage.seg.nrrd")
        for job in jobs:
            job.result()  # re-raises a writer's error inside atomic_dir, so nothing is kept
        write_text(tmp / "summary.json", json.dumps(summary, indent=2))
        write_text(tmp / "summary.csv", summary_csv(name, summary))
    return Path(folder)

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
from .preprocess import in_study_orientation, plane_box

if TYPE_CHECKING:  # only an annotation: checking the output folder must not load torch
    from .infer import HemorrhageResult

MONTAGE_TILES = 12
#: zlib level of the overlay PNG: 1 encodes a 12-tile 512 x 512 palette montage in a quarter of the time of Pillow's
#: default 6, for a file about an eighth larger (about 0.6 MB).
PNG_COMPRESSION = 1
#: Pixels of margin kept around the head in the montage's tiles.
TILE_MARGIN = 8
#: Gray levels of the montage's brain window; the hemorrhage is the same gray tinted red (60 % of (230, 30, 30)).
GRAY_LEVELS = 128
_GRAY = np.round(np.arange(GRAY_LEVELS) * 255.0 / (GRAY_LEVELS - 1))[:, None].repeat(3, axis=1)
PALETTE = np.concatenate([_GRAY, 0.4 * _GRAY + 0.6 * np.array([230.0, 30.0, 30.0])]).astype(np.uint8)


def overlay_montage(image: sitk.Image, mask: sitk.Image, path: str | os.PathLike, tiles: int = MONTAGE_TILES) -> Path:
    """PNG montage of axial slices (brain window 0..80 HU) with the hemorrhage in red: the slices with
    the most hemorrhage, or evenly spaced slices when there is none.  Uses Pillow."""
    from PIL import Image

    oriented, oriented_mask = in_study_orientation(image), in_study_orientation(mask)  # LPS: the tiles' axes
    msk = sitk.GetArrayViewFromImage(oriented_mask)
    per_slice = np.count_nonzero(msk, axis=(1, 2))
    if per_slice.any():
        chosen = np.sort(np.argsort(-per_slice)[: min(tiles, int((per_slice > 0).sum()))])
    else:
        chosen = np.linspace(0, msk.shape[0] - 1, min(tiles, msk.shape[0])).round().astype(int)
    img, red = sitk.GetArrayViewFromImage(oriented)[chosen], msk[chosen] > 0  # the tiles' slices only
    # every tile shows the same box: the head (above -500 HU) and the hemorrhage on the tiles' slices, with a
    # margin; the air around the head is left out (a smaller picture, encoded faster)
    box = plane_box(((img > -500) | red).any(axis=0), TILE_MARGIN) or (slice(None), slice(None))
    # one byte per pixel, an index into PALETTE: 7-bit gray (0..80 HU in 128 steps of 0.63 HU) plus 128 for
    # the tinted pixels; a palette PNG encodes in about a quarter of the time of an RGB one
    index = (np.clip(img[:, box[0], box[1]].astype(np.float32) * (GRAY_LEVELS - 1) / 80.0, 0, GRAY_LEVELS - 1) + 0.5).astype(np.uint8)
    index[red[:, box[0], box[1]]] += GRAY_LEVELS
    n, h, w = index.shape
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    # Rows of the LPS-oriented array run anterior to posterior and columns from the patient's right to
    # left: drawn as they are, anterior is up and the patient's right on the viewer's left (radiological
    # convention).  Tile i goes to row i // cols, column i % cols.
    sheet = np.zeros((rows * h, cols * w), np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = index[i]
    pil = Image.frombuffer("P", (sheet.shape[1], sheet.shape[0]), sheet, "raw", "P", 0, 1)
    pil.putpalette(PALETTE.tobytes())
    spacing = oriented.GetSpacing()  # along the tiles' columns and rows
    if abs(spacing[0] - spacing[1]) > 1e-6:  # square pixels in the picture (resampled smoothly, in RGB)
        pil = pil.convert("RGB").resize((int(pil.width * spacing[0] / spacing[1]), pil.height))
    with open(path, "wb") as f:
        pil.save(f, format="PNG", compress_level=PNG_COMPRESSION)
    return Path(path)


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
        # the montage and the NIfTI are written beside the .seg.nrrd, which takes about as long as the two
        # together: compression and PNG encoding release the GIL
        side = [threads.submit(overlay_montage, image, result.mask, tmp / "overlay.png"),
                threads.submit(write_labels, labels, tmp / "hemorrhage.nii.gz")]
        write_labels(labels, tmp / "hemorrhage.seg.nrrd")
        for job in side:
            job.result()  # re-raises an error inside atomic_dir, so nothing is kept
        write_text(tmp / "summary.json", json.dumps(summary, indent=2))
        write_text(tmp / "summary.csv", summary_csv(name, summary))
    return Path(folder)

"""4D cardiac series: a list of 3D phase images over the R-R interval, with label maps for some phases.

Two on-disk forms:

* a folder with ``series.json`` (the manifest) and one 3D file per phase (and per labelled phase);
* a 4D NIfTI/NRRD file (phases along the 4th axis), optionally with a 4D label file beside it.

Manifest (``series.json``)::

    {"format": "segtransfer.series4d", "version": 1,
     "phases": [{"image": "phase_00.nii.gz", "percent_rr": 0.0, "labels": "labels_00.nii.gz"}, ...]}

``percent_rr`` and ``labels`` are optional per phase.  Every phase shares one voxel grid.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import SimpleITK as sitk

from ..errors import InputError
from .atomic import atomic_dir
from .images import as_label_pixels, grid_difference, check_same_grid, read_image, read_labels, write_image, write_labels

MANIFEST = "series.json"
FORMAT = "segtransfer.series4d"


@dataclass
class Series4D:
    """Phases of one cardiac study.

    ``phases``: 3D images on one grid, in R-R order.  ``percent_rr``: each phase's position in % of
    the R-R interval, or ``None`` when unknown.  ``labels``: phase index -> 3D label map for the
    phases that are labelled (the others are unlabelled, not background).
    """

    phases: list[sitk.Image]
    percent_rr: list[float] | None = None
    labels: dict[int, sitk.Image] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.phases)

    def validate(self, where: str | os.PathLike = "series") -> None:
        """Raise ``InputError`` if phases are missing, do not share a grid, or labels do not match."""
        if not self.phases:
            raise InputError(where, "series has no phases")
        ref = self.phases[0]
        for i, ph in enumerate(self.phases[1:], start=1):
            diff = grid_difference(ref, ph)
            if diff is not None:
                raise InputError(where, f"phase {i} is not on the grid of phase 0: {diff}")
        if self.percent_rr is not None and len(self.percent_rr) != len(self.phases):
            raise InputError(where, f"{len(self.percent_rr)} R-R percentages for {len(self.phases)} phases")
        for i, lab in self.labels.items():
            if not 0 <= i < len(self.phases):
                raise InputError(where, f"labels given for phase {i}, but the series has {len(self.phases)} phases")
            check_same_grid(ref, lab, f"{where} phase 0", f"{where} labels of phase {i}")


def split_4d(image4d: sitk.Image) -> list[sitk.Image]:
    """Split a 4D image (x, y, z, t) into t 3D images, keeping the spatial geometry."""
    size = list(image4d.GetSize())
    return [sitk.Extract(image4d, size[:3] + [0], [0, 0, 0, t]) for t in range(size[3])]


def join_4d(phases: list[sitk.Image]) -> sitk.Image:
    """Stack 3D images on one grid into a 4D image (x, y, z, t); time spacing 1."""
    return sitk.JoinSeries(phases)


def read_series4d(path: str | os.PathLike, labels_path: str | os.PathLike | None = None) -> Series4D:
    """Read a 4D series from a manifest folder or a 4D image file.

    For a 4D file, ``labels_path`` may name a 4D label file whose all-zero phases are taken as
    unlabelled (write a manifest to say otherwise explicitly).
    """
    p = Path(path)
    if not p.exists():
        raise InputError(p, "file or folder not found")
    if p.is_dir():
        manifest = p / MANIFEST
        if not manifest.exists():
            raise InputError(p, f"no {MANIFEST} manifest in this folder (a 4D series folder needs one)")
        try:
            meta = json.loads(manifest.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(manifest, f"not valid JSON ({exc})") from None
        if meta.get("format") != FORMAT or not isinstance(meta.get("phases"), list):
            raise InputError(manifest, f"not a {FORMAT} manifest (needs 'format' and a 'phases' list)")
        phases, percents, labels = [], [], {}
        for i, entry in enumerate(meta["phases"]):
            if "image" not in entry:
                raise InputError(manifest, f"phase {i} has no 'image' entry")
            phases.append(read_image(p / entry["image"]))
            percents.append(entry.get("percent_rr"))
            if entry.get("labels"):
                labels[i] = read_labels(p / entry["labels"]).image
        series = Series4D(phases, percents if all(x is not None for x in percents) else None, labels)
    else:
        image = read_image(p, dimension=None)
        if image.GetDimension() != 4:
            raise InputError(p, f"expected a 4D image (phases on the 4th axis), got {image.GetDimension()}D")
        series = Series4D(split_4d(image))
        if labels_path is not None:
            lab4 = read_image(labels_path, dimension=None)
            if lab4.GetDimension() != 4 or lab4.GetSize()[3] != len(series):
                raise InputError(labels_path, f"expected a 4D label image with {len(series)} phases, got size {list(lab4.GetSize())}")
            for i, lab in enumerate(split_4d(lab4)):
                if sitk.GetArrayViewFromImage(lab).any():
                    series.labels[i] = as_label_pixels(lab, labels_path)
    series.validate(p)
    return series


def write_series4d(series: Series4D, path: str | os.PathLike, form: str = "folder") -> Path:
    """Write a series atomically.

    ``form="folder"``: ``path`` becomes a folder with ``series.json``, ``phase_NN.nii.gz`` and
    ``labels_NN.nii.gz`` for labelled phases.  ``form="nifti"``: ``path`` is a 4D NIfTI file of the
    phases (labels are not written; use the sparse-4D export for training pairs).
    """
    series.validate(path)
    p = Path(path)
    if form == "nifti":
        return write_image(join_4d(series.phases), p)
    if form != "folder":
        raise ValueError(f"unknown series form {form!r} (use 'folder' or 'nifti')")
    entries = []
    with atomic_dir(p) as tmp:
        for i, ph in enumerate(series.phases):
            entry: dict = {"image": f"phase_{i:02d}.nii.gz"}
            write_image(ph, tmp / entry["image"])
            if series.percent_rr is not None:
                entry["percent_rr"] = float(series.percent_rr[i])
            if i in series.labels:
                entry["labels"] = f"labels_{i:02d}.nii.gz"
                write_labels(series.labels[i], tmp / entry["labels"])
            entries.append(entry)
        (tmp / MANIFEST).write_text(json.dumps({"format": FORMAT, "version": 1, "phases": entries}, indent=2), encoding="utf-8")
    return p

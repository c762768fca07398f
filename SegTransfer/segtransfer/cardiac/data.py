"""Model-ready arrays for the cardiac model: phases on the model grid, labelled phases of a manifest.

Array conventions: a phase is ``[1, z, y, x]`` float32 (the package's intensity normalisation
applied, channel first, numpy/SimpleITK index order); labels ``[1, z, y, x]`` int64 with 0 background,
1 LV blood pool, 2 LV myocardium.  A batch of phases is ``[N, 1, Z, Y, X]``, zero-padded at the high
end of each axis to a common shape divisible by the network's total stride.

The model grid of an image: the image reoriented to the package's orientation (LPS), spacing
``input.spacing_mm``, same outer corner (:func:`segtransfer.sparse4d.resample.output_grid`).  Only
labelled phases are ever read as targets: unlabelled phases of a sparse pair are all zeros on disk
and are *not* background, so they never enter a loss or a metric.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
import torch

from ..errors import InputError
from ..models import intensity_transform
from ..progress import ProgressCallback
from ..sparse4d import Grid, output_grid, read_manifest, read_sparse4d, resample_image, resample_labels


def model_grid(image: sitk.Image, description: Mapping) -> Grid:
    """The grid the network sees for a 3D ``image``: reoriented to ``input.orientation``, spacing
    ``input.spacing_mm`` (x, y, z mm), the image's outer corner kept."""
    orientation = description["input"].get("orientation")
    # DICOMOrient of an empty uint8 image with the same geometry gives the permuted grid without
    # copying the image's own voxels.
    ref = sitk.Image(list(image.GetSize()), sitk.sitkUInt8)
    ref.CopyInformation(image)
    oriented = sitk.DICOMOrient(ref, orientation) if orientation else ref
    return output_grid(Grid.of(oriented), description["input"]["spacing_mm"])


def _same_grid(image: sitk.Image, grid: Grid) -> bool:
    g = Grid.of(image)
    return (g.size == grid.size and np.allclose(g.spacing, grid.spacing, atol=1e-4) and np.allclose(g.origin, grid.origin, atol=1e-3)
            and np.allclose(g.direction, grid.direction, atol=1e-6))


def phase_on_grid(image: sitk.Image, grid: Grid) -> sitk.Image:
    """A 3D HU image on ``grid`` (linear interpolation; returned unchanged when already on it)."""
    return image if _same_grid(image, grid) else resample_image(image, grid, "linear")


def labels_on_grid(labels: sitk.Image, grid: Grid) -> sitk.Image:
    """A 3D label map on ``grid`` (nearest neighbour; returned unchanged when already on it)."""
    return labels if _same_grid(labels, grid) else resample_labels(labels, grid)


def normalise(image_on_grid: sitk.Image, description: Mapping) -> np.ndarray:
    """``[1, z, y, x]`` float32 network input of a phase already on the model grid."""
    arr = sitk.GetArrayFromImage(image_on_grid).astype(np.float32)[None]
    return np.asarray(intensity_transform(description["input"]["intensity"])(arr), dtype=np.float32)


@dataclass
class CaseArrays:
    """The labelled phases of one study on the model grid: ``x`` ``[P, 1, z, y, x]`` float32,
    ``y`` ``[P, 1, z, y, x]`` int64, ``phases`` their indices in the study, ``study`` its id."""

    study: str
    x: np.ndarray
    y: np.ndarray
    phases: list[int]


def case_arrays(pair_folder: str | os.PathLike, description: Mapping, study: str | None = None) -> CaseArrays:
    """Read a sparse 4D pair (:func:`~segtransfer.sparse4d.read_sparse4d`, which refuses unlabelled
    phases holding labels and labels other than 0/1/2) and return its labelled phases on the model grid."""
    pair = read_sparse4d(pair_folder)
    labelled = pair.labelled_phases()
    if not labelled:
        raise InputError(pair_folder, "no labelled phase to train or evaluate on")
    grid = model_grid(pair.phase_image(labelled[0]), description)
    xs, ys = [], []
    for i in labelled:
        xs.append(normalise(phase_on_grid(pair.phase_image(i), grid), description))
        ys.append(sitk.GetArrayFromImage(labels_on_grid(pair.phase_labels(i), grid)).astype(np.int64)[None])
    return CaseArrays(study or str(pair.record.get("study_id") or pair_folder), np.stack(xs), np.stack(ys), labelled)


def manifest_cases(manifest: str | os.PathLike, split: str, description: Mapping, max_cases: int | None = None,
                   progress: ProgressCallback | None = None) -> list[CaseArrays]:
    """The studies of one split of a dataset manifest, in id order, the first ``max_cases`` only when
    given.  ``InputError`` when the split is empty or has fewer than ``max_cases`` studies."""
    studies = sorted(read_manifest(manifest, split), key=lambda s: s["id"])
    if not studies:
        raise InputError(manifest, f"the manifest has no {split} studies")
    if max_cases is not None:
        if max_cases < 1 or max_cases > len(studies):
            raise InputError(manifest, f"asked for {max_cases} {split} studies, the manifest has {len(studies)}")
        studies = studies[:max_cases]
    out = []
    for k, s in enumerate(studies):
        if progress is not None:
            progress(k / len(studies), f"reading {split} study {s['id']}")
        out.append(case_arrays(s["folder"], description, s["id"]))
    return out


def padded_shape(shapes: Sequence[Sequence[int]], divisor: int) -> tuple[int, ...]:
    """The smallest shape holding every spatial ``shape`` whose sides are multiples of ``divisor``."""
    biggest = np.max(np.asarray(shapes), axis=0)
    return tuple(int(-(-s // divisor) * divisor) for s in biggest)


def pad_to(array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Zero-pad ``[..., z, y, x]`` at the high end of each spatial axis up to ``shape`` (z, y, x)."""
    pads = [(0, 0)] * (array.ndim - 3) + [(0, int(t) - int(s)) for s, t in zip(array.shape[-3:], shape)]
    return np.pad(array, pads)


@dataclass
class PhaseBatch:
    """All labelled phases of a set of cases, padded to one shape: ``x`` ``[N, 1, Z, Y, X]`` float32,
    ``y`` ``[N, 1, Z, Y, X]`` int64, ``shapes`` the unpadded (z, y, x) of each phase (for metrics)."""

    x: torch.Tensor
    y: torch.Tensor
    shapes: list[tuple[int, int, int]]

    def __len__(self) -> int:
        return int(self.x.shape[0])


def stack_cases(cases: Sequence[CaseArrays], divisor: int, shape: Sequence[int] | None = None) -> PhaseBatch:
    """One :class:`PhaseBatch` from cases; ``shape`` (z, y, x) forces the padded shape (else the smallest
    divisible one holding every phase)."""
    shapes = [tuple(int(v) for v in c.x.shape[-3:]) for c in cases for _ in c.phases]
    target = tuple(shape) if shape is not None else padded_shape(shapes, divisor)
    x = np.concatenate([pad_to(c.x, target) for c in cases])
    y = np.concatenate([pad_to(c.y, target) for c in cases])
    return PhaseBatch(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y)), shapes)


def total_stride(description: Mapping) -> int:
    """Product of the network's strides (the padded shape must be divisible by it)."""
    strides = description["architecture"]["arguments"].get("strides", [])
    return int(np.prod([s if isinstance(s, int) else max(s) for s in strides])) if strides else 1

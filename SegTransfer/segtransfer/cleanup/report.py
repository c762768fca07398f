"""What a cleanup step changed: voxels and mL per label, and each connected region of changed voxels.

Conventions: label maps are ``SimpleITK.Image`` objects (LPS geometry); their numpy arrays are indexed
``[z, y, x]``.  Volumes are in millilitres (1 mL = 1000 mm^3), positions in LPS millimetres.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np
import SimpleITK as sitk

from ..io import LabelImage, describe_grid
from ..labels import Segment, default_segments

#: Kinds of connected regions of added voxels (see :func:`segtransfer.cleanup.regions.assign_added`).
KIND_HOLE = "hole"              # enclosed: every face neighbour is labelled, one label around it
KIND_GAP = "gap"                # touches two or more labels (e.g. between blood pool and myocardium)
KIND_CONCAVITY = "concavity"    # one label around it and open to the background (a dent or an open hole)
KIND_SMALL = "small component"  # a labelled component removed by the minimum-size rule


def voxel_volume_ml(image: sitk.Image) -> float:
    """Volume of one voxel of ``image`` in mL (product of the spacing in mm, divided by 1000)."""
    return float(np.prod(image.GetSpacing())) / 1000.0


def label_counts(arr: np.ndarray) -> dict[int, int]:
    """Number of voxels of every non-zero value of a non-negative integer array: ``{value: count}``.

    Counted slab by slab along the first axis, so the memory used stays small for large volumes.
    """
    flat = arr.reshape(arr.shape[0], -1) if arr.ndim > 1 else arr.reshape(1, -1)
    step = max(1, (1 << 22) // max(flat.shape[1], 1))
    counts = np.zeros(1, dtype=np.int64)
    for start in range(0, flat.shape[0], step):
        c = np.bincount(flat[start:start + step].ravel())
        if c.size > counts.size:
            c[: counts.size] += counts
            counts = c
        else:
            counts[: c.size] += c
    return {int(v): int(c) for v, c in enumerate(counts) if v != 0 and c > 0}


@dataclass
class LabelChange:
    """Voxel and volume changes of one label value.  Volumes in mL."""

    value: int
    name: str
    voxels_before: int
    voxels_after: int
    voxels_added: int
    voxels_removed: int
    ml_before: float
    ml_after: float
    ml_added: float
    ml_removed: float


@dataclass
class Region:
    """One connected region of changed voxels.

    ``step``: the operation that changed it (``close``, ``fill-holes``, ``remove-small``);
    ``change``: ``added`` (background became a label) or ``removed`` (a label became background);
    ``kind``: ``hole``, ``gap``, ``concavity`` or ``small component``;
    ``voxels`` / ``ml``: its size; ``centroid_mm``: centre of its voxels (LPS mm, x, y, z);
    ``labels``: for added regions the number of voxels given each label value, for removed regions
    the label value it held; ``bbox_index``: first and last voxel index (i, j, k) of its bounding box.
    """

    step: str
    change: str
    kind: str
    voxels: int
    ml: float
    centroid_mm: tuple[float, float, float]
    labels: dict[int, int]
    bbox_index: tuple[tuple[int, ...], tuple[int, ...]]


@dataclass
class ChangeReport:
    """Everything one cleanup run changed in a label map.

    ``operation``: the step or steps run (``"close"``, ``"fill-holes"``, ``"remove-small+close"``...);
    ``parameters``: their settings; ``grid``: the image grid; ``voxel_ml``: mL per voxel;
    ``voxels_changed``: number of voxels whose value changed;
    ``labels``: one :class:`LabelChange` per label value present before or after;
    ``regions``: every connected region of changed voxels.
    """

    operation: str
    parameters: dict
    grid: str
    voxel_ml: float
    voxels_changed: int
    labels: list[LabelChange]
    regions: list[Region] = field(default_factory=list)

    def label(self, value: int) -> LabelChange:
        """The :class:`LabelChange` of one label value (``KeyError`` if absent)."""
        for c in self.labels:
            if c.value == value:
                return c
        raise KeyError(value)

    def to_dict(self) -> dict:
        """A JSON-ready dict (region label keys become strings)."""
        out = asdict(self)
        for region in out["regions"]:
            region["labels"] = {str(k): v for k, v in region["labels"].items()}
        return out

    def to_json(self) -> str:
        """The report as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2)

    def summary_lines(self) -> list[str]:
        """Human-readable summary: one line per label, then the count of regions by kind."""
        lines = [f"{self.operation}: {self.voxels_changed} voxels changed ({self.grid})"]
        for c in self.labels:
            lines.append(f"  {c.value} {c.name}: {c.voxels_before} -> {c.voxels_after} voxels "
                         f"(+{c.voxels_added} / -{c.voxels_removed}; +{c.ml_added:.3f} / -{c.ml_removed:.3f} mL)")
        kinds: dict[str, int] = {}
        for r in self.regions:
            kinds[r.kind] = kinds.get(r.kind, 0) + 1
        if kinds:
            lines.append("  regions: " + ", ".join(f"{n} {k}{'s' if n != 1 else ''}" for k, n in sorted(kinds.items())))
        return lines


def label_changes(before: np.ndarray, after: np.ndarray, voxel_ml: float, segments: list[Segment],
                  counts_before: dict[int, int] | None = None) -> list[LabelChange]:
    """Per-label voxel and mL changes between two label arrays of the same shape (``[z, y, x]``).

    ``before``/``after`` may be the part of a larger label map that holds every change, with
    ``counts_before`` the voxel counts of the whole map before (:func:`label_counts`).
    """
    counts_before = label_counts(before) if counts_before is None else counts_before
    diff = before != after
    old, new = before[diff], after[diff]
    added, removed = label_counts(new), label_counts(old)
    counts_after = {v: counts_before.get(v, 0) + added.get(v, 0) - removed.get(v, 0) for v in set(counts_before) | set(added)}
    counts_after = {v: n for v, n in counts_after.items() if n > 0}
    values = sorted(set(counts_before) | set(counts_after))
    names = {s.value: s.name for s in segments}
    names.update({s.value: s.name for s in default_segments(values) if s.value not in names})
    out = []
    for v in values:
        nb, na = counts_before.get(v, 0), counts_after.get(v, 0)
        nadd, nrem = added.get(v, 0), removed.get(v, 0)
        out.append(LabelChange(v, names[v], nb, na, nadd, nrem, nb * voxel_ml, na * voxel_ml, nadd * voxel_ml, nrem * voxel_ml))
    return out


def build_report(operation: str, parameters: dict, before: LabelImage, before_arr: np.ndarray, after_arr: np.ndarray,
                 regions: list[Region], counts_before: dict[int, int] | None = None) -> ChangeReport:
    """A :class:`ChangeReport` for the label map ``before`` (its ``[z, y, x]`` array ``before_arr``, or
    the part of it holding every change, with ``counts_before`` the whole map's voxel counts) turned
    into ``after_arr``; segment names come from ``before.segments``."""
    vml = voxel_volume_ml(before.image)
    changed = int(np.count_nonzero(before_arr != after_arr))
    return ChangeReport(operation, parameters, describe_grid(before.image), vml, changed,
                        label_changes(before_arr, after_arr, vml, before.segments, counts_before), regions)


@dataclass
class CleanupResult:
    """Result of a cleanup run: the cleaned label map (same grid and segments as the input), a mask
    of the voxels that changed (``uint8`` image, 1 = changed, same grid) and the report."""

    labels: LabelImage
    changes: sitk.Image
    report: ChangeReport

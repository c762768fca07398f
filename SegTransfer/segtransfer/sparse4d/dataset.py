"""Dataset manifest over many sparse 4D pairs: a train / validation / test split by study.

The split is by study, never by phase, so no study contributes phases to two splits.  It depends only
on the set of study ids and the seed: ids are sorted, permuted with ``numpy.random.default_rng(seed)``,
and cut into consecutive blocks whose sizes follow the fractions (largest-remainder rounding, so the
sizes always add up to the number of studies).  Listing the studies in another order gives the same
split.

Manifest (``dataset.json``)::

    {"format": "segtransfer.sparse4d.dataset", "version": 1, "seed": 0,
     "fractions": {"train": 0.6, "validation": 0.2, "test": 0.2},
     "splits": {"train": ["study_a", ...], "validation": [...], "test": [...]},
     "studies": [{"id": "study_a", "split": "train", "folder": "pairs/study_a",
                  "image": "pairs/study_a/image4d.nii.gz", "labels": "pairs/study_a/labels4d.nii.gz",
                  "sidecar": "pairs/study_a/sparse4d.json", "n_phases": 20, "labelled_phases": [0, 8],
                  "ed_index": 0, "es_index": 8, "spacing_mm": [1, 1, 1], "ejection_fraction": 0.61}, ...]}

Paths are relative to the manifest's folder; :func:`read_manifest` resolves them.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import InputError
from ..io import write_text
from .export import IMAGE_FILE, LABELS_FILE, SIDECAR, inspect_sparse4d

DATASET_FORMAT = "segtransfer.sparse4d.dataset"
SPLITS = ("train", "validation", "test")


def find_pairs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Pair folders from ``paths``: each path is a pair folder (holds ``sparse4d.json``) or a folder whose
    immediate subfolders include pair folders.  Raises ``InputError`` for a path that is neither."""
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.is_dir():
            raise InputError(p, "not a folder")
        if (p / SIDECAR).is_file():
            found.append(p)
            continue
        subs = sorted(q for q in p.iterdir() if q.is_dir() and (q / SIDECAR).is_file())
        if not subs:
            raise InputError(p, f"neither a sparse 4D pair folder nor a folder of them (no {SIDECAR} found)")
        found.extend(subs)
    return found


def split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Number of studies per split: ``n * fraction`` rounded by largest remainder (sums to ``n``)."""
    raw = [n * f for f in fractions]
    counts = [math.floor(r) for r in raw]
    for k in sorted(range(len(raw)), key=lambda k: (-(raw[k] - counts[k]), k))[: n - sum(counts)]:
        counts[k] += 1
    return counts


def check_fractions(fractions: Sequence[float]) -> list[float]:
    """Three non-negative fractions (train, validation, test) that add up to 1."""
    f = [float(x) for x in fractions]
    if len(f) != 3 or any(not math.isfinite(x) or x < 0 for x in f) or abs(sum(f) - 1.0) > 1e-6:
        raise InputError("--split", f"need three non-negative fractions (train validation test) adding up to 1, got {list(fractions)}")
    return f


def split_studies(ids: Sequence[str], fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0) -> dict[str, list[str]]:
    """Assign study ids to ``train``/``validation``/``test``, reproducibly from ``seed`` (see the module docstring)."""
    f = check_fractions(fractions)
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if list(ids).count(i) > 1})
        raise InputError("studies", f"study ids must be unique; repeated: {', '.join(dup)}")
    ordered = sorted(ids)
    perm = np.random.default_rng(int(seed)).permutation(len(ordered))
    shuffled = [ordered[k] for k in perm]
    out, start = {}, 0
    for name, count in zip(SPLITS, split_counts(len(ordered), f)):
        out[name] = sorted(shuffled[start:start + count])
        start += count
    return out


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()


def build_manifest(paths: Iterable[str | os.PathLike], out_path: str | os.PathLike, fractions: Sequence[float] = (0.6, 0.2, 0.2),
                   seed: int = 0) -> dict:
    """Manifest dict for the pairs under ``paths`` (see :func:`find_pairs`), paths relative to ``out_path``'s folder.

    Each pair is checked with :func:`~segtransfer.sparse4d.export.inspect_sparse4d` (sidecar, files,
    headers) without reading voxels.  A study id is the sidecar's ``study_id`` (default: folder name).
    """
    base = Path(out_path).parent
    studies = []
    for folder in find_pairs(paths):
        record = inspect_sparse4d(folder)
        studies.append({
            "id": str(record.get("study_id") or folder.name),
            "folder": _rel(folder, base),
            "image": _rel(folder / IMAGE_FILE, base),
            "labels": _rel(folder / LABELS_FILE, base),
            "sidecar": _rel(folder / SIDECAR, base),
            "n_phases": record["n_phases"],
            "labelled_phases": record["labelled_phases"],
            "ed_index": record.get("ed_index"),
            "es_index": record.get("es_index"),
            "spacing_mm": record.get("grid", {}).get("spacing_mm"),
            "ejection_fraction": record.get("ejection_fraction"),
        })
    if not studies:
        raise InputError("studies", "no sparse 4D pairs found")
    splits = split_studies([s["id"] for s in studies], fractions, seed)
    where = {sid: name for name, ids in splits.items() for sid in ids}
    for s in studies:
        s["split"] = where[s["id"]]
    studies.sort(key=lambda s: s["id"])
    f = check_fractions(fractions)
    return {"format": DATASET_FORMAT, "version": 1, "seed": int(seed), "fractions": dict(zip(SPLITS, f)),
            "splits": splits, "studies": studies}


def write_manifest(manifest: dict, path: str | os.PathLike) -> Path:
    """Write the manifest JSON atomically."""
    return write_text(path, json.dumps(manifest, indent=2) + "\n")


def read_manifest(path: str | os.PathLike, split: str | None = None) -> list[dict]:
    """Studies of a dataset manifest (optionally only one ``split``), with ``folder``, ``image``,
    ``labels`` and ``sidecar`` resolved to absolute paths.  Raises ``InputError`` for a malformed
    manifest or an unknown split name."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "dataset manifest not found")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(p, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != DATASET_FORMAT or not isinstance(data.get("studies"), list):
        raise InputError(p, f"not a {DATASET_FORMAT} manifest")
    if split is not None and split not in SPLITS:
        raise InputError(p, f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    out = []
    for s in data["studies"]:
        if split is not None and s.get("split") != split:
            continue
        entry = dict(s)
        for key in ("folder", "image", "labels", "sidecar"):
            if key not in entry:
                raise InputError(p, f"study {s.get('id')!r} has no {key!r} entry")
            entry[key] = str((p.parent / entry[key]).resolve())
        out.append(entry)
    return out

"""Sparse-4D datasets of beating-LV phantoms for two sites, as in the source study's experiment.

Site 1 (the partner) labels every other phase densely; site 2 labels only ED and ES.  Each study is
a :func:`~segtransfer.phantoms.beating_lv` phantom exported with
:func:`~segtransfer.sparse4d.build_sparse4d` (the same path real studies take), and a dataset
manifest (:mod:`segtransfer.sparse4d.dataset`) lists them with explicitly assigned splits.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..io import Series4D
from ..phantoms import beating_lv
from ..sparse4d import build_sparse4d, write_sparse4d
from ..sparse4d.dataset import SPLITS, build_manifest, write_manifest

LABELLING = ("dense", "ed-es")


def phantom_pair(folder: str | os.PathLike, seed: int, site: str, labelling: str, n_phases: int = 10, spacing_mm: float = 4.0,
                 crop_margin_mm: float | None = None, study_id: str | None = None) -> Path:
    """Write one phantom study as a sparse 4D pair: ``labelling`` ``dense`` keeps the truth labels of
    every other phase (0, 2, 4, ...), ``ed-es`` only those of ED and ES.  Phantom and pair share the
    isotropic ``spacing_mm`` grid, cropped to the labelled LV plus ``crop_margin_mm`` (``None``: the
    whole field of view).  Returns the pair folder."""
    if labelling not in LABELLING:
        raise ValueError(f"labelling must be one of {LABELLING}, got {labelling!r}")
    ph = beating_lv(seed=seed, n_phases=n_phases, spacing=(spacing_mm,) * 3, site=site)
    if labelling == "dense":
        labels = {i: ph.clean_labels[i] for i in range(0, n_phases, 2)}
        keep = "all"
    else:
        labels = dict(ph.clean_labels)
        keep = "ed-es"
    series = Series4D(ph.series.phases, ph.series.percent_rr, labels)
    pair = build_sparse4d(series, spacing_mm=spacing_mm, interpolator="linear", keep_labels=keep, crop_margin_mm=crop_margin_mm, study_id=study_id or Path(folder).name,
                          sources={"phantom": {"seed": seed, "site": site, "n_phases": n_phases}})
    return write_sparse4d(pair, folder)


def split_manifest(splits: Mapping[str, Sequence[str | os.PathLike]], path: str | os.PathLike) -> Path:
    """Write a dataset manifest whose splits are given (split name -> pair folders) rather than drawn."""
    folders = [Path(f) for name in SPLITS for f in splits.get(name, [])]
    manifest = build_manifest(folders, path, (1.0, 0.0, 0.0), seed=0)
    by_folder = {Path(f).resolve(): name for name in SPLITS for f in splits.get(name, [])}
    base = Path(path).parent
    for s in manifest["studies"]:
        s["split"] = by_folder[(base / s["folder"]).resolve()]
    manifest["splits"] = {name: sorted(s["id"] for s in manifest["studies"] if s["split"] == name) for name in SPLITS}
    manifest["fractions"] = {name: len(manifest["splits"][name]) / len(manifest["studies"]) for name in SPLITS}
    write_manifest(manifest, path)
    return Path(path)

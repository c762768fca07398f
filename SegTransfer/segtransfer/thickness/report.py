"""Thickness for a study (one label map or the labelled phases of a 4D series), its output files,
and the comparison of two sets of per-study statistics (the source study's correlation table).

Outputs of :func:`write_study`: ``<phase>_epicardium.vtk`` (surface with ``thickness_mm``),
optional ``<phase>_streamlines.vtk``, ``statistics.csv`` and ``statistics.json`` with one row per
phase: study, phase, role (ED/ES), mean, median, 95th percentile, max (mm), vertices, invalid.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import Series4D, atomic_dir, write_text
from ..labels import BLOOD_POOL, MYOCARDIUM
from ..progress import ProgressCallback
from .compute import ThicknessResult, compute_thickness
from .vtkio import write_polylines, write_surface

STAT_COLUMNS = ["study", "phase", "role", "mean_mm", "median_mm", "p95_mm", "max_mm", "n_vertices", "n_invalid"]
COMPARED = ["median_mm", "p95_mm", "max_mm"]


def phase_roles(series: Series4D, pool: int = BLOOD_POOL) -> dict[int, str]:
    """``{phase: "ED"|"ES"}`` from the labelled phases' blood-pool volumes (largest = ED, smallest = ES),
    empty when fewer than two phases are labelled."""
    from ..sparse4d.phases import ed_es_from_volumes, volume_curve_from_labels

    if len(series.labels) < 2:
        return {}
    ed, es = ed_es_from_volumes(volume_curve_from_labels(series.labels, len(series), pool))
    return {ed: "ED", es: "ES"}


def thickness_for_series(series: Series4D, method: str = "streamline", pool: int = BLOOD_POOL, wall: int = MYOCARDIUM,
                         keep_streamlines: bool = False, where: str = "series",
                         progress: ProgressCallback | None = None) -> list[tuple[int, str, ThicknessResult]]:
    """Thickness of every labelled phase: ``[(phase, role, result)]`` in phase order (role "ED", "ES" or "")."""
    if not series.labels:
        raise InputError(where, "no labelled phase to measure")
    roles = phase_roles(series, pool)
    out = []
    for n, phase in enumerate(sorted(series.labels)):
        if progress:
            progress(n / len(series.labels), f"thickness phase {phase}")
        result = compute_thickness(series.labels[phase], method, pool, wall, keep_streamlines, where=f"{where} phase {phase}")
        out.append((phase, roles.get(phase, ""), result))
    if progress:
        progress(1.0, "thickness done")
    return out


def statistics_rows(study: str, results: list[tuple[int | str, str, ThicknessResult]]) -> list[dict]:
    """One statistics row per phase (columns :data:`STAT_COLUMNS`)."""
    return [{"study": study, "phase": phase, "role": role, **r.statistics()} for phase, role, r in results]


def _csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def write_study(folder: str | os.PathLike, study: str, results: list[tuple[int | str, str, ThicknessResult]]) -> list[dict]:
    """Write surfaces, optional streamlines and statistics for one study into ``folder`` (atomically:
    the folder appears complete or not at all).  Returns the statistics rows."""
    rows = statistics_rows(study, results)
    with atomic_dir(folder) as tmp:
        for phase, role, r in results:
            name = f"phase_{phase:02d}" if isinstance(phase, int) else str(phase)
            if role:
                name += f"_{role}"
            write_surface(tmp / f"{name}_epicardium.vtk", r.points_lps, r.triangles, {"thickness_mm": r.thickness_mm},
                          title=f"SegTransfer epicardial thickness {name}")
            if r.streamlines_lps is not None:
                write_polylines(tmp / f"{name}_streamlines.vtk", r.streamlines_lps)
        write_text(tmp / "statistics.csv", _csv(rows, STAT_COLUMNS))
        write_text(tmp / "statistics.json", json.dumps({"study": study, "method": results[0][2].method if results else None,
                                                         "phases": rows}, indent=2))
    return rows


def read_statistics(path: str | os.PathLike) -> list[dict]:
    """Rows of a statistics CSV (one or many studies), numbers parsed."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, "file not found")
    with open(p, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    missing = [c for c in ("study", "role", *COMPARED) if rows and c not in rows[0]]
    if not rows or missing:
        raise InputError(p, f"not a thickness statistics table (missing columns: {', '.join(missing) or 'all rows'})")
    for r in rows:
        for c in COMPARED:
            r[c] = float(r[c]) if r[c] not in ("", None) else math.nan
    return rows


def compare_statistics(predicted: list[dict], truth: list[dict]) -> list[dict]:
    """Pearson correlation of median, p95 and max between two sets of per-study statistics, at ED and
    at ES (studies matched by name): rows ``{role, metric, n, pearson_r, p_value}``."""
    from scipy.stats import pearsonr

    def by_key(rows):
        return {(r["study"], r["role"]): r for r in rows if r.get("role") in ("ED", "ES")}

    a, b = by_key(predicted), by_key(truth)
    out = []
    for role in ("ED", "ES"):
        keys = sorted(k for k in a if k[1] == role and k in b)
        for metric in COMPARED:
            x = np.array([a[k][metric] for k in keys])
            y = np.array([b[k][metric] for k in keys])
            ok = np.isfinite(x) & np.isfinite(y)
            if ok.sum() >= 3 and np.ptp(x[ok]) > 0 and np.ptp(y[ok]) > 0:
                res = pearsonr(x[ok], y[ok])
                r, p = float(res.statistic), float(res.pvalue)
            else:
                r, p = math.nan, math.nan
            out.append({"role": role, "metric": metric, "n": int(ok.sum()), "pearson_r": r, "p_value": p})
    return out


def comparison_markdown(rows: list[dict]) -> str:
    """The comparison as a Markdown table (rows ED/ES x metric)."""
    lines = ["| phase | metric | n | Pearson r | p |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['role']} | {r['metric']} | {r['n']} | {r['pearson_r']:.3f} | {r['p_value']:.3g} |")
    return "\n".join(lines) + "\n"


"""Figures of the review report, as PNG files (matplotlib with the Agg backend, Pillow; no GUI).

* :func:`overlay_montage`: segmentation over the image, one PNG per plane (axial, coronal);
* :func:`volume_curve_plot`: LV blood-pool volume per phase with ED, ES and the ejection fraction;
* :func:`surface_views`: the epicardial surface coloured by wall thickness, seen from two sides;
* :func:`bullseye_plot`: mean thickness per AHA segment on a polar (bullseye) plot, from
  :func:`aha_segments`.

Images are shown in the radiological convention: the volume is reoriented to LPS (axis permutation
and flips only, no resampling), so axial slices have anterior up and the patient's right on the
viewer's left, coronal slices superior up and the patient's right on the left.  Pixels are made square
from the voxel spacing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from ..io import atomic_path
from ..labels import Segment

PLANES = ("axial", "coronal")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save_png(pil_image, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            pil_image.save(f, format="PNG")
    return Path(path)


def _save_figure(fig, path: str | os.PathLike, dpi: int = 100) -> Path:
    plt = _pyplot()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def _pick(counts: np.ndarray, tiles: int, rule: str = "spread") -> np.ndarray:
    """Slice indices for a montage (in slice order): ``"spread"`` evenly over the slices holding labels,
    ``"most"`` the slices holding the most labelled voxels; the middle 60 % of the volume when none do."""
    idx = np.flatnonzero(counts > 0)
    if rule == "most" and idx.size:
        return np.sort(np.argsort(-counts, kind="stable")[: min(tiles, idx.size)])
    if idx.size == 0:
        idx = np.arange(counts.size)
        lo, hi = int(idx.size * 0.2), max(int(idx.size * 0.8), int(idx.size * 0.2) + 1)
        idx = idx[lo:hi]
    return np.unique(np.linspace(idx[0], idx[-1], min(tiles, idx.size)).round().astype(int))


def overlay_montage(image: sitk.Image, labels: sitk.Image, segments: Sequence[Segment], folder: str | os.PathLike,
                    prefix: str = "overlay", window: tuple[float, float] = (0.0, 80.0), tiles: int = 6,
                    alpha: float = 0.45, pick: str = "spread") -> dict[str, Path]:
    """Write ``<prefix>_axial.png`` and ``<prefix>_coronal.png`` into ``folder``: ``tiles`` slices per
    plane through the labelled region (``pick="spread"``: evenly from one end to the other; ``"most"``: the
    slices with the most labelled voxels) or the middle of the volume when nothing is labelled, the image
    in the grey-level ``window`` (HU low, high) and each segment's voxels tinted in its colour.

    ``labels`` must be on the grid of ``image``.  Returns ``{"axial": path, "coronal": path}``.
    """
    from PIL import Image

    from ..io import check_same_grid

    check_same_grid(image, labels, "image", "segmentation")
    img = sitk.GetArrayFromImage(sitk.DICOMOrient(image, "LPS")).astype(np.float32)  # [S, P, L]
    lab = sitk.GetArrayFromImage(sitk.DICOMOrient(labels, "LPS"))
    sx, sy, sz = sitk.DICOMOrient(image, "LPS").GetSpacing()
    lo, hi = window
    gray = (np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)
    colors = {s.value: np.array(s.color) * 255 for s in segments}
    out = {}
    for plane in PLANES:
        if plane == "axial":
            ks = _pick((lab > 0).sum(axis=(1, 2)), tiles, pick)
            frames = [(gray[k], lab[k]) for k in ks]
            aspect = sy / sx  # rows are P, columns L
        else:
            ks = _pick((lab > 0).sum(axis=(0, 2)), tiles, pick)
            frames = [(gray[::-1, k, :], lab[::-1, k, :]) for k in ks]  # superior up
            aspect = sz / sx
        tiles_rgb = []
        for g, m in frames:
            rgb = np.repeat(g[..., None], 3, axis=-1).astype(np.float32)
            for value, color in colors.items():
                sel = m == value
                rgb[sel] = (1 - alpha) * rgb[sel] + alpha * color
            pil = Image.fromarray(rgb.astype(np.uint8))
            pil = pil.resize((pil.width, max(1, int(round(pil.height * aspect)))), Image.BILINEAR)
            tiles_rgb.append(np.asarray(pil))
        cols = min(3, len(tiles_rgb))
        rows = (len(tiles_rgb) + cols - 1) // cols
        h, w = tiles_rgb[0].shape[:2]
        sheet = np.zeros((rows * h + (rows - 1) * 2, cols * w + (cols - 1) * 2, 3), np.uint8)
        for n, t in enumerate(tiles_rgb):
            r, c = divmod(n, cols)
            sheet[r * (h + 2):r * (h + 2) + h, c * (w + 2):c * (w + 2) + w] = t
        sheet_img = Image.fromarray(sheet)
        if sheet_img.width < 600:  # small grids: enlarge so the page shows them at a readable size
            f = 600 / sheet_img.width
            sheet_img = sheet_img.resize((600, int(sheet_img.height * f)), Image.NEAREST)
        out[plane] = _save_png(sheet_img, Path(folder) / f"{prefix}_{plane}.png")
    return out


def volume_curve_plot(pool_ml: Sequence[float | None], path: str | os.PathLike, ed: int | None, es: int | None,
                      ejection_fraction: float | None, percent_rr: Sequence[float] | None = None,
                      predicted_ml: Sequence[float] | None = None, title: str = "LV volume") -> Path:
    """Blood-pool volume (mL) per phase (x: % R-R when known, else the phase index) from the labels
    (points on labelled phases) and, if given, a model's prediction (line); ED and ES marked, EF in the title."""
    plt = _pyplot()
    n = len(pool_ml)
    x = np.asarray(percent_rr, float) if percent_rr is not None else np.arange(n, dtype=float)
    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    lab = np.array([np.nan if v is None else v for v in pool_ml], float)
    ok = np.isfinite(lab)
    if ok.any():
        ax.plot(x[ok], lab[ok], "o-" if ok.sum() > 2 else "o", color="#b03a2e", label="labels")
    if predicted_ml is not None:
        ax.plot(x, np.asarray(predicted_ml, float), "-", color="#1f618d", label="model")
    ref = lab if ok.any() else np.asarray(predicted_ml if predicted_ml is not None else [np.nan] * n, float)
    for idx, name, color in ((ed, "ED", "#117a65"), (es, "ES", "#7d3c98")):
        if idx is not None and np.isfinite(ref[idx]):
            ax.axvline(x[idx], color=color, ls="--", lw=1)
            ax.annotate(f"{name} ({ref[idx]:.0f} mL)", (x[idx], ref[idx]), textcoords="offset points", xytext=(5, 5), color=color)
    ax.set_xlabel("% of R-R interval" if percent_rr is not None else "phase")
    ax.set_ylabel("blood pool (mL)")
    ef = f", EF {100 * ejection_fraction:.1f} %" if ejection_fraction is not None else ""
    ax.set_title(f"{title}{ef}")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _save_figure(fig, path)


def surface_views(points_lps: np.ndarray, triangles: np.ndarray, thickness_mm: np.ndarray, path: str | os.PathLike,
                  title: str = "wall thickness", vrange: tuple[float, float] | None = None, max_triangles: int = 60000) -> Path:
    """The surface (points (n, 3) LPS mm, triangles (m, 3)) coloured by per-vertex thickness (mm; NaN shown
    grey), from the patient's anterior and left, side by side with one colour bar.  Every
    ``m // max_triangles``-th triangle is drawn when the mesh is larger (a preview, not a measurement)."""
    plt = _pyplot()
    from matplotlib import cm, colors
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    pts = np.asarray(points_lps, float)
    tri = np.asarray(triangles, int)
    if len(tri) > max_triangles:
        tri = tri[:: int(np.ceil(len(tri) / max_triangles))]
    t = np.asarray(thickness_mm, float)
    vals = t[tri]
    finite = np.isfinite(vals)
    count = finite.sum(axis=1)
    face = np.where(count > 0, np.where(finite, vals, 0.0).sum(axis=1) / np.maximum(count, 1), np.nan)  # NaN-aware mean
    vrange = vrange or value_range(t)
    norm = colors.Normalize(vmin=vrange[0], vmax=vrange[1])
    cmap = plt.colormaps["viridis"]
    fc = cmap(norm(np.nan_to_num(face, nan=0.0)))
    fc[~np.isfinite(face)] = (0.6, 0.6, 0.6, 1.0)
    # Display coordinates RAS-like (x right->left flipped so anterior views look as on screen): use LPS
    # directly with the camera placed on the anterior (-P) and left (+L) sides.
    fig = plt.figure(figsize=(8.0, 4.0))
    centre = pts.mean(axis=0)
    half = float(np.max(np.ptp(pts, axis=0))) / 2 or 1.0
    for n, (name, azim) in enumerate((("anterior", -90.0), ("left lateral", 0.0))):
        ax = fig.add_subplot(1, 2, n + 1, projection="3d")
        ax.add_collection3d(Poly3DCollection(pts[tri], facecolors=fc, edgecolors="none", linewidths=0))
        for setter, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), centre):
            setter(c - half, c + half)
        ax.view_init(elev=10.0, azim=azim)
        ax.set_box_aspect((1, 1, 1), zoom=1.4)
        ax.set_axis_off()
        ax.set_title(name, fontsize=9)
    sm = cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=fig.axes, shrink=0.7, label="thickness (mm)")
    fig.suptitle(title, fontsize=10)
    return _save_figure(fig, path)


def value_range(values: np.ndarray) -> tuple[float, float]:
    """Colour range (mm) of a thickness map: 1st to 99th percentile of the finite values (0..1 when none)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if not v.size:
        return (0.0, 1.0)
    lo, hi = np.percentile(v, [1, 99])
    return (float(lo), float(hi) if hi > lo else float(lo) + 1.0)


#: AHA 17-segment model: (ring name, number of sectors, first segment number).
AHA_RINGS = (("basal", 6, 1), ("mid", 6, 7), ("apical", 4, 13), ("apex", 1, 17))
#: Fraction of the base-to-apex length where each ring ends (basal, mid, apical, apex).
AHA_RING_ENDS = (0.35, 0.65, 0.9, 1.0)


def aha_segments(points_lps: np.ndarray) -> tuple[np.ndarray, dict]:
    """AHA segment number (1..17) of each epicardial vertex (points (n, 3) LPS mm).

    The long axis is the mesh's first principal axis; the apex is the end where the surface is
    narrowest.  Height runs 0 at the base to 1 at the apex (rings at :data:`AHA_RING_ENDS`).  The angle
    is measured in the short-axis plane from the patient's anterior direction (projected onto that plane)
    towards the patient's right (the septal side), so that the segments follow the AHA order: centred on
    anterior (1, 7, 13), then anteroseptal, inferoseptal, inferior, inferolateral, anterolateral for the
    6-sector rings (anterior, septal, inferior, lateral for the apical ring).  The orientation comes from
    the patient axes, not from the RV insertion points (there is no RV label).
    Returns ``(segment per vertex, {"axis", "apex_mm", "base_mm"})``.
    """
    pts = np.asarray(points_lps, float)
    c = pts.mean(axis=0)
    _, _, vt = np.linalg.svd(pts - c, full_matrices=False)
    axis = vt[0]
    h = (pts - c) @ axis
    radial = np.linalg.norm((pts - c) - np.outer(h, axis), axis=1)
    lo, hi = np.percentile(h, [10, 90])
    if radial[h >= hi].mean() < radial[h <= lo].mean():  # apex at +axis end
        pass
    else:
        axis, h = -axis, -h
    h0, h1 = h.min(), h.max()
    height = (h - h0) / max(h1 - h0, 1e-9)  # 0 base .. 1 apex
    anterior = np.array([0.0, -1.0, 0.0])  # LPS: anterior is -P
    right = np.array([-1.0, 0.0, 0.0])  # LPS: the patient's right is -L
    e1 = anterior - (anterior @ axis) * axis
    if np.linalg.norm(e1) < 1e-6:  # long axis along A-P: fall back to superior
        e1 = np.array([0.0, 0.0, 1.0]) - axis[2] * axis
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(axis, e1)  # angle grows from e1 (anterior) towards e2 (septal side)
    if e2 @ right < 0:
        e2 = -e2
    rel = (pts - c) - np.outer(h, axis)
    angle = np.mod(np.degrees(np.arctan2(rel @ e2, rel @ e1)), 360.0)
    seg = np.zeros(len(pts), dtype=int)
    start = 0.0
    for (name, sectors, first), end in zip(AHA_RINGS, AHA_RING_ENDS):
        sel = (height >= start) & (height <= end if end == 1.0 else height < end)
        width = 360.0 / sectors
        seg[sel] = first + (np.floor(np.mod(angle[sel] + width / 2, 360.0) / width).astype(int) % sectors)  # sectors centred
        start = end
    return seg, {"axis": axis.tolist(), "apex_mm": (c + h1 * axis).tolist(), "base_mm": (c + h0 * axis).tolist()}


def segment_means(segments: np.ndarray, thickness_mm: np.ndarray) -> dict[int, float]:
    """Mean thickness (mm) per AHA segment over vertices with a valid (finite) thickness; NaN when none."""
    t = np.asarray(thickness_mm, float)
    out = {}
    for s in range(1, 18):
        v = t[(segments == s) & np.isfinite(t)]
        out[s] = float(v.mean()) if v.size else float("nan")
    return out


def bullseye_plot(means_mm: dict[int, float], path: str | os.PathLike, title: str = "wall thickness (mm)",
                  vrange: tuple[float, float] | None = None) -> Path:
    """Polar (bullseye) plot of the AHA 17 segments coloured by ``means_mm`` (segment -> mm), each labelled
    with its value: basal ring outside, apex in the centre, anterior at the top, septal on the left, lateral on
    the right (the AHA display)."""
    plt = _pyplot()
    from matplotlib import cm, colors

    vals = np.array([means_mm.get(s, np.nan) for s in range(1, 18)], float)
    vrange = vrange or value_range(vals)
    norm = colors.Normalize(vmin=vrange[0], vmax=vrange[1])
    cmap = plt.colormaps["viridis"]
    fig, ax = plt.subplots(figsize=(4.6, 4.2), subplot_kw={"projection": "polar"})
    ax.set_theta_zero_location("N")
    ax.set_theta_direction(1)  # counter-clockwise: anterior (top) -> septal (left), the AHA numbering
    radii = {"basal": (3, 4), "mid": (2, 3), "apical": (1, 2), "apex": (0, 1)}
    for name, sectors, first in AHA_RINGS:
        r0, r1 = radii[name]
        width = 2 * np.pi / sectors
        for k in range(sectors):
            s = first + k
            v = vals[s - 1]
            theta = k * width  # sectors centred on anterior, as in aha_segments
            face = cmap(norm(v)) if np.isfinite(v) else (0.8, 0.8, 0.8, 1.0)
            ax.bar(theta, r1 - r0, width=width, bottom=r0, color=face, edgecolor="white", linewidth=1.5, align="center")
            text = f"{v:.1f}" if np.isfinite(v) else "-"
            ax.text(theta if sectors > 1 else 0, (r0 + r1) / 2 if sectors > 1 else 0, f"{s}\n{text}", ha="center",
                    va="center", fontsize=7, color="white" if np.isfinite(v) and norm(v) < 0.6 else "black")
    ax.set_ylim(0, 4)
    ax.set_axis_off()
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.7, label="mm")
    ax.set_title(title, fontsize=10)
    return _save_figure(fig, path)

"""LV wall thickness against analytic shells with exact thickness, and the CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from geometry_helpers import oblique_direction
from segtransfer.cli import main
from segtransfer.errors import InputError
from segtransfer.phantoms import beating_lv, cylindrical_shell, ellipsoidal_shell, spherical_shell
from segtransfer.thickness import compare_statistics, compute_thickness
from segtransfer.thickness.boundaries import classify
from segtransfer.thickness.laplace import assemble, solve_laplace, solve_laplace_jacobi

# Accuracy targets per vertex against the exact thickness (r_outer - r_inner = 10 mm on the sphere,
# hemisphere and cylinder; on the confocal ellipsoidal shell 6.4-10 mm, computed by quadrature): at 1 mm
# isotropic, mean absolute error <= 0.1 mm and 95th percentile <= 0.3 mm; on anisotropic and oblique
# grids (0.5 x 0.5 x 2 mm among them) mean absolute error <= 0.2 mm.  Shells with open ends
# (cylinder, hemisphere) are held to it away from the cut: more than one voxel from the cut plane.
# Without the sub-voxel ends (streamlines from face to face) the 1 mm sphere misses both targets
# (mean 0.19 mm, 95th percentile 0.48 mm).
CASES = [
    ("sphere", (1.0, 1.0, 1.0), None, 0.1, 0.3),
    ("cylinder", (1.0, 1.0, 1.0), None, 0.1, 0.3),
    ("hemisphere", (1.0, 1.0, 1.0), None, 0.1, 0.3),
    ("ellipsoid", (1.0, 1.0, 1.0), None, 0.1, 0.3),
    ("sphere", (0.5, 0.5, 2.0), None, 0.2, None),
    ("cylinder", (0.5, 0.5, 2.0), None, 0.2, None),
    ("hemisphere", (0.5, 0.5, 2.0), None, 0.2, None),
    ("ellipsoid", (0.5, 0.5, 2.0), None, 0.2, None),
    ("sphere", (0.9, 1.1, 1.3), oblique_direction(25.0), 0.2, None),
    ("cylinder", (0.9, 0.9, 1.5), oblique_direction(15.0), 0.2, None),
    ("ellipsoid", (0.9, 1.1, 1.3), oblique_direction(25.0), 0.2, None),
]


def shell(kind, spacing, direction):
    if kind == "ellipsoid":
        return ellipsoidal_shell((36.0, 24.0, 20.0), 500.0, spacing=spacing, direction=direction)
    if kind == "cylinder":
        return cylindrical_shell(20.0, 30.0, length=40.0, spacing=spacing, direction=direction)
    return spherical_shell(20.0, 30.0, spacing=spacing, direction=direction, open_end=kind == "hemisphere")


def away_from_cut(kind, truth, points_lps, spacing) -> np.ndarray:
    """Vertices more than one voxel (largest spacing) from the open cut(s) of the shell."""
    rel = points_lps - np.array(truth.center)
    if kind == "cylinder":
        return np.abs(rel @ np.array(truth.axis)) < truth.length / 2 - max(spacing)
    if kind == "hemisphere":
        return rel @ np.array(truth.axis) < -max(spacing)
    return np.ones(len(points_lps), dtype=bool)


@pytest.mark.parametrize("kind,spacing,direction,max_mean_error,max_p95_error", CASES)
def test_thickness_per_vertex_matches_the_exact_shell(kind, spacing, direction, max_mean_error, max_p95_error):
    labels, truth = shell(kind, spacing, direction)
    result = compute_thickness(labels)
    assert result.statistics()["n_invalid"] == 0
    away = away_from_cut(kind, truth, result.points_lps, spacing)
    exact = truth.thickness_at(result.points_lps) if kind == "ellipsoid" else truth.thickness
    error = np.abs(result.thickness_mm - exact)[away]
    assert error.size > 1000
    assert error.mean() <= max_mean_error, (error.mean(), np.percentile(error, 95))
    if max_p95_error is not None:
        assert np.percentile(error, 95) <= max_p95_error, (error.mean(), np.percentile(error, 95))
    # the surface is the epicardium, in LPS mm, on its sub-voxel position: vertices at r_outer from
    # the centre/axis; on the ellipsoid, at (first-order) distance 0 from the outer ellipsoid
    if kind == "ellipsoid":
        local = truth._local(result.points_lps)
        outer2 = np.asarray(truth.semi_axes) ** 2 + truth.lam
        f = np.sum(local**2 / outer2, axis=1) - 1.0
        distance = f / np.linalg.norm(2 * local / outer2, axis=1)
        assert abs(np.median(distance)) < 0.1 * max(spacing)
        return
    rel = result.points_lps[away] - np.array(truth.center)
    if kind == "cylinder":
        axis = np.array(truth.axis)
        rel = rel - np.outer(rel @ axis, axis)
    assert abs(np.median(np.linalg.norm(rel, axis=1)) - truth.r_outer) < 0.1 * max(spacing)


def test_ellipsoid_truth_by_quadrature_matches_the_closed_form_on_the_axes():
    """On the three axes the lambda line is straight, so the thickness is sqrt(a^2 + lam) - a exactly;
    elsewhere it lies between the axis values."""
    _, truth = ellipsoidal_shell((36.0, 24.0, 20.0), 500.0, spacing=(4.0, 4.0, 4.0))
    a = np.array(truth.semi_axes)
    tips = np.diag(np.sqrt(a**2 + truth.lam))
    np.testing.assert_allclose(truth.thickness_at(tips), np.sqrt(a**2 + truth.lam) - a, rtol=1e-9)
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(200, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    outer = np.sqrt(a**2 + truth.lam)
    on_outer = directions / np.sqrt(np.sum(directions**2 / outer**2, axis=1, keepdims=True))
    t = truth.thickness_at(on_outer)
    assert t.min() >= 6.379 - 1e-6 and t.max() <= 10.0 + 1e-6 and t.std() > 0.5


def test_sub_voxel_ends_are_what_reaches_the_target():
    """The same 1 mm sphere measured face to face (no sub-voxel search) misses the 0.1 mm target."""
    import segtransfer.thickness.compute as compute

    labels, truth = spherical_shell(20.0, 30.0)
    original = compute.level_offsets
    try:
        compute.level_offsets = lambda field, points, directions, spacing: np.zeros(len(points))
        faces = compute_thickness(labels).thickness_mm
    finally:
        compute.level_offsets = original
    assert np.abs(faces - truth.thickness).mean() > 0.15


def test_wrong_spacing_handling_would_fail():
    """The same voxels read with the spacing ignored (1 mm) give thicknesses far off the truth."""
    labels, truth = spherical_shell(20.0, 30.0, spacing=(0.8, 0.8, 1.6))
    right = compute_thickness(labels).thickness_mm
    wrong = sitk.Image(labels.image)
    wrong.SetSpacing((1.0, 1.0, 1.0))
    wrong_mm = compute_thickness(wrong).thickness_mm
    assert np.mean(np.abs(right - truth.thickness) < 0.8) > 0.95
    assert np.mean(np.abs(wrong_mm - truth.thickness) < 0.8) < 0.5


def test_eulerian_agrees_with_streamlines():
    labels, truth = spherical_shell(20.0, 30.0, spacing=(1.0, 1.0, 1.0))
    s = compute_thickness(labels, method="streamline")
    e = compute_thickness(labels, method="eulerian")
    assert abs(e.statistics()["median_mm"] - truth.thickness) < 0.15
    assert np.nanmedian(np.abs(e.thickness_mm - s.thickness_mm)) < 0.2


def _cylinder_side_errors(treat_cut_as_epicardium: bool):
    """Thickness error on the outer side of a cylinder within 1 mm of its flat ends, and the number of
    surface vertices on the end faces."""
    from segtransfer.thickness.streamlines import trace
    from segtransfer.thickness.surface import epicardial_surface

    labels, truth = cylindrical_shell(20.0, 30.0, length=40.0)
    arr = labels.array()
    b = classify(arr, (1.0, 1.0, 1.0))
    assert b.cut.sum() > 0
    if treat_cut_as_epicardium:
        b.epi |= b.cut
        b.cut[:] = False
    lengths = trace(solve_laplace(b).u, b.spacing_zyx, epicardial_surface(b).vertices_zyx).length_mm
    v = epicardial_surface(b).vertices_zyx - 1
    along = np.abs(v[:, 0] - (arr.shape[0] - 1) / 2)
    radial = np.linalg.norm(v[:, 1:] - (np.array(arr.shape[1:]) - 1) / 2, axis=1)
    side_near_end = (radial > truth.r_outer - 1) & (along >= truth.length / 2 - 1) & (along <= truth.length / 2 + 0.5)
    end_face = (radial < truth.r_outer - 2.5) & (along > truth.length / 2)
    return np.mean(np.abs(lengths[side_near_end] - truth.thickness)), int(end_face.sum())


def test_no_flux_at_the_cut_keeps_streamlines_right_up_to_it():
    """Next to the flat ends of a cylinder (like the LV basal cut) the thickness stays the wall
    thickness with the no-flux rule (face-to-face streamline lengths in the last voxel before the
    cut within 0.4 mm on average, 0.36 measured); treating the cut as epicardium bends the field
    there (errors of over a millimetre) and adds end-face vertices that are not epicardium."""
    labels, truth = cylindrical_shell(20.0, 30.0, length=40.0)
    result = compute_thickness(labels)
    along = np.abs(result.points_lps @ np.array(truth.axis))
    assert along.max() <= truth.length / 2 + 0.5 + 1e-6  # no vertex on the end faces
    error_noflux, end_vertices_noflux = _cylinder_side_errors(False)
    error_dirichlet, end_vertices_dirichlet = _cylinder_side_errors(True)
    assert error_noflux < 0.4 and end_vertices_noflux == 0
    assert error_dirichlet > 0.8 and end_vertices_dirichlet > 1000


def test_laplace_solution_satisfies_the_discrete_equation_and_matches_jacobi():
    labels, _ = spherical_shell(6.0, 10.0, spacing=(1.0, 1.0, 1.0))
    b = classify(labels.array(), (1.0, 1.0, 1.0))
    system = assemble(b)
    fast = solve_laplace(b, rtol=1e-10)
    u = fast.u.ravel()[system.index]
    assert np.linalg.norm(system.matrix @ u - system.rhs) / np.linalg.norm(system.rhs) < 1e-9
    assert 0.0 < u.min() and u.max() < 1.0  # maximum principle
    slow = solve_laplace_jacobi(b, rtol=1e-10)
    assert slow.iterations > 5 * fast.iterations
    np.testing.assert_allclose(slow.u.ravel()[system.index], u, atol=1e-7)


def test_lv_phantom_thickness_follows_the_known_wall_thickening():
    """Across the cardiac cycle of the 20-phase phantom the measured median thickness tracks the
    generator's nominal wall thickness: close to it at each phase, thicker at ES than at ED, and
    correlated with it over the phases."""
    lv = beating_lv(seed=0, spacing=(1.5, 1.5, 2.0))
    ed, es = lv.truth.ed_index, lv.truth.es_index
    phases = sorted({ed, es, *range(0, 20, 4)})
    med = {p: compute_thickness(lv.clean_labels[p]).statistics()["median_mm"] for p in phases}
    nominal = {p: lv.truth.wall_thickness_mm[p] for p in phases}
    # nominal wall thickness of the phantom's ellipsoidal shells; the streamline path is a little
    # shorter than the semi-axis difference where the shells are not concentric spheres
    for p in phases:
        assert abs(med[p] - nominal[p]) < 0.75, (p, med[p], nominal[p])
    assert med[es] - med[ed] > 2.5
    assert np.corrcoef([med[p] for p in phases], [nominal[p] for p in phases])[0, 1] > 0.95


def test_bad_inputs_are_refused():
    labels, _ = spherical_shell(6.0, 10.0)
    arr = labels.array()
    no_pool = sitk.GetImageFromArray(np.where(arr == 1, 2, arr).astype(np.uint8))
    with pytest.raises(InputError, match="no blood pool"):
        compute_thickness(no_pool, where="x.nii.gz")
    with pytest.raises(InputError, match="no myocardium"):
        compute_thickness(sitk.GetImageFromArray((arr == 1).astype(np.uint8)))
    with pytest.raises(InputError, match="unknown thickness method"):
        compute_thickness(labels, method="jacobi")


def test_cli_compute_series_and_compare(tmp_path, capsys):
    assert main(["phantom", "lv", "--out", str(tmp_path / "study"), "--spacing", "3", "--phases", "6"]) == 0
    out = tmp_path / "thick"
    assert main(["thickness", "compute", str(tmp_path / "study"), "--out", str(out), "--streamlines"]) == 0
    rows = list(csv.DictReader(open(out / "statistics.csv")))
    assert len(rows) == 6 and sorted(r["role"] for r in rows if r["role"]) == ["ED", "ES"]
    ed_file = next(out.glob("*_ED_epicardium.vtk"))
    assert ed_file.read_bytes().splitlines()[1].endswith(b"SPACE=LPS")
    assert any(out.glob("*_streamlines.vtk"))
    stats = json.loads((out / "statistics.json").read_text(encoding="utf-8"))
    assert stats["method"] == "streamline"
    # a single label file; then a bad one leaves no output
    assert main(["phantom", "shell", "--out", str(tmp_path / "shell"), "--r-inner", "8", "--r-outer", "12"]) == 0
    shell_file = next((tmp_path / "shell").glob("*.nii.gz"))
    assert main(["thickness", "compute", str(shell_file), "--out", str(tmp_path / "t2"), "--method", "eulerian"]) == 0
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"garbage")
    assert main(["thickness", "compute", str(bad), "--out", str(tmp_path / "t3")]) == 2
    assert not (tmp_path / "t3").exists()
    assert "bad.nii.gz" in capsys.readouterr().err


def test_compare_gives_pearson_per_phase_and_metric():
    truth, pred = [], []
    rng = np.random.default_rng(0)
    for i in range(8):
        for role, base in (("ED", 9.0), ("ES", 12.0)):
            t = {"study": f"s{i}", "role": role, "median_mm": base + i * 0.3, "p95_mm": base + 1 + i * 0.4, "max_mm": base + 3 + i * 0.2}
            truth.append(t)
            pred.append({k: (v + rng.normal(0, 0.05) if isinstance(v, float) else v) for k, v in t.items()})
    rows = compare_statistics(pred, truth)
    assert len(rows) == 6 and all(r["n"] == 8 for r in rows)
    assert all(r["pearson_r"] > 0.95 for r in rows)
    shuffled = [dict(r, study=f"s{(int(r['study'][1:]) * 3) % 8}") for r in pred]
    assert min(r["pearson_r"] for r in compare_statistics(shuffled, truth)) < 0.9


def test_batch_script_keeps_going_past_a_broken_study(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from segtransfer.io import write_labels

    src = tmp_path / "in"
    src.mkdir()
    for name, (ri, ro) in {"a": (6.0, 9.0), "b": (7.0, 11.0)}.items():
        labels, _ = spherical_shell(ri, ro)
        write_labels(labels, src / f"{name}.nii.gz")
    (src / "broken.nii.gz").write_bytes(b"not an image")
    script = Path(__file__).resolve().parents[1] / "scripts" / "batch_thickness.py"
    run = subprocess.run([sys.executable, str(script), "--", str(src), str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr
    rows = list(csv.DictReader(open(tmp_path / "out" / "thickness_summary.csv")))
    by_study = {r["study"]: r for r in rows}
    assert by_study["broken"]["status"].startswith("error") and "broken.nii.gz" in by_study["broken"]["status"]
    assert abs(float(by_study["a"]["median_mm"]) - 3.0) < 0.3 and abs(float(by_study["b"]["median_mm"]) - 4.0) < 0.3
    again = subprocess.run([sys.executable, str(script), str(src), str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert again.returncode == 1
    assert "skipped (done)" in (tmp_path / "out" / "thickness_summary.csv").read_text(encoding="utf-8")


def test_a_stray_wall_voxel_leaves_the_result_unchanged():
    """A lone myocardium voxel away from the wall (as a predicted label map may hold) has no
    boundary value to take: both solvers stay finite and the shell's thickness map does not change."""
    import warnings

    labels, _ = spherical_shell(6.0, 10.0)
    arr = labels.array().copy()
    arr[2, 2, 2] = 2
    stray = sitk.GetImageFromArray(arr)
    stray.CopyInformation(labels.image)
    clean = compute_thickness(labels).thickness_mm
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a division by a zero diagonal would warn
        for solver in ("cg", "jacobi"):
            np.testing.assert_allclose(compute_thickness(stray, solver=solver).thickness_mm, clean, atol=1e-5)

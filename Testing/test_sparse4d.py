"""Sparse ED/ES 4D pairs on 20-phase beating-LV phantoms: ED/ES found, 1 mm grid with the physical extent
kept, labelled phases equal to the independently resampled truth, unlabelled phases zero and marked,
EF equal to the phantom's, bad series refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from segtransfer.errors import GeometryError, InputError
from segtransfer.io import Series4D
from segtransfer.io.series4d import join_4d
from segtransfer.phantoms import beating_lv
from segtransfer.sparse4d import (
    Grid,
    build_sparse4d,
    ed_es_from_percent_rr,
    output_grid,
    read_sparse4d,
    resample_image,
    summarise_phases,
    volume_curve_from_label4d,
    write_sparse4d,
)

COARSE = (2.5, 2.5, 2.5)


def sparse(phantom, keep):
    """The phantom's series with labels only on the phases in ``keep`` (the others unlabelled)."""
    s = phantom.series
    return Series4D(list(s.phases), list(s.percent_rr), {i: s.labels[i] for i in keep})


def dice(a: np.ndarray, b: np.ndarray, value: int) -> float:
    x, y = a == value, b == value
    return 2.0 * np.count_nonzero(x & y) / (np.count_nonzero(x) + np.count_nonzero(y))


def nearest_truth(src: sitk.Image, grid: Grid) -> np.ndarray:
    """Labels of ``src`` at the voxel centres of ``grid`` by nearest neighbour, computed with numpy only.

    ``grid`` shares ``src``'s axes, so the source index along each axis depends on that axis only:
    ``(centre offset from src voxel 0 along the axis) / src spacing``, rounded; exact ties go to the
    higher index (the documented tie rule).
    """
    d = np.asarray(src.GetDirection()).reshape(3, 3)
    offset = d.T @ (np.asarray(grid.origin) - np.asarray(src.GetOrigin()))  # along the image axes, mm
    idx = []
    for a in range(3):
        pos = offset[a] + np.arange(grid.size[a]) * grid.spacing[a]
        idx.append(np.clip(np.floor(pos / src.GetSpacing()[a] + 0.5 + 1e-6).astype(int), 0, src.GetSize()[a] - 1))
    arr = sitk.GetArrayViewFromImage(src)  # [z, y, x]
    return arr[np.ix_(idx[2], idx[1], idx[0])]


@pytest.fixture(scope="module")
def lv0():
    return beating_lv(seed=0, spacing=COARSE)


@pytest.fixture(scope="module")
def lv1():
    return beating_lv(seed=1, spacing=COARSE)


# ----------------------------------------------------------------------------------------------
# ED / ES identification


@pytest.mark.parametrize("seed", [0, 1, 2, 5])
def test_ed_es_from_sparse_labels_and_ef(seed):
    ph = beating_lv(seed=seed, spacing=COARSE)
    t = ph.truth
    s = summarise_phases(sparse(ph, [t.ed_index, t.es_index]).labels, 20, percent_rr=t.percent_rr)
    assert s.choice.method == "labels"
    assert (s.choice.ed_index, s.choice.es_index) == (t.ed_index, t.es_index)
    assert s.edv_ml == pytest.approx(t.cavity_ml[t.ed_index], rel=0.02)
    assert s.esv_ml == pytest.approx(t.cavity_ml[t.es_index], rel=0.03)
    assert s.ef_source == "labels"
    assert s.ejection_fraction == pytest.approx(t.ejection_fraction, abs=0.01)
    assert [v is not None for v in s.pool_ml] == [i in (t.ed_index, t.es_index) for i in range(20)]


def test_ed_es_from_several_labelled_phases(lv1):
    t = lv1.truth
    keep = [t.ed_index, 3, t.es_index, 12, 17]
    s = summarise_phases(sparse(lv1, keep).labels, 20)
    assert (s.choice.ed_index, s.choice.es_index) == (t.ed_index, t.es_index)
    for i in keep:
        assert s.pool_ml[i] == pytest.approx(t.cavity_ml[i], rel=0.03)
        assert s.myocardium_ml[i] == pytest.approx(t.myocardium_ml[i], rel=0.05)


def test_ed_es_from_phase_metadata(lv0, lv1):
    # One labelled phase: the R-R rule over all phases.  Seed 0 has ES at 40 % R-R, seed 1 at 35 %.
    for ph, es_percent in ((lv0, 40.0), (lv1, 35.0)):
        t = ph.truth
        s = summarise_phases(sparse(ph, [t.es_index]).labels, 20, percent_rr=t.percent_rr, es_percent=es_percent)
        assert s.choice.method == "percent"
        assert (s.choice.ed_index, s.choice.es_index) == (t.ed_index, t.es_index)
        assert s.ejection_fraction is None  # ED is not labelled and there is no prediction
    # Several labelled phases, method forced to "percent": ES is the labelled phase nearest 40 %.
    t = lv1.truth
    s = summarise_phases(sparse(lv1, [0, t.es_index, 15]).labels, 20, percent_rr=t.percent_rr, method="percent")
    assert (s.choice.ed_index, s.choice.es_index) == (0, t.es_index)
    assert "among labelled phases" in s.choice.reason


def test_percent_rule_is_circular():
    # 97 % is 3 % from the R wave, closer than 5 %: ED is the last phase.
    assert ed_es_from_percent_rr([5.0, 20.0, 38.0, 45.0, 97.0]) == (4, 2)
    assert ed_es_from_percent_rr([5.0, 20.0, 38.0, 45.0, 97.0], es_percent=44.0) == (4, 3)
    assert ed_es_from_percent_rr([5.0, 20.0, 38.0, 45.0, 97.0], candidates=[0, 1, 3]) == (0, 3)


def test_ed_es_from_predicted_curve(lv0, tmp_path):
    t = lv0.truth
    curve = tmp_path / "predicted.json"
    curve.write_text(json.dumps({"volumes_ml": t.cavity_ml}))
    from segtransfer.sparse4d import read_volume_curve

    predicted = read_volume_curve(curve, 20)
    # Only a mid-diastolic phase is labelled: ED/ES and EF come from the prediction.
    s = summarise_phases(sparse(lv0, [13]).labels, 20, percent_rr=t.percent_rr, predicted_volumes=predicted)
    assert s.choice.method == "prediction"
    assert (s.choice.ed_index, s.choice.es_index) == (t.ed_index, t.es_index)
    assert s.ef_source == "prediction"
    assert s.ejection_fraction == pytest.approx(t.ejection_fraction, abs=1e-9)

    # A 4D predicted label map: blood-pool volume per phase.
    pred4d = join_4d([lv0.clean_labels[i] for i in range(20)])
    volumes = volume_curve_from_label4d(pred4d, "pred", 20)
    np.testing.assert_allclose(volumes, t.cavity_ml, rtol=0.03)
    s = summarise_phases({}, 20, predicted_volumes=volumes)
    assert (s.choice.ed_index, s.choice.es_index) == (t.ed_index, t.es_index)
    assert s.ejection_fraction == pytest.approx(t.ejection_fraction, abs=0.01)


# ----------------------------------------------------------------------------------------------
# Export and round trip


def test_export_1mm_round_trip_matches_truth(lv0, tmp_path):
    """The acceptance test: 1 mm isotropic, extent kept, Dice >= 0.98 after a round trip, unlabelled zero and marked, EF."""
    t = lv0.truth
    pair = build_sparse4d(sparse(lv0, [t.ed_index, t.es_index]), spacing_mm=1.0, interpolator="linear")
    write_sparse4d(pair, tmp_path / "pair")
    back = read_sparse4d(tmp_path / "pair")

    src = lv0.series.phases[0]
    src_grid, grid = Grid.of(src), Grid.of(back.phase_image(0))
    np.testing.assert_allclose(grid.spacing, (1.0, 1.0, 1.0), atol=1e-6)
    np.testing.assert_allclose(grid.direction, src_grid.direction, atol=1e-6)
    np.testing.assert_allclose(grid.corner_mm(), src_grid.corner_mm(), atol=1e-4)
    assert np.all(np.abs(grid.extent_mm() - src_grid.extent_mm()) <= 0.5 + 1e-6)
    assert back.image.GetSize()[3] == 20 and back.labels.GetSize()[3] == 20

    labelled = [t.ed_index, t.es_index]
    assert back.labelled_phases() == labelled
    assert back.record["labelled_phases"] == labelled
    mask = back.labelled_mask()
    assert mask.dtype == bool and mask.sum() == 2 and mask[labelled].all()
    arr = sitk.GetArrayViewFromImage(back.labels)  # [t, z, y, x]
    for i in range(20):
        if i in labelled:
            got = sitk.GetArrayFromImage(back.phase_labels(i))
            truth = nearest_truth(lv0.clean_labels[i], grid)
            assert dice(got, truth, 1) >= 0.98 and dice(got, truth, 2) >= 0.98
            assert np.count_nonzero(got != truth) <= 1e-4 * got.size
            # the resampled pool keeps the analytic volume
            assert np.count_nonzero(got == 1) / 1000.0 == pytest.approx(t.cavity_ml[i], rel=0.03)
        else:
            assert back.phase_labels(i) is None
            assert not arr[i].any()

    r = back.record
    assert (r["ed_index"], r["es_index"]) == (t.ed_index, t.es_index)
    assert r["ed_es_method"] == "labels"
    assert r["ejection_fraction"] == pytest.approx(t.ejection_fraction, abs=0.01)
    assert r["grid"]["spacing_mm"] == [1.0, 1.0, 1.0]
    assert r["cleanup"]["applied"] is False
    # the image is resampled, not copied: its values follow the source phase at the same physical point
    img = back.phase_image(t.es_index)
    p = img.TransformIndexToPhysicalPoint((81, 81, 71))
    src_value = lv0.series.phases[t.es_index].EvaluateAtPhysicalPoint(p, sitk.sitkLinear)
    assert img.EvaluateAtPhysicalPoint(p, sitk.sitkNearestNeighbor) == pytest.approx(src_value, abs=1e-2)


def test_oblique_anisotropic_grid_keeps_corner_direction_and_position():
    from geometry_helpers import oblique_direction

    arr = np.zeros((12, 30, 26), np.uint8)  # [z, y, x]
    arr[4:8, 10:20, 8:14] = 1
    lab = sitk.GetImageFromArray(arr)
    lab.SetSpacing((0.7, 0.9, 2.5))
    lab.SetOrigin((-12.5, 30.25, 101.0))
    lab.SetDirection(oblique_direction())
    img = sitk.Cast(lab, sitk.sitkFloat32) * 100.0
    series = Series4D([img, img, img], [0.0, 33.0, 66.0], {0: lab, 1: sitk.Image(lab)})
    src = Grid.of(lab)
    grid = output_grid(src, 1.0)
    assert grid.size == (18, 27, 30)  # round(26*0.7), round(30*0.9), round(12*2.5)
    pair = build_sparse4d(series, spacing_mm=1.0, method="manual", ed_index=0, es_index=1)
    out = pair.phase_labels(0)
    assert out.GetSize() == grid.size
    np.testing.assert_allclose(out.GetDirection(), lab.GetDirection(), atol=1e-9)
    np.testing.assert_allclose(Grid.of(out).corner_mm(), src.corner_mm(), atol=1e-9)

    def centroid(image):
        f = sitk.LabelShapeStatisticsImageFilter()
        f.Execute(image)
        return np.array(f.GetCentroid(1))

    # the box stays where it was in physical space (within half an output voxel)
    np.testing.assert_allclose(centroid(out), centroid(lab), atol=0.5)
    assert np.count_nonzero(sitk.GetArrayViewFromImage(out)) * 1.0 == pytest.approx(arr.sum() * 0.7 * 0.9 * 2.5, rel=0.1)


@pytest.mark.parametrize("interpolator", ["bspline", "linear"])
def test_image_interpolation_reproduces_a_ramp_and_stays_in_range(interpolator):
    # A linear ramp along x (HU) is reproduced exactly by linear and cubic B-spline interpolation.
    # (B-spline coefficients use mirrored boundaries, so only centres well inside are compared.)
    x = np.arange(20, dtype=np.float32) * 10.0 - 100.0
    arr = np.broadcast_to(x, (8, 10, 20)).copy()
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((2.0, 2.0, 2.0))
    grid = output_grid(Grid.of(img), 1.0)
    out = resample_image(img, grid, interpolator)
    got = sitk.GetArrayFromImage(out)
    assert got.dtype == np.float32 and got.shape == (16, 20, 40)
    # interior centres: source x index (i + 0.5) / 2 - 0.5 -> value -100 + 10 * that
    i = np.arange(12, 28)
    expected = -100.0 + 10.0 * ((i + 0.5) / 2.0 - 0.5)
    np.testing.assert_allclose(got[8, 10, 12:28], expected, atol=1e-2)
    assert got.min() >= arr.min() and got.max() <= arr.max()
    as_int = sitk.GetArrayFromImage(resample_image(img, grid, interpolator, "int16"))
    assert as_int.dtype == np.int16
    np.testing.assert_array_equal(as_int, np.rint(got).astype(np.int16))


def test_crop_keeps_every_labelled_voxel_on_the_same_lattice(lv0):
    t = lv0.truth
    series = sparse(lv0, [t.ed_index, t.es_index])
    full = build_sparse4d(series, spacing_mm=2.0)
    crop = build_sparse4d(series, spacing_mm=2.0, crop_margin_mm=10.0)
    rec = crop.record["grid"]["crop"]
    i0, size = np.array(rec["index"]), np.array(rec["size"])
    assert np.all(size < np.array(full.record["grid"]["size"]))
    for i in (t.ed_index, t.es_index):
        a = sitk.GetArrayFromImage(full.phase_labels(i))
        b = sitk.GetArrayFromImage(crop.phase_labels(i))
        sub = a[i0[2]:i0[2] + size[2], i0[1]:i0[1] + size[1], i0[0]:i0[0] + size[0]]
        np.testing.assert_array_equal(b, sub)  # same voxels, nothing lost
        assert np.count_nonzero(a) == np.count_nonzero(b)
        # at least the margin (less one source voxel of rounding) between the labels and each crop face
        nz = np.argwhere(b > 0)
        lo, hi = nz.min(axis=0), nz.max(axis=0)
        assert np.all(lo * 2.0 >= 10.0 - 2.5) and np.all((np.array(b.shape) - 1 - hi) * 2.0 >= 10.0 - 2.5)
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(crop.phase_image(4)),
        sitk.GetArrayFromImage(full.phase_image(4))[i0[2]:i0[2] + size[2], i0[1]:i0[1] + size[1], i0[0]:i0[0] + size[0]])


def test_cleanup_before_resampling_is_applied_and_recorded():
    ph = beating_lv(seed=3, spacing=(2.0, 2.0, 2.0), defects=True)
    t = ph.truth
    keep = [t.ed_index, t.es_index]
    raw = build_sparse4d(sparse(ph, keep), spacing_mm=2.0)
    cleaned = build_sparse4d(sparse(ph, keep), spacing_mm=2.0, cleanup_radius=5)
    rec = cleaned.record["cleanup"]
    assert rec["applied"] is True and rec["radius_voxels"] == 5
    assert raw.record["cleanup"]["applied"] is False
    for i in keep:
        truth = sitk.GetArrayFromImage(ph.clean_labels[i])
        before = sitk.GetArrayFromImage(raw.phase_labels(i))
        after = sitk.GetArrayFromImage(cleaned.phase_labels(i))
        d = ph.defects[i]
        assert rec["phases"][str(i)]["voxels_changed"] == d["hole_voxels"] + d["gap_voxels"]
        assert np.count_nonzero(before != truth) == d["hole_voxels"] + d["gap_voxels"]
        assert dice(after, truth, 1) >= 0.999 and dice(after, truth, 2) >= 0.999
        assert cleaned.record["volumes_ml"]["blood_pool_labels"][i] > raw.record["volumes_ml"]["blood_pool_labels"][i]
    assert "after cleanup" in cleaned.record["volumes_ml"]["measured_on"]


def test_keep_only_ed_es_labels(lv0):
    t = lv0.truth
    pair = build_sparse4d(lv0.series, spacing_mm=2.5, keep_labels="ed-es")
    assert pair.labelled_phases() == [t.ed_index, t.es_index]
    arr = sitk.GetArrayViewFromImage(pair.labels)
    assert [bool(arr[i].any()) for i in range(20)] == [i in (t.ed_index, t.es_index) for i in range(20)]
    with pytest.raises(InputError, match=r"ES \(phase 8\) is not labelled"):
        build_sparse4d(sparse(lv0, [0, 5, 13]), spacing_mm=2.5, keep_labels="ed-es", method="manual", ed_index=0, es_index=8)


# ----------------------------------------------------------------------------------------------
# Bad input


def test_mismatched_or_incomplete_series_is_refused(lv0):
    t = lv0.truth
    good = sparse(lv0, [t.ed_index, t.es_index])

    moved = Series4D(list(good.phases), list(good.percent_rr), dict(good.labels))
    shifted = sitk.Image(moved.phases[5])
    shifted.SetOrigin(tuple(o + 3.0 for o in shifted.GetOrigin()))
    moved.phases[5] = shifted
    with pytest.raises(InputError, match="phase 5 is not on the grid of phase 0: origin"):
        build_sparse4d(moved, spacing_mm=2.5)

    other_grid = Series4D(list(good.phases), list(good.percent_rr), {0: sitk.Resample(good.labels[0], [30, 30, 30])})
    with pytest.raises(GeometryError, match="labels of phase 0"):
        build_sparse4d(other_grid, spacing_mm=2.5)

    short_rr = Series4D(list(good.phases), list(good.percent_rr)[:19], dict(good.labels))
    with pytest.raises(InputError, match="19 R-R percentages for 20 phases"):
        build_sparse4d(short_rr, spacing_mm=2.5)

    odd = sitk.Image(good.labels[t.es_index])
    odd[10, 10, 10] = 7
    with pytest.raises(InputError, match=r"unexpected label values \[7\]"):
        build_sparse4d(Series4D(list(good.phases), None, {t.ed_index: good.labels[t.ed_index], t.es_index: odd}), spacing_mm=2.5)

    nan = sitk.Image(good.phases[4])
    nan[5, 5, 5] = float("nan")
    with pytest.raises(InputError, match="series phase 4: image holds 1 NaN"):
        build_sparse4d(Series4D(good.phases[:4] + [nan] + good.phases[5:], None, dict(good.labels)), spacing_mm=2.5)

    with pytest.raises(InputError, match="cannot identify ED/ES"):
        build_sparse4d(Series4D(list(good.phases), None, {3: good.labels[t.es_index]}), spacing_mm=2.5)
    with pytest.raises(InputError, match="ED and ES are the same phase"):
        build_sparse4d(good, spacing_mm=2.5, method="manual", ed_index=3, es_index=3)
    with pytest.raises(InputError, match="spacing"):
        build_sparse4d(good, spacing_mm=0.0)

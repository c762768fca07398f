"""Phantoms with known truth: the beating LV, the head CT with hemorrhages, and the site profiles.

Every check compares what the generated voxels hold with the generator's analytic truth (closed-form
volumes from the shape parameters, nominal thickness, the site's noise and contrast values).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import integrate, ndimage

from segtransfer.errors import InputError
from segtransfer.phantoms import (
    HEMORRHAGE_KINDS,
    SITES,
    beating_lv,
    contraction,
    get_site,
    head_ct,
    list_sites,
    truncated_ellipsoid_volume,
)

REAL_CARDIAC_CT = Path(__file__).resolve().parents[2] / "shared" / "data" / "cardiac_cta_crop.nii.gz"
COARSE = (2.5, 2.5, 3.0)
HEAD_SPACING = (1.2, 1.2, 2.4)


def arr(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


def voxel_ml(image: sitk.Image) -> float:
    return float(np.prod(image.GetSpacing())) / 1000.0


@pytest.fixture(scope="module")
def lv():
    """The acceptance-test phantom: 20 phases at the default spacing, clean labels."""
    return beating_lv(seed=0)


@pytest.fixture(scope="module")
def lv_defects():
    return beating_lv(seed=0, defects=True)


# ----------------------------------------------------------------------------------------------
# Closed forms


def test_truncated_ellipsoid_volume_closed_form():
    a, b, c = 20.0, 25.0, 60.0
    assert truncated_ellipsoid_volume(a, b, c, 1.0) == pytest.approx(4.0 / 3.0 * np.pi * a * b * c, rel=1e-12)
    assert truncated_ellipsoid_volume(a, b, c, 0.0) == pytest.approx(2.0 / 3.0 * np.pi * a * b * c, rel=1e-12)
    assert truncated_ellipsoid_volume(a, b, c, -1.0) == pytest.approx(0.0, abs=1e-9)
    # Against direct integration of the elliptical cross-sections pi a b (1 - z^2/c^2) up to z = 0.3 c.
    numeric = integrate.quad(lambda z: np.pi * a * b * (1.0 - z * z / (c * c)), -c, 0.3 * c)[0]
    assert truncated_ellipsoid_volume(a, b, c, 0.3) == pytest.approx(numeric, rel=1e-10)


def test_contraction_curve_is_smooth_and_bounded():
    p = np.linspace(0.0, 100.0, 2001)
    f = contraction(p, 40.0)
    assert f[0] == pytest.approx(0.0) and contraction(40.0, 40.0) == pytest.approx(1.0)
    assert f.min() >= 0.0 and f.max() <= 1.0 + 1e-12
    assert np.abs(np.diff(f)).max() < 0.01  # no jumps on a 0.05 % step
    assert contraction(85.0, 40.0) == pytest.approx(0.2)  # diastasis before the atrial kick


# ----------------------------------------------------------------------------------------------
# Beating LV


def test_lv_series_shape_and_timing(lv):
    s = lv.series
    assert len(s) == 20 and sorted(s.labels) == list(range(20)) and sorted(lv.clean_labels) == list(range(20))
    assert s.percent_rr == pytest.approx([5.0 * i for i in range(20)])
    s.validate()
    img = s.phases[0]
    assert img.GetSpacing() == pytest.approx((1.25, 1.25, 2.0))
    assert img.GetPixelID() == sitk.sitkFloat32 and s.labels[0].GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(arr(s.labels[0]))) == {0, 1, 2}
    t = lv.truth
    assert t.ed_index == 0 and 35.0 <= t.percent_rr[t.es_index] <= 40.0


def test_lv_truth_is_physiological(lv):
    t = lv.truth
    edv, esv = t.cavity_ml[t.ed_index], t.cavity_ml[t.es_index]
    assert 100.0 <= edv <= 160.0
    assert 0.50 <= t.ejection_fraction <= 0.65
    assert t.ejection_fraction == pytest.approx((edv - esv) / edv)
    assert 8.0 <= t.wall_thickness_mm[t.ed_index] <= 12.0
    assert t.wall_thickness_mm[t.es_index] > t.wall_thickness_mm[t.ed_index] + 2.0
    assert np.ptp(t.myocardium_ml) == pytest.approx(0.0, abs=1e-9)
    # Myocardial volume from the shape parameters of every phase equals the stated one.
    for shp, myo, cav in zip(t.shape, t.myocardium_ml, t.cavity_ml):
        a, c, ae, ce, h = shp["a_endo"], shp["c_endo"], shp["a_epi"], shp["c_epi"], shp["h"]
        assert truncated_ellipsoid_volume(a, a, c, h / c) / 1000.0 == pytest.approx(cav, rel=1e-12)
        assert (truncated_ellipsoid_volume(ae, ae, ce, h / ce) - truncated_ellipsoid_volume(a, a, c, h / c)) / 1000.0 == pytest.approx(myo, rel=1e-6)


def test_lv_voxel_volumes_match_analytic_truth_within_2_percent(lv):
    t, vml = lv.truth, voxel_ml(lv.series.phases[0])
    for i in range(20):
        lab = arr(lv.clean_labels[i])
        assert np.count_nonzero(lab == 1) * vml == pytest.approx(t.cavity_ml[i], rel=0.02), f"cavity, phase {i}"
        assert np.count_nonzero(lab == 2) * vml == pytest.approx(t.myocardium_ml[i], rel=0.02), f"myocardium, phase {i}"
        np.testing.assert_array_equal(lab, arr(lv.series.labels[i]))  # no defects asked for


def test_lv_ed_es_and_constant_myocardium_from_labels(lv):
    pool = [np.count_nonzero(arr(lv.clean_labels[i]) == 1) for i in range(20)]
    myo = [np.count_nonzero(arr(lv.clean_labels[i]) == 2) for i in range(20)]
    assert int(np.argmax(pool)) == lv.truth.ed_index
    assert int(np.argmin(pool)) == lv.truth.es_index
    assert (max(myo) - min(myo)) / np.mean(myo) < 0.10


def _wall_thickness_from_labels(lab: sitk.Image, base_center, long_axis) -> float:
    """Median distance (mm) from epicardial myocardium voxels to the blood pool, more than 10 mm
    below the basal plane."""
    a = arr(lab)
    spacing_zyx = np.array(lab.GetSpacing())[::-1]
    dist_to_pool = ndimage.distance_transform_edt(a != 1, sampling=spacing_zyx)
    epi = (a == 2) & ndimage.binary_dilation(a == 0)
    zz, yy, xx = np.nonzero(epi)
    phys = np.stack([xx, yy, zz], axis=1) * np.array(lab.GetSpacing()) + np.array(lab.GetOrigin())
    below = (phys - np.array(base_center)) @ np.array(long_axis) < -10.0
    return float(np.median(dist_to_pool[epi][below]))


def test_lv_wall_is_thicker_at_end_systole(lv):
    t = lv.truth
    measured = {i: _wall_thickness_from_labels(lv.clean_labels[i], t.base_center_mm[i], t.long_axis) for i in (t.ed_index, t.es_index)}
    for i, m in measured.items():
        assert m == pytest.approx(t.wall_thickness_mm[i], abs=1.0)  # voxel-centre distance, within a voxel
    assert measured[t.es_index] > measured[t.ed_index] + 2.5


def test_lv_intensities_blood_brighter_papillary_dark(lv):
    site = get_site(None)
    i = lv.truth.ed_index
    img, lab, pap = arr(lv.series.phases[i]), arr(lv.clean_labels[i]), arr(lv.papillary[i]).astype(bool)
    pool_core = ndimage.binary_erosion((lab == 1) & ~ndimage.binary_dilation(pap, iterations=2), iterations=2)
    myo_core = ndimage.binary_erosion(lab == 2)
    blood, myo = float(img[pool_core].mean()), float(img[myo_core].mean())
    assert blood == pytest.approx(site.blood_hu, abs=15.0)
    assert myo == pytest.approx(site.myocardium_hu, abs=25.0)
    assert blood > myo + 250.0
    # Papillary muscles: labelled blood pool (consensus rule) but myocardium-like in the image.
    assert pap.sum() > 200
    assert np.all(lab[pap] == 1)
    for ph in range(20):
        assert np.all(arr(lv.clean_labels[ph])[arr(lv.papillary[ph]).astype(bool)] == 1)
    assert float(img[pap].mean()) < (blood + myo) / 2.0
    assert float(img[pap].mean()) == pytest.approx(myo, abs=60.0)


@pytest.mark.skipif(not REAL_CARDIAC_CT.exists(), reason="real cardiac CT crop not present in ../shared/data")
def test_lv_blood_matches_real_cardiac_ct(lv):
    real = arr(sitk.ReadImage(str(REAL_CARDIAC_CT))).astype(float)
    bright = real[(real > 250) & (real < 800)]
    hist, edges = np.histogram(bright, bins=np.arange(250, 810, 10))
    real_blood = edges[np.argmax(hist)] + 5.0
    lab, img = arr(lv.clean_labels[0]), arr(lv.series.phases[0])
    core = ndimage.binary_erosion(lab == 1, iterations=3) & ~arr(lv.papillary[0]).astype(bool)
    assert float(np.median(img[core])) == pytest.approx(real_blood, abs=50.0)


def test_lv_same_seed_same_arrays_other_seed_differs():
    a = beating_lv(seed=5, n_phases=3, spacing=COARSE)
    b = beating_lv(seed=5, n_phases=3, spacing=COARSE)
    c = beating_lv(seed=6, n_phases=3, spacing=COARSE)
    for i in range(3):
        np.testing.assert_array_equal(arr(a.series.phases[i]), arr(b.series.phases[i]))
        np.testing.assert_array_equal(arr(a.series.labels[i]), arr(b.series.labels[i]))
    assert a.truth.cavity_ml == b.truth.cavity_ml
    assert a.truth.cavity_ml != c.truth.cavity_ml
    assert not np.array_equal(arr(a.series.labels[0]), arr(c.series.labels[0]))
    assert not np.array_equal(arr(a.series.phases[0]), arr(c.series.phases[0]))


def test_lv_defects_make_enclosed_holes_and_gaps(lv, lv_defects):
    total_holes = total_gaps = 0
    for i in range(20):
        clean, bad = arr(lv_defects.clean_labels[i]), arr(lv_defects.series.labels[i])
        rec = lv_defects.defects[i]
        # Clean labels are the defect-free truth; so is the image.
        np.testing.assert_array_equal(clean, arr(lv.clean_labels[i]))
        np.testing.assert_array_equal(arr(lv_defects.series.phases[i]), arr(lv.series.phases[i]))
        changed = clean != bad
        assert np.all(clean[changed] == 1) and np.all(bad[changed] == 0)  # only pool turned background
        comps, n = ndimage.label(changed, structure=np.ones((3, 3, 3)))
        assert n == rec["holes"] + rec["gaps"]
        assert changed.sum() == rec["hole_voxels"] + rec["gap_voxels"]
        holes = gaps = 0
        for k in range(1, n + 1):
            comp = comps == k
            ring = ndimage.binary_dilation(comp, structure=np.ones((3, 3, 3))) & ~comp
            if np.all(bad[ring] == 1):
                holes += 1  # enclosed by blood pool on every side
            else:
                assert np.any(bad[ring] == 2) and not np.any(clean[ring] == 0)  # a gap between pool and wall
                gaps += 1
        assert (holes, gaps) == (rec["holes"], rec["gaps"])
        total_holes += holes
        total_gaps += gaps
    assert total_holes >= 2 * 20 and total_gaps >= 20


def test_lv_sites_differ_in_noise_and_contrast():
    measured = {}
    for name in list_sites():
        ph = beating_lv(seed=2, n_phases=2, spacing=(2.0, 2.0, 2.0), site=name)
        img, lab, pap = arr(ph.series.phases[0]), arr(ph.clean_labels[0]), arr(ph.papillary[0]).astype(bool)
        core = ndimage.binary_erosion((lab == 1) & ~ndimage.binary_dilation(pap, iterations=2), iterations=2)
        measured[name] = (float(img[core].std()), float(img[core].mean()))
        assert measured[name][0] == pytest.approx(SITES[name].cardiac_noise_hu, rel=0.15)
        assert measured[name][1] == pytest.approx(SITES[name].blood_hu, abs=20.0)
    noise = sorted(measured, key=lambda n: measured[n][0])
    assert noise == sorted(SITES, key=lambda n: SITES[n].cardiac_noise_hu)
    assert len({round(v[0]) for v in measured.values()}) == len(measured)


def test_lv_bad_input_is_refused():
    with pytest.raises(InputError, match="n_phases"):
        beating_lv(n_phases=1)
    with pytest.raises(InputError, match="spacing"):
        beating_lv(spacing=(1.0, -1.0, 1.0))
    with pytest.raises(InputError, match="unknown site profile 'nowhere'"):
        beating_lv(site="nowhere")
    with pytest.raises(InputError, match="seed"):
        beating_lv(seed=-1)
    with pytest.raises(InputError, match="voxels"):
        beating_lv(spacing=(0.2, 0.2, 0.2))
    with pytest.raises(InputError, match="seed"):
        head_ct(seed=-3)


# ----------------------------------------------------------------------------------------------
# Head CT


@pytest.fixture(scope="module")
def head():
    return head_ct(seed=0, spacing=HEAD_SPACING)


def test_head_every_kind_present_and_volumes_match_truth(head):
    lesions, mask = arr(head.lesions), arr(head.mask)
    vml = voxel_ml(head.image)
    kinds = [h.kind for h in head.truth.lesions]
    assert sorted(kinds) == sorted(HEMORRHAGE_KINDS)
    np.testing.assert_array_equal(mask, (lesions > 0).astype(np.uint8))
    # Thin or small shapes (subarachnoid sheets, the ventricular cap) discretise less exactly.
    tolerance = {"intraparenchymal": 0.03, "subdural": 0.03, "epidural": 0.03, "subarachnoid": 0.10, "intraventricular": 0.10}
    for h in head.truth.lesions:
        count = np.count_nonzero(lesions == h.label)
        assert count > 0, h.kind
        assert count * vml == pytest.approx(h.volume_ml, rel=tolerance[h.kind]), h.kind
        zz, yy, xx = np.nonzero(lesions == h.label)
        centroid = np.array(head.lesions.TransformContinuousIndexToPhysicalPoint([float(xx.mean()), float(yy.mean()), float(zz.mean())]))
        assert np.linalg.norm(centroid - np.array(h.centroid_mm)) < 2.0, h.kind
        assert 0.5 <= h.volume_ml <= 60.0
    assert head.truth.total_volume_ml == pytest.approx(sum(h.volume_ml for h in head.truth.lesions))
    assert np.count_nonzero(mask) * vml == pytest.approx(head.truth.total_volume_ml, rel=0.03)


def test_head_mask_inside_brain_mask_and_brain_volume(head):
    mask, brain = arr(head.mask).astype(bool), arr(head.brain_mask).astype(bool)
    assert mask.any() and not np.any(mask & ~brain)
    assert np.count_nonzero(brain) * voxel_ml(head.image) == pytest.approx(head.truth.intracranial_ml, rel=0.01)
    assert 1100.0 < head.truth.intracranial_ml < 1700.0


def test_head_hounsfield_ranges(head):
    img, brain, lesions = arr(head.image), arr(head.brain_mask).astype(bool), arr(head.lesions)
    site = get_site(None)
    # Air outside the head, bone of the skull, brain, hemorrhage.
    assert float(img[:, :4, :4].mean()) == pytest.approx(-1000.0, abs=5.0)
    outside_brain = ndimage.binary_dilation(brain, iterations=8) & ~brain
    bone = img[outside_brain & (img > 500)]
    assert bone.size > 1000 and 700 <= np.median(bone) <= 1500
    tissue = ndimage.binary_erosion(brain, iterations=4) & (lesions == 0)
    assert 20.0 <= float(np.median(img[tissue])) <= 45.0
    for h in head.truth.lesions:
        assert 55.0 <= h.hu <= 90.0
        # Hyperdense against brain; lesions on the inner table also take partial volume from bone.
        assert float(np.median(img[lesions == h.label])) > site.grey_hu + 10.0, h.kind
        if h.kind == "intraparenchymal":  # surrounded by brain: its core keeps the lesion's HU
            core = ndimage.binary_erosion(lesions == h.label, iterations=1)
            assert float(img[core].mean()) == pytest.approx(h.hu, abs=6.0)


def test_head_negative_scan(head):
    neg = head_ct(seed=0, spacing=HEAD_SPACING, hemorrhage=False)
    assert not arr(neg.mask).any() and not arr(neg.lesions).any()
    assert neg.truth.lesions == [] and neg.truth.total_volume_ml == 0.0 and not neg.truth.has_hemorrhage
    np.testing.assert_array_equal(arr(neg.brain_mask), arr(head.brain_mask))  # same anatomy, no bleed
    # Where the positive scan bleeds away from bone (parenchyma, ventricle), the negative one is brain or CSF.
    deep = np.isin(arr(head.lesions), [h.label for h in head.truth.lesions if h.kind in ("intraparenchymal", "intraventricular")])
    assert float(arr(neg.image)[deep].mean()) < 40.0 and float(arr(head.image)[deep].mean()) > 55.0


def test_head_kind_selection_and_determinism():
    a = head_ct(seed=4, spacing=(3.0, 3.0, 5.0), hemorrhage=["subdural", "subdural", "intraparenchymal"])
    b = head_ct(seed=4, spacing=(3.0, 3.0, 5.0), hemorrhage=["subdural", "subdural", "intraparenchymal"])
    c = head_ct(seed=7, spacing=(3.0, 3.0, 5.0), hemorrhage=["subdural", "subdural", "intraparenchymal"])
    assert sorted(h.kind for h in a.truth.lesions) == ["intraparenchymal", "subdural", "subdural"]
    np.testing.assert_array_equal(arr(a.image), arr(b.image))
    np.testing.assert_array_equal(arr(a.lesions), arr(b.lesions))
    assert not np.array_equal(arr(a.image), arr(c.image))
    assert a.truth.total_volume_ml != c.truth.total_volume_ml
    r = head_ct(seed=3, spacing=(3.0, 3.0, 5.0), hemorrhage="random")
    assert 1 <= len(r.truth.lesions) <= 3 and len({h.kind for h in r.truth.lesions}) == len(r.truth.lesions)
    with pytest.raises(InputError, match="unknown hemorrhage kind"):
        head_ct(seed=0, spacing=(3.0, 3.0, 5.0), hemorrhage=["bleed"])


def test_head_geometry_is_axial_lps_and_centred():
    h = head_ct(seed=1, site="site_c", hemorrhage=False)
    assert h.image.GetSpacing() == pytest.approx(SITES["site_c"].head_spacing)  # the site's spacing by default
    assert h.image.GetDirection() == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
    brain = arr(h.brain_mask)
    zz, yy, xx = np.nonzero(brain)
    centre = np.array(h.image.TransformContinuousIndexToPhysicalPoint([float(xx.mean()), float(yy.mean()), float(zz.mean())]))
    assert np.all(np.abs(centre[:2]) < 5.0)
    size_mm = np.array(h.image.GetSize()) * np.array(h.image.GetSpacing())
    assert np.all(np.abs(centre) < size_mm / 4)
    extent = [(np.ptp(v) + 1) * s for v, s in zip((xx, yy), h.image.GetSpacing()[:2])]
    assert extent[1] > extent[0]  # longer front-to-back than side-to-side


def test_head_sites_differ_in_noise_contrast_and_lesion_size():
    noise, totals = {}, {}
    for name in list_sites():
        h = head_ct(seed=2, spacing=(2.0, 2.0, 4.0), site=name)
        img = arr(h.image)
        corners = np.concatenate([img[:, :6, :6].ravel(), img[:, -6:, -6:].ravel()])
        noise[name] = float(corners.std())
        assert noise[name] == pytest.approx(SITES[name].head_noise_hu, rel=0.2)
        totals[name] = h.truth.total_volume_ml
    assert sorted(noise, key=noise.get) == sorted(SITES, key=lambda n: SITES[n].head_noise_hu)
    assert sorted(totals, key=totals.get) == sorted(SITES, key=lambda n: SITES[n].lesion_scale)
    contrast = {n: SITES[n].grey_hu - SITES[n].white_hu for n in SITES}
    assert len(set(contrast.values())) == len(SITES)


def test_sites_listing_and_lookup():
    names = list_sites()
    assert len(names) >= 3 and names == sorted(SITES)
    assert get_site(None).name == "site_a"
    assert get_site(SITES["site_b"]) is SITES["site_b"]
    for field in ("cardiac_noise_hu", "blood_hu", "head_noise_hu", "head_spacing", "lesion_scale"):
        assert len({str(getattr(SITES[n], field)) for n in names}) == len(names), field
    with pytest.raises(InputError, match="known: site_a"):
        get_site("site_z")

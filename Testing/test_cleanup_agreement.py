"""Inter-rater agreement (Dice, HD95, MSD, volume difference) on shapes with known values, over a set
of cases; consensus fusion by majority vote and STAPLE."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from segtransfer.cleanup import compare_labels, fuse_labels, summarize
from segtransfer.cleanup.agreement import agreement_csv, pair_cases
from segtransfer.errors import GeometryError, InputError
from segtransfer.io import write_labels


def ball_image(radius_mm: float, spacing=(0.5, 0.5, 0.5), extent_mm: float = 15.0, value: int = 1, centre=(0.0, 0.0, 0.0)):
    """Label image of a ball (voxel centres within ``radius_mm`` of ``centre``), grid centred on 0."""
    sizes = [int(round(2 * extent_mm / s)) + 1 for s in spacing]
    axes = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(sizes, spacing)]
    z, y, x = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    r = np.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2)
    img = sitk.GetImageFromArray(((r <= radius_mm) * value).astype(np.uint8))
    img.SetSpacing(spacing)
    img.SetOrigin([-(n - 1) / 2 * s for n, s in zip(sizes, spacing)])
    return img


@pytest.mark.parametrize("spacing", [(0.5, 0.5, 0.5), (0.4, 0.4, 0.8)])
def test_concentric_spheres_give_known_dice_distances_and_volumes(spacing):
    r, R = 8.0, 10.0
    a, b = ball_image(r, spacing), ball_image(R, spacing)
    (row,) = compare_labels(a, b, case="spheres")
    assert row.status == "ok" and row.label == 1
    assert row.dice == pytest.approx(2 * r**3 / (r**3 + R**3), abs=0.01)
    # every point of one surface is 2 mm from the other: HD95 and MSD are 2 mm up to voxelisation
    assert row.msd_mm == pytest.approx(2.0, abs=0.25)
    assert row.hd95_mm == pytest.approx(2.0, abs=0.5)
    va, vb = 4 / 3 * math.pi * r**3 / 1000, 4 / 3 * math.pi * R**3 / 1000
    assert row.volume_a_ml == pytest.approx(va, rel=0.02) and row.volume_b_ml == pytest.approx(vb, rel=0.02)
    voxel_ml = np.prod(spacing) / 1000
    n_a = int(sitk.GetArrayViewFromImage(a).sum())
    n_b = int(sitk.GetArrayViewFromImage(b).sum())
    assert row.volume_diff_ml == pytest.approx((n_b - n_a) * voxel_ml)
    assert row.volume_diff_percent == pytest.approx(100 * (n_b - n_a) / ((n_a + n_b) / 2))


def test_distances_use_the_spacing():
    """The same voxel arrays on a grid twice as coarse give twice the distances."""
    a, b = ball_image(8.0, (0.5, 0.5, 0.5)), ball_image(10.0, (0.5, 0.5, 0.5))
    (fine,) = compare_labels(a, b)
    for img in (a, b):
        img.SetSpacing((1.0, 1.0, 1.0))
    (coarse,) = compare_labels(a, b)
    assert coarse.dice == pytest.approx(fine.dice)
    assert coarse.msd_mm == pytest.approx(2 * fine.msd_mm, rel=1e-5)
    assert coarse.volume_a_ml == pytest.approx(8 * fine.volume_a_ml)


def test_identical_labels_and_missing_labels():
    a = ball_image(6.0, (1.0, 1.0, 1.0))
    arr = sitk.GetArrayFromImage(a)
    two = arr.copy()
    two[:, :, 20:] = np.where(arr[:, :, 20:] == 1, 2, 0)
    b = sitk.GetImageFromArray(two)
    b.CopyInformation(a)
    rows = {r.label: r for r in compare_labels(b, b)}
    assert rows[1].dice == 1.0 and rows[1].hd95_mm == 0.0 and rows[1].msd_mm == 0.0 and rows[2].volume_diff_ml == 0.0
    rows = {r.label: r for r in compare_labels(a, b)}
    assert rows[2].status == "missing in A" and rows[2].dice == 0.0 and math.isnan(rows[2].hd95_mm)
    rows = compare_labels(a, b, labels=[1, 2, 3])
    assert [r.status for r in rows][2] == "absent in both"
    csv_text = agreement_csv(rows)
    assert csv_text.splitlines()[0].startswith("case,label,name,dice,hd95_mm,msd_mm")
    assert len(csv_text.splitlines()) == 4


def test_mismatched_geometry_is_an_error():
    a = ball_image(6.0, (1.0, 1.0, 1.0))
    b = ball_image(6.0, (1.0, 1.0, 1.0))
    b.SetOrigin((5.0, 0.0, 0.0))
    with pytest.raises(GeometryError, match="origin"):
        compare_labels(a, b, where_a="a.nii.gz", where_b="b.nii.gz")
    with pytest.raises(GeometryError, match="b.nii.gz"):
        fuse_labels([a, b], names=["a.nii.gz", "b.nii.gz"])


def test_summary_over_cases_and_folder_pairing(tmp_path):
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    radii = {"case1": (6.0, 7.0), "case2": (6.0, 6.0), "case3": (5.0, 7.0)}
    for case, (ra, rb) in radii.items():
        write_labels(ball_image(ra, (1.0, 1.0, 1.0), 10.0), tmp_path / "A" / f"{case}.nii.gz")
        write_labels(ball_image(rb, (1.0, 1.0, 1.0), 10.0), tmp_path / "B" / f"{case}.seg.nrrd")
    pairs = pair_cases(tmp_path / "A", tmp_path / "B")
    assert [p[0] for p in pairs] == ["case1", "case2", "case3"]
    from segtransfer.cleanup import agreement_over_cases

    rows = agreement_over_cases(pairs)
    summary = summarize(rows)
    dice = [r.dice for r in rows]
    assert dice[1] == 1.0
    s = summary["labels"]["1"]
    assert s["cases"] == 3 and s["dice"]["mean"] == pytest.approx(np.mean(dice)) and s["dice"]["min"] == min(dice)
    assert s["abs_volume_diff_ml"]["max"] == pytest.approx(max(abs(r.volume_diff_ml) for r in rows))
    (tmp_path / "B" / "case3.seg.nrrd").unlink()
    with pytest.raises(InputError, match="only in .*A: case3"):
        pair_cases(tmp_path / "A", tmp_path / "B")


# --------------------------------------------------------------------------------------------
# fusion


def truth_and_raters():
    """Truth: pool ball in a wall shell.  Rater 1 and 2 each have a small error of their own (on
    different voxels); rater 3 is wrong on a large region (pool called wall, extra blob)."""
    shape = (24, 24, 24)
    z, y, x = np.indices(shape)
    r = np.sqrt((x - 11.5) ** 2 + (y - 11.5) ** 2 + (z - 11.5) ** 2)
    truth = np.zeros(shape, dtype=np.uint8)
    truth[r <= 10] = 2
    truth[r <= 6] = 1
    r1, r2, r3 = truth.copy(), truth.copy(), truth.copy()
    r1[11, 11, 3:6] = 0                       # rater 1 misses 3 wall voxels
    r2[(r > 6) & (r <= 7) & (z > 14)] = 1     # rater 2 draws the pool one voxel too wide on top
    r3[(r <= 6) & (x < 11)] = 2               # rater 3 calls half the pool wall...
    r3[0:4, 0:4, 0:4] = 1                     # ...and adds a blob
    return truth, [r1, r2, r3]


def as_images(arrays, spacing=(1.0, 1.0, 1.0)):
    out = []
    for arr in arrays:
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing(spacing)
        out.append(img)
    return out


@pytest.mark.parametrize("method", ["majority", "staple"])
def test_three_raters_with_one_wrong_fuse_to_the_truth(method):
    truth, raters = truth_and_raters()
    result = fuse_labels(as_images(raters), method=method)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result.labels.image), truth)
    assert result.report["undecided_voxels"] == 0
    assert result.report["labels"]["1"]["voxels"] == int((truth == 1).sum())
    if method == "staple":
        sens = result.report["rater_sensitivity"]
        assert sens["rater 3"]["1"] < 0.7 < min(sens["rater 1"]["1"], sens["rater 2"]["1"])


def test_two_raters_ties_go_to_the_first_rater_or_a_given_value():
    truth, (r1, r2, _) = truth_and_raters()
    disagree = r1 != r2
    result = fuse_labels(as_images([r2, r1]), method="majority")
    assert result.report["undecided_voxels"] == int(disagree.sum())
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result.labels.image), r2)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result.undecided), disagree.astype(np.uint8))
    result = fuse_labels(as_images([r2, r1]), method="majority", tie=255)
    fused = sitk.GetArrayFromImage(result.labels.image)
    assert (fused[disagree] == 255).all() and (fused[~disagree] == r1[~disagree]).all()


def test_fusion_refuses_bad_input():
    truth, raters = truth_and_raters()
    with pytest.raises(InputError, match="at least two"):
        fuse_labels(as_images(raters[:1]))
    with pytest.raises(InputError, match="method"):
        fuse_labels(as_images(raters), method="mean")
    with pytest.raises(InputError, match="tie"):
        fuse_labels(as_images(raters), tie="last")

"""Multi-label closing: exact Euclidean-ball closing, known defects repaired with known voxel counts,
documented labelling of gaps, outer boundaries kept, image border not eroding, radius in mm per axis."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from segtransfer.cleanup import binary_closing, close_labels, make_ball, reference_closing
from segtransfer.errors import InputError
from segtransfer.io import LabelImage
from segtransfer.phantoms import spherical_shell


def image_of(arr: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)) -> sitk.Image:
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetOrigin(origin)
    return img


def closed_array(result) -> np.ndarray:
    return sitk.GetArrayFromImage(result.labels.image)


def brute_force_ball(radius: float, scale_zyx) -> np.ndarray:
    """The ball {v : |v * scale| <= r}, enumerated directly (independent of the module's code)."""
    half = [int(math.floor(radius * (1 + 1e-9) / s)) for s in scale_zyx]
    grids = np.meshgrid(*(np.arange(-h, h + 1) * s for h, s in zip(half, scale_zyx)), indexing="ij")
    return sum(g * g for g in grids) <= (radius * (1 + 1e-9)) ** 2


# --------------------------------------------------------------------------------------------
# exactness against brute force


@pytest.mark.parametrize("seed", range(8))
def test_closing_equals_brute_force_ball_closing(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(10, 20, 3))
    mask = ndimage.binary_dilation(rng.random(shape) < 0.05) & (rng.random(shape) < 0.75)
    spacing = [(1.0, 1.0, 1.0), (0.7, 0.9, 2.5), (1.25, 1.25, 2.0), (0.5, 0.5, 0.5)][seed % 4]
    unit = "voxel" if seed < 4 else "mm"
    radius = [2.0, 3.0, 5.0, math.sqrt(5)][seed % 4] if unit == "voxel" else [3.5, 2.5, 4.0, 2.0][seed % 4]
    ball = make_ball(radius, spacing, unit)
    scale = (1.0,) * 3 if unit == "voxel" else tuple(reversed(spacing))
    np.testing.assert_array_equal(ball.footprint(), brute_force_ball(radius, scale))

    # independent brute force: SciPy dilation then erosion with the explicit footprint, padded
    fp = brute_force_ball(radius, scale)
    pad = [(h + 1, h + 1) for h in (np.array(fp.shape) // 2)]
    expected = ndimage.binary_erosion(ndimage.binary_dilation(np.pad(mask, pad), structure=fp), structure=fp)
    expected = expected[tuple(slice(p, p + n) for (p, _), n in zip(pad, shape))]
    assert expected.sum() > mask.sum()  # the test volume really has something to close
    np.testing.assert_array_equal(binary_closing(mask, ball), expected)
    np.testing.assert_array_equal(reference_closing(mask, ball), expected)
    # the float64 path (used when float32 distances could not separate inside from outside)
    np.testing.assert_array_equal(binary_closing(mask, dataclasses.replace(ball, relative_gap=0.0)), expected)

    # the multi-label closing closes exactly the union and never changes a labelled voxel
    labels = (mask * rng.integers(1, 3, shape)).astype(np.uint8)
    result = close_labels(image_of(labels, spacing), radius, unit)
    out = closed_array(result)
    np.testing.assert_array_equal(out != 0, expected)
    np.testing.assert_array_equal(out[labels != 0], labels[labels != 0])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result.changes), (expected & (labels == 0)).astype(np.uint8))


def test_ball_sphere_offsets_are_inside():
    ball = make_ball(5, (1.0, 1.0, 1.0), "voxel")
    fp = ball.footprint()
    assert fp.shape == (11, 11, 11)
    assert fp[5 + 3, 5 + 4, 5] and fp[5, 5, 10]  # |(3, 4, 0)| = 5 and |(0, 0, 5)| = 5 are on the sphere
    assert not fp[5 + 3, 5 + 4, 5 + 1]  # |(3, 4, 1)| > 5
    assert ball.voxels == 515


# --------------------------------------------------------------------------------------------
# known defects


def shell_labels():
    lab, truth = spherical_shell(10.0, 16.0, spacing=(1.0, 1.0, 1.0))
    return lab, lab.array()


def test_enclosed_hole_in_pool_adds_exactly_its_voxels_to_pool():
    lab, clean = shell_labels()
    c = np.array(clean.shape) // 2
    bad = clean.copy()
    bad[c[0] - 1:c[0] + 1, c[1] - 1:c[1] + 2, c[2] - 1:c[2] + 2] = 0  # 2 x 3 x 3 = 18 voxels, all pool
    assert (clean[bad != clean] == 1).all() and (bad != clean).sum() == 18
    img = image_of(bad)
    img.CopyInformation(lab.image)
    result = close_labels(LabelImage(img, lab.segments), 5, "voxel")
    rep = result.report
    np.testing.assert_array_equal(closed_array(result), clean)
    assert rep.voxels_changed == 18
    assert rep.label(1).voxels_added == 18 and rep.label(2).voxels_added == 0
    assert rep.label(1).ml_added == pytest.approx(18 * 0.001)
    assert len(rep.regions) == 1
    region = rep.regions[0]
    assert region.kind == "hole" and region.voxels == 18 and region.labels == {1: 18}
    # centroid in LPS mm: the hole's index centre through the image geometry
    centre_idx = [float(c[2]), float(c[1]), float(c[0]) - 0.5]
    np.testing.assert_allclose(region.centroid_mm, img.TransformContinuousIndexToPhysicalPoint(centre_idx), atol=1e-9)
    assert [s.name for s in result.labels.segments] == [s.name for s in lab.segments]
    json.loads(rep.to_json())  # the report is valid JSON


def box_with_gap(a=6, b=7, c=8, gap=1, wall=4, margin=3):
    """Pool box a x b x c (z, y, x), then a background gap layer ``gap`` thick all around it, then a
    wall ``wall`` thick: the gap is enclosed between pool and wall."""
    inner = np.array([a, b, c])
    shape = inner + 2 * (gap + wall + margin)
    arr = np.zeros(shape, dtype=np.uint8)
    o = margin
    arr[o:shape[0] - o, o:shape[1] - o, o:shape[2] - o] = 2
    o += wall
    arr[o:shape[0] - o, o:shape[1] - o, o:shape[2] - o] = 0
    o += gap
    arr[o:shape[0] - o, o:shape[1] - o, o:shape[2] - o] = 1
    return arr


def test_one_voxel_gap_between_pool_and_wall_follows_the_nearest_label_rule():
    a, b, c = 6, 7, 8
    arr = box_with_gap(a, b, c, gap=1)
    result = close_labels(image_of(arr), 5, "voxel")
    out = closed_array(result)
    gap = (arr == 0) & (out != 0)
    n_gap = (a + 2) * (b + 2) * (c + 2) - a * b * c
    assert gap.sum() == n_gap  # the whole enclosed gap is filled and nothing else
    # face voxels of the gap have pool and wall at 1 voxel: a tie, which goes to the lower label (pool);
    # edge and corner voxels have the wall at 1 voxel and the pool at sqrt(2) or sqrt(3): wall
    rep = result.report
    assert rep.label(1).voxels_added == 2 * (a * b + b * c + a * c)
    assert rep.label(2).voxels_added == 4 * (a + b + c) + 8
    assert [r.kind for r in rep.regions] == ["gap"]
    # the outer surface (wall voxels next to the background) did not move
    outer_before = (arr == 2) & ndimage.binary_dilation(arr == 0, structure=ndimage.generate_binary_structure(3, 1))
    outer_after = (out == 2) & ndimage.binary_dilation(out == 0, structure=ndimage.generate_binary_structure(3, 1))
    outside = ~ndimage.binary_fill_holes(arr != 0)
    np.testing.assert_array_equal(outer_before & ndimage.binary_dilation(outside), outer_after)


def test_two_voxel_gap_splits_down_the_middle():
    a, b, c = 6, 6, 6
    arr = box_with_gap(a, b, c, gap=2)
    out = closed_array(close_labels(image_of(arr), 5, "voxel"))
    gap = (arr == 0) & (out != 0)
    # expected labels by the documented rule, computed independently with SciPy distance maps
    d1 = ndimage.distance_transform_edt(arr != 1)
    d2 = ndimage.distance_transform_edt(arr != 2)
    expected = np.where(d1 <= d2, 1, 2)
    np.testing.assert_array_equal(out[gap], expected[gap])
    # the gap layer next to the pool faces went to the pool, the one next to the wall to the wall
    mid = np.array(arr.shape) // 2
    line = out[mid[0], mid[1], :]
    first_pool = int(np.flatnonzero(arr[mid[0], mid[1], :] == 1)[0])
    assert line[first_pool - 1] == 1 and line[first_pool - 2] == 2


def test_clean_shell_and_convex_shapes_are_unchanged():
    lab, clean = shell_labels()
    for radius, unit in ((5, "voxel"), (3.0, "mm")):
        result = close_labels(lab, radius, unit)
        assert result.report.voxels_changed == 0
        np.testing.assert_array_equal(closed_array(result), clean)
    # an anisotropic, oblique grid: still unchanged, geometry kept
    lab2, _ = spherical_shell(12.0, 18.0, spacing=(0.9, 0.9, 2.0), direction=(0, 1, 0, -1, 0, 0, 0, 0, 1))
    result = close_labels(lab2, 4.0, "mm")
    assert result.report.voxels_changed == 0
    assert result.labels.image.GetDirection() == lab2.image.GetDirection()
    assert result.labels.image.GetOrigin() == lab2.image.GetOrigin()


def test_nothing_grows_beyond_the_closing_of_the_union():
    lab, clean = shell_labels()
    rng = np.random.default_rng(3)
    bad = clean.copy()
    bad[(rng.random(bad.shape) < 0.04) & (clean == 1)] = 0  # scattered pool holes
    bad[(rng.random(bad.shape) < 0.04) & (clean == 2)] = 0  # scattered wall holes, some on the surface
    out = closed_array(close_labels(image_of(bad), 2, "voxel"))
    exact = reference_closing(bad != 0, make_ball(2, (1, 1, 1)))
    np.testing.assert_array_equal(out != 0, exact)
    assert not np.any((out != 0) & (clean == 0))  # no voxel outside the original shell was labelled


def test_object_touching_the_image_border_is_not_eroded():
    arr = np.zeros((12, 14, 16), dtype=np.uint8)
    arr[:, :, :9] = 2  # wall fills the volume's side: touches five faces of the image
    arr[2:10, 3:11, :6] = 1
    arr[5:7, 6:8, 0:2] = 0  # a hole in the pool open to the border face x = 0: not enclosed
    arr[5:7, 6:8, 3:5] = 0  # an enclosed 8-voxel hole
    result = close_labels(image_of(arr), 5, "voxel")
    out = closed_array(result)
    np.testing.assert_array_equal(out[arr != 0], arr[arr != 0])  # nothing eroded at the border
    assert (out[5:7, 6:8, 3:5] == 1).all()
    # the pocket open to the border stays open at the border voxel layer, as the exact closing says
    exact = reference_closing(arr != 0, make_ball(5, (1, 1, 1)))
    np.testing.assert_array_equal(out != 0, exact)
    # without padding, the border acts as background for the erosion and eats into the object
    fp = make_ball(5, (1, 1, 1)).footprint()
    unpadded = ndimage.binary_erosion(ndimage.binary_dilation(arr != 0, structure=fp), structure=fp, border_value=0)
    assert np.any((arr != 0) & ~unpadded)


def test_radius_in_mm_acts_per_axis_on_an_anisotropic_grid():
    spacing = (0.5, 0.5, 2.0)  # x, y, z mm
    ball = make_ball(1.5, spacing, "mm")
    assert ball.half_width_zyx == (0, 3, 3)
    ball = make_ball(2.0, spacing, "mm")
    assert ball.half_width_zyx == (1, 4, 4)
    assert make_ball(2.0, spacing, "voxel").half_width_zyx == (2, 2, 2)

    side, arr = 20, np.zeros((9, 26, 26), dtype=np.uint8)
    arr[2:4, 3:3 + side, 3:3 + side] = 1  # two square plates, one slice (2 mm) apart
    arr[5:7, 3:3 + side, 3:3 + side] = 1
    img = image_of(arr, spacing)
    assert close_labels(img, 1.5, "mm").report.voxels_changed == 0  # 1.5 mm cannot bridge 2 mm
    out = closed_array(close_labels(img, 2.0, "mm"))
    # 2 mm bridges the slice where the in-plane disc of radius 4 voxels (2 mm) lies within the plates
    filled = (out != 0) & (arr == 0)
    assert filled.sum() == (side - 8) ** 2 and filled[4].sum() == (side - 8) ** 2
    # one voxel of radius bridges the slice wherever the in-plane cross lies within the plates
    out = closed_array(close_labels(img, 1, "voxel"))
    assert ((out != 0) & (arr == 0)).sum() == (side - 2) ** 2


def test_bad_input_is_refused_with_one_line():
    arr = np.zeros((5, 5, 5), dtype=np.uint8)
    with pytest.raises(InputError, match="case7.nii.gz: label map has no labelled voxels"):
        close_labels(image_of(arr), 5, where="case7.nii.gz")
    arr[2, 2, 2] = 1
    for radius in (0, -1, float("nan"), float("inf")):
        with pytest.raises(InputError, match="radius"):
            close_labels(image_of(arr), radius)
    with pytest.raises(InputError, match="unit"):
        close_labels(image_of(arr), 2, "cm")
    with pytest.raises(InputError, match="non-integer"):
        close_labels(image_of(arr.astype(np.float32) * 0.5), 2)
    vec = sitk.Compose([image_of(arr)] * 2)
    with pytest.raises(InputError, match="components"):
        close_labels(vec, 2)

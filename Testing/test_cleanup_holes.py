"""Plain hole fill (enclosed holes only, optional size limit) and the minimum-size rule, with exact
voxel counts; the combined pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from segtransfer.cleanup import clean_labels, close_labels, fill_holes, remove_small_components
from segtransfer.errors import InputError


def image_of(arr: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> sitk.Image:
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    img.SetSpacing(spacing)
    return img


def out_of(result) -> np.ndarray:
    return sitk.GetArrayFromImage(result.labels.image)


def pool_in_wall(shape=(24, 24, 24)) -> np.ndarray:
    """Wall block (2) around a pool block (1) with 3 voxels of margin."""
    arr = np.zeros(shape, dtype=np.uint8)
    arr[3:-3, 3:-3, 3:-3] = 2
    arr[6:-6, 6:-6, 6:-6] = 1
    return arr


def test_enclosed_holes_are_filled_and_open_ones_are_not():
    arr = pool_in_wall()
    arr[8:10, 8:10, 8:10] = 0         # enclosed in pool: 8 voxels
    arr[12:15, 12:15, 12:15] = 0      # enclosed in pool: 27 voxels
    arr[10:12, 4, 10:12] = 0          # enclosed in wall: 4 voxels
    arr[15, 15, 0:9] = 0              # tunnel from the image border into the pool: open, 9 voxels
    before = arr.copy()
    result = fill_holes(image_of(arr))
    out = out_of(result)
    assert (out[8:10, 8:10, 8:10] == 1).all() and (out[12:15, 12:15, 12:15] == 1).all()
    assert (out[10:12, 4, 10:12] == 2).all()
    assert (out[15, 15, 0:9] == 0).all()  # open to the outside: kept
    rep = result.report
    assert rep.label(1).voxels_added == 35 and rep.label(2).voxels_added == 4
    assert rep.voxels_changed == 39
    assert sorted(r.voxels for r in rep.regions) == [4, 8, 27]
    assert {r.kind for r in rep.regions} == {"hole"}
    assert rep.parameters["holes_found"] == 3
    np.testing.assert_array_equal(out[before != 0], before[before != 0])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result.changes), (out != before).astype(np.uint8))


def test_a_diagonal_only_opening_does_not_open_a_hole():
    """Background is face-connected (6-connectivity): a hole touching the outside only along an edge
    is enclosed and filled."""
    arr = np.zeros((9, 9, 9), dtype=np.uint8)
    arr[1:8, 1:8, 1:8] = 1
    arr[4, 4, 4] = 0
    arr[1:4, 1:4, 1:4] = 1
    arr[3, 3, 3] = 0       # pocket one diagonal step from...
    arr[2, 2, 2] = 0       # ...this one, itself diagonal to...
    arr[1, 1, 1] = 0       # ...a dent in the object's corner, face-adjacent to the outside
    result = fill_holes(image_of(arr))
    out = out_of(result)
    assert out[4, 4, 4] == 1 and out[3, 3, 3] == 1 and out[2, 2, 2] == 1
    assert out[1, 1, 1] == 0  # open to the outside through a face: not a hole
    assert result.report.voxels_changed == 3 and len(result.report.regions) == 3


def test_max_hole_size_in_voxels_and_ml():
    arr = pool_in_wall()
    arr[8:10, 8:10, 8:10] = 0       # 8 voxels
    arr[12:15, 12:15, 12:15] = 0    # 27 voxels
    out = out_of(fill_holes(image_of(arr), max_hole_size=10))
    assert (out[8:10, 8:10, 8:10] == 1).all() and (out[12:15, 12:15, 12:15] == 0).all()
    out = out_of(fill_holes(image_of(arr), max_hole_size=27))
    assert (out[12:15, 12:15, 12:15] == 1).all()
    # 2 mm voxels: 0.008 mL each; 8 voxels = 0.064 mL, 27 voxels = 0.216 mL
    result = fill_holes(image_of(arr, (2.0, 2.0, 2.0)), max_hole_size=0.1, size_unit="ml")
    assert result.report.label(1).voxels_added == 8
    assert result.report.label(1).ml_added == pytest.approx(0.064)


def test_hole_fill_fills_what_a_small_closing_cannot():
    arr = pool_in_wall((30, 30, 30))
    arr[10:20, 10:20, 10:20] = 0  # 1000-voxel cubic hole: wider than a radius-2 ball
    closed = out_of(close_labels(image_of(arr), 2))
    # the closing only rounds the cavity's edges and corners; voxels 3 or more from its walls stay empty
    assert (closed[13:17, 13:17, 13:17] == 0).all() and 0 < (closed[10:20, 10:20, 10:20] == 1).sum() < 1000
    assert fill_holes(image_of(arr)).report.label(1).voxels_added == 1000


def test_hole_between_two_labels_is_split_by_nearest_label():
    arr = np.zeros((12, 12, 20), dtype=np.uint8)
    arr[2:10, 2:10, 2:10] = 1
    arr[2:10, 2:10, 10:18] = 2
    arr[4:8, 4:8, 8:12] = 0  # a 4 x 4 x 4 hole across the boundary between the labels
    out = out_of(fill_holes(image_of(arr)))
    assert (out[4:8, 4:8, 8:10] == 1).all() and (out[4:8, 4:8, 10:12] == 2).all()


def test_minimum_size_rule_removes_components_strictly_smaller():
    arr = pool_in_wall()
    arr[10:12, 10:12, 10] = 2          # 4-voxel myocardium speck inside the pool
    arr[0, 0, 0:5] = 1                 # 5-voxel pool island outside
    arr[0, 20, 20] = 1
    arr[1, 21, 21] = 1                 # 2 voxels touching along a corner: one component (26-connectivity)
    result = remove_small_components(image_of(arr), min_size=5)
    out = out_of(result)
    assert (out[10:12, 10:12, 10] == 0).all()   # 4 < 5: removed
    assert (out[0, 0, 0:5] == 1).all()          # 5 is not smaller than 5: kept
    assert out[0, 20, 20] == 0 and out[1, 21, 21] == 0
    rep = result.report
    assert sorted((r.voxels, r.labels.popitem()[0]) for r in rep.regions) == [(2, 1), (4, 2)]
    assert rep.label(2).voxels_removed == 4 and rep.label(1).voxels_removed == 2
    assert {r.change for r in rep.regions} == {"removed"}
    # in the pipeline the removed speck becomes a hole that the fill gives to the pool around it
    result = clean_labels(image_of(arr), radius=None, fill=True, min_component_size=5)
    out = out_of(result)
    assert (out[10:12, 10:12, 10] == 1).all()
    assert result.report.label(1).voxels_added == 4 and result.report.label(2).voxels_removed == 4
    assert result.report.operation == "remove-small+fill-holes"


def test_pipeline_report_counts_input_to_output():
    arr = pool_in_wall((30, 30, 30))
    arr[10:20, 10:20, 10:20] = 0   # big hole: only the fill closes it
    arr[6:8, 20, 20] = 0           # thin slot at the pool/wall boundary, enclosed
    result = clean_labels(image_of(arr), radius=3, fill=True)
    out = out_of(result)
    assert not np.any(out[3:-3, 3:-3, 3:-3] == 0)
    assert result.report.voxels_changed == int((out != arr).sum()) == 1002
    assert {r.step for r in result.report.regions} == {"close", "fill-holes"}
    with pytest.raises(InputError, match="no step"):
        clean_labels(image_of(arr), radius=None)


def test_bad_sizes_and_empty_maps_are_refused():
    arr = pool_in_wall()
    with pytest.raises(InputError, match="max hole size"):
        fill_holes(image_of(arr), max_hole_size=-1)
    with pytest.raises(InputError, match="size unit"):
        fill_holes(image_of(arr), max_hole_size=1, size_unit="cc")
    with pytest.raises(InputError, match="no labelled voxels"):
        fill_holes(image_of(np.zeros((4, 4, 4), np.uint8)))

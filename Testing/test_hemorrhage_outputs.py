"""CT hemorrhage outputs that need no trained model: lesion statistics, the overlay's orientation, the
output-folder guard and the CSV summary."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import SimpleITK as sitk

from geometry_helpers import oblique_direction
from segtransfer.errors import InputError
from segtransfer.hemorrhage.infer import HemorrhageResult, select_lesions
from segtransfer.hemorrhage.report import check_output_folder, overlay_montage, summary_csv, write_outputs
from segtransfer.phantoms import head_ct


def _mask_with_two_boxes(direction=None) -> sitk.Image:
    """uint8 mask [z, y, x] = [10, 20, 30] at 0.5 x 0.8 x 2.5 mm with two boxes of known size."""
    arr = np.zeros((10, 20, 30), np.uint8)
    arr[2:5, 3:7, 4:9] = 1     # 3 x 4 x 5 = 60 voxels, slices 2..4
    arr[6:10, 10:12, 20:23] = 1  # 4 x 2 x 3 = 24 voxels, slices 6..9
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing((0.5, 0.8, 2.5))
    image.SetOrigin((-10.0, 20.0, 5.0))
    if direction is not None:
        image.SetDirection(direction)
    return image


@pytest.mark.parametrize("direction", [None, oblique_direction()])
def test_lesions_have_exact_volume_centroid_and_slice_range(direction):
    mask = _mask_with_two_boxes(direction)
    voxel_ml = 0.5 * 0.8 * 2.5 / 1000.0
    lesions = select_lesions(mask, 0.0)[1]
    assert [les.voxels for les in lesions] == [60, 24]  # largest first
    assert [les.volume_ml for les in lesions] == pytest.approx([60 * voxel_ml, 24 * voxel_ml])
    assert [les.slices for les in lesions] == [(2, 4), (6, 9)]
    # centroid: the physical point of the box's mean index (continuous index, x y z order)
    expected = mask.TransformContinuousIndexToPhysicalPoint((6.0, 4.5, 3.0))
    assert lesions[0].centroid_lps == pytest.approx(expected, abs=1e-6)


def test_lesions_below_the_minimum_size_are_dropped():
    """Boxes of 60 and 24 voxels (0.06 and 0.024 mL): a 0.03 mL minimum drops only the smaller, 0 keeps both;
    a diagonal neighbour counts as connected (26-connectivity, as in the lesion list)."""
    mask = _mask_with_two_boxes()
    kept = select_lesions(mask, 0.03)[0]
    assert [les.voxels for les in select_lesions(kept, 0.0)[1]] == [60]
    assert kept.GetSpacing() == mask.GetSpacing() and kept.GetOrigin() == mask.GetOrigin()
    assert [les.voxels for les in select_lesions(mask, 0.0)[1]] == [60, 24]
    arr = sitk.GetArrayFromImage(mask)
    arr[5, 7, 9] = 1  # touches the 60-voxel box only at a corner: 61 voxels, kept at 0.0605 mL where the box alone (60) would go
    joined = sitk.GetImageFromArray(arr)
    joined.CopyInformation(mask)
    kept_joined, lesions_joined = select_lesions(joined, 0.0605)
    assert [les.voxels for les in lesions_joined] == [61] and sitk.GetArrayViewFromImage(kept_joined).sum() == 61


@pytest.mark.parametrize("orientation", ["LPS", "RAS", "AIL", "SLP"])
def test_lesions_found_on_the_study_grid_are_reported_on_the_input_grid(orientation):
    """select_lesions on the study grid with ``grid`` the input (same voxels, another axis order) gives the
    lesions, volumes, centroids and slice ranges that labelling the mask on the input grid gives."""
    mask = _mask_with_two_boxes()
    arr = sitk.GetArrayFromImage(mask)
    arr[1, 15, 2] = 1  # a speck: dropped at 0.02 mL (20 voxels)
    mask = sitk.GetImageFromArray(arr)
    mask.SetSpacing((0.5, 0.8, 2.5))
    mask.SetOrigin((-10.0, 20.0, 5.0))
    grid = sitk.DICOMOrient(mask, orientation)
    kept, lesions = select_lesions(mask, 0.02, grid=grid)
    expected = select_lesions(grid, 0.02)[1]  # labelled on the input grid itself
    assert sitk.GetArrayViewFromImage(kept).sum() == 84
    assert [les.voxels for les in lesions] == [les.voxels for les in expected] == [60, 24]
    assert [les.slices for les in lesions] == [les.slices for les in expected]
    for got, want in zip(lesions, expected):
        assert got.centroid_lps == pytest.approx(want.centroid_lps, abs=1e-6)
    if orientation == "SLP":  # the input's third axis runs along the study grid's second (y, posterior)
        assert [les.slices for les in lesions] == [(3, 6), (10, 11)]


def test_overlay_draws_anterior_up_and_patient_right_on_the_left(tmp_path):
    """An epidural hematoma (anterior, from the phantom's truth) lands in the upper half of the montage
    whatever the input's orientation; a lesion on the patient's right lands on the viewer's left."""
    from PIL import Image

    h = head_ct(seed=0, site="site_a", spacing=(2.0, 2.0, 6.0), hemorrhage=["epidural"])
    lesion = h.truth.lesions[0]
    assert lesion.centroid_mm[1] < -40.0  # LPS y negative: anterior

    def red_centre(image, mask, name):
        path = overlay_montage(image, mask, tmp_path / name, tiles=1)
        rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
        red = (rgb[..., 0] - rgb[..., 1] > 60) & (rgb[..., 0] - rgb[..., 2] > 60)  # the red hemorrhage tint
        rows, cols = np.nonzero(red)
        return rows.mean() / rgb.shape[0], cols.mean() / rgb.shape[1]

    row, _ = red_centre(h.image, h.mask, "lps.png")
    assert row < 0.3
    flipped_image, flipped_mask = sitk.DICOMOrient(h.image, "RAI"), sitk.DICOMOrient(h.mask, "RAI")
    assert red_centre(flipped_image, flipped_mask, "rai.png")[0] == pytest.approx(row, abs=1e-6)

    # a box on the patient's right (LPS x < 0) is drawn left of the centre
    arr = np.zeros(sitk.GetArrayViewFromImage(h.image).shape, np.uint8)
    centre = np.array(arr.shape) // 2
    arr[centre[0], centre[1] - 3:centre[1] + 3, 5:15] = 1  # small x index = patient's right
    right = sitk.GetImageFromArray(arr)
    right.CopyInformation(h.image)
    assert red_centre(h.image, right, "right.png")[1] < 0.25


def test_overlay_tiles_show_the_head_and_every_marked_voxel(tmp_path):
    """The tiles are cut to the box around the head (above -500 HU) and the hemorrhage on the tiles' slices,
    plus TILE_MARGIN pixels: air is left out, a marked voxel outside the head is not."""
    from PIL import Image

    from segtransfer.hemorrhage.report import TILE_MARGIN

    arr = np.full((4, 120, 100), -1000.0, np.float32)
    arr[:, 30:80, 20:60] = 30.0  # the head: rows 30..79, columns 20..59
    marks = np.zeros(arr.shape, np.uint8)
    marks[1, 40:44, 30:34] = 1  # inside the head
    marks[2, 100:102, 90:92] = 1  # in the air, below and right of the head
    image, mask = sitk.GetImageFromArray(arr), sitk.GetImageFromArray(marks)
    rgb = np.asarray(Image.open(overlay_montage(image, mask, tmp_path / "o.png")).convert("RGB")).astype(int)
    height, width = 102 + TILE_MARGIN - (30 - TILE_MARGIN), 92 + TILE_MARGIN - (20 - TILE_MARGIN)
    assert rgb.shape[:2] == (height, 2 * width)  # two tiles: the slices with marks
    red = (rgb[..., 0] - rgb[..., 1] > 60) & (rgb[..., 0] - rgb[..., 2] > 60)
    assert red[:, :width].sum() == 16 and red[:, width:].sum() == 4
    assert red[40 - 30 + TILE_MARGIN, 30 - 20 + TILE_MARGIN] and red[100 - 30 + TILE_MARGIN, width + 90 - 20 + TILE_MARGIN]
    # brain window 0..80 HU: the 30 HU head is gray 30 / 80 * 255 (to the window's 0.63 HU steps), air black,
    # a marked voxel the same gray tinted: 40 % of it plus 60 % of (230, 30, 30)
    gray = 30.0 / 80.0 * 255.0
    assert np.abs(rgb[50 - 30 + TILE_MARGIN, 50 - 20 + TILE_MARGIN] - gray).max() <= 2.1
    assert rgb[0, 0].tolist() == [0, 0, 0]
    tint = 0.4 * gray + 0.6 * np.array([230.0, 30.0, 30.0])
    assert np.abs(rgb[40 - 30 + TILE_MARGIN, 30 - 20 + TILE_MARGIN] - tint).max() <= 1.5


def test_output_folder_guard_and_csv(tmp_path):
    mask = _mask_with_two_boxes()
    image = sitk.Cast(mask, sitk.sitkFloat32) * 60.0 + 20.0
    result = HemorrhageResult(mask, sitk.Cast(mask * 0 + 1, sitk.sitkUInt8), float(84 * 0.5 * 0.8 * 2.5 / 1000), True, select_lesions(mask, 0.0)[1])
    out = tmp_path / "out"
    write_outputs(out, "scan", image, result, {"name": "test"})
    rows = list(csv.DictReader(io.StringIO((out / "summary.csv").read_text(encoding="utf-8"))))
    assert [(r["first_slice"], r["last_slice"]) for r in rows] == [("2", "4"), ("6", "9")]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert [les["slices"] for les in summary["lesions"]] == [[2, 4], [6, 9]]
    assert summary_csv("scan", summary) == (out / "summary.csv").read_text(encoding="utf-8")
    write_outputs(out, "scan", image, result, {"name": "test"})  # an earlier output is replaced
    precious = tmp_path / "documents"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not hemorrhage outputs"):
        write_outputs(precious, "scan", image, result, {"name": "test"})
    assert (precious / "notes.txt").read_text(encoding="utf-8") == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        check_output_folder(tmp_path / "file")


def _shifting_network():
    """A one-layer 'network' with a known, left-right asymmetric response: a bright pixel at column i gives
    logit 9 at i, 1 at i + 1 (its right-hand neighbour in the array) and -11 at i - 1."""
    import torch

    conv = torch.nn.Conv2d(1, 1, (1, 3), padding=(0, 1))
    with torch.no_grad():
        conv.weight[:] = torch.tensor([2.0, 10.0, -10.0]).reshape(1, 1, 1, 3)  # out[i] = 2 x[i-1] + 10 x[i] - 10 x[i+1] - 1
        conv.bias[:] = -1.0
    return conv


def test_left_right_flip_averaging_gives_the_mirror_symmetric_answer():
    """Plain: the asymmetric network marks the bright pixel and its right-hand neighbour (sigmoid(1) = 0.73).
    Flip averaging: the neighbour's mean probability is (sigmoid(1) + sigmoid(-11)) / 2 = 0.37, so only the
    pixel itself is marked, on every slice and also through the sliding window (slices wider than the window)."""
    from segtransfer.hemorrhage.infer import predict_slices

    x = np.zeros((3, 20, 70), np.float32)
    x[:, 7, 40] = 1.0
    x[1, 15, 3] = 1.0  # near the slice border
    plain = predict_slices(_shifting_network(), x, roi=(16, 32))
    assert sorted(map(tuple, np.argwhere(plain[0]))) == [(7, 40), (7, 41)]
    both = predict_slices(_shifting_network(), x, roi=(16, 32), flip_average=True)
    np.testing.assert_array_equal(both, x > 0)


def test_unknown_flip_option_in_a_package_is_refused():
    from segtransfer.hemorrhage.infer import flip_average_of

    assert flip_average_of({"extra": {"test_time_flip": "left-right"}}) and not flip_average_of({"extra": {}})
    with pytest.raises(InputError, match="test_time_flip"):
        flip_average_of({"extra": {"test_time_flip": "up-down"}})


def test_inference_copy_gives_the_plain_networks_mask_and_leaves_it_unchanged():
    """The shipped network run through predict_slices (a copy with batch norms folded into the convolutions,
    channels-last) marks exactly the pixels that its plain forward pass through MONAI's sliding window marks,
    on a phantom's slices; the caller's network keeps its batch norms, contiguous weights (it can still be
    saved with safetensors) and its values."""
    import torch
    from monai.inferers import SlidingWindowInferer

    from segtransfer.hemorrhage import default_model_path, preprocess
    from segtransfer.hemorrhage.infer import inference_copy, predict_slices
    from segtransfer.hemorrhage.preprocess import model_input
    from segtransfer.hemorrhage.upconv import OneChannelUpConv
    from segtransfer.models import load_network

    network, package = load_network(default_model_path())
    before = {k: v.clone() for k, v in network.state_dict().items()}
    h = head_ct(seed=3, site="site_a", spacing=(0.9, 0.9, 5.0))
    pre = preprocess(h.image)
    brain = sitk.GetArrayFromImage(pre.brain) > 0
    x = model_input(sitk.GetArrayFromImage(pre.image), brain, package.description["input"]["intensity"])
    x = x[brain.any(axis=(1, 2))][::3]
    fast = predict_slices(network, x)
    with torch.inference_mode():
        logits = SlidingWindowInferer((256, 256), sw_batch_size=4, overlap=0.0)(torch.from_numpy(x[:, None]), network.eval())
    plain = torch.sigmoid(logits)[:, 0].numpy() > 0.5
    assert plain.sum() > 100  # the phantom's bleeds are marked
    np.testing.assert_array_equal(fast, plain)
    assert all(v.is_contiguous() and torch.equal(v, before[k]) for k, v in network.state_dict().items())
    copy = inference_copy(network)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in copy.modules())
    assert sum(isinstance(m, OneChannelUpConv) for m in copy.modules()) == 1  # the U-Net's last up-sampling layer
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in network.modules()) == 9
    assert inference_copy(copy) is copy  # prepared ahead (the CLI does, while it skull-strips): not copied again
    np.testing.assert_array_equal(predict_slices(copy, x), plain)


@pytest.mark.parametrize("size", [(5, 7), (128, 128)])
def test_one_channel_up_convolution_equals_the_transposed_convolution(size):
    """OneChannelUpConv gives ConvTranspose2d(C, 1, 3, stride 2, padding 1, output padding 1)'s output, up to float
    rounding, on both memory layouts and on odd sizes; other transposed convolutions are not replaced."""
    import torch

    from segtransfer.hemorrhage.upconv import OneChannelUpConv, matches

    torch.manual_seed(0)
    conv = torch.nn.ConvTranspose2d(8, 1, 3, stride=2, padding=1, output_padding=1).eval()
    x = torch.randn(3, 8, *size)
    fast = OneChannelUpConv(conv)
    with torch.inference_mode():
        want = conv(x)
        for layout in (torch.contiguous_format, torch.channels_last):
            got = fast(x.to(memory_format=layout))
            assert got.shape == want.shape == (3, 1, 2 * size[0], 2 * size[1])
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert not matches(torch.nn.ConvTranspose2d(8, 2, 3, stride=2, padding=1, output_padding=1))
    assert not matches(torch.nn.ConvTranspose2d(8, 1, 3, stride=2, padding=1))
    assert not matches(torch.nn.Conv2d(8, 1, 3))
    with pytest.raises(ValueError):
        OneChannelUpConv(torch.nn.ConvTranspose2d(8, 1, 2, stride=2))


def test_segment_refuses_an_empty_brain_mask():
    """A preprocessed scan whose brain mask is empty is refused with the scan's name, before any network runs."""
    import torch

    from segtransfer.hemorrhage.infer import segment
    from segtransfer.hemorrhage.network import description
    from segtransfer.hemorrhage.preprocess import Preprocessed

    h = head_ct(seed=0, site="site_a", spacing=(2.0, 2.0, 6.0))
    empty = sitk.Image(h.image.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(h.image)
    pre = Preprocessed(sitk.Cast(h.image, sitk.sitkFloat32), empty, "LPS")
    with pytest.raises(InputError, match="scan.nii.gz.*brain mask is empty"):
        segment(h.image, torch.nn.Identity(), description(), where="scan.nii.gz", pre=pre)

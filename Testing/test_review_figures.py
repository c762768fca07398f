"""Review figures: overlays in the radiological convention whatever the stored orientation, and AHA
segments of a known LV-like surface in the AHA order."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from segtransfer.errors import GeometryError
from segtransfer.labels import Segment
from segtransfer.review.figures import aha_segments, bullseye_plot, overlay_montage, segment_means

RED = Segment(1, "marker", (1.0, 0.0, 0.0))


def _volume(direction: tuple[float, ...]) -> tuple[sitk.Image, sitk.Image]:
    """A 40 x 30 x 20 CT (LPS x, y, z) with a marker in the patient's right, anterior, superior corner,
    stored with ``direction`` (the marker's physical place is the same whatever the direction)."""
    ref = sitk.Image(40, 30, 20, sitk.sitkFloat32)
    ref.SetSpacing((1.0, 1.0, 2.0))
    lab = sitk.Image(40, 30, 20, sitk.sitkUInt8)
    lab.CopyInformation(ref)
    arr = np.zeros((20, 30, 40), np.uint8)
    arr[14:18, 2:8, 2:10] = 1  # superior (high z), anterior (low y = -P), patient's right (low x = -L)
    lab = sitk.GetImageFromArray(arr)
    lab.CopyInformation(ref)
    img = sitk.GetImageFromArray(np.full(arr.shape, 40.0, np.float32))
    img.CopyInformation(ref)
    if direction != (1, 0, 0, 0, 1, 0, 0, 0, 1):  # resample onto a grid stored with another direction
        grid = sitk.Image(40, 30, 20, sitk.sitkFloat32)
        grid.SetSpacing((1.0, 1.0, 2.0))
        grid.SetDirection(direction)
        d = np.asarray(direction, float).reshape(3, 3)
        far = np.asarray(ref.TransformIndexToPhysicalPoint((39, 29, 19)), float)
        start = np.where(np.diag(d) < 0, far, 0.0)
        grid.SetOrigin(tuple(start))
        img = sitk.Resample(img, grid, sitk.Transform(), sitk.sitkNearestNeighbor)
        lab = sitk.Resample(lab, grid, sitk.Transform(), sitk.sitkNearestNeighbor)
    return img, lab


def _marker_centre(path) -> tuple[float, float]:
    """Centre of the tinted pixels as fractions of (height, width) of the picture."""
    rgb = np.asarray(Image.open(path).convert("RGB"), float)
    tinted = (rgb[..., 0] - rgb[..., 1]) > 40
    ys, xs = np.nonzero(tinted)
    assert ys.size > 0
    return ys.mean() / rgb.shape[0], xs.mean() / rgb.shape[1]


@pytest.mark.parametrize("direction", [(1, 0, 0, 0, 1, 0, 0, 0, 1), (-1, 0, 0, 0, -1, 0, 0, 0, 1)], ids=["LPS", "RAS-stored"])
def test_overlay_is_radiological(tmp_path, direction):
    img, lab = _volume(direction)
    figs = overlay_montage(img, lab, [RED], tmp_path, "m", window=(0, 80), tiles=1)
    row, col = _marker_centre(figs["axial"])
    assert row < 0.35 and col < 0.35  # anterior up, patient's right on the viewer's left
    row, col = _marker_centre(figs["coronal"])
    assert row < 0.35 and col < 0.35  # superior up, patient's right on the left
    with Image.open(figs["coronal"]) as im:  # square pixels: 20 slices of 2 mm over 40 columns of 1 mm
        assert abs(im.height / im.width - 1.0) < 0.05


def test_overlay_refuses_labels_on_another_grid(tmp_path):
    img, lab = _volume((1, 0, 0, 0, 1, 0, 0, 0, 1))
    lab.SetOrigin((5.0, 0.0, 0.0))
    with pytest.raises(GeometryError):
        overlay_montage(img, lab, [RED], tmp_path)


def _lv_surface() -> np.ndarray:
    """Points on a paraboloid cup along z: open base (radius 30 mm) at z = 0, apex at z = -60 mm (LPS)."""
    h = np.linspace(0.0, 1.0, 61)
    theta = np.radians(np.arange(0, 360, 3))
    hh, tt = np.meshgrid(h, theta)
    r = 30.0 * np.sqrt(1.0 - hh) + 1e-3
    return np.stack([r * np.cos(tt), r * np.sin(tt), -60.0 * hh], axis=-1).reshape(-1, 3)


def test_aha_segments_follow_the_aha_order():
    pts = _lv_surface()
    seg, info = aha_segments(pts)
    assert abs(info["axis"][2]) > 0.999 and info["apex_mm"][2] < -55.0
    anterior, right = np.array([0.0, -1.0, 0.0]), np.array([-1.0, 0.0, 0.0])

    def at(height: float, toward_septum_deg: float) -> int:
        a = np.radians(toward_septum_deg)
        d = np.cos(a) * anterior + np.sin(a) * right
        r = 30.0 * np.sqrt(1.0 - height)
        probe = np.array([*(r * d[:2]), -60.0 * height])
        return int(seg[np.argmin(np.linalg.norm(pts - probe, axis=1))])

    # basal ring from anterior towards the septum (patient's right): 1 anterior ... 6 anterolateral
    assert [at(0.1, a) for a in (0, 60, 120, 180, 240, 300)] == [1, 2, 3, 4, 5, 6]
    assert [at(0.5, a) for a in (0, 60, 120, 180, 240, 300)] == [7, 8, 9, 10, 11, 12]
    assert [at(0.75, a) for a in (0, 90, 180, 270)] == [13, 14, 15, 16]  # anterior, septal, inferior, lateral
    assert at(0.97, 0) == 17
    means = segment_means(seg, np.where(seg == 4, 12.0, 8.0))
    assert means[4] == 12.0 and means[1] == 8.0


def test_bullseye_plot_writes_a_picture(tmp_path):
    path = bullseye_plot({s: 5.0 + s * 0.3 for s in range(1, 18)}, tmp_path / "b.png")
    with Image.open(path) as im:
        assert im.width > 200 and np.asarray(im.convert("L"), float).std() > 10

"""Head-CT preprocessing: Hounsfield-unit check, reorientation, skull stripping, windowing.

Orientation: the source study's "RAI" is ITK's orientation code for axes running from Right to
Left, Anterior to Posterior and Inferior to Superior, i.e. the identity direction in LPS (what
``sitk.DICOMOrient(image, "LPS")`` produces).  Axial slices are then the k-slices, array ``[k]``.
Reorientation only permutes and flips axes (no resampling), so it is undone exactly.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import edt
import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import InputError
from ..io import check_finite

STUDY_ORIENTATION = "LPS"  # DICOM naming; ITK's legacy name for the same axes is "RAI"
BONE_HU = 300.0
BRAIN_HU = (-15.0, BONE_HU)  # blood next to bone is brightened by partial volume


@dataclass
class Preprocessed:
    """A head CT ready for the model: ``image`` reoriented (identity direction, float32 HU),
    ``brain`` its skull-stripped brain mask (uint8), and the orientation code of the input to map back."""

    image: sitk.Image
    brain: sitk.Image
    original_orientation: str


def check_ct(image: sitk.Image, where: str | os.PathLike) -> None:
    """Refuse what is not a 3D CT in Hounsfield units: NaN, 2D, an MR or a rescaled (0..1, 0..255) image."""
    if image.GetDimension() != 3:
        raise InputError(where, f"expected a 3D head CT, got a {image.GetDimension()}D image")
    check_finite(image, where)
    arr = sitk.GetArrayViewFromImage(image)
    lo, hi = float(arr.min()), float(arr.max())
    air = float(np.mean(arr < -500))
    if lo > -500 or hi < BONE_HU or air < 0.02:
        raise InputError(where, f"intensities {lo:.0f}..{hi:.0f} with {100 * air:.1f}% below -500 do not look like CT in "
                         "Hounsfield units (air about -1000, bone above 300); an MR or a rescaled image is not supported")


def _radius_voxels(image: sitk.Image, mm: float) -> list[int]:
    return [max(1, int(round(mm / sp))) for sp in image.GetSpacing()]


def skull_strip(image: sitk.Image, where: str | os.PathLike = "image", erode_mm: float = 4.0) -> sitk.Image:
    """Brain mask (uint8) of a head CT.

    Soft tissue (-15..300 HU: brain, CSF and blood, also where partial volume with the skull
    brightens it; bone is above 300 HU) is eroded by ``erode_mm`` to cut its thin connections to scalp,
    orbits and neck through foramina; the largest connected piece is grown back inside the tissue by
    the same amount (opening by reconstruction), in 3D, so open skull rings in single slices do not
    matter; then the holes of every axial slice are filled (which fills the 3D holes too).  The work
    runs on the box around the soft tissue, with a margin wider than the structuring elements, so the
    mask is the same as on the whole grid (the air around the head costs nothing).  Raises ``InputError`` when no brain is found.
    """
    image = image if image.GetPixelID() == sitk.sitkFloat32 else sitk.Cast(image, sitk.sitkFloat32)
    # BRAIN_HU[0] <= HU < BRAIN_HU[1] in one pass: the filter's bounds are inclusive and cast to the pixel type
    below_bone = float(np.nextafter(np.float32(BRAIN_HU[1]), np.float32(-np.inf)))
    tissue_full = sitk.BinaryThreshold(image, BRAIN_HU[0], below_bone, 1, 0)
    box = padded_box(tissue_full, _radius_voxels(image, erode_mm + 1.0))
    if box is None:
        raise InputError(where, "no brain found inside the skull (is this a head CT?)")
    lo, size = box
    tissue = sitk.RegionOfInterest(tissue_full, size, lo)
    core = ball_morphology(tissue, _radius_voxels(image, erode_mm), erode=True)
    components = sitk.RelabelComponent(sitk.ConnectedComponent(core), sortByObjectSize=True)
    largest = components == 1
    if not np.any(sitk.GetArrayViewFromImage(largest)):
        raise InputError(where, "no brain found inside the skull (is this a head CT?)")
    grown = sitk.And(ball_morphology(largest, _radius_voxels(image, erode_mm + 1.0), erode=False), tissue)
    grown = sitk.RelabelComponent(sitk.ConnectedComponent(grown), sortByObjectSize=True) == 1
    # per-slice hole filling also fills every 3D hole: a 3D hole's section in a slice is background that no
    # in-slice path joins to the slice's border, since such a path would be a 3D path to the border too
    filled = fill_holes_per_slice(sitk.GetArrayViewFromImage(grown) > 0)
    inside = (slice(lo[2], lo[2] + size[2]), slice(lo[1], lo[1] + size[1]), slice(lo[0], lo[0] + size[0]))
    filled &= sitk.GetArrayViewFromImage(image)[inside] <= BONE_HU  # calcifications filled in above are not brain
    volume_ml = np.count_nonzero(filled) * float(np.prod(image.GetSpacing())) / 1000.0
    if volume_ml < 50.0:
        raise InputError(where, f"brain mask of {volume_ml:.1f} mL is too small (is this a head CT?)")
    arr = np.zeros(sitk.GetArrayViewFromImage(image).shape, dtype=np.uint8)
    arr[inside] = filled
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(image)
    return out


def ball_morphology(mask: sitk.Image, radius: list[int], erode: bool) -> sitk.Image:
    """``sitk.BinaryErode`` (``erode``) or ``sitk.BinaryDilate`` of the 0/1 ``mask`` with SimpleITK's ball
    of ``radius`` voxels (x, y, z), the same voxels as the filter gives, computed from per-slice
    distance transforms.

    Each slice ``dz`` of SimpleITK's ball (taken from the filter itself, on a tiny image) is a disc
    ``dy^2 + dx^2 <= T(dz)``.  A voxel survives the erosion when, in every slice ``z + dz`` inside the
    image, the nearest background voxel of the slice is farther than ``sqrt(T(dz))`` (outside the image
    counts as foreground, as in the filter); the dilation marks a voxel when some slice ``z + dz`` has a
    foreground voxel within ``sqrt(T(dz))``.  Written here because ITK's filter visits every boundary
    voxel with the whole kernel, which on a noisy head-CT tissue mask at 0.45 mm (a kernel 19 voxels
    wide) is several times slower; the ``edt`` package computes the squared distance transforms (exact
    integers).  Falls back to the filter when the ball's slices are not discs (a different radius along
    x and y).
    """
    thresholds = _ball_discs(radius)
    if thresholds is None:
        op = sitk.BinaryErode if erode else sitk.BinaryDilate
        return op(mask, radius, sitk.sitkBall)
    arr = sitk.GetArrayViewFromImage(mask) > 0
    target = arr if erode else ~arr  # erosion: distance to background; dilation: distance to foreground
    n = arr.shape[0]
    # per slice and disc: is the slice's nearest target voxel farther than the disc (erosion) / inside it (dilation)?
    holds = {t: np.zeros(arr.shape, dtype=bool) for t in set(thresholds.values())}
    # Each slice's transform runs on the box around its foreground, widened by one voxel (erosion: the ring of
    # background around the box holds a background voxel at least as near as any outside it) or by more than
    # the widest disc (dilation: farther out, no foreground is within reach).  Outside the box the conditions
    # fail: background (erosion), nothing within reach (dilation).
    pad = 1 if erode else int(np.ceil(np.sqrt(max(thresholds.values()) + 0.5))) + 1

    def disc_conditions(k: int) -> None:
        box = plane_box(arr[k], pad)
        if box is None:  # no foreground: nothing survives the erosion, nothing to dilate
            return
        if target[k][box].all():  # erosion of a slice that is all foreground: no background within the image
            for cond in holds.values():
                cond[k][box] = True
            return
        d2 = edt.edtsq(np.ascontiguousarray(target[k][box]), black_border=False, parallel=1)  # exact integers (float32)
        for t, cond in holds.items():
            (np.greater if erode else np.less)(d2, t + 0.5, out=cond[k][box])

    out = np.empty(arr.shape, dtype=bool)

    def combine(z: int) -> None:
        # slice z takes the condition of every slice z + dz; beyond the image the erosion's holds, the dilation's fails
        conditions = [holds[t][z + dz] for dz, t in thresholds.items() if 0 <= z + dz < n]
        out[z] = np.logical_and.reduce([arr[z], *conditions]) if erode else np.logical_or.reduce(conditions)

    with ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as threads:  # numpy's comparisons and logic release the GIL
        list(threads.map(disc_conditions, range(n)))
        list(threads.map(combine, range(n)))
    result = sitk.GetImageFromArray(out.view(np.uint8))
    result.CopyInformation(mask)
    return result


def _ball_discs(radius: list[int]) -> dict[int, int] | None:
    """SimpleITK's ball of ``radius`` (x, y, z) as ``{dz: T}``, slice ``dz`` being the disc
    ``dy^2 + dx^2 <= T``; None when a slice is not such a disc."""
    rx, ry, rz = (int(r) for r in radius)
    size = (2 * rx + 3, 2 * ry + 3, 2 * rz + 3)
    probe = np.ones(size[::-1], dtype=np.uint8)
    probe[rz + 1, ry + 1, rx + 1] = 0
    kernel = sitk.GetArrayFromImage(sitk.BinaryErode(sitk.GetImageFromArray(probe), [rx, ry, rz], sitk.sitkBall)) == 0
    yy, xx = np.mgrid[-ry - 1:ry + 2, -rx - 1:rx + 2]
    r2 = yy**2 + xx**2
    discs = {}
    for z in range(kernel.shape[0]):
        plane = kernel[z]
        if not plane.any():
            continue
        t = int(r2[plane].max())
        if not np.array_equal(plane, r2 <= t):
            return None
        discs[z - rz - 1] = t
    return discs


def fill_holes_per_slice(mask: np.ndarray) -> np.ndarray:
    """``mask`` (boolean ``[k, y, x]``) with the holes of every axial slice filled: background that no
    4-connected in-slice path of background joins to the slice's border (what
    ``scipy.ndimage.binary_fill_holes`` does per slice).  Each slice's background is labelled once, on
    the box around the slice's foreground widened by one voxel (the ring around the box is background
    joined to the border, so a piece of background reaches the box's edge exactly when it reaches the
    slice's), on threads (scipy's labelling releases the GIL)."""
    out = mask.copy()
    four = ndimage.generate_binary_structure(2, 1)

    def fill(k: int) -> None:
        box = plane_box(mask[k], 1)
        if box is None:
            return
        labels, count = ndimage.label(~mask[k][box], structure=four)
        outside = np.zeros(count + 1, dtype=bool)  # per piece of background: does it reach the box's edge?
        for edge in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
            outside[edge] = True
        outside[0] = True  # label 0 is the mask itself
        out[k][box] |= ~outside[labels]

    with ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as threads:
        list(threads.map(fill, range(mask.shape[0])))
    return out


def plane_box(plane: np.ndarray, pad: int) -> tuple[slice, slice] | None:
    """Row and column slices of the box around the foreground of a boolean ``[y, x]`` plane, widened by
    ``pad`` pixels within the plane; None when the plane has no foreground."""
    rows, cols = np.flatnonzero(plane.any(axis=1)), np.flatnonzero(plane.any(axis=0))
    if rows.size == 0:
        return None
    return (slice(max(rows[0] - pad, 0), min(rows[-1] + pad + 1, plane.shape[0])),
            slice(max(cols[0] - pad, 0), min(cols[-1] + pad + 1, plane.shape[1])))


def padded_box(mask: sitk.Image, margin: list[int]) -> tuple[list[int], list[int]] | None:
    """Index ``(lo, size)`` (x, y, z) of the bounding box of ``mask``'s foreground widened by
    ``margin`` voxels plus one per axis, within the image; None when the mask is empty.  The margin
    of background keeps erosion, dilation, connected components and hole filling inside the box the
    same as on the whole image (slices without foreground are cut only when more than the margin
    away)."""
    arr = sitk.GetArrayViewFromImage(mask)
    if not arr.any():
        return None
    lo, size = [], []
    for axis_xyz, pad in enumerate(margin):
        axis = 2 - axis_xyz  # numpy [z, y, x]
        hit = np.flatnonzero(arr.any(axis=tuple(a for a in range(3) if a != axis)))
        start = max(int(hit[0]) - pad - 1, 0)
        stop = min(int(hit[-1]) + pad + 2, arr.shape[axis])
        lo.append(start)
        size.append(stop - start)
    return lo, size


def preprocess(image: sitk.Image, where: str | os.PathLike = "image") -> Preprocessed:
    """Check, reorient to the study orientation and skull-strip a head CT."""
    check_ct(image, where)
    original = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())
    oriented = sitk.Cast(in_study_orientation(image), sitk.sitkFloat32)  # a new image also when the input is float32 already
    return Preprocessed(oriented, skull_strip(oriented, where), original)


def in_study_orientation(image: sitk.Image) -> sitk.Image:
    """``image`` with its axes in the study orientation (LPS identity direction; axis permutation and
    flips only, no resampling); the image itself when they are already."""
    code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())
    return image if code == STUDY_ORIENTATION else sitk.DICOMOrient(image, STUDY_ORIENTATION)


def restore_orientation(mask: sitk.Image, original_orientation: str, reference: sitk.Image) -> sitk.Image:
    """Map a mask on the study grid back onto the input's grid (axis permutation and flips only)."""
    back = sitk.DICOMOrient(mask, original_orientation)
    back.CopyInformation(reference)  # identical up to rounding of the direction cosines
    return back


def model_input(arr: np.ndarray, brain: np.ndarray, intensity: dict) -> np.ndarray:
    """Model input ``[k, y, x]`` float32: HU normalised as the package's ``intensity`` says (MONAI transform,
    on a torch tensor: PyTorch's threads), zero outside the brain (skull-stripped)."""
    import torch

    from ..models import intensity_transform

    out = intensity_transform(intensity)(torch.from_numpy(np.asarray(arr, dtype=np.float32))[None])[0]
    out = out.as_tensor() if hasattr(out, "as_tensor") else out  # a MetaTensor when MONAI tracks metadata
    return out.mul_(torch.from_numpy(np.ascontiguousarray(brain, dtype=bool))).numpy()

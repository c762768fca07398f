"""Label-map arrays for the cleanup steps: input checks, bounding boxes and zero-padded working boxes.

Arrays are indexed ``[z, y, x]``; spacings given as ``spacing_zyx`` are in mm in that order
(SimpleITK's ``GetSpacing()`` is ``(x, y, z)``).
"""

from __future__ import annotations

import os

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..io import LabelImage
from ..io import as_label_pixels
from ..labels import default_segments


def as_label_image(labels: LabelImage | sitk.Image, where: str | os.PathLike = "labels") -> LabelImage:
    """A :class:`LabelImage` from a label map or a plain integer ``SimpleITK.Image``.

    Raises ``InputError`` naming ``where`` for a non-scalar, non-integer, negative or NaN label map.
    """
    if isinstance(labels, LabelImage):
        image, segments = labels.image, list(labels.segments)
    elif isinstance(labels, sitk.Image):
        image, segments = labels, None
    else:
        raise InputError(where, f"expected a label map (LabelImage or SimpleITK.Image), got {type(labels).__name__}")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(where, f"expected a scalar label map, got {image.GetNumberOfComponentsPerPixel()} components per voxel")
    if image.GetDimension() not in (2, 3):
        raise InputError(where, f"expected a 2D or 3D label map, got {image.GetDimension()}D")
    image = as_label_pixels(image, where)
    if segments is None:
        from .report import label_counts

        segments = default_segments(list(label_counts(sitk.GetArrayViewFromImage(image))))
    return LabelImage(image, segments)


def spacing_zyx(image: sitk.Image) -> tuple[float, ...]:
    """Voxel spacing of ``image`` in mm in array order (``[z, y, x]`` for 3D)."""
    return tuple(float(s) for s in reversed(image.GetSpacing()))


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Tightest slices holding every ``True`` voxel of ``mask``, or ``None`` when it has none."""
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        if hit.size == 0:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


class PaddedBox:
    """A working box: ``box`` (slices into the full array) grown by ``pad`` voxels per axis, where the
    part beyond the image is filled with zeros, so that work in the box sees the image as lying in an
    infinite background.

    ``start``: index (array order) of the padded box's first voxel in the full array (may be negative);
    ``inner``: slices of the padded box that cover the image part of it; ``outer``: the matching slices
    of the full array.
    """

    def __init__(self, shape: tuple[int, ...], box: tuple[slice, ...], pad: tuple[int, ...]):
        self.shape_full = tuple(shape)
        self.start = tuple(b.start - p for b, p in zip(box, pad))
        self.stop = tuple(b.stop + p for b, p in zip(box, pad))
        self.shape = tuple(e - s for s, e in zip(self.start, self.stop))
        self.outer = tuple(slice(max(s, 0), min(e, n)) for s, e, n in zip(self.start, self.stop, shape))
        self.inner = tuple(slice(o.start - s, o.stop - s) for o, s in zip(self.outer, self.start))

    def take(self, array: np.ndarray) -> np.ndarray:
        """A copy of ``array`` over the padded box, zeros beyond the image."""
        out = np.zeros(self.shape, dtype=array.dtype)
        out[self.inner] = array[self.outer]
        return out

    def clear_outside(self, array: np.ndarray) -> np.ndarray:
        """Set to zero, in place, the voxels of a padded-box array that lie beyond the image; returns it."""
        for axis, inner in enumerate(self.inner):
            before = [slice(None)] * array.ndim
            after = [slice(None)] * array.ndim
            before[axis], after[axis] = slice(0, inner.start), slice(inner.stop, None)
            array[tuple(before)] = 0
            array[tuple(after)] = 0
        return array


def image_like(arr: np.ndarray, ref: sitk.Image) -> sitk.Image:
    """An image from the ``[z, y, x]`` array ``arr`` with the geometry of ``ref``."""
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(ref)
    return img


def paste_box(ref: sitk.Image, box_values: np.ndarray, outer: tuple[slice, ...], base: sitk.Image | None = None) -> sitk.Image:
    """A copy of ``base`` (default: an all-zero image on ``ref``'s grid with ``box_values``' pixel type)
    with the ``[z, y, x]`` array ``box_values`` written over the region ``outer`` (slices of the full
    array).  Works on SimpleITK images, so no full-size numpy copy is made."""
    if base is None:
        base = sitk.Image(ref.GetSize(), sitk.GetImageFromArray(box_values[(slice(0, 1),) * box_values.ndim]).GetPixelID())
        base.CopyInformation(ref)
    patch = sitk.GetImageFromArray(np.ascontiguousarray(box_values))
    start = [s.start for s in reversed(outer)]  # SimpleITK index order (x, y, z)
    return sitk.Paste(base, patch, patch.GetSize(), [0] * base.GetDimension(), start)

"""Hemorrhage inference on a head CT: 2D U-Net over axial slices with a 256x256 sliding window,
sigmoid (averaged with that of the left-right mirrored slice when the package asks for it) thresholded,
lesions below a minimum size dropped, mask mapped back to the input grid; volume, detection and lesions."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
import torch

from ..errors import InputError
from ..progress import ProgressCallback
from . import upconv
from .network import FLIP_AVERAGE
from .preprocess import Preprocessed, model_input, padded_box, plane_box, preprocess, restore_orientation

#: A scan is reported as "hemorrhage present" when the predicted volume reaches this (mL).  Below it, thin
#: false-positive crescents along the inner skull table would flag negative scans.  Chosen on held-out
#: phantoms (scripts/evaluate_hemorrhage_model.py, never the test site): the largest round value below the
#: smallest predicted volume of a positive scan (0.74 mL); see docs/hemorrhage.md.
MIN_DETECTION_ML = 0.5
#: Connected lesions (26-connectivity) smaller than this (mL, about 200 voxels of 1 mm^3) are dropped from the
#: mask before volume and detection: specks and short crescents (noise, partial volume at the inner skull
#: table) are not hemorrhages a reader would report.  Chosen on the same held-out phantoms (best mean Dice
#: and volume correlation of 0, 0.05, 0.1, 0.2 and 0.5 mL).
MIN_LESION_ML = 0.2


@dataclass
class Lesion:
    """One connected hemorrhage: ``volume_ml``, ``centroid_lps`` (mm), ``voxels`` and ``slices``: the
    first and last index along the input grid's third axis (k, the slice axis of an axial scan) that
    the lesion touches."""

    label: int
    volume_ml: float
    centroid_lps: tuple[float, float, float]
    voxels: int
    slices: tuple[int, int]


@dataclass
class HemorrhageResult:
    """``mask``: uint8 0/1 on the input grid; ``brain``: the brain mask on the input grid; total
    ``volume_ml``; ``detected`` (volume >= ``MIN_DETECTION_ML``); ``lesions`` largest first;
    ``min_lesion_ml``: the size below which connected lesions were dropped."""

    mask: sitk.Image
    brain: sitk.Image
    volume_ml: float
    detected: bool
    lesions: list[Lesion] = field(default_factory=list)
    min_lesion_ml: float = MIN_LESION_ML

    def summary(self) -> dict:
        return {"volume_ml": self.volume_ml, "detected": self.detected, "min_detection_ml": MIN_DETECTION_ML,
                "min_lesion_ml": self.min_lesion_ml,
                "brain_ml": float(np.count_nonzero(sitk.GetArrayViewFromImage(self.brain)) * np.prod(self.brain.GetSpacing()) / 1000.0),
                "lesions": [vars(les) for les in self.lesions]}


def predict_slices(network: torch.nn.Module, x: np.ndarray, threshold: float = 0.5, roi=(256, 256), batch_slices: int = 8,
                   progress: ProgressCallback | None = None, flip_average: bool = False) -> np.ndarray:
    """Binary prediction ``[k, y, x]`` for the normalised slices ``x`` (float32 ``[k, y, x]``, LPS-identity
    orientation: the last axis runs from the patient's right to left): sliding window of ``roi`` over each
    whole slice (MONAI), sigmoid, threshold.  ``flip_average``: the sigmoid is the mean of the slice's and of
    its left-right mirror image's (mapped back), which removes most of the network's one-sided false
    positives along the inner skull table; it doubles the forward passes."""
    from monai.inferers import SlidingWindowInferer

    inferer = SlidingWindowInferer(roi_size=tuple(roi), sw_batch_size=4, overlap=0.0, padding_mode="constant")
    network = inference_copy(network)
    out = np.zeros(x.shape, dtype=bool)
    with torch.inference_mode():
        for start in range(0, x.shape[0], batch_slices):
            chunk = torch.from_numpy(np.ascontiguousarray(x[start:start + batch_slices, None]))
            if flip_average:  # the mirrored slices go through the network in the same batches
                both = torch.sigmoid_(inferer(torch.cat([chunk, chunk.flip(-1)]), network))
                # mean of the two sigmoids > threshold, as sum > 2 * threshold (halving and doubling are exact)
                marked = both[:len(chunk)].add_(both[len(chunk):].flip(-1)) > 2.0 * threshold
            else:
                marked = torch.sigmoid_(inferer(chunk, network)) > threshold
            out[start:start + batch_slices] = marked[:, 0].numpy()
            if progress:
                progress(min(start + batch_slices, x.shape[0]) / x.shape[0], f"segmenting slice {min(start + batch_slices, x.shape[0])}/{x.shape[0]}")
    return out


def inference_copy(network: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``network`` for inference: eval mode, every batch norm that follows a convolution or
    transposed convolution in a MONAI ``Convolution`` block folded into it (PyTorch's
    ``fuse_conv_bn_eval``), a transposed convolution to one channel replaced by
    :class:`~.upconv.OneChannelUpConv`, and the 4D tensors in channels-last memory layout.  The same
    function up to float rounding (logits within about 1e-3 of the original's) and 1.4-1.6x faster in
    PyTorch's CPU convolutions: the folding drops one pass over every feature map, the layout suits oneDNN.  The
    caller's module is left as it is (its weights stay contiguous, as safetensors needs them).  A network
    that already is such a copy is returned as it is, so a caller may prepare it ahead (while the CT is
    skull-stripped) and :func:`predict_slices` does not copy it again."""
    import copy

    from monai.networks.blocks import Convolution
    from torch.nn.modules.batchnorm import _BatchNorm
    from torch.nn.modules.conv import _ConvTransposeNd
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if getattr(network, _INFERENCE_COPY, False):
        return network
    fast = copy.deepcopy(network).eval()
    for block in fast.modules():
        adn = getattr(block, "adn", None)  # MONAI's Convolution is a sequence conv -> ADN (norm, dropout, act in some order)
        norm = next(iter(adn.children()), None) if adn is not None else None
        if isinstance(block, Convolution) and isinstance(norm, _BatchNorm):  # the norm right after the conv
            block.conv = fuse_conv_bn_eval(block.conv, norm, transpose=isinstance(block.conv, _ConvTransposeNd))
            block.adn.N = torch.nn.Identity()
        if isinstance(block, Convolution) and upconv.matches(block.conv):  # the U-Net's last up-sampling layer
            block.conv = upconv.OneChannelUpConv(block.conv)
    fast = fast.to(memory_format=torch.channels_last)
    setattr(fast, _INFERENCE_COPY, True)
    return fast


_INFERENCE_COPY = "segtransfer_inference_copy"  # attribute that marks a network made by inference_copy


def select_lesions(mask: sitk.Image, min_ml: float, grid: sitk.Image | None = None) -> tuple[sitk.Image, list[Lesion]]:
    """The 0/1 ``mask`` (uint8) without its connected lesions (26-connectivity) smaller than ``min_ml`` mL
    (0 keeps all), and the lesions kept, largest first, from one labelling.  Their slice ranges are
    indices along the third axis of ``grid``: an image on the same voxels as ``mask`` in another axis
    order (the input CT, when ``mask`` is on the study grid); by default ``mask`` itself."""
    box = padded_box(mask, [0, 0, 0])
    if box is None:
        return mask, []
    lo, size = box  # the lesions are labelled on the box around them (all of their voxels), not the whole grid
    components = sitk.ConnectedComponent(sitk.RegionOfInterest(mask, size, lo), True)
    voxels = int(np.ceil(min_ml * 1000.0 / float(np.prod(mask.GetSpacing())) - 1e-9)) if min_ml > 0 else 0
    if voxels > 1:
        components = sitk.RelabelComponent(components, minimumObjectSize=voxels)
        kept = sitk.Image(mask.GetSize(), sitk.sitkUInt8)
        kept.CopyInformation(mask)
        mask = sitk.Paste(kept, sitk.Cast(components > 0, sitk.sitkUInt8), size, [0, 0, 0], lo)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(components)
    voxel_ml = float(np.prod(mask.GetSpacing())) / 1000.0
    out = []
    for lab in stats.GetLabels():
        bb = stats.GetBoundingBox(lab)  # (i0, j0, k0, size_i, size_j, size_k) on the box's grid
        first = [int(b) + o for b, o in zip(bb[:3], lo)]
        if grid is None:
            slices = (first[2], first[2] + int(bb[5]) - 1)
        else:  # the box's corners on grid's index axes (the grids differ by axis order and direction only)
            ks = [grid.TransformPhysicalPointToIndex(mask.TransformIndexToPhysicalPoint(
                  [f + d * (int(n) - 1) for f, d, n in zip(first, corner, bb[3:])]))[2]
                  for corner in np.ndindex(2, 2, 2)]
            slices = (min(ks), max(ks))
        out.append(Lesion(int(lab), stats.GetNumberOfPixels(lab) * voxel_ml, tuple(float(c) for c in stats.GetCentroid(lab)),
                          int(stats.GetNumberOfPixels(lab)), slices))
    return mask, sorted(out, key=lambda les: -les.volume_ml)


def flip_average_of(description: dict) -> bool:
    """Whether the package ``description`` asks for left-right flip averaging (``extra.test_time_flip``:
    ``"left-right"``; absent: no).  Another value is refused: inference would not be what the package means."""
    value = (description.get("extra") or {}).get(FLIP_AVERAGE)
    if value not in (None, "left-right"):
        raise InputError("model package", f"unknown extra.{FLIP_AVERAGE} {value!r} (known: 'left-right')")
    return value == "left-right"


def segment(image: sitk.Image, network: torch.nn.Module, description: dict, where: str | os.PathLike = "image",
            progress: ProgressCallback | None = None, pre: Preprocessed | None = None,
            min_lesion_ml: float = MIN_LESION_ML) -> HemorrhageResult:
    """Segment hemorrhage on a head CT (HU, any orientation); outputs on the input grid.  ``pre``: the
    result of :func:`~.preprocess.preprocess` for ``image`` when it is already at hand (several models on one scan).
    Connected lesions below ``min_lesion_ml`` (mL) are dropped (0 keeps everything).  Left-right flip
    averaging when the package's ``extra`` asks for it (:func:`flip_average_of`)."""
    flip = flip_average_of(description)
    pre = pre if pre is not None else preprocess(image, where)
    arr = sitk.GetArrayViewFromImage(pre.image)
    brain = sitk.GetArrayViewFromImage(pre.brain) > 0
    slices = np.flatnonzero(brain.any(axis=(1, 2)))
    if slices.size == 0:  # preprocess refuses such a scan; a ``pre`` made otherwise may still be empty
        raise InputError(where, "the brain mask is empty: nothing to segment")
    # the model input is zero outside the brain: it is windowed on the box around the brain only
    rows, cols = plane_box(brain.any(axis=0), 0)
    x = np.zeros((len(slices), *arr.shape[1:]), dtype=np.float32)
    x[:, rows, cols] = model_input(arr[slices, rows, cols], brain[slices, rows, cols], description["input"]["intensity"])
    pred = np.zeros(arr.shape, dtype=np.uint8)
    roi = description["input"].get("patch_size") or [256, 256]
    pred[slices] = predict_slices(network, x, description["output"]["threshold"], roi, progress=progress, flip_average=flip)
    np.bitwise_and(pred, brain, out=pred)
    mask = sitk.GetImageFromArray(pred)
    mask.CopyInformation(pre.image)
    mask, lesions = select_lesions(mask, min_lesion_ml, grid=image)
    voxels = np.count_nonzero(sitk.GetArrayViewFromImage(mask))
    mask = restore_orientation(mask, pre.original_orientation, image)
    brain_img = restore_orientation(pre.brain, pre.original_orientation, image)
    volume = float(voxels * np.prod(image.GetSpacing()) / 1000.0)
    return HemorrhageResult(mask, brain_img, volume, volume >= MIN_DETECTION_ML, lesions, min_lesion_ml)

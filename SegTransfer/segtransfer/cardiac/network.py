"""The cardiac 4D model: one MONAI 3D U-Net shared by every phase, softmax over 0/1/2, and its package description.

Each phase of a 4D series (x, y, z, t) goes through the same 3D network, so the model takes any
number of phases, trains on whichever phases are labelled (ED and ES at site 2, every other phase
at site 1) and needs no temporal alignment between studies.  See ``docs/finetune.md`` for why this
was chosen over phases-as-channels.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads when a network or a device is made: the CLI reads the defaults here
    import torch

from ..errors import InputError
from ..labels import CARDIAC_SEGMENTS

ARCHITECTURE = "monai.networks.nets.UNet"
#: Default feature widths: 35 k parameters, about 0.1 s per training step of 2 phases of 48x48x40
#: voxels on two CPU cores; widen (e.g. 16 32 64 128) on a GPU.
DEFAULT_CHANNELS = (8, 16, 32)
#: Default model spacing (x, y, z mm): coarse enough for phantoms on CPU; use 1-1.5 mm on a GPU.
DEFAULT_SPACING_MM = (4.0, 4.0, 4.0)
#: -300..700 HU to 0..1: lung and fat below, enhanced blood (350-600 HU) high, myocardium in between.
INTENSITY = {"kind": "window", "min_hu": -300.0, "max_hu": 700.0}
TASK = "cardiac-ct-lv-4d-segmentation"
PHASE_HANDLING = "shared-3d"


def arguments(channels: Sequence[int] = DEFAULT_CHANNELS) -> dict:
    """MONAI ``UNet`` keyword arguments: 3D, 1 channel in (HU window), 3 out (background, pool, wall),
    stride 2 between levels, one residual unit per level, instance norm (batches are small)."""
    channels = [int(c) for c in channels]
    if len(channels) < 2 or min(channels) < 1:
        raise InputError("channels", f"need at least two positive feature widths, got {channels}")
    return {"spatial_dims": 3, "in_channels": 1, "out_channels": 3, "channels": channels, "strides": [2] * (len(channels) - 1),
            "num_res_units": 1, "norm": "instance"}


def description(name: str = "cardiac-lv-4d-unet", spacing_mm: Sequence[float] = DEFAULT_SPACING_MM,
                channels: Sequence[int] = DEFAULT_CHANNELS, patch_size: Sequence[int] = (64, 64, 64)) -> dict:
    """Validated package description of the cardiac model (3D per phase, LPS, labels 1 pool / 2 wall)."""
    from ..models import make_description

    return make_description(ARCHITECTURE, arguments(channels), name=name, spacing_mm=[float(s) for s in spacing_mm], intensity=INTENSITY,
                            labels=list(CARDIAC_SEGMENTS), activation="softmax", patch_size=[int(p) for p in patch_size], task=TASK,
                            orientation="LPS", extra={"phases": PHASE_HANDLING,
                                                      "phase_handling": "every phase is segmented by the same 3D network"})


def check_cardiac_description(description: Mapping, where: str) -> None:
    """Raise ``InputError`` unless a package describes a 3D softmax model whose labels are exactly
    1 LV blood pool and 2 LV myocardium (what the cardiac training and inference produce)."""
    values = sorted(lab["value"] for lab in description["output"]["labels"])
    want = sorted(s.value for s in CARDIAC_SEGMENTS)
    if description["input"]["spatial_dims"] != 3 or description["output"]["activation"] != "softmax":
        raise InputError(where, f"not a cardiac model: needs a 3D softmax network, the package has a {description['input']['spatial_dims']}D "
                         f"{description['output']['activation']} one (task {description.get('task')!r})")
    if values != want:
        names = ", ".join(f"{lab['value']} {lab['name']}" for lab in description["output"]["labels"])
        raise InputError(where, f"labels do not match the cardiac labels (1 LV blood pool, 2 LV myocardium): the package has {names}")
    if len(description["input"]["channels"]) != 1:
        raise InputError(where, f"needs one input channel (CT), the package has {len(description['input']['channels'])}")
    if any(s is None for s in description["input"]["spacing_mm"]):
        raise InputError(where, "the cardiac model needs a fixed input spacing (x, y, z mm)")


def encoder_parameter_names(network: torch.nn.Module) -> list[str]:
    """Names of the encoder parameters (down-sampling path and bottleneck) of a MONAI ``UNet``.

    MONAI offers no encoder/decoder split for ``UNet``; its layout is fixed: ``model.0`` is the first
    down block, ``model.1`` a ``SkipConnection`` whose ``submodule`` is ``Sequential(down, Skip(...), up)``
    recursively, with the bottleneck as the innermost ``submodule``, and ``model.2`` the last up block.
    So a parameter belongs to the encoder when its path is ``model.(1.submodule.)*0.`` or the
    innermost ``...submodule.`` that is not itself a sequence of down/skip/up.
    """
    names = [n for n, _ in network.named_parameters()]
    down = re.compile(r"^model\.(?:1\.submodule\.)*0\.")
    # Depth of the innermost submodule: the deepest "1.submodule." prefix that holds no down block of its own.
    depth = 0
    while any(n.startswith("model." + "1.submodule." * (depth + 1) + "0.") for n in names):
        depth += 1
    bottom = "model." + "1.submodule." * (depth + 1)
    return [n for n in names if down.match(n) or (n.startswith(bottom) and not re.match(re.escape(bottom) + r"[012]\.", n))]


def choose_device(device: str | None = "auto") -> torch.device:
    """``auto``: the first CUDA GPU when one is available, else the CPU; otherwise the named device."""
    import torch

    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError("--device", f"unknown device {device!r} (use auto, cpu or cuda)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device", "CUDA was asked for but no GPU is available")
    return dev

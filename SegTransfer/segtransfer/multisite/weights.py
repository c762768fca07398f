"""Weights as they travel between sites and server: ``{state_dict key: numpy array}``.

The full ``state_dict`` is exchanged, BatchNorm running statistics and counters included (no layer
is kept local).  Arrays keep their dtype (float32 parameters and statistics, int64 counters).
Whatever arrives is checked against the network of the task's description before it is loaded:
same keys, same shapes, finite values.
"""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np
import torch

from ..errors import InputError


def to_numpy(state_dict: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """A copy of a torch state dict as numpy arrays (same keys, dtypes and shapes)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in state_dict.items()}


def to_torch(weights: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Numpy weights as torch tensors (copies)."""
    return {k: torch.from_numpy(np.array(v, copy=True)) for k, v in weights.items()}


def network_from_weights(description: Mapping, weights: Mapping[str, np.ndarray], where: str) -> torch.nn.Module:
    """Build the described network and load ``weights`` into it strictly.

    Refuses (``InputError`` naming ``where``) weights with missing, extra or mis-shaped keys and
    non-finite values.  Arrays are cast to the network's dtypes (FedAvg averages integer counters
    into floats); a shape ``[1]`` array is accepted for a 0-d buffer."""
    from ..models import build_network, load_weights_strict

    network = build_network(description)
    own = network.state_dict()
    tensors = {}
    for key, value in weights.items():
        arr = np.asarray(value)
        if arr.dtype.kind not in "fiub":
            raise InputError(where, f"weight {key!r} has non-numeric dtype {arr.dtype}")
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise InputError(where, f"weight {key!r} holds NaN or infinite values")
        if key in own and own[key].ndim == 0 and arr.shape == (1,):
            arr = arr.reshape(())  # FLARE's model conversion turns 0-d counters into shape [1]
        t = torch.from_numpy(np.array(arr, copy=True))
        tensors[key] = t.to(own[key].dtype) if key in own else t
    return load_weights_strict(network, tensors, where)


def initial_weights(description: Mapping, seed: int) -> dict[str, np.ndarray]:
    """Fresh (random, seeded) weights of the described network: the first global model."""
    from ..models import build_network

    torch.manual_seed(int(seed))
    return to_numpy(build_network(description).state_dict())


def save_weights_package(description: Mapping, weights: Mapping[str, np.ndarray], card: Mapping, out: str | os.PathLike):
    """Write ``weights`` as a model package (safetensors, checksums; atomic) and return it."""
    from ..models import ModelPackage, save_package

    network = network_from_weights(description, weights, str(out))
    return save_package(ModelPackage.from_network(network, description, card), out)


def load_package_weights(path: str | os.PathLike, description: Mapping, expected_sha256: str | None = None) -> dict[str, np.ndarray]:
    """The weights of a verified model package (checksums, never unpickled) whose architecture must
    be ``description``'s."""
    from ..models import load_package

    package = load_package(path, expected_sha256=expected_sha256)
    if package.description["architecture"] != description["architecture"]:
        raise InputError(path, f"package architecture {package.description['architecture']['name']} is not the task's "
                               f"{description['architecture']['name']} with the same arguments")
    return to_numpy(package.state_dict)

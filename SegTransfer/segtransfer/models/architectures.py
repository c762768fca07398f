"""The networks a model package may describe, and building them from JSON arguments.

Only the MONAI classes listed in :data:`ALLOWED_ARCHITECTURES` can be built.  The class is looked
up in this table and taken from ``monai.networks.nets`` by the name written here, never by a dotted
path read from a package, so a package cannot make SegTransfer import or call anything else.
Arguments are plain JSON values (numbers, strings, booleans, lists, objects); MONAI turns strings
such as ``"batch"`` or ``["prelu", {"init": 0.2}]`` into layers through its own factories.
None of the listed classes downloads anything or accepts code through its arguments.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from ..errors import InputError

#: Canonical architecture name (as written in ``model.json``) -> class name in ``monai.networks.nets``.
ALLOWED_ARCHITECTURES: dict[str, str] = {
    "monai.networks.nets.UNet": "UNet",
    "monai.networks.nets.BasicUNet": "BasicUNet",
    "monai.networks.nets.SegResNet": "SegResNet",
    "monai.networks.nets.DynUNet": "DynUNet",
    "monai.networks.nets.AttentionUnet": "AttentionUnet",
    "monai.networks.nets.UNETR": "UNETR",
    "monai.networks.nets.SwinUNETR": "SwinUNETR",
    "monai.networks.nets.VNet": "VNet",
}


def network_class(canonical: str) -> type[torch.nn.Module]:
    """The MONAI class of an allow-listed canonical name (``KeyError`` for any other name)."""
    import monai.networks.nets as nets

    return getattr(nets, ALLOWED_ARCHITECTURES[canonical])


def resolve_architecture(name: object, where: str = "architecture") -> str:
    """The canonical allow-listed name for ``name``.

    Accepted spellings: the canonical name (``"monai.networks.nets.UNet"``), the short class name
    MONAI bundles use (``"UNet"``) and the defining module path (``"monai.networks.nets.unet.UNet"``).
    Anything else raises ``InputError`` listing the allowed names.
    """
    if isinstance(name, str):
        if name in ALLOWED_ARCHITECTURES:
            return name
        for canonical, short in ALLOWED_ARCHITECTURES.items():
            cls = network_class(canonical)
            if name in (short, f"{cls.__module__}.{cls.__qualname__}"):
                return canonical
    allowed = ", ".join(sorted(ALLOWED_ARCHITECTURES))
    shown = repr(name) if len(repr(name)) <= 120 else repr(name)[:117] + "..."
    raise InputError(where, f"architecture {shown} is not allowed; SegTransfer builds only: {allowed}")


def check_arguments(canonical: str, arguments: object, where: str = "architecture") -> None:
    """Raise ``InputError`` unless ``arguments`` is a dict naming only parameters of the class and
    giving every parameter that has no default."""
    if not isinstance(arguments, Mapping):
        raise InputError(where, f"architecture arguments must be a JSON object, got {type(arguments).__name__}")
    params = dict(inspect.signature(network_class(canonical).__init__).parameters)
    params.pop("self", None)
    unknown = sorted(set(arguments) - set(params))
    if unknown:
        raise InputError(where, f"{canonical} has no argument(s) {', '.join(unknown)}")
    missing = sorted(n for n, p in params.items() if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and n not in arguments)
    if missing:
        raise InputError(where, f"{canonical} needs argument(s) {', '.join(missing)}")


def default_argument(canonical: str, name: str) -> object:
    """The default value of parameter ``name`` of an allow-listed class (``None`` when it has none)."""
    param = inspect.signature(network_class(canonical).__init__).parameters.get(name)
    if param is None or param.default is inspect.Parameter.empty:
        return None
    return param.default


def argument(description: Mapping, name: str) -> object:
    """Value of architecture argument ``name`` in a package description, falling back to the class default."""
    arch = description["architecture"]
    args = arch.get("arguments", {})
    return args[name] if name in args else default_argument(resolve_architecture(arch.get("name")), name)


def build_network(description: Mapping, where: str = "model.json") -> torch.nn.Module:
    """Instantiate the network of a package description (the ``model.json`` dict) with fresh weights.

    Only ``description["architecture"]["name"]`` from the allow-list is built, with
    ``description["architecture"]["arguments"]`` as keyword arguments.  Raises ``InputError`` naming
    ``where`` for a name outside the allow-list or arguments the class rejects.
    """
    arch = description.get("architecture") if isinstance(description, Mapping) else None
    if not isinstance(arch, Mapping):
        raise InputError(where, "no 'architecture' object")
    canonical = resolve_architecture(arch.get("name"), where)
    arguments = arch.get("arguments", {})
    check_arguments(canonical, arguments, where)
    try:
        return network_class(canonical)(**arguments)
    except Exception as exc:  # MONAI raises ValueError/TypeError/AssertionError/... for bad arguments
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(where, f"{canonical} rejected its arguments: {first}") from None


def state_dict_mismatch(network: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """Describe how ``state_dict`` differs from the network's own (missing, unexpected or wrongly
    shaped tensors); ``None`` when keys and shapes match exactly."""
    own = network.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shaped = [f"{k} {list(state_dict[k].shape)} != {list(own[k].shape)}" for k in own if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shaped)):
        if keys:
            shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
            parts.append(f"{len(keys)} {label} ({shown})")
    return "; ".join(parts) or None


def load_weights_strict(network: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], where: str = "weights") -> torch.nn.Module:
    """Load ``state_dict`` into ``network`` requiring the same keys and shapes (parameters and
    buffers such as BatchNorm running statistics); ``InputError`` naming ``where`` otherwise."""
    problem = state_dict_mismatch(network, state_dict)
    if problem:
        raise InputError(where, f"weights do not match the architecture: {problem}")
    network.load_state_dict(state_dict, strict=True)
    return network


@dataclass
class WeightTransfer:
    """Outcome of :func:`transfer_weights`: network keys that took the source's values, network keys
    left as they were, and source keys that found no place (absent or of another shape)."""

    loaded: list[str]
    kept: list[str]
    unused: list[str]


def transfer_weights(network: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], exclude: str | None = None) -> WeightTransfer:
    """Copy every tensor of ``state_dict`` whose key and shape match into ``network`` (in place), as
    for transfer learning onto a network whose head differs; ``exclude`` is a regular expression of
    keys not to copy.  Uses ``monai.networks.utils.copy_model_state`` and reports what was loaded."""
    from monai.networks.utils import copy_model_state

    _, loaded, kept = copy_model_state(network, dict(state_dict), exclude_vars=exclude, inplace=True)
    unused = sorted(set(state_dict) - set(loaded))
    return WeightTransfer(loaded=list(loaded), kept=list(kept), unused=unused)

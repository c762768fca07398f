"""The JSON side of a model package: ``model.json`` (the description) and ``model_card.json``.

Both are plain JSON with limits that keep image data out of a package: no arrays or binary values,
no list holding more than :data:`MAX_LIST_NUMBERS` numbers, no string longer than
:data:`MAX_STRING_CHARS` characters, no file larger than :data:`MAX_JSON_BYTES`.  The validators
here return a normalised copy (defaults filled in, tuples as lists) or raise ``InputError`` naming
the file and the offending key.

Spatial conventions in the description: ``input.spacing_mm`` is ``[x, y, z]`` in millimetres, the
order of ``SimpleITK.Image.GetSpacing()`` (``null`` for an axis means "keep the image's spacing");
``input.orientation`` is a three-letter code in the "axis points toward" convention shared by
``SimpleITK.DICOMOrient`` and MONAI ``Orientation`` (``"LPS"`` is the identity direction of an LPS
image), or ``null`` to keep the image's orientation; ``input.patch_size`` is in voxels, ``[x, y(, z)]``.
A 2D model (``spatial_dims`` 2) runs on axial slices of a 3D image; its ``spacing_mm`` still lists
x, y, z, usually with ``null`` for z.

Output channels: with ``softmax`` channel 0 is background and channel ``i`` is ``output.labels[i-1]``
(the arg-max channel is written as that label's ``value``); with ``sigmoid`` channel ``i`` is
``output.labels[i]``, present where the probability exceeds ``output.threshold``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import InputError
from ..labels import Segment
from .architectures import argument, check_arguments, resolve_architecture

FORMAT_NAME = "segtransfer-model-package"
FORMAT_VERSION = 1

#: Largest JSON file accepted in a package (1 MiB).
MAX_JSON_BYTES = 1024 * 1024
#: Longest string accepted in package metadata (64 KiB of text).
MAX_STRING_CHARS = 64 * 1024
#: Most numbers a list (nested lists included) may hold: room for any network argument or metric
#: table, far too few for an image.
MAX_LIST_NUMBERS = 10_000

INTENSITY_KINDS = ("window", "zscore", "minmax", "none")
ACTIVATIONS = ("softmax", "sigmoid")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_AXES = ({"L", "R"}, {"P", "A"}, {"S", "I"})


# --------------------------------------------------------------------------------------------- JSON


def _count_numbers(value: list) -> int:
    return sum(_count_numbers(v) if isinstance(v, list) else isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


def json_tree(value: object, where: str, key: str = "") -> object:
    """A JSON-safe copy of ``value`` (tuples become lists, numpy scalars Python numbers).

    Raises ``InputError`` for anything that is not plain JSON or breaks the size limits: numpy
    arrays and tensors ("no image data goes into a package"), bytes, non-finite numbers, non-string
    keys, a string over :data:`MAX_STRING_CHARS` characters or a list with more than
    :data:`MAX_LIST_NUMBERS` numbers.  ``key`` is the dotted key shown in messages.
    """
    at = f" at '{key}'" if key else ""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, np.generic) and not isinstance(value, (np.void, np.bytes_, np.str_)):
        value = value.item()
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(where, f"non-finite number {value}{at} is not valid JSON")
        return value
    if isinstance(value, (str, np.str_)):
        if len(value) > MAX_STRING_CHARS:
            raise InputError(where, f"string of {len(value)} characters{at} exceeds the {MAX_STRING_CHARS} allowed (no data blobs in a package)")
        return str(value)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise InputError(where, f"non-string key {k!r}{at}")
            out[k] = json_tree(v, where, f"{key}.{k}" if key else k)
        return out
    if isinstance(value, (list, tuple)):
        items = [json_tree(v, where, f"{key}[{i}]") for i, v in enumerate(value)]
        n = _count_numbers(items)
        if n > MAX_LIST_NUMBERS:
            raise InputError(where, f"list of {n} numbers{at} exceeds the {MAX_LIST_NUMBERS} allowed (no image data goes into a package)")
        return items
    kind = type(value).__module__ + "." + type(value).__qualname__
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        raise InputError(where, f"array ({kind}, shape {tuple(value.shape)}){at} is not allowed in package metadata: no image data goes into a package")
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise InputError(where, f"binary value{at} is not allowed in package metadata")
    raise InputError(where, f"value of type {kind}{at} is not JSON")


def dumps(obj: object) -> str:
    """Canonical JSON text for package files (sorted keys, two-space indent, trailing newline), so the
    same content always gives the same bytes and checksum."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(data: bytes, where: str | os.PathLike) -> object:
    """Parse JSON bytes (at most :data:`MAX_JSON_BYTES`, UTF-8, no NaN/Infinity) and apply
    :func:`json_tree`'s limits; ``InputError`` naming ``where`` otherwise."""
    if len(data) > MAX_JSON_BYTES:
        raise InputError(where, f"JSON file of {len(data)} bytes exceeds the {MAX_JSON_BYTES} allowed")
    try:
        obj = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(where, f"not valid JSON ({exc})") from None
    return json_tree(obj, str(where))


def read_json(path: str | os.PathLike) -> object:
    """Read a JSON file with the limits of :func:`parse_json`."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise InputError(path, f"JSON file of {size} bytes exceeds the {MAX_JSON_BYTES} allowed")
        return parse_json(path.read_bytes(), path)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None


# ------------------------------------------------------------------------------------- description


def _obj(value: object, where: str, key: str) -> dict:
    if not isinstance(value, dict):
        raise InputError(where, f"'{key}' must be a JSON object")
    return value


def _only_keys(obj: dict, allowed: set[str], where: str, key: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise InputError(where, f"unknown key(s) in '{key}': {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")


def _number(value: object, where: str, key: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(where, f"'{key}' must be a number, got {value!r}")
    if positive and value <= 0:
        raise InputError(where, f"'{key}' must be positive, got {value}")
    return value


def _text(value: object, where: str, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(where, f"'{key}' must be a non-empty string")
    return value


def validate_intensity(intensity: object, where: str = "model.json", key: str = "input.intensity") -> dict:
    """Normalised intensity normalisation: one of
    ``{"kind": "window", "min_hu", "max_hu", "out_min": 0, "out_max": 1, "clip": true}`` (linear map of
    [min_hu, max_hu] onto [out_min, out_max]), ``{"kind": "zscore", "nonzero": false, "channel_wise": true}``,
    ``{"kind": "minmax", "out_min": 0, "out_max": 1}`` or ``{"kind": "none"}``."""
    d = _obj(intensity, where, key)
    kind = d.get("kind")
    if kind == "window":
        _only_keys(d, {"kind", "min_hu", "max_hu", "out_min", "out_max", "clip"}, where, key)
        out = {"kind": "window", "min_hu": _number(d.get("min_hu"), where, f"{key}.min_hu"), "max_hu": _number(d.get("max_hu"), where, f"{key}.max_hu"),
               "out_min": _number(d.get("out_min", 0.0), where, f"{key}.out_min"), "out_max": _number(d.get("out_max", 1.0), where, f"{key}.out_max"),
               "clip": d.get("clip", True)}
        if out["max_hu"] <= out["min_hu"]:
            raise InputError(where, f"'{key}': max_hu ({out['max_hu']}) must exceed min_hu ({out['min_hu']})")
        if not isinstance(out["clip"], bool):
            raise InputError(where, f"'{key}.clip' must be true or false")
        return out
    if kind == "zscore":
        _only_keys(d, {"kind", "nonzero", "channel_wise"}, where, key)
        out = {"kind": "zscore", "nonzero": d.get("nonzero", False), "channel_wise": d.get("channel_wise", True)}
        if not all(isinstance(out[k], bool) for k in ("nonzero", "channel_wise")):
            raise InputError(where, f"'{key}': nonzero and channel_wise must be true or false")
        return out
    if kind == "minmax":
        _only_keys(d, {"kind", "out_min", "out_max"}, where, key)
        return {"kind": "minmax", "out_min": _number(d.get("out_min", 0.0), where, f"{key}.out_min"), "out_max": _number(d.get("out_max", 1.0), where, f"{key}.out_max")}
    if kind == "none":
        _only_keys(d, {"kind"}, where, key)
        return {"kind": "none"}
    raise InputError(where, f"'{key}.kind' must be one of {', '.join(INTENSITY_KINDS)}, got {kind!r}")


def validate_orientation(code: object, where: str = "model.json", key: str = "input.orientation") -> str | None:
    """A three-letter orientation code (one of L/R, P/A, S/I each, e.g. ``"LPS"``, ``"RAS"``) or ``None``."""
    if code is None:
        return None
    if not (isinstance(code, str) and len(code) == 3 and all(sum(c in axis for c in code.upper()) == 1 for axis in _AXES)):
        raise InputError(where, f"'{key}' must be a 3-letter code with one of L/R, P/A, S/I each (e.g. 'LPS'), or null; got {code!r}")
    return code.upper()


def _labels(value: object, where: str) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise InputError(where, "'output.labels' must be a non-empty list of {value, name, color}")
    out, seen = [], set()
    for i, lab in enumerate(value):
        key = f"output.labels[{i}]"
        lab = _obj(lab, where, key)
        _only_keys(lab, {"value", "name", "color"}, where, key)
        v = lab.get("value")
        if isinstance(v, bool) or not isinstance(v, int) or v < 1 or v > 65535:
            raise InputError(where, f"'{key}.value' must be an integer 1..65535 (0 is background), got {v!r}")
        if v in seen:
            raise InputError(where, f"'{key}.value' {v} appears twice")
        seen.add(v)
        color = lab.get("color")
        if not isinstance(color, list) or len(color) != 3 or any(isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 <= c <= 1 for c in color):
            raise InputError(where, f"'{key}.color' must be [r, g, b] with values in 0..1, got {color!r}")
        out.append({"value": v, "name": _text(lab.get("name"), where, f"{key}.name"), "color": [float(c) for c in color]})
    return out


def validate_description(description: object, where: str | os.PathLike = "model.json") -> dict:
    """Check a package description (the ``model.json`` content) and return it normalised.

    Checks: format name and version; ``architecture.name`` on the allow-list and
    ``architecture.arguments`` accepted by that class; ``input`` (spatial_dims 2 or 3, spacing_mm
    ``[x, y, z]`` positive or null, orientation, channel names matching ``in_channels``, phases,
    intensity normalisation, patch_size); ``output`` (activation, threshold, labels matching
    ``out_channels``: one channel per label plus background for softmax, one per label for sigmoid).
    """
    where = str(where)
    d = _obj(json_tree(description, where), where, "model.json")
    _only_keys(d, {"format", "format_version", "name", "task", "architecture", "input", "output", "extra"}, where, "model.json")
    if d.get("format") != FORMAT_NAME:
        raise InputError(where, f"'format' must be {FORMAT_NAME!r}, got {d.get('format')!r}")
    version = d.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InputError(where, f"'format_version' must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise InputError(where, f"format version {version} was written by a newer SegTransfer; this version reads up to {FORMAT_VERSION}")

    arch = _obj(d.get("architecture"), where, "architecture")
    _only_keys(arch, {"name", "arguments"}, where, "architecture")
    canonical = resolve_architecture(arch.get("name"), where)
    if canonical != arch.get("name"):
        raise InputError(where, f"'architecture.name' must be written in full as {canonical!r}")
    arguments = _obj(arch.get("arguments", {}), where, "architecture.arguments")
    check_arguments(canonical, arguments, where)

    inp = _obj(d.get("input"), where, "input")
    _only_keys(inp, {"spatial_dims", "spacing_mm", "orientation", "channels", "phases", "intensity", "patch_size"}, where, "input")
    dims = inp.get("spatial_dims")
    if dims not in (2, 3) or isinstance(dims, bool):
        raise InputError(where, f"'input.spatial_dims' must be 2 or 3, got {dims!r}")
    spacing = inp.get("spacing_mm")
    if not isinstance(spacing, list) or len(spacing) != 3:
        raise InputError(where, f"'input.spacing_mm' must be [x, y, z] in mm (null for an axis kept as is), got {spacing!r}")
    spacing = [None if s is None else _number(s, where, "input.spacing_mm", positive=True) for s in spacing]
    channels = inp.get("channels")
    if not isinstance(channels, list) or not channels:
        raise InputError(where, "'input.channels' must be a non-empty list of channel names")
    channels = [_text(c, where, "input.channels") for c in channels]
    phases = inp.get("phases")
    if phases is not None:
        if not isinstance(phases, list) or not phases:
            raise InputError(where, "'input.phases' must be a non-empty list of phase names, or null")
        phases = [_text(p, where, "input.phases") for p in phases]
    patch = inp.get("patch_size")
    if patch is not None and (not isinstance(patch, list) or len(patch) != dims or any(isinstance(p, bool) or not isinstance(p, int) or p < 1 for p in patch)):
        raise InputError(where, f"'input.patch_size' must be {dims} positive integers or null, got {patch!r}")
    norm_input = {"spatial_dims": dims, "spacing_mm": spacing, "orientation": validate_orientation(inp.get("orientation"), where),
                  "channels": channels, "phases": phases, "intensity": validate_intensity(inp.get("intensity"), where), "patch_size": patch}

    outp = _obj(d.get("output"), where, "output")
    _only_keys(outp, {"activation", "threshold", "labels"}, where, "output")
    activation = outp.get("activation")
    if activation not in ACTIVATIONS:
        raise InputError(where, f"'output.activation' must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    threshold = None
    if activation == "sigmoid":
        threshold = _number(outp.get("threshold", 0.5), where, "output.threshold")
        if not 0 < threshold < 1:
            raise InputError(where, f"'output.threshold' must lie in (0, 1), got {threshold}")
    elif outp.get("threshold") is not None:
        raise InputError(where, "'output.threshold' applies to sigmoid outputs only (softmax takes the arg-max)")
    labels = _labels(outp.get("labels"), where)

    out = {"format": FORMAT_NAME, "format_version": version, "name": _text(d.get("name"), where, "name"), "task": d.get("task"),
           "architecture": {"name": canonical, "arguments": arguments}, "input": norm_input,
           "output": {"activation": activation, "threshold": threshold, "labels": labels}, "extra": _obj(d.get("extra", {}), where, "extra")}
    if out["task"] is not None:
        _text(out["task"], where, "task")

    arg_dims = argument(out, "spatial_dims")
    if arg_dims is not None and arg_dims != dims:
        raise InputError(where, f"'input.spatial_dims' is {dims} but the architecture's spatial_dims is {arg_dims}")
    in_ch = argument(out, "in_channels")
    if in_ch is not None and in_ch != len(channels):
        raise InputError(where, f"'input.channels' names {len(channels)} channel(s) but the architecture has in_channels={in_ch}")
    out_ch = argument(out, "out_channels")
    want = len(labels) + 1 if activation == "softmax" else len(labels)
    if out_ch is not None and out_ch != want:
        raise InputError(where, f"{len(labels)} label(s) with {activation} need out_channels={want}, the architecture has {out_ch}")
    return out


def make_description(architecture: str, arguments: Mapping, *, name: str, spacing_mm: Sequence[float | None], intensity: Mapping,
                     labels: Sequence[Segment], channels: Sequence[str] = ("CT",), phases: Sequence[str] | None = None,
                     orientation: str | None = "LPS", activation: str = "softmax", threshold: float = 0.5,
                     patch_size: Sequence[int] | None = None, task: str | None = None, extra: Mapping | None = None) -> dict:
    """Build and validate a package description.

    ``architecture``: an allow-listed name (short names such as ``"UNet"`` are accepted);
    ``arguments``: its keyword arguments (``spatial_dims`` is taken from them, default 3);
    ``spacing_mm``: ``[x, y, z]`` in mm; ``intensity``: see :func:`validate_intensity`;
    ``labels``: the output structures (:class:`~segtransfer.labels.Segment`, colours 0..1).
    """
    canonical = resolve_architecture(architecture)
    arguments = json_tree(dict(arguments), "architecture arguments")
    dims = arguments.get("spatial_dims", 3)
    desc = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "name": name, "task": task,
        "architecture": {"name": canonical, "arguments": arguments},
        "input": {"spatial_dims": dims, "spacing_mm": list(spacing_mm), "orientation": orientation, "channels": list(channels),
                  "phases": None if phases is None else list(phases), "intensity": dict(intensity),
                  "patch_size": None if patch_size is None else list(patch_size)},
        "output": {"activation": activation, "threshold": threshold if activation == "sigmoid" else None,
                   "labels": [{"value": s.value, "name": s.name, "color": list(s.color)} for s in labels]},
        "extra": dict(extra or {}),
    }
    return validate_description(desc, "description")


def segments(description: Mapping) -> list[Segment]:
    """The output labels of a (validated) description as :class:`~segtransfer.labels.Segment` objects."""
    return [Segment(lab["value"], lab["name"], tuple(lab["color"])) for lab in description["output"]["labels"]]


def intensity_transform(intensity: Mapping):
    """The MONAI array transform for a (validated) ``input.intensity`` entry: ``ScaleIntensityRange``
    for ``window``, ``NormalizeIntensity`` for ``zscore``, ``ScaleIntensity`` for ``minmax`` and
    ``Identity`` for ``none``.  It takes a channel-first array ``[C, *spatial]``."""
    from monai.transforms import Identity, NormalizeIntensity, ScaleIntensity, ScaleIntensityRange

    kind = intensity["kind"]
    if kind == "window":
        return ScaleIntensityRange(a_min=intensity["min_hu"], a_max=intensity["max_hu"], b_min=intensity["out_min"], b_max=intensity["out_max"], clip=intensity["clip"])
    if kind == "zscore":
        return NormalizeIntensity(nonzero=intensity["nonzero"], channel_wise=intensity["channel_wise"])
    if kind == "minmax":
        return ScaleIntensity(minv=intensity["out_min"], maxv=intensity["out_max"])
    return Identity()


# -------------------------------------------------------------------------------------------- card


def validate_card(card: object, where: str | os.PathLike = "model_card.json") -> dict:
    """Check a model card and return it normalised.

    Required: ``provenance.site`` (who trained the model) and ``intended_use``.  Normalised with
    defaults: ``name``, ``version`` ("1"), ``created`` (ISO 8601 UTC, filled in when saving),
    ``parent`` (``null`` or ``{"sha256": <package sha256>, ...}`` for a fine-tuned model),
    ``training_data`` (counts: cases, phases, scans, sites ...), ``validation`` (metrics),
    ``limitations``.  Other keys are kept; every value obeys :func:`json_tree`'s limits.
    """
    where = str(where)
    c = _obj(json_tree(card, where), where, "model card")
    prov = _obj(c.get("provenance"), where, "provenance")
    _text(prov.get("site"), where, "provenance.site")
    _text(c.get("intended_use"), where, "intended_use")
    out = dict(c)
    out.setdefault("version", "1")
    out.setdefault("parent", None)
    out.setdefault("limitations", "")
    for key in ("training_data", "validation"):
        out[key] = _obj(out.get(key, {}), where, key)
    if out["parent"] is not None:
        parent = _obj(out["parent"], where, "parent")
        if not isinstance(parent.get("sha256"), str) or not _HEX64.match(parent["sha256"]):
            raise InputError(where, "'parent.sha256' must be the parent package's sha256 (64 lowercase hex digits)")
    for key in ("version", "limitations", "created", "name"):
        if key in out and not isinstance(out[key], str):
            raise InputError(where, f"'{key}' must be a string")
    return out


def software_versions() -> dict:
    """Versions of the software that wrote a package (recorded in the model card)."""
    import monai
    import safetensors
    import torch

    return {"segtransfer": __version__, "monai": monai.__version__, "torch": torch.__version__, "safetensors": safetensors.__version__}


def utc_now() -> str:
    """The current time as ISO 8601 UTC with seconds, e.g. ``2025-01-31T12:00:00Z``."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _md(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True) if isinstance(value, (dict, list)) else str(value)


def render_model_card(card: Mapping, description: Mapping) -> str:
    """``MODEL_CARD.md``: the card and the key facts of the description as readable Markdown.
    ``model_card.json`` stays the authoritative copy."""
    inp, outp = description["input"], description["output"]
    lines = [f"# Model card: {description['name']}", ""]
    if description.get("task"):
        lines += [description["task"], ""]
    lines += ["## Provenance", ""]
    prov = card["provenance"]
    lines += [f"- {k}: {_md(prov[k])}" for k in ["site"] + sorted(set(prov) - {"site"})]
    lines += [f"- created: {card.get('created', '')}", f"- version: {card.get('version', '')}"]
    parent = card.get("parent")
    lines += [f"- parent package: {parent['sha256']}" + (f" ({parent['name']})" if parent.get("name") else "") if parent else "- parent package: none (not fine-tuned from a package)"]
    if card.get("software"):
        lines.append("- written by: " + ", ".join(f"{k} {v}" for k, v in card["software"].items()))
    lines += ["", "## Intended use", "", card["intended_use"], "", "## Limitations", "", card.get("limitations") or "None stated.", ""]
    for title, key in (("Training data", "training_data"), ("Validation", "validation")):
        lines += [f"## {title}", ""]
        lines += [f"- {k}: {_md(v)}" for k, v in sorted(card[key].items())] or ["Not stated."]
        lines.append("")
    spacing = ", ".join("native" if s is None else f"{s:g}" for s in inp["spacing_mm"])
    lines += ["## Model", "", f"- architecture: {description['architecture']['name']}",
              f"- arguments: {_md(description['architecture']['arguments'])}",
              f"- input: {inp['spatial_dims']}D, channels {', '.join(inp['channels'])}, spacing [{spacing}] mm (x, y, z), "
              f"orientation {inp['orientation'] or 'as read'}, intensity {_md(inp['intensity'])}"]
    if inp.get("phases"):
        lines.append(f"- phases: {', '.join(inp['phases'])}")
    lines.append(f"- output: {outp['activation']}" + (f", threshold {outp['threshold']:g}" if outp["threshold"] is not None else ""))
    lines += ["", "| value | label | colour (RGB) |", "|---|---|---|"]
    lines += [f"| {lab['value']} | {lab['name']} | {', '.join(f'{c:.3f}' for c in lab['color'])} |" for lab in outp["labels"]]
    return "\n".join(lines) + "\n"

"""Export a model package as a MONAI bundle, and import a MONAI bundle as a package, without unpickling.

Exported layout (a folder, or a zip of it with the bundle folder inside)::

    configs/metadata.json    MONAI metadata; the package's description and card under "segtransfer"
    configs/inference.json   network_def (allow-listed "_target_" and its arguments), preprocessing,
                             inferer and postprocessing as plain MONAI transform configs
    models/model.safetensors the package's weights, byte for byte
    docs/README.md           the rendered model card

Import reads ``configs/metadata.json`` and ``configs/inference.json`` as data (YAML configs only
when PyYAML is installed, with ``yaml.safe_load``) and weights only from
``models/model.safetensors``.  Nothing in a config is evaluated: ``network_def`` must be literal
JSON whose ``_target_`` is on the architecture allow-list; ``@id`` references to literal values
elsewhere in the config are followed, ``$`` expressions and ``%`` file references are refused.
A bundle that has only ``models/model.pt`` / ``model.ts`` (pickle or TorchScript) is refused with
the reason.  When the metadata carries a SegTransfer description (a bundle exported by
:func:`export_bundle`) that description is used as is; otherwise it is derived from the configs
(``Orientationd`` axcodes, ``Spacingd`` pixdim, the intensity transform, the sliding-window
``roi_size``, ``Activationsd``/``AsDiscreted``, the output ``channel_def``), each derivation is
recorded in the new card under ``imported_from.notes``, and any value can be given explicitly.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy
import torch

from ..errors import InputError
from ..io import atomic_dir
from ..labels import default_segments
from .architectures import argument, resolve_architecture, state_dict_mismatch
from .metadata import (
    FORMAT_NAME,
    FORMAT_VERSION,
    dumps,
    json_tree,
    read_json,
    render_model_card,
    validate_card,
    validate_description,
    validate_intensity,
    validate_orientation,
)
from .package import PICKLE_SUFFIXES, ModelPackage, load_package, pickle_refusal, save_package, tensors_from_safetensors
from .safezip import extracted, single_root, write_zip

METADATA = "configs/metadata.json"
INFERENCE = "configs/inference.json"
BUNDLE_WEIGHTS = "models/model.safetensors"
_MAX_REFERENCE_DEPTH = 8


# ------------------------------------------------------------------------------------------- export


def _intensity_config(intensity: Mapping) -> list[dict]:
    kind = intensity["kind"]
    if kind == "window":
        return [{"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": intensity["min_hu"], "a_max": intensity["max_hu"],
                 "b_min": intensity["out_min"], "b_max": intensity["out_max"], "clip": intensity["clip"]}]
    if kind == "zscore":
        return [{"_target_": "NormalizeIntensityd", "keys": "image", "nonzero": intensity["nonzero"], "channel_wise": intensity["channel_wise"]}]
    if kind == "minmax":
        return [{"_target_": "ScaleIntensityd", "keys": "image", "minv": intensity["out_min"], "maxv": intensity["out_max"]}]
    return []


def _inference_config(description: Mapping) -> dict:
    inp, out = description["input"], description["output"]
    pre: list[dict] = [{"_target_": "LoadImaged", "keys": "image"}, {"_target_": "EnsureChannelFirstd", "keys": "image"}]
    if inp["orientation"]:
        pre.append({"_target_": "Orientationd", "keys": "image", "axcodes": inp["orientation"]})
    if any(s is not None for s in inp["spacing_mm"]):
        # MONAI keeps the original spacing along an axis whose pixdim is not positive.
        pre.append({"_target_": "Spacingd", "keys": "image", "pixdim": [s if s is not None else 0 for s in inp["spacing_mm"]], "mode": "bilinear"})
    pre += _intensity_config(inp["intensity"]) + [{"_target_": "EnsureTyped", "keys": "image"}]
    if inp["patch_size"]:
        inferer = {"_target_": "SlidingWindowInferer", "roi_size": inp["patch_size"], "sw_batch_size": 1, "overlap": 0.5}
    else:
        inferer = {"_target_": "SimpleInferer"}
    if out["activation"] == "softmax":
        post = [{"_target_": "Activationsd", "keys": "pred", "softmax": True}, {"_target_": "AsDiscreted", "keys": "pred", "argmax": True}]
    else:
        post = [{"_target_": "Activationsd", "keys": "pred", "sigmoid": True}, {"_target_": "AsDiscreted", "keys": "pred", "threshold": out["threshold"]}]
    return {
        "network_def": {"_target_": description["architecture"]["name"], **description["architecture"]["arguments"]},
        "preprocessing": {"_target_": "Compose", "transforms": pre},
        "inferer": inferer,
        "postprocessing": {"_target_": "Compose", "transforms": post},
    }


def _metadata(package: ModelPackage, weights_sha256: str) -> dict:
    import monai
    import safetensors

    d, card = package.description, package.card
    inp, out = d["input"], d["output"]
    dims = inp["spatial_dims"]
    if out["activation"] == "softmax":
        out_channels = {"0": "background", **{str(i + 1): lab["name"] for i, lab in enumerate(out["labels"])}}
    else:
        out_channels = {str(i): lab["name"] for i, lab in enumerate(out["labels"])}
    shape = inp["patch_size"] or ["*"] * dims
    intensity = inp["intensity"]
    value_range = [intensity["out_min"], intensity["out_max"]] if intensity["kind"] in ("window", "minmax") else []
    meta = {
        "version": card.get("version", "1"),
        "changelog": {card.get("version", "1"): f"exported from SegTransfer model package {package.sha256 or '(unsaved)'}"},
        "monai_version": monai.__version__, "pytorch_version": torch.__version__, "numpy_version": numpy.__version__,
        "required_packages_version": {"safetensors": safetensors.__version__}, "optional_packages_version": {},
        "name": d["name"], "task": d["task"] or d["name"], "description": d["task"] or d["name"],
        "authors": card["provenance"]["site"], "copyright": card["provenance"].get("copyright", "Not stated in the model card"),
        "intended_use": card["intended_use"],
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "hounsfield" if intensity["kind"] == "window" else "magnitude", "modality": "CT",
                                 "num_channels": len(inp["channels"]), "spatial_shape": shape, "dtype": "float32", "value_range": value_range,
                                 "is_patch_data": inp["patch_size"] is not None, "channel_def": {str(i): c for i, c in enumerate(inp["channels"])}}},
            "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": len(out_channels), "spatial_shape": shape,
                                 "dtype": "float32", "value_range": [0, 1], "is_patch_data": inp["patch_size"] is not None, "channel_def": out_channels}},
        },
        "segtransfer": {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "package_sha256": package.sha256,
                        "weights_sha256": weights_sha256, "model": d, "card": card},
    }
    metrics = card.get("validation", {}).get("metrics")
    if isinstance(metrics, dict):
        meta["eval_metrics"] = metrics
    return meta


def export_bundle(package: ModelPackage | str | os.PathLike, destination: str | os.PathLike, expected_sha256: str | None = None) -> Path:
    """Write a package as a MONAI bundle at ``destination`` (a new folder, or a ``.zip``).

    ``package`` is a :class:`ModelPackage` or the path of one (loaded and verified first).  Weights
    go to ``models/model.safetensors`` (MONAI bundles often ship ``model.pt``; this one never does).
    Returns the destination.
    """
    from safetensors.torch import save as st_save

    if not isinstance(package, ModelPackage):
        package = load_package(package, expected_sha256)
    description = validate_description(package.description, "description")
    package = ModelPackage(description, validate_card(package.card, "model card"), package.state_dict, package.path, package.sha256, package.files)
    dest = Path(destination)
    if dest.exists():
        raise InputError(dest, "already exists; choose a new bundle folder or .zip")
    weights = st_save(package.state_dict, metadata={"format": "pt"})
    contents = {
        METADATA: dumps(_metadata(package, hashlib.sha256(weights).hexdigest())).encode("utf-8"),
        INFERENCE: dumps(_inference_config(description)).encode("utf-8"),
        BUNDLE_WEIGHTS: weights,
        "docs/README.md": render_model_card(package.card, description).encode("utf-8"),
    }

    def write(folder: Path) -> None:
        for rel, data in contents.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(data)

    if dest.suffix.lower() == ".zip":
        with tempfile.TemporaryDirectory(prefix="segtransfer-bundle-") as tmp:
            write(Path(tmp))
            write_zip(tmp, dest, prefix=dest.stem)
    else:
        with atomic_dir(dest) as tmp:
            write(tmp)
    return dest


# ------------------------------------------------------------------------------------------- import


def _lookup(config: Mapping, ref: str) -> object:
    node: object = config
    for part in ref.replace("#", "::").split("::"):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(ref)
    return node


def _literal(value: object, config: Mapping, where: str, key: str, depth: int = 0) -> object:
    """``value`` with ``@id`` references replaced by the literal values they name; ``InputError`` for
    expressions (``$``), file references (``%``), nested components and unresolvable references."""
    if depth > _MAX_REFERENCE_DEPTH:
        raise InputError(where, f"'{key}': references nested deeper than {_MAX_REFERENCE_DEPTH}")
    if isinstance(value, str):
        if value.startswith("$"):
            raise InputError(where, f"'{key}' is a Python expression ({value[:60]!r}); expressions are code and are never evaluated")
        if value.startswith("%"):
            raise InputError(where, f"'{key}' refers to another file ({value[:60]!r}); only literal values are read")
        if value.startswith("@"):
            try:
                target = _lookup(config, value[1:])
            except KeyError:
                raise InputError(where, f"'{key}' refers to {value!r}, which is not in the config") from None
            return _literal(target, config, where, key, depth + 1)
        return value
    if isinstance(value, Mapping):
        if "_target_" in value:
            raise InputError(where, f"'{key}' is a component ({value['_target_']!r}) that would be instantiated; only literal arguments are read")
        return {k: _literal(v, config, where, f"{key}.{k}", depth) for k, v in value.items()}
    if isinstance(value, list):
        return [_literal(v, config, where, f"{key}[{i}]", depth) for i, v in enumerate(value)]
    return value


def _read_inference_config(root: Path, label: str) -> tuple[dict, str]:
    json_path = root / INFERENCE
    if json_path.is_file():
        cfg = read_json(json_path)
        name = INFERENCE
    else:
        yaml_path = next((root / "configs" / n for n in ("inference.yaml", "inference.yml") if (root / "configs" / n).is_file()), None)
        if yaml_path is None:
            raise InputError(label, f"MONAI bundle has no {INFERENCE} (or configs/inference.yaml)")
        try:
            import yaml
        except ImportError:
            raise InputError(yaml_path, "YAML bundle configs need PyYAML (pip install pyyaml), or convert the config to configs/inference.json") from None
        try:
            cfg = json_tree(yaml.safe_load(yaml_path.read_text(encoding="utf-8")), str(yaml_path))
        except yaml.YAMLError as exc:
            raise InputError(yaml_path, f"not valid YAML ({str(exc).splitlines()[0]})") from None
        name = f"configs/{yaml_path.name}"
    if not isinstance(cfg, dict):
        raise InputError(f"{label}:{name}", "config must be a JSON object")
    return cfg, name


def _network_def(cfg: dict, where: str) -> tuple[str, dict]:
    nd = cfg.get("network_def")
    if nd is None and isinstance(cfg.get("network"), Mapping):
        nd = cfg["network"]
    if not isinstance(nd, Mapping):
        raise InputError(where, f"'network_def' must be a literal component with '_target_' (found {str(nd)[:60]!r})")
    target = nd.get("_target_")
    if isinstance(target, str) and target[:1] in "$@%":
        raise InputError(where, f"'network_def._target_' is {target[:60]!r}; only an allow-listed class name is accepted, never an expression or reference")
    canonical = resolve_architecture(target, where)
    if nd.get("_disabled_") not in (None, False, "false", "False"):
        raise InputError(where, "'network_def' is disabled ('_disabled_')")
    if nd.get("_mode_", "default") != "default":
        raise InputError(where, f"'network_def._mode_' is {nd['_mode_']!r}; only plain instantiation is supported")
    arguments = {k: _literal(v, cfg, where, f"network_def.{k}") for k, v in nd.items() if not k.startswith("_")}
    return canonical, arguments


def _transforms(cfg: dict, key: str) -> list[dict]:
    node = cfg.get(key)
    if isinstance(node, Mapping):
        node = node.get("transforms")
    return [t for t in node if isinstance(t, Mapping) and isinstance(t.get("_target_"), str)] if isinstance(node, list) else []


def _short(target: str) -> str:
    """Class name of a transform target without module path or dictionary suffix ("monai.transforms.Spacingd" -> "Spacing")."""
    name = target.rsplit(".", 1)[-1]
    return name[:-1] if name.endswith("d") else name


def _derive_input(cfg: dict, where: str, dims: int, notes: list[str], spacing_mm, orientation, intensity) -> dict:
    pre = _transforms(cfg, "preprocessing")
    by_name: dict[str, list[Mapping]] = {}
    for t in pre:
        by_name.setdefault(_short(t["_target_"]), []).append(t)

    def literal(t: Mapping, name: str, default=None):
        return _literal(t.get(name, default), cfg, where, f"preprocessing.{t['_target_']}.{name}")

    if spacing_mm is None:
        if "Spacing" in by_name:
            pixdim = literal(by_name["Spacing"][0], "pixdim")
            pixdim = [pixdim] if isinstance(pixdim, (int, float)) else pixdim
            if not isinstance(pixdim, list) or not pixdim or any(isinstance(s, bool) or not isinstance(s, (int, float)) for s in pixdim):
                raise InputError(where, f"Spacingd pixdim must be numbers, got {pixdim!r}; give the spacing explicitly")
            pixdim = (pixdim + [pixdim[-1]] * 3)[:3]  # MONAI pads a short pixdim with its last value
            spacing_mm = [float(s) if s > 0 else None for s in pixdim]
            notes.append(f"spacing_mm {spacing_mm} from Spacingd pixdim")
        else:
            spacing_mm = [None, None, None]
            notes.append("no Spacingd in preprocessing: the model runs at the image's own spacing")
    if orientation is None:
        if "Orientation" in by_name:
            orientation = validate_orientation(literal(by_name["Orientation"][0], "axcodes"), where, "Orientationd.axcodes")
            notes.append(f"orientation {orientation} from Orientationd axcodes")
        else:
            notes.append("no Orientationd in preprocessing: images are used in their own orientation")
    if intensity is None:
        found = [n for n in ("ScaleIntensityRange", "NormalizeIntensity", "ScaleIntensity") if n in by_name]
        if len(found) > 1 or any(len(by_name[n]) > 1 for n in found):
            raise InputError(where, f"several intensity transforms in preprocessing ({', '.join(found)}); give the intensity normalisation explicitly")
        if not found:
            intensity = {"kind": "none"}
            notes.append("no intensity transform in preprocessing: intensities are used as read")
        else:
            t = by_name[found[0]][0]
            if found[0] == "ScaleIntensityRange":
                b_min, b_max = literal(t, "b_min"), literal(t, "b_max")
                intensity = {"kind": "window", "min_hu": literal(t, "a_min"), "max_hu": literal(t, "a_max"),
                             "out_min": 0.0 if b_min is None else b_min, "out_max": 1.0 if b_max is None else b_max, "clip": bool(literal(t, "clip", False))}
            elif found[0] == "NormalizeIntensity":
                intensity = {"kind": "zscore", "nonzero": bool(literal(t, "nonzero", False)), "channel_wise": bool(literal(t, "channel_wise", False))}
            else:
                intensity = {"kind": "minmax", "out_min": literal(t, "minv", 0.0), "out_max": literal(t, "maxv", 1.0)}
            notes.append(f"intensity {intensity['kind']} from {t['_target_']}")
    return {"spacing_mm": spacing_mm, "orientation": orientation, "intensity": validate_intensity(intensity, where)}


def _derive_description(cfg: dict, meta: dict, where: str, name: str, notes: list[str], spacing_mm, orientation, intensity) -> dict:
    canonical, arguments = _network_def(cfg, where)
    probe = {"architecture": {"name": canonical, "arguments": arguments}}
    dims = int(argument(probe, "spatial_dims") or 3)
    in_ch = int(argument(probe, "in_channels") or 1)
    out_ch = int(argument(probe, "out_channels") or 1)
    fmt = meta.get("network_data_format") if isinstance(meta.get("network_data_format"), Mapping) else {}
    image = (fmt.get("inputs") or {}).get("image") or {}
    pred = (fmt.get("outputs") or {}).get("pred") or {}
    in_def = image.get("channel_def") if isinstance(image.get("channel_def"), Mapping) else {}
    out_def = pred.get("channel_def") if isinstance(pred.get("channel_def"), Mapping) else {}
    channels = [str(in_def.get(str(i), "image" if in_ch == 1 else f"channel {i}")) for i in range(in_ch)]

    post = {_short(t["_target_"]): t for t in _transforms(cfg, "postprocessing")}
    act = post.get("Activations", {})
    if _literal(act.get("softmax", False), cfg, where, "Activationsd.softmax"):
        activation = "softmax"
    elif _literal(act.get("sigmoid", False), cfg, where, "Activationsd.sigmoid"):
        activation = "sigmoid"
    else:
        activation = "softmax" if out_ch > 1 else "sigmoid"
        notes.append(f"no Activationsd in postprocessing: {activation} assumed from out_channels={out_ch}")
    threshold = 0.5
    if activation == "sigmoid" and "AsDiscrete" in post:
        value = _literal(post["AsDiscrete"].get("threshold", 0.5), cfg, where, "AsDiscreted.threshold")
        threshold = 0.5 if isinstance(value, bool) else float(value)
    first = 1 if activation == "softmax" else 0
    values = [c - first + 1 for c in range(first, out_ch)]
    colours = {s.value: s.color for s in default_segments(values, known=())}
    labels = [{"value": v, "name": str(out_def.get(str(c), f"Label {v}")), "color": list(colours[v])} for c, v in zip(range(first, out_ch), values)]

    patch = None
    inferer = cfg.get("inferer")
    if isinstance(inferer, Mapping) and _short(str(inferer.get("_target_", ""))) == "SlidingWindowInferer":
        roi = _literal(inferer.get("roi_size"), cfg, where, "inferer.roi_size")
        patch = [int(r) for r in roi] if isinstance(roi, list) and len(roi) == dims else None
    desc = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "name": name, "task": meta.get("task") if isinstance(meta.get("task"), str) else None,
        "architecture": {"name": canonical, "arguments": arguments},
        "input": {"spatial_dims": dims, "channels": channels, "phases": None, "patch_size": patch,
                  **_derive_input(cfg, where, dims, notes, spacing_mm, orientation, intensity)},
        "output": {"activation": activation, "threshold": threshold if activation == "sigmoid" else None, "labels": labels},
    }
    notes.append(f"labels {[lab['name'] for lab in labels]} from the output channel_def of {METADATA}")
    return desc


def _derive_card(meta: dict, site: str | None, intended_use: str | None) -> dict:
    authors = meta.get("authors")
    authors = ", ".join(map(str, authors)) if isinstance(authors, list) else authors
    site = site or (authors if isinstance(authors, str) and authors.strip() else None)
    if site is None:
        raise InputError(METADATA, "no 'authors' to record as the model's site; give the site explicitly (--site)")
    card: dict = {"provenance": {"site": site}, "version": str(meta.get("version", "1")),
                  "intended_use": intended_use or (meta["intended_use"] if isinstance(meta.get("intended_use"), str) and meta["intended_use"].strip() else "Not stated in the source MONAI bundle."),
                  "limitations": "Imported from a MONAI bundle: the description was derived from its configuration (see imported_from.notes).",
                  "training_data": {}, "validation": {}}
    if isinstance(meta.get("copyright"), str):
        card["provenance"]["copyright"] = meta["copyright"]
    if isinstance(meta.get("data_source"), str):
        card["training_data"]["source"] = meta["data_source"]
    if isinstance(meta.get("eval_metrics"), Mapping):
        card["validation"]["metrics"] = dict(meta["eval_metrics"])
    if isinstance(meta.get("references"), list):
        card["references"] = [str(r) for r in meta["references"]]
    return card


def _bundle_weights(root: Path, label: str) -> bytes:
    weights = root / BUNDLE_WEIGHTS
    if weights.is_symlink():
        raise InputError(f"{label}:{BUNDLE_WEIGHTS}", "symbolic link; weights must be a regular file inside the bundle")
    if weights.is_file():
        return weights.read_bytes()
    unsafe = sorted(p.name for p in (root / "models").glob("*") if p.name.lower().endswith(PICKLE_SUFFIXES)) if (root / "models").is_dir() else []
    if unsafe:
        raise InputError(f"{label}:models/{unsafe[0]}", f"the bundle has no {BUNDLE_WEIGHTS}, only {', '.join(unsafe)}. " + pickle_refusal(unsafe[0]))
    raise InputError(label, f"MONAI bundle has no {BUNDLE_WEIGHTS}")


def _bundle_root(folder: Path, label: str) -> Path:
    for root in (folder, single_root(folder)):
        if (root / METADATA).is_file() and not (root / METADATA).is_symlink():
            return root
    raise InputError(label, f"not a MONAI bundle (no {METADATA})")


def _import_root(root: Path, label: str, destination: Path, site, name, spacing_mm, orientation, intensity, intended_use) -> ModelPackage:
    weights = _bundle_weights(root, label)  # refuse pickle-only bundles before reading anything else
    meta = read_json(root / METADATA)
    if not isinstance(meta, dict):
        raise InputError(f"{label}:{METADATA}", "metadata must be a JSON object")
    cfg, cfg_name = _read_inference_config(root, label)
    cfg_where = f"{label}:{cfg_name}"
    notes: list[str] = []
    weights_sha = hashlib.sha256(weights).hexdigest()
    ignored = sorted(p.name for p in (root / "models").iterdir() if p.name.lower().endswith(PICKLE_SUFFIXES))
    if ignored:
        notes.append(f"models/{', models/'.join(ignored)} ignored: pickle-based files are never opened")
    block = meta.get("segtransfer")
    imported_from = {"format": "monai-bundle", "bundle": Path(label).name, "bundle_version": str(meta.get("version", "")), "weights_sha256": weights_sha}
    if isinstance(block, Mapping) and block.get("format") == FORMAT_NAME:
        description = validate_description(block.get("model"), f"{label}:{METADATA} (segtransfer.model)")
        card = validate_card(block.get("card"), f"{label}:{METADATA} (segtransfer.card)")
        if block.get("weights_sha256") not in (None, weights_sha):
            raise InputError(f"{label}:{BUNDLE_WEIGHTS}", "checksum mismatch: the weights changed after the bundle was exported")
        canonical, arguments = _network_def(cfg, cfg_where)
        if (canonical, arguments) != (description["architecture"]["name"], description["architecture"]["arguments"]):
            raise InputError(cfg_where, f"network_def disagrees with the SegTransfer description in {METADATA}")
        imported_from["package_sha256"] = block.get("package_sha256")
        notes.append(f"description and card from the SegTransfer block of {METADATA}")
        for key, value in (("spacing_mm", spacing_mm), ("orientation", orientation), ("intensity", intensity)):
            if value is not None:
                description["input"][key] = value
                notes.append(f"{key} given explicitly")
        if name:
            description["name"] = name
        if site:
            card["provenance"]["site"] = site
        if intended_use:
            card["intended_use"] = intended_use
    else:
        bundle_name = name or (meta["name"] if isinstance(meta.get("name"), str) and meta["name"].strip() else Path(label).stem)
        for key, value in (("spacing_mm", spacing_mm), ("orientation", orientation), ("intensity", intensity)):
            if value is not None:
                notes.append(f"{key} given explicitly")
        description = _derive_description(cfg, meta, cfg_where, bundle_name, notes, spacing_mm, orientation, intensity)
        card = _derive_card(meta, site, intended_use)
    description = validate_description(description, cfg_where)
    for key in ("created", "software"):
        card.pop(key, None)
    card["imported_from"] = {**imported_from, "notes": notes}

    state = tensors_from_safetensors(weights, f"{label}:{BUNDLE_WEIGHTS}")
    package = ModelPackage(description, card, state)
    problem = state_dict_mismatch(package.build_network(), state)
    if problem:
        raise InputError(f"{label}:{BUNDLE_WEIGHTS}", f"weights do not match network_def ({description['architecture']['name']}): {problem}")
    return save_package(package, destination)


def import_bundle(bundle: str | os.PathLike, destination: str | os.PathLike, *, site: str | None = None, name: str | None = None,
                  spacing_mm: Sequence[float | None] | None = None, orientation: str | None = None, intensity: Mapping | None = None,
                  intended_use: str | None = None) -> ModelPackage:
    """Convert a MONAI bundle (folder or ``.zip``) into a model package at ``destination``.

    Keyword arguments override what the bundle says (or fill what it does not): ``site`` (the
    card's provenance; default the metadata's ``authors``), ``name``, ``spacing_mm`` ``[x, y, z]``
    in mm, ``orientation`` (e.g. ``"LPS"``), ``intensity`` (see
    :func:`~segtransfer.models.metadata.validate_intensity`), ``intended_use``.  Refuses (``InputError``
    with the reason) bundles whose weights are not safetensors, whose ``network_def`` is not
    literal or not allow-listed, or whose weights do not match the network.  Returns the saved package.
    """
    p, dest = Path(bundle), Path(destination)
    if not p.exists():
        raise InputError(p, "MONAI bundle not found")
    args = (site, name, None if spacing_mm is None else list(spacing_mm), orientation, None if intensity is None else dict(intensity), intended_use)
    if p.is_dir():
        return _import_root(_bundle_root(p, str(p)), str(p), dest, *args)
    if p.name.lower().endswith(PICKLE_SUFFIXES):
        raise InputError(p, pickle_refusal(p.name))
    with extracted(p) as tmp:
        return _import_root(_bundle_root(tmp, str(p)), str(p), dest, *args)

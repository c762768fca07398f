"""``segtransfer model``: inspect, verify and convert partner-site model packages.

Subcommands: ``info`` (what a package holds, after verification), ``verify`` (exit 0 when every
check passes, 2 otherwise), ``export-bundle`` (package -> MONAI bundle) and ``import-bundle``
(MONAI bundle -> package).  The format is described in ``docs/model_package.md``.
"""

from __future__ import annotations

import argparse
import json
import sys

EXIT_FAILED = 2


def _spacing(text: str) -> float | None:
    if text.lower() == "native":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"spacing must be a number of mm or 'native', got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"spacing must be positive, got {text!r}")
    return value


def _intensity_text(intensity: dict) -> str:
    kind = intensity["kind"]
    if kind == "window":
        return f"window {intensity['min_hu']:g}..{intensity['max_hu']:g} HU -> {intensity['out_min']:g}..{intensity['out_max']:g}" + (" (clipped)" if intensity["clip"] else "")
    if kind == "zscore":
        return "z-score" + (" over non-zero voxels" if intensity["nonzero"] else "") + (", per channel" if intensity["channel_wise"] else "")
    if kind == "minmax":
        return f"min-max -> {intensity['out_min']:g}..{intensity['out_max']:g}"
    return "none (intensities used as read)"


def _value(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True) if isinstance(value, (dict, list)) else str(value)


def format_info(info: dict) -> str:
    """Human-readable text of :func:`segtransfer.models.package_info`'s dict."""
    inp, out, card = info["input"], info["output"], info["card"]
    spacing = ", ".join("native" if s is None else f"{s:g}" for s in inp["spacing_mm"])
    lines = [f"Model package: {info['path']}", f"  name: {info['name']}" + (f" ({info['task']})" if info["task"] else ""),
             f"  sha256: {info['sha256']}", f"  format version: {info['format_version']}",
             f"Architecture: {info['architecture']}", f"  arguments: {_value(info['arguments'])}",
             f"  {info['parameters']} trainable parameters, {info['tensors']} tensors, {info['weights_bytes']} bytes of weights",
             f"Input: {inp['spatial_dims']}D, channels {', '.join(inp['channels'])}",
             f"  spacing [{spacing}] mm (x, y, z), orientation {inp['orientation'] or 'as read'}",
             f"  intensity: {_intensity_text(inp['intensity'])}"]
    if inp["phases"]:
        lines.append(f"  phases: {', '.join(inp['phases'])}")
    if inp["patch_size"]:
        lines.append(f"  patch size: {' x '.join(map(str, inp['patch_size']))} voxels")
    lines.append(f"Output: {out['activation']}" + (f", threshold {out['threshold']:g}" if out["threshold"] is not None else ""))
    lines.append("Labels:")
    lines += [f"  {lab['value']:>3}  {lab['name']}  color ({', '.join(f'{c:.3f}' for c in lab['color'])})" for lab in out["labels"]]
    lines.append("Model card:")
    prov = card["provenance"]
    lines += [f"  {k}: {_value(prov[k])}" for k in ["site"] + sorted(set(prov) - {"site"})]
    lines.append(f"  created: {card.get('created', '')}")
    parent = card.get("parent")
    lines.append(f"  parent package: {parent['sha256'] if parent else 'none'}")
    for title, key in (("training data", "training_data"), ("validation", "validation")):
        lines.append(f"  {title}: " + ("; ".join(f"{k}: {_value(v)}" for k, v in sorted(card[key].items())) or "not stated"))
    lines.append(f"  intended use: {card['intended_use']}")
    lines.append(f"  limitations: {card.get('limitations') or 'none stated'}")
    if card.get("imported_from"):
        lines.append(f"  imported from: {_value(card['imported_from'])}")
    return "\n".join(lines)


def _info(args: argparse.Namespace) -> int:
    from ..models import package_info

    info = package_info(args.package, args.sha256)
    print(json.dumps(info, indent=2, ensure_ascii=False) if args.json else format_info(info))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from ..models import verify_package

    report = verify_package(args.package, args.sha256)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    elif report.ok:
        print(f"OK {report.path}: sha256 {report.sha256}, {report.tensors} tensors, {report.parameters} trainable parameters; checksums, description, card and weights verified")
    if not report.ok:
        print(f"segtransfer model verify: error: {report.problem}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _export(args: argparse.Namespace) -> int:
    from ..models import export_bundle

    out = export_bundle(args.package, args.out, args.sha256)
    print(f"Wrote MONAI bundle {out}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from ..models import import_bundle

    intensity = None
    if args.window:
        intensity = {"kind": "window", "min_hu": args.window[0], "max_hu": args.window[1]}
    elif args.zscore:
        intensity = {"kind": "zscore"}
    elif args.no_normalization:
        intensity = {"kind": "none"}
    package = import_bundle(args.bundle, args.out, site=args.site, name=args.name, spacing_mm=args.spacing, orientation=args.orientation,
                            intensity=intensity, intended_use=args.intended_use)
    print(f"Wrote model package {package.path} (sha256 {package.sha256})")
    for note in package.card["imported_from"]["notes"]:
        print(f"  {note}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``segtransfer model`` and its subcommands."""
    parser = subparsers.add_parser(
        "model", help="inspect, verify and convert partner-site model packages",
        description="Model packages: a folder or .zip with model.json, weights.safetensors, model_card.json, MODEL_CARD.md and "
        "checksums.json. Nothing is ever unpickled; see docs/model_package.md.")
    sub = parser.add_subparsers(dest="model_command", metavar="SUBCOMMAND")
    sub.required = True
    sha = dict(metavar="HEX", help="refuse the package unless its sha256 (the hash of checksums.json) is this value, as announced by the sending site")

    p = sub.add_parser("info", help="show architecture, input, labels and model card (after full verification)",
                       description="Verify a package, then show its architecture, input conventions, labels and model card.")
    p.add_argument("package", help="package folder or .zip")
    p.add_argument("--sha256", **sha)
    p.add_argument("--json", action="store_true", help="print the information as JSON")
    p.set_defaults(func=_info)

    p = sub.add_parser("verify", help="check layout, checksums, description, card and weights; exit 2 on any problem",
                       description="Check that only the package files are present, every checksum matches, model.json and model_card.json "
                       "are valid, and the weights hold exactly the described network's tensors. Exit 0 if so, 2 otherwise.")
    p.add_argument("package", help="package folder or .zip")
    p.add_argument("--sha256", **sha)
    p.add_argument("--json", action="store_true", help="print the verification report as JSON")
    p.set_defaults(func=_verify)

    p = sub.add_parser("export-bundle", help="write a package as a MONAI bundle (weights as models/model.safetensors)",
                       description="Write a verified package as a MONAI bundle: configs/metadata.json, configs/inference.json, "
                       "models/model.safetensors, docs/README.md.")
    p.add_argument("package", help="package folder or .zip")
    p.add_argument("out", help="new bundle folder, or a .zip")
    p.add_argument("--sha256", **sha)
    p.set_defaults(func=_export)

    p = sub.add_parser("import-bundle", help="convert a MONAI bundle with safetensors weights into a package",
                       description="Convert a MONAI bundle (folder or .zip) into a model package. Configs are read as data, never "
                       "evaluated; weights only from models/model.safetensors (bundles with only model.pt/model.ts are refused). "
                       "Options override what the bundle's configs say.")
    p.add_argument("bundle", help="MONAI bundle folder or .zip")
    p.add_argument("out", help="package folder, or a .zip")
    p.add_argument("--site", help="site that trained the model (default: the bundle's 'authors')")
    p.add_argument("--name", help="model name (default: the bundle's name)")
    p.add_argument("--spacing", nargs=3, type=_spacing, metavar=("X", "Y", "Z"), help="input spacing in mm, x y z ('native' keeps an axis as is)")
    p.add_argument("--orientation", help="input orientation code, e.g. LPS or RAS")
    norm = p.add_mutually_exclusive_group()
    norm.add_argument("--window", nargs=2, type=float, metavar=("MIN_HU", "MAX_HU"), help="intensity window mapped to 0..1 (clipped)")
    norm.add_argument("--zscore", action="store_true", help="z-score intensity normalisation")
    norm.add_argument("--no-normalization", action="store_true", help="use intensities as read")
    p.add_argument("--intended-use", help="intended use for the model card (default: the bundle's)")
    p.set_defaults(func=_import)

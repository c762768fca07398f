"""Model packages: what a partner site sends (see ``docs/model_package.md``).

A package is a folder, or a ``.zip`` of that folder, holding exactly these files:

- ``model.json``: the description (format and version, allow-listed MONAI architecture and its
  JSON arguments, input spacing/orientation/channels/phases/intensity normalisation, output
  activation and labels); see :func:`~segtransfer.models.metadata.validate_description`.
- ``weights.safetensors``: the network's full ``state_dict`` (parameters and buffers such as
  BatchNorm running statistics), exactly the tensors the described network has.
- ``model_card.json`` and ``MODEL_CARD.md``: provenance, parent package, training data counts,
  validation metrics, intended use and limitations (the Markdown is rendered from the JSON).
- ``checksums.json``: SHA-256 and size of every other file.

The package's identity is the SHA-256 of ``checksums.json`` (:attr:`ModelPackage.sha256`), the
same for the folder and the zip form.  Loading never unpickles anything: weights are read only
from safetensors; a pickle-capable file (``.pt``, ``.pth``, ``.ckpt``, ``.pkl``, ...) or any other
unknown file refuses the package, and checksums are checked on the same bytes that are then
parsed, before anything reads the weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import InputError
from ..io import atomic_dir
from ..labels import Segment
from .architectures import build_network, load_weights_strict, state_dict_mismatch
from .metadata import (
    FORMAT_NAME,
    dumps,
    parse_json,
    render_model_card,
    segments,
    software_versions,
    utc_now,
    validate_card,
    validate_description,
)
from .safezip import MAX_TOTAL_BYTES, extracted, single_root, write_zip

MODEL_JSON = "model.json"
WEIGHTS = "weights.safetensors"
CARD_JSON = "model_card.json"
CARD_MD = "MODEL_CARD.md"
CHECKSUMS = "checksums.json"
#: The only files a package may hold.
PACKAGE_FILES = (MODEL_JSON, WEIGHTS, CARD_JSON, CARD_MD, CHECKSUMS)

#: Suffixes of formats whose loading can run code (pickle, TorchScript, numpy object arrays).
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin", ".ts", ".tar", ".npy", ".npz", ".joblib")


def pickle_refusal(name: str) -> str:
    """The message given when a pickle-capable file is offered as weights or found in a package."""
    return (f"{name} is a pickle-based file (PyTorch checkpoint, TorchScript or similar); loading it can execute "
            "arbitrary code, so SegTransfer never opens it. Weights must be in safetensors: the sending site converts "
            "its own trusted checkpoint (see docs/model_package.md, 'Producing a package')")


def check_safetensors_bytes(data: bytes, where: str) -> dict:
    """Check that ``data`` is a safetensors file and return its header metadata (``__metadata__``).

    The safetensors layout is an 8-byte little-endian header length, then a JSON header; this
    reads only that header.  Pickles, zip-based PyTorch/TorchScript checkpoints and numpy files
    are recognised by their first bytes and refused with :func:`pickle_refusal`'s explanation.
    """
    n = int.from_bytes(data[:8], "little") if len(data) >= 8 else 0
    if not (2 <= n <= len(data) - 8 and data[8:9] == b"{"):
        if data[:1] == b"\x80" or data[:4] == b"PK\x03\x04" or data[:6] == b"\x93NUMPY":
            raise InputError(where, pickle_refusal(Path(where).name) + " (its content is not safetensors)")
        raise InputError(where, "not a safetensors file (bad header)")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InputError(where, "not a safetensors file (unreadable header)") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}


def tensors_from_safetensors(data: bytes, where: str) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file given as bytes (CPU tensors); ``InputError`` if it is not one."""
    from safetensors.torch import load as st_load

    check_safetensors_bytes(data, where)
    try:
        tensors = st_load(data)
    except Exception as exc:  # safetensors raises its own SafetensorError for malformed content
        raise InputError(where, f"corrupt safetensors file ({exc})") from None
    if not tensors:
        raise InputError(where, "safetensors file holds no tensors")
    return tensors


def clean_state_dict(state_dict: Mapping[str, object], where: str = "state_dict") -> dict[str, torch.Tensor]:
    """A detached, contiguous CPU copy of a ``state_dict``; ``InputError`` for non-string keys or
    values that are not dense tensors."""
    out = {}
    for key, value in state_dict.items():
        if not isinstance(key, str) or not key:
            raise InputError(where, f"state_dict key {key!r} is not a non-empty string")
        if not isinstance(value, torch.Tensor) or value.layout != torch.strided or value.is_meta:
            raise InputError(where, f"state_dict entry {key!r} is not a dense tensor ({type(value).__name__}); a package holds only the network's tensors")
        out[key] = value.detach().to("cpu").contiguous().clone()
    if not out:
        raise InputError(where, "state_dict is empty")
    return out


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class ModelPackage:
    """A model package in memory.

    ``description``: the ``model.json`` dict; ``card``: the ``model_card.json`` dict;
    ``state_dict``: name -> CPU tensor, the network's full state; ``path``: where it was read from
    or written to; ``sha256``: the package identity (SHA-256 of ``checksums.json``), set once the
    package has been saved or loaded; ``files``: per-file ``{"sha256", "bytes"}`` from the checksums.
    """

    description: dict
    card: dict
    state_dict: dict[str, torch.Tensor]
    path: Path | None = None
    sha256: str | None = None
    files: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def from_network(cls, network: torch.nn.Module, description: Mapping, card: Mapping) -> "ModelPackage":
        """A package (not yet saved) holding a copy of ``network``'s full ``state_dict``."""
        return cls(dict(description), dict(card), clean_state_dict(network.state_dict()))

    @property
    def name(self) -> str:
        return self.description["name"]

    @property
    def architecture(self) -> str:
        return self.description["architecture"]["name"]

    @property
    def labels(self) -> list[Segment]:
        """Output labels as :class:`~segtransfer.labels.Segment` (value, name, colour 0..1)."""
        return segments(self.description)

    def build_network(self) -> torch.nn.Module:
        """The described network with fresh (untrained) weights."""
        return build_network(self.description, str(self.path or "model.json"))

    def network(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        """The described network with this package's weights (exact load), in eval mode on ``device``."""
        net = load_weights_strict(self.build_network(), self.state_dict, str(self.path or "weights"))
        return net.to(device).eval()


# --------------------------------------------------------------------------------------------- save


def _is_package_folder(folder: Path) -> bool:
    return folder.is_dir() and (folder / CHECKSUMS).is_file() and all(p.name in PACKAGE_FILES for p in folder.iterdir())


def _write_files(folder: Path, description: dict, card: dict, state: dict[str, torch.Tensor]) -> tuple[str, dict[str, dict]]:
    from safetensors.torch import save as st_save

    contents = {
        MODEL_JSON: dumps(description).encode("utf-8"),
        # One metadata entry only: safetensors writes metadata in hash-map order, and a single entry
        # keeps the bytes (and so the package sha256) reproducible.
        WEIGHTS: st_save(state, metadata={"format": "pt"}),
        CARD_JSON: dumps(card).encode("utf-8"),
        CARD_MD: render_model_card(card, description).encode("utf-8"),
    }
    files = {name: {"sha256": _sha256(data), "bytes": len(data)} for name, data in contents.items()}
    contents[CHECKSUMS] = dumps({"format": FORMAT_NAME, "algorithm": "sha256", "files": files}).encode("utf-8")
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    return _sha256(contents[CHECKSUMS]), files


def save_package(package: ModelPackage, destination: str | os.PathLike) -> ModelPackage:
    """Validate and write a package to ``destination``: a folder, or a zip when it ends in ``.zip``.

    The description and card are validated (:func:`~segtransfer.models.metadata.validate_description`,
    :func:`~segtransfer.models.metadata.validate_card`); the card gets ``name``, ``created`` (if
    absent) and ``software``; the ``state_dict`` must hold exactly the tensors (keys and shapes) of
    the described network, so nothing else (no image data) can ride along.  The write is atomic; an
    existing package at ``destination`` is replaced, any other existing folder is refused.
    Returns the saved package with ``path``, ``sha256`` and the completed card.
    """
    dest = Path(destination)
    description = validate_description(package.description, "description")
    card = dict(package.card) if isinstance(package.card, Mapping) else package.card
    if isinstance(card, dict):
        card.setdefault("name", description["name"])
        card.setdefault("created", utc_now())
        card["software"] = software_versions()
    card = validate_card(card, "model card")
    state = clean_state_dict(package.state_dict)
    problem = state_dict_mismatch(build_network(description, "description"), state)
    if problem:
        raise InputError("state_dict", f"does not match the described {description['architecture']['name']}: {problem}")

    if dest.suffix.lower() == ".zip":
        if dest.exists() and not dest.is_file():
            raise InputError(dest, "exists and is not a file")
        with tempfile.TemporaryDirectory(prefix="segtransfer-pkg-") as tmp:
            sha, files = _write_files(Path(tmp), description, card, state)
            write_zip(tmp, dest)
    else:
        if dest.exists() and not _is_package_folder(dest):
            raise InputError(dest, "exists and is not a model package; choose a new folder (an existing package is replaced)")
        with atomic_dir(dest) as tmp:
            sha, files = _write_files(tmp, description, card, state)
    return ModelPackage(description, card, state, path=dest, sha256=sha, files=files)


# --------------------------------------------------------------------------------------------- load


def _where(label: Path, name: str) -> str:
    return f"{label}:{name}" if label.suffix.lower() == ".zip" else str(label / name)


def _read_files(folder: Path, label: Path) -> dict[str, bytes]:
    """The package's files as bytes, after refusing anything that is not exactly the package layout."""
    present = {}
    for entry in sorted(folder.iterdir()):
        where = _where(label, entry.name)
        if entry.is_symlink():
            raise InputError(where, "symbolic link in package; a package holds only regular files")
        if entry.name.lower().endswith(PICKLE_SUFFIXES):
            raise InputError(where, pickle_refusal(entry.name))
        if entry.is_dir():
            raise InputError(where, f"subfolder in package; a package holds only {', '.join(PACKAGE_FILES)}")
        if entry.name not in PACKAGE_FILES:
            raise InputError(where, f"unknown file in package; a package holds only {', '.join(PACKAGE_FILES)}")
        present[entry.name] = entry
    missing = [n for n in PACKAGE_FILES if n not in present]
    if missing:
        raise InputError(label, f"not a complete model package: missing {', '.join(missing)}")
    total = sum(p.stat().st_size for p in present.values())
    if total > MAX_TOTAL_BYTES:
        raise InputError(label, f"package of {total} bytes exceeds the {MAX_TOTAL_BYTES} allowed")
    return {name: present[name].read_bytes() for name in PACKAGE_FILES}


def _check_checksums(files: dict[str, bytes], label: Path) -> tuple[str, dict[str, dict]]:
    where = _where(label, CHECKSUMS)
    sums = parse_json(files[CHECKSUMS], where)
    if not isinstance(sums, dict) or sums.get("format") != FORMAT_NAME or sums.get("algorithm") != "sha256" or not isinstance(sums.get("files"), dict):
        raise InputError(where, f"not a {FORMAT_NAME} checksum file")
    listed = sums["files"]
    expected_names = set(PACKAGE_FILES) - {CHECKSUMS}
    if set(listed) != expected_names:
        raise InputError(where, f"checksums must list exactly {', '.join(sorted(expected_names))}, found {', '.join(sorted(listed)) or 'none'}")
    bad = []
    for name in sorted(expected_names):
        entry = listed[name]
        if not isinstance(entry, dict) or entry.get("sha256") != _sha256(files[name]):
            bad.append(name)
    if bad:
        raise InputError(label, f"checksum mismatch in {', '.join(bad)}: the file changed after the package was written "
                                "(corrupted or tampered); ask the sending site for a fresh copy")
    return _sha256(files[CHECKSUMS]), listed


def _load_folder(folder: Path, label: Path, expected_sha256: str | None) -> ModelPackage:
    files = _read_files(folder, label)
    sha, listed = _check_checksums(files, label)
    if expected_sha256 is not None and sha != expected_sha256.strip().lower():
        raise InputError(label, f"package sha256 is {sha}, expected {expected_sha256.strip().lower()}: not the package that was announced")
    description = validate_description(parse_json(files[MODEL_JSON], _where(label, MODEL_JSON)), _where(label, MODEL_JSON))
    card = validate_card(parse_json(files[CARD_JSON], _where(label, CARD_JSON)), _where(label, CARD_JSON))
    state = tensors_from_safetensors(files[WEIGHTS], _where(label, WEIGHTS))
    return ModelPackage(description, card, state, path=label, sha256=sha, files=listed)


def load_package(path: str | os.PathLike, expected_sha256: str | None = None) -> ModelPackage:
    """Read a package folder or ``.zip``, refusing anything unsafe or altered.

    Order of checks: zip members (see :mod:`segtransfer.models.safezip`); only the package's files
    present (a pickle-capable or unknown file refuses the package); every checksum matches (and the
    package sha256 equals ``expected_sha256`` when given, the value the partner announced through
    another channel); ``model.json`` and ``model_card.json`` valid; weights parse as safetensors.
    Raises ``InputError`` naming the package (and file) and the problem.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(p, "model package not found")
    if p.is_dir():
        return _load_folder(p, p, expected_sha256)
    if p.name.lower().endswith(PICKLE_SUFFIXES):
        raise InputError(p, pickle_refusal(p.name))
    if not zipfile.is_zipfile(p):
        raise InputError(p, "not a model package (expected a package folder or a .zip of one)")
    with extracted(p) as tmp:
        return _load_folder(single_root(tmp), p, expected_sha256)


def load_network(path: str | os.PathLike, expected_sha256: str | None = None, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, ModelPackage]:
    """Load a package and build its network with the package's weights (exact load: every key and
    shape must match), in eval mode on ``device``.  Returns ``(network, package)``."""
    package = load_package(path, expected_sha256)
    return package.network(device), package


# ------------------------------------------------------------------------------------ verify / info


@dataclass
class VerifyReport:
    """Outcome of :func:`verify_package`: ``ok`` and, when not, the one-line ``problem``."""

    path: str
    ok: bool
    problem: str | None = None
    sha256: str | None = None
    files: dict[str, dict] = field(default_factory=dict)
    tensors: int = 0
    parameters: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _checked(path: str | os.PathLike, expected_sha256: str | None) -> tuple[ModelPackage, torch.nn.Module]:
    package = load_package(path, expected_sha256)
    network = package.build_network()
    problem = state_dict_mismatch(network, package.state_dict)
    if problem:
        raise InputError(_where(Path(path), WEIGHTS), f"weights do not match the architecture: {problem}")
    return package, network


def verify_package(path: str | os.PathLike, expected_sha256: str | None = None) -> VerifyReport:
    """Run every check of :func:`load_package`, then build the described network and check that the
    weights hold exactly its tensors.  Never raises for a bad package: returns a report."""
    try:
        package, network = _checked(path, expected_sha256)
    except InputError as exc:
        return VerifyReport(path=str(path), ok=False, problem=str(exc))
    return VerifyReport(path=str(path), ok=True, sha256=package.sha256, files=package.files, tensors=len(package.state_dict),
                        parameters=sum(p.numel() for p in network.parameters()))


def package_info(path: str | os.PathLike, expected_sha256: str | None = None) -> dict:
    """What a package holds, after full verification (``InputError`` if it fails): path, sha256,
    name, task, architecture and arguments, input, output (labels), card, files, number of tensors,
    trainable parameters and weight bytes."""
    package, network = _checked(path, expected_sha256)
    d = package.description
    return {
        "path": str(path), "sha256": package.sha256, "format_version": d["format_version"], "name": d["name"], "task": d["task"],
        "architecture": d["architecture"]["name"], "arguments": d["architecture"]["arguments"], "input": d["input"], "output": d["output"],
        "extra": d["extra"], "card": package.card, "files": package.files, "tensors": len(package.state_dict),
        "parameters": sum(p.numel() for p in network.parameters()), "weights_bytes": package.files[WEIGHTS]["bytes"],
    }

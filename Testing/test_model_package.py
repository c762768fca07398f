"""Model packages: exact round trips, refusal of tampered, pickled, unsafe or data-carrying packages,
MONAI bundle export/import and the ``segtransfer model`` CLI."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from segtransfer.cli import main as cli_main
from segtransfer.errors import InputError
from segtransfer.labels import CARDIAC_SEGMENTS
from segtransfer.models import (
    PACKAGE_FILES,
    ModelPackage,
    build_network,
    export_bundle,
    import_bundle,
    intensity_transform,
    load_network,
    load_package,
    make_description,
    package_info,
    save_package,
    transfer_weights,
    verify_package,
)
from segtransfer.models.safezip import safe_extract, write_zip

UNET_ARGS = dict(spatial_dims=3, in_channels=1, out_channels=3, channels=(4, 8), strides=(2,), num_res_units=1, norm="batch")
WINDOW = {"kind": "window", "min_hu": -100, "max_hu": 600}
CARD = {
    "provenance": {"site": "Site 1 (partner)", "contact": "imaging-ai@site1.example"},
    "intended_use": "LV blood pool and myocardium segmentation on contrast-enhanced cardiac CT, research use",
    "limitations": "Trained on one scanner vendor",
    "training_data": {"cases": 30, "phases_per_case": 2},
    "validation": {"cases": 10, "metrics": {"dice_blood_pool": 0.93, "dice_myocardium": 0.85}},
}


def lv_description() -> dict:
    return make_description("UNet", UNET_ARGS, name="lv-unet", spacing_mm=[1.0, 1.0, 1.0], intensity=WINDOW,
                            labels=CARDIAC_SEGMENTS, phases=["ED", "ES"], patch_size=[16, 16, 16], task="LV segmentation")


def trained_network(description: dict) -> torch.nn.Module:
    """The described network after a few training-mode passes, so BatchNorm running statistics are not
    their defaults (a round trip that dropped buffers would change the outputs)."""
    torch.manual_seed(0)
    net = build_network(description)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(2, 1, 16, 16, 16) * 3 + 1)
    return net.eval()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """(network, saved folder package, saved zip package) shared by the tests; tests copy before altering."""
    root = tmp_path_factory.mktemp("pkg")
    desc = lv_description()
    net = trained_network(desc)
    folder = save_package(ModelPackage.from_network(net, desc, CARD), root / "lv_model")
    archive = save_package(folder, root / "lv_model.zip")
    return net, folder, archive


@pytest.fixture
def package_copy(source, tmp_path) -> Path:
    return Path(shutil.copytree(source[1].path, tmp_path / "copy"))


def outputs(net: torch.nn.Module, seed: int = 1) -> torch.Tensor:
    x = torch.randn(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2
    with torch.no_grad():
        return net(x)


def rewrite_checksums(folder: Path) -> None:
    """What an attacker who controls the whole package would do: make checksums.json match the files."""
    files = {p.name: {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "bytes": p.stat().st_size}
             for p in folder.iterdir() if p.name != "checksums.json"}
    (folder / "checksums.json").write_text(json.dumps({"format": "segtransfer-model-package", "algorithm": "sha256", "files": files}))


class Payload:
    """Unpickling this object calls ``open(marker, "w")``: the file appears iff the pickle ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def malicious_checkpoint(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": Payload(marker)}, path)
    return path


@pytest.fixture
def no_unpickling(monkeypatch):
    """Record any call to torch.load / pickle.load / pickle.loads during the test."""
    calls = []
    for module, name in ((torch, "load"), (pickle, "load"), (pickle, "loads")):
        monkeypatch.setattr(module, name, lambda *a, _n=f"{module.__name__}.{name}", **k: calls.append(_n))
    return calls


# ------------------------------------------------------------------------------------ round trips


def test_round_trip_folder_and_zip_give_identical_outputs_and_metadata(source):
    net, folder, archive = source
    assert sorted(p.name for p in folder.path.iterdir()) == sorted(PACKAGE_FILES)
    assert folder.sha256 == archive.sha256 == hashlib.sha256((folder.path / "checksums.json").read_bytes()).hexdigest()
    reference = outputs(net)
    for path in (folder.path, archive.path):
        loaded_net, pkg = load_network(path)
        assert torch.equal(outputs(loaded_net), reference)
        assert pkg.sha256 == folder.sha256
        assert pkg.labels == list(CARDIAC_SEGMENTS)
        assert pkg.description == lv_description()
        assert pkg.card["provenance"] == CARD["provenance"]
        assert pkg.card["training_data"] == {"cases": 30, "phases_per_case": 2}
        assert pkg.card["validation"]["metrics"]["dice_myocardium"] == 0.85
        assert pkg.card["software"]["monai"] and pkg.card["created"].endswith("Z")
    # BatchNorm running statistics travel with the weights (the training passes moved them off 0/1).
    state = load_package(archive.path).state_dict
    bn_mean = [k for k in state if k.endswith("running_mean")]
    assert len(bn_mean) == sum(isinstance(m, torch.nn.BatchNorm3d) for m in net.modules()) > 0
    for k in bn_mean:
        assert torch.equal(state[k], net.state_dict()[k]) and state[k].abs().sum() > 0
    card_md = (folder.path / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "Site 1 (partner)" in card_md and "LV myocardium" in card_md and "dice_myocardium" in card_md
    # Saving the loaded package again reproduces the same bytes.
    again = save_package(load_package(archive.path), folder.path.parent / "again")
    assert again.sha256 == folder.sha256


def test_verify_report_and_expected_sha256(source):
    net, folder, _ = source
    report = verify_package(folder.path)
    assert report.ok and report.problem is None
    assert report.tensors == len(net.state_dict())
    assert report.parameters == sum(p.numel() for p in net.parameters())
    assert load_package(folder.path, expected_sha256=folder.sha256.upper()).sha256 == folder.sha256
    with pytest.raises(InputError, match="not the package that was announced"):
        load_package(folder.path, expected_sha256="0" * 64)


def test_intensity_window_transform_maps_hu_to_unit_range():
    t = intensity_transform(lv_description()["input"]["intensity"])
    out = np.asarray(t(np.array([[-1000.0, -100.0, 250.0, 600.0, 2000.0]], dtype=np.float32)))
    np.testing.assert_allclose(out, [[0.0, 0.0, 0.5, 1.0, 1.0]], atol=1e-6)


def test_transfer_weights_onto_a_new_head_reports_loaded_and_kept_keys(source):
    net, folder, _ = source
    pkg = load_package(folder.path)
    new = build_network(make_description("UNet", {**UNET_ARGS, "out_channels": 2}, name="two-class", spacing_mm=[1, 1, 1], intensity=WINDOW,
                                         labels=CARDIAC_SEGMENTS[:1]))
    own = new.state_dict()
    same_shape = sorted(k for k in own if k in pkg.state_dict and own[k].shape == pkg.state_dict[k].shape)
    result = transfer_weights(new, pkg.state_dict)
    assert sorted(result.loaded) == same_shape
    assert sorted(result.kept) == sorted(set(own) - set(same_shape)) != []
    assert sorted(result.unused) == sorted(set(pkg.state_dict) - set(same_shape))
    for k in same_shape:
        assert torch.equal(new.state_dict()[k], pkg.state_dict[k])


# ------------------------------------------------------------------------------ refused packages


def test_tampered_weights_byte_is_refused_naming_the_file(package_copy, tmp_path, capsys):
    weights = package_copy / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"checksum mismatch in weights\.safetensors"):
        load_package(package_copy)
    report = verify_package(package_copy)
    assert not report.ok and "checksum mismatch in weights.safetensors" in report.problem
    tampered_zip = write_zip(package_copy, tmp_path / "tampered.zip")
    with pytest.raises(InputError, match=r"checksum mismatch in weights\.safetensors"):
        load_network(tampered_zip)
    assert cli_main(["model", "verify", str(tampered_zip)]) == 2
    assert "checksum mismatch in weights.safetensors" in capsys.readouterr().err


def test_unknown_files_and_subfolders_are_refused(package_copy):
    (package_copy / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="unknown file in package"):
        load_package(package_copy)
    (package_copy / "notes.txt").unlink()
    (package_copy / "extra").mkdir()
    with pytest.raises(InputError, match="subfolder in package"):
        load_package(package_copy)
    (package_copy / "extra").rmdir()
    (package_copy / "model_card.json").unlink()
    with pytest.raises(InputError, match="missing model_card.json"):
        load_package(package_copy)


def test_newer_format_version_is_refused(package_copy):
    desc = json.loads((package_copy / "model.json").read_text(encoding="utf-8"))
    desc["format_version"] = 2
    (package_copy / "model.json").write_text(json.dumps(desc))
    rewrite_checksums(package_copy)
    with pytest.raises(InputError, match="newer SegTransfer"):
        load_package(package_copy)


def _zip_with(path: Path, package: Path, evil: zipfile.ZipInfo, payload: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for f in sorted(package.iterdir()):
            zf.write(f, f.name)
        zf.writestr(evil, payload)
    return path


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "backslash", "drive"])
def test_zip_members_leading_outside_are_refused_and_nothing_is_written(source, tmp_path, kind):
    outside = tmp_path / "outside" / "evil.txt"
    outside.parent.mkdir()
    names = {"dotdot": "../outside/evil.txt", "absolute": str(outside), "symlink": "link", "backslash": "..\\outside\\evil.txt", "drive": "C:/evil.txt"}
    info = zipfile.ZipInfo(names[kind])
    if kind == "symlink":
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
    payload = str(outside).encode() if kind == "symlink" else b"pwned"
    archive = _zip_with(tmp_path / "evil.zip", source[1].path, info, payload)
    expected = {"dotdot": "outside the archive", "absolute": "absolute path", "symlink": "symbolic link", "backslash": "backslash", "drive": "absolute path"}
    with pytest.raises(InputError, match=expected[kind]):
        load_package(archive)
    extract_to = tmp_path / "extract" / "x"
    extract_to.parent.mkdir()
    with pytest.raises(InputError, match=expected[kind]):
        safe_extract(archive, extract_to)
    assert not outside.exists() and not extract_to.exists()
    assert not (tmp_path / "extract" / "link").exists()
    assert sorted(p.name for p in (tmp_path / "extract").iterdir()) == []


def test_zip_bomb_above_the_size_limit_is_refused(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("weights.safetensors", bytes(5 * 1024 * 1024))
    assert archive.stat().st_size < 64 * 1024  # compresses by a factor of > 80
    with pytest.raises(InputError, match="zip bomb"):
        safe_extract(archive, tmp_path / "out", max_total_bytes=1024 * 1024)
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in safe_extract(archive, tmp_path / "ok").iterdir()) == ["weights.safetensors"]


def test_malicious_pickle_is_never_executed(package_copy, tmp_path, no_unpickling):
    marker = tmp_path / "PWNED"
    # Control: this checkpoint really does run code when unpickled.
    control_marker = tmp_path / "control_marker"
    control = malicious_checkpoint(tmp_path / "control.pt", control_marker)
    with zipfile.ZipFile(control) as zf:
        pkl = next(n for n in zf.namelist() if n.endswith("data.pkl"))
        pickle._loads(zf.read(pkl))  # the pure-Python unpickler, not the patched pickle.loads
    assert control_marker.exists()

    evil = malicious_checkpoint(tmp_path / "model.pt", marker)
    # 1. Offered directly as a package.
    with pytest.raises(InputError, match="pickle"):
        load_package(evil)
    # 2. Renamed to weights.safetensors, with checksums rewritten so that they match.
    shutil.copy(evil, package_copy / "weights.safetensors")
    rewrite_checksums(package_copy)
    with pytest.raises(InputError, match="pickle.*not safetensors"):
        load_network(package_copy)
    assert not verify_package(package_copy).ok
    # 3. Beside the weights in a folder and in a zip.
    shutil.copytree(package_copy, tmp_path / "second")
    shutil.copy(evil, tmp_path / "second" / "weights.pt")
    with pytest.raises(InputError, match=r"weights\.pt is a pickle-based file"):
        load_package(tmp_path / "second")
    with pytest.raises(InputError, match=r"weights\.pt is a pickle-based file"):
        load_package(write_zip(tmp_path / "second", tmp_path / "second.zip"))
    # 4. As the only weights of a MONAI bundle (folder and zip), and disguised as model.safetensors.
    bundle = tmp_path / "bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    (bundle / "configs" / "metadata.json").write_text(json.dumps({"authors": "x"}))
    (bundle / "configs" / "inference.json").write_text(json.dumps({"network_def": {"_target_": "UNet", **UNET_ARGS}}))
    shutil.copy(evil, bundle / "models" / "model.pt")
    for offered in (bundle, write_zip(bundle, tmp_path / "bundle.zip", prefix="bundle")):
        with pytest.raises(InputError, match=r"no models/model\.safetensors, only model\.pt.*pickle"):
            import_bundle(offered, tmp_path / "imported")
    shutil.copy(evil, bundle / "models" / "model.safetensors")
    with pytest.raises(InputError, match="pickle.*not safetensors"):
        import_bundle(bundle, tmp_path / "imported")
    assert not (tmp_path / "imported").exists()
    assert not marker.exists()
    assert no_unpickling == []


def test_architectures_outside_the_allow_list_are_refused(source, tmp_path):
    marker = tmp_path / "PWNED"
    desc = lv_description()
    for name in ("os.system", "subprocess.Popen", "monai.networks.nets.FlexibleUNet", "builtins.eval"):
        bad = {**desc, "architecture": {"name": name, "arguments": {}}}
        with pytest.raises(InputError, match="is not allowed; SegTransfer builds only"):
            build_network(bad)
        with pytest.raises(InputError, match="is not allowed"):
            save_package(ModelPackage(bad, CARD, source[1].state_dict), tmp_path / "bad")
    with pytest.raises(InputError, match="has no argument"):
        make_description("UNet", {**UNET_ARGS, "pretrained": True}, name="x", spacing_mm=[1, 1, 1], intensity=WINDOW, labels=CARDIAC_SEGMENTS)
    bundle = tmp_path / "bundle"
    export_bundle(source[1].path, bundle)
    cfg_path = bundle / "configs" / "inference.json"
    original = json.loads(cfg_path.read_text(encoding="utf-8"))
    meta = json.loads((bundle / "configs" / "metadata.json").read_text(encoding="utf-8"))
    meta.pop("segtransfer")
    (bundle / "configs" / "metadata.json").write_text(json.dumps(meta))
    attacks = {
        "_target_": (f"$__import__('pathlib').Path({str(marker)!r}).touch()", "never an expression"),
        "channels": (f"$__import__('pathlib').Path({str(marker)!r}).touch() or [4, 8]", "expressions are code"),
        "norm": ({"_target_": "monai.networks.layers.Norm"}, "would be instantiated"),
    }
    for key, (value, message) in attacks.items():
        cfg_path.write_text(json.dumps({**original, "network_def": {**original["network_def"], key: value}}))
        with pytest.raises(InputError, match=message):
            import_bundle(bundle, tmp_path / "imported")
    assert not marker.exists() and not (tmp_path / "imported").exists()


def test_no_image_data_fits_in_a_package(source, tmp_path):
    net, folder, _ = source
    desc, state = lv_description(), folder.state_dict
    image = np.zeros((32, 32, 32), np.int16)
    attempts = {
        "array": ({**CARD, "training_data": {"cases": 30, "example": image}}, state, "no image data goes into a package"),
        "tensor": ({**CARD, "validation": {"reference": torch.zeros(8, 8, 8)}}, state, "no image data goes into a package"),
        "list": ({**CARD, "training_data": {"voxels": image.ravel()[:20_000].tolist()}}, state, "20000 numbers"),
        "nested": ({**CARD, "training_data": {"slices": image[:, :20, :20].tolist()}}, state, "12800 numbers"),
        "string": ({**CARD, "limitations": "A" * 70_000}, state, "exceeds the 65536 allowed"),
        "bytes": ({**CARD, "training_data": {"raw": image.tobytes()}}, state, "binary value"),
        "extra tensor": (CARD, {**state, "image": torch.from_numpy(image)}, "1 unexpected \\(image\\)"),
    }
    for what, (card, sd, message) in attempts.items():
        target = tmp_path / what.replace(" ", "_")
        with pytest.raises(InputError, match=message):
            save_package(ModelPackage(desc, card, sd), target)
        assert not target.exists(), what
    with pytest.raises(InputError, match="no image data"):
        make_description("UNet", UNET_ARGS, name="x", spacing_mm=[1, 1, 1], intensity=WINDOW, labels=CARDIAC_SEGMENTS, extra={"atlas": image})


def test_save_refuses_to_replace_a_folder_that_is_not_a_package(source, tmp_path):
    other = tmp_path / "results"
    other.mkdir()
    (other / "study.nii.gz").write_bytes(b"keep me")
    with pytest.raises(InputError, match="exists and is not a model package"):
        save_package(source[1], other)
    assert (other / "study.nii.gz").read_bytes() == b"keep me"
    with pytest.raises(InputError, match="provenance"):
        save_package(ModelPackage(lv_description(), {"intended_use": "x"}, source[1].state_dict), tmp_path / "no_site")
    assert not (tmp_path / "no_site").exists()


# ------------------------------------------------------------------------------------ MONAI bundle


def test_bundle_export_import_round_trip_gives_identical_outputs(source, tmp_path):
    net, folder, _ = source
    for suffix in ("", ".zip"):
        bundle = export_bundle(folder.path, tmp_path / f"bundle{suffix}")
        imported = import_bundle(bundle, tmp_path / f"imported{suffix}")
        assert imported.description == folder.description
        assert imported.card["imported_from"]["package_sha256"] == folder.sha256
        assert imported.card["provenance"] == CARD["provenance"]
        assert torch.equal(outputs(load_network(imported.path)[0]), outputs(net))
    cfg = json.loads((tmp_path / "bundle" / "configs" / "inference.json").read_text(encoding="utf-8"))
    assert cfg["network_def"] == {"_target_": "monai.networks.nets.UNet", **json.loads(json.dumps(UNET_ARGS))}
    assert sorted(p.name for p in (tmp_path / "bundle" / "models").iterdir()) == ["model.safetensors"]
    meta = json.loads((tmp_path / "bundle" / "configs" / "metadata.json").read_text(encoding="utf-8"))
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"] == {"0": "background", "1": "LV blood pool", "2": "LV myocardium"}
    # Weights changed after export are caught by the hash recorded in the metadata.
    weights = tmp_path / "bundle" / "models" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(InputError, match="checksum mismatch"):
        import_bundle(tmp_path / "bundle", tmp_path / "imported_tampered")


def test_import_of_a_monai_zoo_style_bundle_derives_the_description(tmp_path):
    """A bundle written the way the MONAI model zoo writes them (expressions elsewhere in the config are
    ignored, never evaluated; ``@`` references to literal values are followed)."""
    args = dict(spatial_dims=3, in_channels=1, out_channels=2, channels=[4, 8, 16], strides=[2, 2], num_res_units=2, norm="batch")
    torch.manual_seed(3)
    net = build_network({"architecture": {"name": "monai.networks.nets.UNet", "arguments": args}}).eval()
    bundle = tmp_path / "spleen_ct_segmentation"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    save_file(net.state_dict(), bundle / "models" / "model.safetensors")
    inference = {
        "imports": ["$import glob"], "device": "$torch.device('cpu')", "num_classes": 2,
        "network_def": {"_target_": "UNet", **args, "out_channels": "@num_classes"},
        "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "LoadImaged", "keys": "image"}, {"_target_": "EnsureChannelFirstd", "keys": "image"},
            {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
            {"_target_": "Spacingd", "keys": "image", "pixdim": [1.5, 1.5, 2.0], "mode": "bilinear"},
            {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -57, "a_max": 164, "b_min": 0, "b_max": 1, "clip": True}]},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [96, 96, 96], "sw_batch_size": 4, "overlap": 0.5},
        "postprocessing": {"_target_": "Compose", "transforms": [{"_target_": "Activationsd", "keys": "pred", "softmax": True},
                                                                 {"_target_": "AsDiscreted", "keys": "pred", "argmax": True}]},
        "checkpointloader": {"_target_": "CheckpointLoader", "load_path": "$@bundle_root + '/models/model.pt'"},
    }
    metadata = {"version": "0.5.1", "authors": "MONAI team", "task": "Decathlon spleen segmentation", "intended_use": "Research example",
                "eval_metrics": {"mean_dice": 0.96}, "data_source": "Task09_Spleen",
                "network_data_format": {"inputs": {"image": {"num_channels": 1, "channel_def": {"0": "image"}}},
                                        "outputs": {"pred": {"num_channels": 2, "channel_def": {"0": "background", "1": "spleen"}}}}}
    (bundle / "configs" / "inference.json").write_text(json.dumps(inference))
    (bundle / "configs" / "metadata.json").write_text(json.dumps(metadata))
    pkg = import_bundle(write_zip(bundle, tmp_path / "spleen.zip", prefix=bundle.name), tmp_path / "spleen_pkg")
    d = pkg.description
    assert d["architecture"] == {"name": "monai.networks.nets.UNet", "arguments": args}
    assert d["input"]["spacing_mm"] == [1.5, 1.5, 2.0] and d["input"]["orientation"] == "RAS"
    assert d["input"]["intensity"] == {"kind": "window", "min_hu": -57, "max_hu": 164, "out_min": 0, "out_max": 1, "clip": True}
    assert d["input"]["patch_size"] == [96, 96, 96] and d["input"]["channels"] == ["image"]
    assert d["output"]["activation"] == "softmax" and [(lab["value"], lab["name"]) for lab in d["output"]["labels"]] == [(1, "spleen")]
    assert pkg.card["provenance"]["site"] == "MONAI team" and pkg.card["validation"]["metrics"] == {"mean_dice": 0.96}
    assert any("Spacingd" in n for n in pkg.card["imported_from"]["notes"])
    assert torch.equal(outputs(load_network(pkg.path)[0]), outputs(net))
    # Explicit values override the bundle's.
    other = import_bundle(bundle, tmp_path / "spleen_pkg2", spacing_mm=[0.8, 0.8, None], intensity={"kind": "zscore"}, site="Site 3")
    assert other.description["input"]["spacing_mm"] == [0.8, 0.8, None]
    assert other.description["input"]["intensity"]["kind"] == "zscore" and other.card["provenance"]["site"] == "Site 3"


# --------------------------------------------------------------------------------------------- CLI


def test_cli_info_verify_and_bundle_commands(source, tmp_path, capsys):
    _, folder, archive = source
    assert cli_main(["model", "info", str(archive.path)]) == 0
    text = capsys.readouterr().out
    for expected in ("monai.networks.nets.UNet", "LV blood pool", "LV myocardium", "Site 1 (partner)", "window -100..600 HU",
                     "phases: ED, ES", CARD["intended_use"], folder.sha256):
        assert expected in text
    assert cli_main(["model", "info", "--json", str(folder.path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info == json.loads(json.dumps(package_info(folder.path)))
    assert info["architecture"] == "monai.networks.nets.UNet" and info["card"]["training_data"]["cases"] == 30
    assert [lab["name"] for lab in info["output"]["labels"]] == ["LV blood pool", "LV myocardium"]

    assert cli_main(["model", "verify", str(folder.path)]) == 0
    assert capsys.readouterr().out.startswith(f"OK {folder.path}")
    assert cli_main(["model", "verify", "--sha256", "f" * 64, str(folder.path)]) == 2
    assert "not the package that was announced" in capsys.readouterr().err

    assert cli_main(["model", "export-bundle", str(archive.path), str(tmp_path / "b")]) == 0
    assert cli_main(["model", "import-bundle", str(tmp_path / "b"), str(tmp_path / "p.zip"), "--site", "Site 2"]) == 0
    assert "Wrote model package" in capsys.readouterr().out
    assert load_package(tmp_path / "p.zip").card["provenance"]["site"] == "Site 2"
    assert cli_main(["model", "export-bundle", str(archive.path), str(tmp_path / "b")]) == 2
    assert "already exists" in capsys.readouterr().err

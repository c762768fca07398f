"""The module panels: every widget a module's Widget uses exists in its .ui file with a Slicer/Qt class."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = ["SegTransferCleanup", "SegTransferSparse4D", "SegTransferTraining", "SegTransferThickness", "SegTransferHemorrhage"]


@pytest.mark.parametrize("module", MODULES)
def test_widget_names_exist_in_ui(module):
    source = (ROOT / "SegTransfer" / f"{module}.py").read_text(encoding="utf-8")
    used = set(re.findall(r"self\.ui\.(\w+)", source))
    tree = ET.parse(ROOT / "Resources" / "UI" / f"{module}.ui")
    declared = {w.get("name"): w.get("class") for w in tree.iter("widget")}
    assert used, f"{module} uses no widgets"
    missing = used - set(declared)
    assert not missing, f"{module}.ui lacks {sorted(missing)}"
    custom = {c.findtext("class") for c in tree.iter("customwidget")}
    for name in used:
        cls = declared[name]
        assert cls.startswith("Q") or cls in custom, f"{name}: class {cls} is neither Qt nor a declared custom widget"
    assert tree.getroot().find("widget").get("class") == "qMRMLWidget"


@pytest.mark.parametrize("module", MODULES)
def test_module_is_built_by_cmake(module):
    cmake = (ROOT / "SegTransfer" / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "add_subdirectory(SegTransfer)" in (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert f"NAME {module}" in cmake
    assert (ROOT / "Resources" / "Icons" / f"{module}.png").exists()


@pytest.mark.parametrize("module", MODULES)
def test_module_classes_follow_the_naming_the_widget_relies_on(module):
    """ModuleWidget creates the Logic named ``<module>Logic`` from the module file."""
    import importlib

    from SegTransferLib.module import ModuleTest, ModuleWidget, SceneLogic

    mod = importlib.import_module(module)
    assert issubclass(getattr(mod, f"{module}Widget"), ModuleWidget)
    assert issubclass(getattr(mod, f"{module}Logic"), SceneLogic)
    assert issubclass(getattr(mod, f"{module}Test"), ModuleTest)


def test_cmake_builds_exactly_the_module_files_and_shared_library():
    """No stale module: every SegTransfer*.py beside the core is built, every built module has its .ui, icon
    and file, every SegTransferLib file ships, and each self-test is registered."""
    import struct

    cmake = (ROOT / "SegTransfer" / "CMakeLists.txt").read_text(encoding="utf-8")
    module_files = sorted(p.stem for p in (ROOT / "SegTransfer").glob("SegTransfer*.py"))
    assert module_files == sorted(MODULES)
    built = re.findall(r"NAME (\w+)", cmake)
    assert sorted(built) == sorted(MODULES)
    assert sorted(p.stem for p in (ROOT / "Resources" / "UI").glob("*.ui")) == sorted(MODULES)
    for lib in (ROOT / "SegTransfer" / "SegTransferLib").glob("*.py"):
        assert f"SegTransferLib/{lib.name}" in cmake, f"{lib.name} is not shipped"
    assert "slicer_add_python_unittest(SCRIPT ${module}.py)" in cmake
    for icon in (ROOT / "Resources" / "Icons").glob("*.png"):
        header = icon.read_bytes()[:24]
        assert header[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", header[16:24]) == (128, 128), icon.name


@pytest.mark.parametrize("module", MODULES)
def test_module_describes_itself_and_logic_takes_the_scene(module, scene):
    import importlib
    import types

    mod = importlib.import_module(module)
    parent = types.SimpleNamespace()
    getattr(mod, module)(parent)
    assert parent.categories == ["SegTransfer"] and parent.title and len(parent.helpText) > 80 and parent.acknowledgementText
    assert getattr(mod, f"{module}Logic")(scene).scene is scene


def test_module_files_import_nothing_slicer_does_not_ship():
    """Importing every module file loads no optional dependency (torch, MONAI, SciPy, scikit-image, slicerio,
    psutil): inside Slicer they are offered for installation on first use, so they must not be needed to
    load the modules."""
    import subprocess
    import sys

    code = (
        "import sys; sys.path.insert(0, %r); import conftest, importlib\n"
        "for m in %r: importlib.import_module(m)\n"
        "print(sorted(n for n in ('torch', 'monai', 'scipy', 'skimage', 'slicerio', 'psutil') if n in sys.modules))\n"
    ) % (str(Path(__file__).parent), MODULES)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"

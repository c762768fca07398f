"""The module panels: every widget a module's Widget uses exists in its .ui file with a Slicer/Qt class."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = ["SegTransferCleanup", "SegTransferSparse4D", "SegTransferFineTune", "SegTransferThickness", "SegTransferHemorrhage"]


@pytest.mark.parametrize("module", MODULES)
def test_widget_names_exist_in_ui(module):
    source = (ROOT / "SegTransfer" / f"{module}.py").read_text()
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
    cmake = (ROOT / "SegTransfer" / "CMakeLists.txt").read_text()
    assert "add_subdirectory(SegTransfer)" in (ROOT / "CMakeLists.txt").read_text()
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

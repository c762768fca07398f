"""Run the Slicer modules' Logic on real MRML scenes from slicer-core (Kitware's Qt-free Slicer libraries).

slicer-core has the MRML scene, nodes, storage nodes and segmentation logic, but not the
application (``slicer.app``, ``slicer.ScriptedLoadableModule``, ``qt``, ``ctk``).  So that the real
module files import, this file registers inert stand-ins for the application-only names only; every
MRML operation in the tests runs on slicer-core.
"""

from __future__ import annotations

import sys
import types
import unittest
from pathlib import Path

import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install '.[slicer]')")

MODULES_DIR = Path(__file__).resolve().parents[2] / "SegTransfer"


def _install_application_stand_ins() -> None:
    """Minimal ScriptedLoadableModule base classes and placeholder qt/ctk modules (application-only)."""
    if "slicer.ScriptedLoadableModule" not in sys.modules:
        slm = types.ModuleType("slicer.ScriptedLoadableModule")

        class ScriptedLoadableModule:
            def __init__(self, parent=None):
                self.parent = parent

        class ScriptedLoadableModuleWidget:
            def __init__(self, parent=None):
                self.parent = parent

        class ScriptedLoadableModuleLogic:
            def __init__(self, parent=None):
                pass

        class ScriptedLoadableModuleTest(unittest.TestCase):
            """As in Slicer: a unittest.TestCase whose runTest() the module overrides."""

        for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic, ScriptedLoadableModuleTest):
            setattr(slm, cls.__name__, cls)
        slm.__all__ = [c.__name__ for c in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic, ScriptedLoadableModuleTest)]
        sys.modules["slicer.ScriptedLoadableModule"] = slm
        slicer.ScriptedLoadableModule = slm
    for name in ("qt", "ctk"):
        sys.modules.setdefault(name, types.ModuleType(name))
    if str(MODULES_DIR) not in sys.path:
        sys.path.insert(0, str(MODULES_DIR))


_install_application_stand_ins()


@pytest.fixture
def scene():
    """A fresh, real MRML scene."""
    s = slicer.vtkMRMLScene()
    yield s
    s.Clear(1)

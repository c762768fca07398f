"""Base classes shared by the SegTransfer modules (the parts every module file would repeat).

Needs the Slicer application for the Widget; the Logic base runs on any MRML scene (slicer-core too)."""

from __future__ import annotations

import sys

import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

ACKNOWLEDGEMENT = "Part of the SegTransfer extension."


def describe(parent, title: str, help_text: str, dependencies: list[str] | None = None) -> None:
    """Fill a module's metadata: title, the "SegTransfer" category, help and acknowledgement."""
    parent.title = title
    parent.categories = ["SegTransfer"]
    parent.dependencies = list(dependencies or [])
    parent.contributors = ["SegTransfer team"]
    parent.helpText = help_text
    parent.acknowledgementText = ACKNOWLEDGEMENT


class SceneLogic(ScriptedLoadableModuleLogic):
    """Logic that works on the MRML ``scene`` it is given (default: the application's scene)."""

    def __init__(self, scene=None):
        ScriptedLoadableModuleLogic.__init__(self)
        self.scene = scene if scene is not None else slicer.mrmlScene


class ModuleWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Loads ``Resources/UI/<module>.ui`` into ``self.ui``, creates ``self.logic`` (the module file's
    ``<module>Logic`` class), then calls :meth:`connect` for the module's own signal connections."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.ui = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath(f"UI/{self.moduleName}.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = getattr(sys.modules[type(self).__module__], f"{self.moduleName}Logic")()
        self.connect()

    def connect(self):
        """Connect the panel's signals (each module overrides this)."""

    def ensureDependencies(self, requirements: dict[str, str]) -> bool:
        """Before running a capability: offer to install the Python packages it needs (see
        :mod:`SegTransferLib.dependencies`).  False when something is still missing."""
        from .dependencies import install_missing

        return install_missing(requirements, lambda message: slicer.util.confirmOkCancelDisplay(message, "SegTransfer"))

    def cleanup(self):
        self.removeObservers()

    def showTable(self, tableNode):
        """Show a table node in a table view (switching to a layout that has one)."""
        layoutManager = slicer.app.layoutManager()
        layoutManager.setLayout(slicer.modules.tables.logic().GetLayoutWithTable(layoutManager.layout))
        slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(tableNode.GetID())
        slicer.app.applicationLogic().PropagateTableSelection()

    def showChart(self, chartNode):
        """Show a plot chart node in a plot view (switching to a layout that has one)."""
        slicer.modules.plots.logic().ShowChartInLayout(chartNode)


class ModuleTest(ScriptedLoadableModuleTest):
    """Self-test base: every test starts from an empty scene."""

    def setUp(self):
        slicer.mrmlScene.Clear()

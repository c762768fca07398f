"""SegTransferFineTune: partner-site model packages, transfer-learning fine-tuning and multi-site training.

This module inspects and verifies a partner's model package (safetensors weights, checksums; never
unpickled) and shows its description and model card; training runs in a background process
through the ``segtransfer`` CLI.
"""

from __future__ import annotations

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule

from SegTransferLib import nodes
from SegTransferLib.module import ModuleTest, ModuleWidget, SceneLogic, describe


class SegTransferFineTune(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        describe(
            self.parent,
            "Model Transfer",
            (
                "Receive a partner site's segmentation model package (weights in safetensors, checksums verified, "
                "nothing unpickled), inspect its description and model card, fine-tune it on local cases, and "
                "train across sites by exchanging weights only."
            ),
        )


class SegTransferFineTuneWidget(ModuleWidget):
    def connect(self):
        self.ui.inspectButton.connect("clicked(bool)", self.onInspect)

    def onInspect(self):
        with slicer.util.tryWithErrorDisplay("The model package was refused.", waitCursor=True):
            info, table = self.logic.packageTable(self.ui.packagePathLineEdit.currentPath, self.ui.sha256LineEdit.text or None)
            self.ui.packageStatusLabel.text = f"Verified package {info.get('sha256', '')[:16]}..."
            self.showTable(table)


class SegTransferFineTuneLogic(SceneLogic):
    """Model-package work on the nodes of ``scene`` (default: the application's scene)."""

    def packageTable(self, path, expected_sha256=None, tableNode=None):
        """Verify a package (checksums, allowed files, safetensors only) and show its description and card
        as a two-column table node.  Returns ``(info dict, tableNode)``; a refused package raises."""
        from segtransfer.models import package_info

        if not path:
            raise ValueError("Choose a model package (folder or .zip).")
        info = package_info(path, expected_sha256=expected_sha256)
        rows = [{"field": key, "value": value} for key, value in _flatten(info)]
        return info, nodes.table_node_from_rows(self.scene, rows, "Model package", tableNode)


def _flatten(value, prefix=""):
    """(dotted key, text) pairs of a nested dict/list, for a two-column table."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, v in enumerate(value):
            yield from _flatten(v, f"{prefix}[{i}]")
    else:
        yield prefix, ", ".join(map(str, value)) if isinstance(value, list) else str(value)


class SegTransferFineTuneTest(ModuleTest):
    def runTest(self):
        self.setUp()
        self.test_refuses_missing_package()

    def test_refuses_missing_package(self):
        with self.assertRaises(Exception):
            SegTransferFineTuneLogic().packageTable("/nonexistent/package.zip")

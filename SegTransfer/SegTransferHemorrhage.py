"""SegTransferHemorrhage: CT hemorrhage segmentation with volume (mL) and per-scan detection.

Inference runs in a background process (the ``segtransfer`` CLI) so the application stays
responsive and the user can cancel; this module writes the selected CT to a temporary file, starts
the command, and loads the segmentation and the summary table it writes.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule

from SegTransferLib import dependencies, nodes
from SegTransferLib.module import ModuleTest, ModuleWidget, SceneLogic, describe
from SegTransferLib.process import CLIProcess

SEGMENTATION_FILE = "hemorrhage.seg.nrrd"
SUMMARY_FILE = "summary.json"


class SegTransferHemorrhage(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        describe(
            self.parent,
            "CT Hemorrhage",
            (
                "Segment intracranial hemorrhage on a head CT (Hounsfield units) with a 2D U-Net over axial slices; "
                "report the hemorrhage volume in mL, whether hemorrhage is present, and each connected lesion. "
                "The default model was trained on phantoms: for demonstration and testing, not for clinical use."
            ),
        )


class SegTransferHemorrhageWidget(ModuleWidget):
    def connect(self):
        from SegTransferLib.widgets import ProcessMonitor

        self.monitor = ProcessMonitor(self.ui.progressBar, self.ui.logText, self.ui.applyButton, self.ui.cancelButton)
        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.loadResultsButton.connect("clicked(bool)", self.onLoadResults)

    def onApply(self):
        if not self.ensureDependencies(dependencies.HEMORRHAGE):
            return
        with slicer.util.tryWithErrorDisplay("Hemorrhage segmentation could not start.", waitCursor=True):
            volume = self.ui.inputSelector.currentNode()
            out = self.ui.resultsDirectoryButton.directory
            process = self.logic.start(volume, out, self.ui.modelPathLineEdit.currentPath or None)

            def loaded(_process):
                _seg, summary = self.logic.loadResults(out, volume)
                self.ui.resultLabel.text = self.logic.summaryText(summary)

            self.monitor.start(process, loaded)

    def onLoadResults(self):
        with slicer.util.tryWithErrorDisplay("Loading hemorrhage results failed.", waitCursor=True):
            _seg, summary = self.logic.loadResults(self.ui.resultsDirectoryButton.directory, self.ui.inputSelector.currentNode())
            self.ui.resultLabel.text = self.logic.summaryText(summary)


class SegTransferHemorrhageLogic(SceneLogic):
    """Hemorrhage inputs and outputs on the nodes of ``scene`` (default: the application's scene)."""

    def writeInput(self, volumeNode, folder=None):
        """Write the CT volume node (LPS geometry, HU values) to ``folder/ct.nii.gz`` (a new temporary
        folder by default) for the background command; returns the file path."""
        from segtransfer.io import write_image

        if volumeNode is None:
            raise ValueError("Select a head CT volume.")
        folder = Path(folder or tempfile.mkdtemp(prefix="segtransfer-hemorrhage-"))
        return write_image(nodes.image_from_volume_node(volumeNode), folder / "ct.nii.gz")

    def start(self, volumeNode, outputFolder, modelPath=None):
        """Write the CT to a temporary folder and start ``segtransfer hemorrhage segment`` on it in a background
        process writing into ``outputFolder`` (the shipped demonstration model unless ``modelPath``); the
        temporary folder is removed when the process ends."""
        if not outputFolder:
            raise ValueError("Choose an output folder.")
        ct = self.writeInput(volumeNode)
        args = ["hemorrhage", "segment", str(ct), "--out", str(outputFolder)]
        if modelPath:
            args += ["--model", str(modelPath)]
        return CLIProcess(args, temporary=[ct.parent])

    def loadResults(self, folder, referenceVolumeNode=None):
        """Load ``hemorrhage.seg.nrrd`` (with Slicer's segmentation storage node) as a segmentation node whose
        reference geometry is the CT's, and ``summary.json``.  Returns ``(segmentationNode, summary dict)``."""
        folder = Path(folder)
        segmentation = nodes.segmentation_node_from_file(self.scene, folder / SEGMENTATION_FILE, "Hemorrhage")
        if referenceVolumeNode is not None:
            segmentation.SetReferenceImageGeometryParameterFromVolumeNode(referenceVolumeNode)
        summary = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8")) if (folder / SUMMARY_FILE).exists() else {}
        return segmentation, summary

    @staticmethod
    def summaryText(summary):
        """One line for the panel: detection and volume."""
        if not summary:
            return "No summary found."
        volume = summary.get("volume_ml")
        detected = summary.get("detected")
        return f"Hemorrhage {'present' if detected else 'not detected'}" + (f": {volume:.2f} mL" if volume is not None else "")


class SegTransferHemorrhageTest(ModuleTest):
    def runTest(self):
        self.setUp()
        self.test_input_keeps_geometry()

    def test_input_keeps_geometry(self):
        import SimpleITK as sitk

        image = sitk.Image([8, 9, 4], sitk.sitkInt16) + 40
        image.SetSpacing((0.5, 0.5, 5.0))
        node = nodes.volume_node_from_image(slicer.mrmlScene, image, "ct")
        back = sitk.ReadImage(str(SegTransferHemorrhageLogic().writeInput(node)))
        self.assertEqual(back.GetSpacing(), image.GetSpacing())

"""SegTransferCleanup: consensus annotation cleanup (hole and gap closing, inter-rater agreement).

The computation is in the core (:mod:`segtransfer.cleanup`); this module moves data between MRML
nodes and the core and shows options and results.  The panel runs ``segtransfer cleanup close`` in a
background process (progress, cancel); :meth:`SegTransferCleanupLogic.clean` runs the same cleanup
in-process for scripts and the self-test.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict
from pathlib import Path

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule

from SegTransferLib import dependencies, nodes
from SegTransferLib.module import ModuleTest, ModuleWidget, SceneLogic, describe
from SegTransferLib.process import CLIProcess

CHANGED_SEGMENT_NAME = "Changed by cleanup"
INPUT_FILE = "labels.nii.gz"
OUTPUT_FILE = "cleaned.nii.gz"
CHANGES_FILE = "changes.nii.gz"
REPORT_FILE = "cleaned.report.json"


class SegTransferCleanup(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        describe(
            self.parent,
            "Annotation Cleanup",
            (
                "Close holes in the blood pool and gaps between blood pool and myocardium left by flood-filled "
                "expert contours (exact Euclidean-ball closing, radius in voxels or mm; outer boundaries do not move), "
                "fill enclosed holes, and measure agreement between two raters "
                "(Dice, 95% Hausdorff, mean surface distance, volume difference)."
            ),
        )


class SegTransferCleanupWidget(ModuleWidget):
    def connect(self):
        from SegTransferLib.widgets import ProcessMonitor

        self.monitor = ProcessMonitor(self.ui.progressBar, self.ui.logText, self.ui.applyButton, self.ui.cancelButton)
        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.agreementButton.connect("clicked(bool)", self.onAgreement)

    def onApply(self):
        if not self.ensureDependencies(dependencies.CLEANUP):
            return
        with slicer.util.tryWithErrorDisplay("Cleanup could not start.", waitCursor=True):
            inputNode = self.ui.inputSelector.currentNode()
            outputNode = self.ui.outputSelector.currentNode()
            preview = self.ui.previewCheckBox.checked
            process, work, segments = self.logic.start(
                inputNode,
                self.ui.referenceSelector.currentNode(),
                radius=self.ui.radiusSpinBox.value,
                unit="mm" if self.ui.mmRadioButton.checked else "voxel",
                fill=self.ui.fillHolesCheckBox.checked,
            )

            def loaded(_process):
                output, _report = self.logic.loadResults(work, segments, inputNode.GetName(), outputNode, preview)
                self.ui.outputSelector.setCurrentNode(output)

            self.monitor.start(process, loaded)

    def onAgreement(self):
        if not self.ensureDependencies(dependencies.AGREEMENT):
            return
        with slicer.util.tryWithErrorDisplay("Agreement failed.", waitCursor=True):
            table = self.logic.agreementTable(
                self.ui.raterASelector.currentNode(), self.ui.raterBSelector.currentNode(), self.ui.referenceSelector.currentNode()
            )
            self.showTable(table)


class SegTransferCleanupLogic(SceneLogic):
    """Cleanup and agreement on the nodes of ``scene`` (default: the application's scene)."""

    def labelsFromNode(self, node, referenceVolumeNode=None):
        """A label-map volume node or a segmentation node as a core ``LabelImage``.  A segmentation needs
        the reference volume whose grid the label map takes (n-th segment = label n)."""
        if node is None:
            raise ValueError("Select an input segmentation or label map.")
        if node.IsA("vtkMRMLSegmentationNode") and referenceVolumeNode is None:
            raise ValueError("Select the reference volume (the image the segmentation was drawn on).")
        return nodes.label_image_from_node(node, referenceVolumeNode)

    def _toNodes(self, labels, changes, name, outputNode=None, preview=True):
        """Cleaned labels into a segmentation node (``outputNode`` or a new one named ``name``), plus the
        "Changed by cleanup" segment from the ``changes`` mask when ``preview``."""
        output = nodes.segmentation_node_from_label_image(self.scene, labels, name, outputNode)
        if preview:
            nodes.add_mask_segment(output, changes, CHANGED_SEGMENT_NAME, (1.0, 1.0, 0.0))
        return output

    def clean(self, inputNode, referenceVolumeNode=None, radius=5.0, unit="voxel", fill=False, outputNode=None, preview=True):
        """Close holes and gaps (and optionally fill holes) in ``inputNode``, in this process; the result goes
        to a segmentation node (``outputNode`` or a new one) with the input's segment names and colours, plus
        a "Changed by cleanup" segment when ``preview``.  Returns ``(outputNode, ChangeReport)``."""
        from segtransfer.cleanup import clean_labels

        labels = self.labelsFromNode(inputNode, referenceVolumeNode)
        result = clean_labels(labels, radius=radius, radius_unit=unit, fill=fill, where=inputNode.GetName())
        name = outputNode.GetName() if outputNode is not None else f"{inputNode.GetName()} cleaned"
        logging.info("\n".join(result.report.summary_lines()))
        return self._toNodes(result.labels, result.changes, name, outputNode, preview), result.report

    def start(self, inputNode, referenceVolumeNode=None, radius=5.0, unit="voxel", fill=False, workFolder=None):
        """Write the input label map to ``workFolder`` (a new temporary folder by default) and start
        ``segtransfer cleanup close`` on it in a background process.  Returns ``(CLIProcess, workFolder,
        segments)``; pass the last two to :meth:`loadResults` once the process has ended with exit code 0
        (a temporary work folder is removed after the process's ``onFinished`` callback has run)."""
        from segtransfer.io import write_image

        labels = self.labelsFromNode(inputNode, referenceVolumeNode)
        work = Path(workFolder or tempfile.mkdtemp(prefix="segtransfer-cleanup-"))
        work.mkdir(parents=True, exist_ok=True)
        write_image(labels.image, work / INPUT_FILE)
        args = ["cleanup", "close", str(work / INPUT_FILE), "--output", str(work / OUTPUT_FILE),
                "--changes", str(work / CHANGES_FILE), "--report", str(work / REPORT_FILE),
                "--radius", f"{float(radius):g}", "--radius-unit", unit]
        if fill:
            args.append("--fill-holes")
        return CLIProcess(args, temporary=[] if workFolder else [work]), work, labels.segments

    def loadResults(self, workFolder, segments, inputName, outputNode=None, preview=True):
        """Load what ``segtransfer cleanup close`` wrote into ``workFolder``: the cleaned labels as a
        segmentation node with ``segments``' names and colours (by label value), the changed-voxel segment when
        ``preview``, and the JSON report.  Returns ``(outputNode, report dict)``."""
        from segtransfer.io import LabelImage, read_image, read_labels

        work = Path(workFolder)
        cleaned = read_labels(work / OUTPUT_FILE)
        changes = read_image(work / CHANGES_FILE)
        report = json.loads((work / REPORT_FILE).read_text(encoding="utf-8"))
        name = outputNode.GetName() if outputNode is not None else f"{inputName} cleaned"
        return self._toNodes(LabelImage(cleaned.image, list(segments)), changes, name, outputNode, preview), report

    def agreementTable(self, raterANode, raterBNode, referenceVolumeNode=None, tableNode=None):
        """Per-label agreement of two raters (segments matched by order: n-th segment = label n) as a
        table node: Dice, HD95 (mm), MSD (mm), volumes and volume difference (mL, %)."""
        from segtransfer.cleanup import compare_labels

        if raterANode is None or raterBNode is None:
            raise ValueError("Select both raters' segmentations or label maps.")
        a = self.labelsFromNode(raterANode, referenceVolumeNode)
        b = self.labelsFromNode(raterBNode, referenceVolumeNode)
        rows = [asdict(r) for r in compare_labels(a, b, case=raterANode.GetName(), where_a=raterANode.GetName(), where_b=raterBNode.GetName())]
        return nodes.table_node_from_rows(self.scene, rows, "Rater agreement", tableNode)


class SegTransferCleanupTest(ModuleTest):
    def runTest(self):
        self.setUp()
        self.test_fills_hole()

    def test_fills_hole(self):
        import SimpleITK as sitk
        from segtransfer.phantoms import spherical_shell

        labels, _ = spherical_shell(8.0, 12.0, spacing=(1.0, 1.0, 1.5))
        arr = labels.array()
        arr[tuple(s // 2 for s in arr.shape)] = 0  # a one-voxel hole in the pool
        holed = sitk.GetImageFromArray(arr)
        holed.CopyInformation(labels.image)
        node = nodes.volume_node_from_image(slicer.mrmlScene, holed, "holed", labelmap=True)
        output, report = SegTransferCleanupLogic().clean(node, radius=2)
        self.assertEqual(report.voxels_changed, 1)
        self.assertTrue(output.GetSegmentation().GetSegmentIdBySegmentName(CHANGED_SEGMENT_NAME))

"""SegTransferCleanup: consensus annotation cleanup (hole and gap closing, inter-rater agreement).

The computation is in the core (:mod:`segtransfer.cleanup`); this module moves data between MRML
nodes and the core and shows options and results.  Cleanup of one label map takes about a second,
so it runs in-process.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule

from SegTransferLib import nodes
from SegTransferLib.module import ModuleTest, ModuleWidget, SceneLogic, describe

CHANGED_SEGMENT_NAME = "Changed by cleanup"


class SegTransferCleanup(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        describe(
            self.parent,
            "Annotation Cleanup",
            (
                "Close holes in the blood pool and gaps between blood pool and myocardium left by flood-filled "
                "expert contours (exact Euclidean-ball closing, radius in voxels or mm; outer boundaries do not move), "
                "fill enclosed holes, remove small components, and measure agreement between two raters "
                "(Dice, 95% Hausdorff, mean surface distance, volume difference)."
            ),
        )


class SegTransferCleanupWidget(ModuleWidget):
    def connect(self):
        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.agreementButton.connect("clicked(bool)", self.onAgreement)

    def onApply(self):
        with slicer.util.tryWithErrorDisplay("Cleanup failed.", waitCursor=True):
            output, report = self.logic.clean(
                self.ui.inputSelector.currentNode(),
                self.ui.referenceSelector.currentNode(),
                radius=self.ui.radiusSpinBox.value,
                unit="mm" if self.ui.mmRadioButton.checked else "voxel",
                fill=self.ui.fillHolesCheckBox.checked,
                outputNode=self.ui.outputSelector.currentNode(),
                preview=self.ui.previewCheckBox.checked,
            )
            self.ui.outputSelector.setCurrentNode(output)
            self.ui.reportText.setPlainText("\n".join(report.summary_lines()))

    def onAgreement(self):
        with slicer.util.tryWithErrorDisplay("Agreement failed.", waitCursor=True):
            table = self.logic.agreementTable(
                self.ui.raterASelector.currentNode(), self.ui.raterBSelector.currentNode(), self.ui.referenceSelector.currentNode()
            )
            self.showTable(table)


class SegTransferCleanupLogic(SceneLogic):
    """Cleanup and agreement on the nodes of ``scene`` (default: the application's scene)."""

    def labelsFromNode(self, node, referenceVolumeNode=None):
        """A label-map volume node or a segmentation node as a core ``LabelImage``.  A segmentation needs
        the reference volume whose grid the label map takes."""
        from segtransfer.io import LabelImage, as_label_pixels
        from segtransfer.labels import default_segments
        import numpy as np
        import SimpleITK as sitk

        if node is None:
            raise ValueError("Select an input segmentation or label map.")
        if node.IsA("vtkMRMLSegmentationNode"):
            if referenceVolumeNode is None:
                raise ValueError("Select the reference volume (the image the segmentation was drawn on).")
            return nodes.label_image_from_segmentation_node(node, referenceVolumeNode)
        image = as_label_pixels(nodes.image_from_volume_node(node), node.GetName())
        return LabelImage(image, default_segments(list(np.unique(sitk.GetArrayViewFromImage(image)))))

    def clean(self, inputNode, referenceVolumeNode=None, radius=5.0, unit="voxel", fill=False, outputNode=None, preview=True):
        """Close holes and gaps (and optionally fill holes) in ``inputNode``; the result goes to a
        segmentation node (``outputNode`` or a new one) with the input's segment names and colours, plus
        a "Changed by cleanup" segment when ``preview``.  Returns ``(outputNode, report)``."""
        from segtransfer.cleanup import clean_labels

        labels = self.labelsFromNode(inputNode, referenceVolumeNode)
        result = clean_labels(labels, radius=radius, radius_unit=unit, fill=fill, where=inputNode.GetName())
        name = outputNode.GetName() if outputNode is not None else f"{inputNode.GetName()} cleaned"
        output = nodes.segmentation_node_from_label_image(self.scene, result.labels, name, outputNode)
        if preview:
            nodes.add_mask_segment(output, result.changes, CHANGED_SEGMENT_NAME, (1.0, 1.0, 0.0))
        logging.info("\n".join(result.report.summary_lines()))
        return output, result.report

    def agreementTable(self, raterANode, raterBNode, referenceVolumeNode=None, tableNode=None):
        """Per-label agreement of two raters (segments matched by order: n-th segment = label n) as a
        table node: Dice, HD95 (mm), MSD (mm), volumes and volume difference (mL, %)."""
        from segtransfer.cleanup import compare_labels

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

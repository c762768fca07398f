"""SegTransferThickness: LV myocardial wall thickness (Laplace's equation and streamlines) on the
epicardial surface.

This module exports the chosen blood-pool and myocardium segments as the core's 0/1/2 label map,
and shows the core's outputs: the epicardial surface as a model coloured by ``thickness_mm`` and the
per-phase statistics as a table.
"""

from __future__ import annotations

from pathlib import Path

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule

from SegTransferLib import nodes
from SegTransferLib.module import ModuleTest, ModuleWidget, SceneLogic, describe

THICKNESS_ARRAY = "thickness_mm"


class SegTransferThickness(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        describe(
            self.parent,
            "LV Wall Thickness",
            (
                "Left-ventricular wall thickness from a blood-pool and a myocardium segment: Laplace's equation in "
                "the myocardium, streamlines from the epicardium to the endocardium, thickness mapped on the "
                "epicardial surface as a colour map, with median, 95th percentile and maximum per phase."
            ),
        )


class SegTransferThicknessWidget(ModuleWidget):
    def connect(self):
        self.ui.loadResultsButton.connect("clicked(bool)", self.onLoadResults)

    def onLoadResults(self):
        with slicer.util.tryWithErrorDisplay("Loading thickness results failed.", waitCursor=True):
            self.logic.loadResults(self.ui.resultsDirectoryButton.directory)


class SegTransferThicknessLogic(SceneLogic):
    """Thickness inputs and outputs on the nodes of ``scene`` (default: the application's scene)."""

    def labelsFromSegments(self, segmentationNode, poolSegmentId, myocardiumSegmentId, referenceVolumeNode):
        """The chosen segments as a 0/1/2 ``LabelImage`` (1 blood pool, 2 myocardium) on the grid of
        ``referenceVolumeNode``, with the segments' names and colours."""
        from segtransfer.io import LabelImage
        from segtransfer.labels import BLOOD_POOL, MYOCARDIUM, Segment

        if segmentationNode is None or referenceVolumeNode is None:
            raise ValueError("Select the segmentation and its reference volume.")
        for sid in (poolSegmentId, myocardiumSegmentId):
            if segmentationNode.GetSegmentation().GetSegment(sid) is None:
                raise ValueError(f"{segmentationNode.GetName()}: no segment with ID '{sid}'")
        exported = nodes.label_image_from_segmentation_node(segmentationNode, referenceVolumeNode, [poolSegmentId, myocardiumSegmentId])
        pool, wall = exported.segments
        return LabelImage(exported.image, [Segment(BLOOD_POOL, pool.name, pool.color, pool.terminology),
                                           Segment(MYOCARDIUM, wall.name, wall.color, wall.terminology)])

    def writeLabels(self, segmentationNode, poolSegmentId, myocardiumSegmentId, referenceVolumeNode, path):
        """Write the 0/1/2 label map for the thickness command to ``path`` (``.nii.gz`` or ``.seg.nrrd``)."""
        from segtransfer.io import write_labels

        return write_labels(self.labelsFromSegments(segmentationNode, poolSegmentId, myocardiumSegmentId, referenceVolumeNode), path)

    def loadResults(self, folder):
        """Load a thickness output folder: every ``*.vtk`` surface as a model coloured by ``thickness_mm``
        and every ``*.csv`` as a table.  Returns ``(models, tables)``."""
        folder = Path(folder)
        surfaces = sorted(folder.glob("*.vtk"))
        if not surfaces:
            raise ValueError(f"{folder}: no thickness surface (*.vtk) found")
        models = [nodes.model_node_from_file(self.scene, p, scalar_name=THICKNESS_ARRAY) for p in surfaces]
        tables = [nodes.table_node_from_csv(self.scene, p) for p in sorted(folder.glob("*.csv"))]
        return models, tables


class SegTransferThicknessTest(ModuleTest):
    def runTest(self):
        self.setUp()
        self.test_segments_to_labels()

    def test_segments_to_labels(self):
        from segtransfer.phantoms import spherical_shell

        shell, _ = spherical_shell(6.0, 9.0)
        seg = nodes.segmentation_node_from_label_image(slicer.mrmlScene, shell, "shell")
        ref = nodes.volume_node_from_image(slicer.mrmlScene, shell.image, "reference")
        ids = [seg.GetSegmentation().GetNthSegmentID(i) for i in range(2)]
        labels = SegTransferThicknessLogic().labelsFromSegments(seg, ids[0], ids[1], ref)
        self.assertTrue((labels.array() == shell.array()).all())

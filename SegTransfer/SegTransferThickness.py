"""SegTransferThickness: LV myocardial wall thickness (Laplace's equation and streamlines) on the
epicardial surface.

This module exports the chosen blood-pool and myocardium segments as the core's 0/1/2 label map,
runs ``segtransfer thickness compute`` in a background process (progress, cancel), and shows the
outputs: the epicardial surface as a model coloured by ``thickness_mm`` and the statistics as a table.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule

from SegTransferLib import dependencies, nodes
from SegTransferLib.module import ModuleTest, ModuleWidget, SceneLogic, describe
from SegTransferLib.process import CLIProcess

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
        from SegTransferLib.widgets import ProcessMonitor

        self.monitor = ProcessMonitor(self.ui.progressBar, self.ui.logText, self.ui.applyButton, self.ui.cancelButton)
        self.ui.segmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onSegmentationChanged)
        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.loadResultsButton.connect("clicked(bool)", self.onLoadResults)

    def onSegmentationChanged(self, node):
        for box, guess in ((self.ui.poolSegmentComboBox, "pool"), (self.ui.wallSegmentComboBox, "myocardium")):
            box.clear()
            for sid, name in self.logic.segments(node):
                box.addItem(name, sid)
            matches = [i for i in range(box.count) if guess in box.itemText(i).lower()]
            if matches:
                box.currentIndex = matches[0]

    @staticmethod
    def _segmentId(box):
        return box.itemData(box.currentIndex) if box.currentIndex >= 0 else None

    def onApply(self):
        if not self.ensureDependencies(dependencies.THICKNESS):
            return
        with slicer.util.tryWithErrorDisplay("Thickness could not start.", waitCursor=True):
            out = self.ui.resultsDirectoryButton.directory
            process = self.logic.start(
                self.ui.segmentationSelector.currentNode(),
                self._segmentId(self.ui.poolSegmentComboBox),
                self._segmentId(self.ui.wallSegmentComboBox),
                self.ui.referenceSelector.currentNode(),
                out,
                method="eulerian" if self.ui.eulerianCheckBox.checked else "streamline",
            )
            self.monitor.start(process, lambda _process: self.logic.loadResults(out))

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

    @staticmethod
    def segments(segmentationNode):
        """``[(segment ID, name)]`` of a segmentation node (empty for ``None``)."""
        if segmentationNode is None:
            return []
        segmentation = segmentationNode.GetSegmentation()
        return [(segmentation.GetNthSegmentID(i), segmentation.GetNthSegment(i).GetName()) for i in range(segmentation.GetNumberOfSegments())]

    def start(self, segmentationNode, poolSegmentId, myocardiumSegmentId, referenceVolumeNode, outputFolder,
              method="streamline", streamlines=False):
        """Write the 0/1/2 label map to a temporary folder and start ``segtransfer thickness compute`` on it in
        a background process writing into ``outputFolder``; returns the running :class:`CLIProcess` (the
        temporary folder is removed when it ends)."""
        if not outputFolder:
            raise ValueError("Choose an output folder.")
        work = Path(tempfile.mkdtemp(prefix="segtransfer-thickness-"))
        try:
            labels = self.writeLabels(segmentationNode, poolSegmentId, myocardiumSegmentId, referenceVolumeNode, work / "labels.nii.gz")
        except Exception:
            shutil.rmtree(work, ignore_errors=True)
            raise
        args = ["thickness", "compute", str(labels), "--out", str(outputFolder), "--method", method,
                "--study-id", segmentationNode.GetName()]
        if streamlines:
            args.append("--streamlines")
        return CLIProcess(args, temporary=[work])

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

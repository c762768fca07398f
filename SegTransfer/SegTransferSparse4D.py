"""SegTransferSparse4D: sparse ED/ES 4D training pairs from a multi-phase cardiac CT sequence.

The computation is in the core (:mod:`segtransfer.sparse4d`); this module moves the sequence and
its labelled phases between MRML nodes and the core, shows the LV volume curve with ED/ES and EF,
and exports the pair: the panel runs ``segtransfer sparse4d export`` in a background process
(resampling 20 phases takes a while), :meth:`SegTransferSparse4DLogic.export` does the same in-process.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule

from SegTransferLib import dependencies, nodes
from SegTransferLib.module import ModuleTest, ModuleWidget, SceneLogic, describe
from SegTransferLib.process import CLIProcess

SERIES_FOLDER = "series"


class SegTransferSparse4D(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        describe(
            self.parent,
            "Sparse 4D Labels",
            (
                "Turn a 20-phase cardiac CT sequence with labels on some phases (typically end-diastole and "
                "end-systole) into a 4D image/label training pair resampled to 1 mm isotropic. Unlabelled phases "
                "are all zeros and recorded as unlabelled. Shows the LV volume curve, ED/ES and ejection fraction."
            ),
            dependencies=["Sequences"],
        )


class SegTransferSparse4DWidget(ModuleWidget):
    def connect(self):
        from SegTransferLib.widgets import ProcessMonitor

        self.monitor = ProcessMonitor(self.ui.progressBar, self.ui.logText, self.ui.applyButton, self.ui.cancelButton)
        self.ui.curveButton.connect("clicked(bool)", self.onCurve)
        self.ui.applyButton.connect("clicked(bool)", self.onExport)
        self.ui.loadPairButton.connect("clicked(bool)", self.onLoadPair)

    def _phaseArgs(self):
        ed, es = self.ui.edSpinBox.value, self.ui.esSpinBox.value
        return (ed if ed >= 0 else None), (es if es >= 0 else None)

    def onCurve(self):
        with slicer.util.tryWithErrorDisplay("Volume curve failed.", waitCursor=True):
            ed, es = self._phaseArgs()
            summary, table = self.logic.volumeCurve(self.ui.imageSequenceSelector.currentNode(), self.ui.labelSequenceSelector.currentNode(), ed, es)
            ef = "n/a" if summary.ejection_fraction is None else f"{100 * summary.ejection_fraction:.1f} %"
            self.ui.summaryLabel.text = f"ED phase {summary.choice.ed_index}, ES phase {summary.choice.es_index} ({summary.choice.method}); EF {ef}"
            self.showTable(table)

    def _pairFolder(self):
        imageSequence = self.ui.imageSequenceSelector.currentNode()
        name = imageSequence.GetName() if imageSequence is not None else "sparse4d"
        return str(Path(self.ui.outputDirectoryButton.directory) / self.logic.safeName(name))

    def onExport(self):
        if not self.ensureDependencies(dependencies.SPARSE4D):
            return
        with slicer.util.tryWithErrorDisplay("Export could not start.", waitCursor=True):
            ed, es = self._phaseArgs()
            folder = self._pairFolder()
            process = self.logic.start(
                self.ui.imageSequenceSelector.currentNode(),
                self.ui.labelSequenceSelector.currentNode(),
                folder,
                spacing_mm=self.ui.spacingSpinBox.value,
                crop_margin_mm=self.ui.cropSpinBox.value if self.ui.cropCheckBox.checked else None,
                cleanup_radius=self.ui.cleanupSpinBox.value if self.ui.cleanupCheckBox.checked else None,
                ed_index=ed,
                es_index=es,
            )

            def exported(_process):
                self.ui.summaryLabel.text = self.logic.pairSummary(folder)

            self.monitor.start(process, exported)

    def onLoadPair(self):
        with slicer.util.tryWithErrorDisplay("Loading the pair failed.", waitCursor=True):
            folder = self._pairFolder()
            images, labels = self.logic.loadPair(folder, Path(folder).name)
            self.ui.summaryLabel.text = self.logic.pairSummary(folder)
            self._browse(images, labels)

    def _browse(self, images, labels):
        """Show the loaded sequences in the slice views through a sequence browser; on an unlabelled phase
        the label layer is empty (the phase is unlabelled, not background)."""
        browser = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{images.GetName()} browser")
        browser.AddSynchronizedSequenceNode(images)
        if labels is not None:
            browser.AddSynchronizedSequenceNode(labels)
            browser.SetMissingItemMode(labels, slicer.vtkMRMLSequenceBrowserNode.MissingItemSetToDefault)
        slicer.modules.sequences.logic().UpdateProxyNodesFromSequences(browser)
        slicer.modules.sequences.setToolBarActiveBrowserNode(browser)
        labelProxy = browser.GetProxyNode(labels) if labels is not None else None
        slicer.util.setSliceViewerLayers(background=browser.GetProxyNode(images), label=labelProxy, fit=True)


class SegTransferSparse4DLogic(SceneLogic):
    """Sparse-4D work on the nodes of ``scene`` (default: the application's scene)."""

    @staticmethod
    def seriesFromNodes(imageSequenceNode, labelSequenceNode=None, labelledNodes=None):
        """The image sequence and its labels (a label sequence at some of the image index values, and/or
        phase index -> label-map node) as a core ``Series4D``."""
        if imageSequenceNode is None:
            raise ValueError("Select the image sequence.")
        return nodes.series_from_sequence_nodes(imageSequenceNode, labelSequenceNode, labelledNodes)

    def volumeCurve(self, imageSequenceNode, labelSequenceNode=None, ed_index=None, es_index=None, tableNode=None):
        """ED/ES and EF of the study with the LV volume curve as a table node (mL per phase, empty on
        unlabelled phases).  Returns ``(PhaseSummary, tableNode)``."""
        from segtransfer.sparse4d import summarise_phases

        series = self.seriesFromNodes(imageSequenceNode, labelSequenceNode)
        summary = summarise_phases(series.labels, len(series), percent_rr=series.percent_rr, ed_index=ed_index,
                                   es_index=es_index, where=imageSequenceNode.GetName())
        rows = []
        for i in range(len(series)):
            role = "ED" if i == summary.choice.ed_index else "ES" if i == summary.choice.es_index else ""
            rows.append({
                "phase": i,
                "percent_rr": series.percent_rr[i] if series.percent_rr is not None else float("nan"),
                "role": role,
                "labelled": "yes" if i in series.labels else "no",
                "pool_ml": summary.pool_ml[i] if summary.pool_ml[i] is not None else float("nan"),
                "myocardium_ml": summary.myocardium_ml[i] if summary.myocardium_ml[i] is not None else float("nan"),
            })
        return summary, nodes.table_node_from_rows(self.scene, rows, f"{imageSequenceNode.GetName()} LV volume", tableNode)

    def export(self, imageSequenceNode, labelSequenceNode, outputFolder, **options):
        """Build and write the sparse pair into ``outputFolder`` (options as
        :func:`segtransfer.sparse4d.build_sparse4d`: ``spacing_mm``, ``crop_margin_mm``, ``cleanup_radius``,
        ``ed_index``, ``es_index``, ...).  Returns the ``Sparse4DPair``."""
        from segtransfer.sparse4d import build_sparse4d, write_sparse4d

        if not outputFolder:
            raise ValueError("Choose an output folder.")
        series = self.seriesFromNodes(imageSequenceNode, labelSequenceNode)
        pair = build_sparse4d(series, study_id=imageSequenceNode.GetName(), where=imageSequenceNode.GetName(), **options)
        write_sparse4d(pair, outputFolder)
        return pair

    @staticmethod
    def safeName(name):
        """A node name as a folder name (see :func:`SegTransferLib.nodes.folder_name`)."""
        return nodes.folder_name(name, "sparse4d")

    def start(self, imageSequenceNode, labelSequenceNode, outputFolder, spacing_mm=1.0, crop_margin_mm=None,
              cleanup_radius=None, ed_index=None, es_index=None, workFolder=None):
        """Write the sequence (and its labelled phases) as a series folder to ``workFolder`` (a new temporary
        folder by default, removed when the process ends) and start ``segtransfer sparse4d export`` on it in a
        background process that writes the pair into ``outputFolder``.  Returns the :class:`CLIProcess`."""
        from segtransfer.io import write_series4d

        if not outputFolder:
            raise ValueError("Choose an output folder.")
        if (ed_index is None) != (es_index is None):
            raise ValueError("Give both the ED and the ES phase, or neither.")
        series = self.seriesFromNodes(imageSequenceNode, labelSequenceNode)
        work = Path(workFolder or tempfile.mkdtemp(prefix="segtransfer-sparse4d-"))
        write_series4d(series, work / SERIES_FOLDER)
        args = ["sparse4d", "export", str(work / SERIES_FOLDER), "--out", str(outputFolder),
                "--spacing", f"{float(spacing_mm):g}", "--study-id", imageSequenceNode.GetName()]
        if crop_margin_mm is not None:
            args += ["--crop-margin", f"{float(crop_margin_mm):g}"]
        if cleanup_radius is not None:
            args += ["--cleanup-radius", f"{float(cleanup_radius):g}"]
        if ed_index is not None:
            args += ["--ed", str(int(ed_index)), "--es", str(int(es_index))]
        return CLIProcess(args, temporary=[] if workFolder else [work])

    @staticmethod
    def pairSummary(folder):
        """One line about an exported pair: phases, labelled phases, ED/ES and EF (from its record)."""
        from segtransfer.sparse4d import inspect_sparse4d

        record = inspect_sparse4d(folder)
        ef = record.get("ejection_fraction")
        return (f"{record['n_phases']} phases, labelled {record['labelled_phases']}; ED {record.get('ed_index')}, "
                f"ES {record.get('es_index')}; EF {'n/a' if ef is None else f'{100 * ef:.1f} %'}")

    def loadPair(self, folder, name="sparse4d"):
        """Load an exported pair as sequences: images for every phase, labels for the labelled phases only
        (so an unlabelled phase never shows as background).  Returns ``(imageSequence, labelSequence)``."""
        from segtransfer.io import Series4D
        from segtransfer.sparse4d import read_sparse4d

        pair = read_sparse4d(folder)
        phases = [pair.phase_image(i) for i in range(pair.n_phases)]
        labels = {i: pair.phase_labels(i) for i in pair.labelled_phases()}
        percent = pair.record.get("percent_rr")
        return nodes.sequence_nodes_from_series(self.scene, Series4D(phases, percent, labels), name)


class SegTransferSparse4DTest(ModuleTest):
    def runTest(self):
        self.setUp()
        self.test_curve_finds_ed_es()

    def test_curve_finds_ed_es(self):
        from segtransfer.io import Series4D
        from segtransfer.phantoms import beating_lv

        lv = beating_lv(seed=1, n_phases=20, spacing=(3.0, 3.0, 3.0))
        ed, es = lv.truth.ed_index, lv.truth.es_index
        series = Series4D(lv.series.phases, lv.series.percent_rr, {ed: lv.series.labels[ed], es: lv.series.labels[es]})
        images, labels = nodes.sequence_nodes_from_series(slicer.mrmlScene, series, "phantom")
        summary, _table = SegTransferSparse4DLogic().volumeCurve(images, labels)
        self.assertEqual((summary.choice.ed_index, summary.choice.es_index), (ed, es))

"""SegTransferTraining: partner-site model packages, training data from the scene, transfer-learning
fine-tuning and multi-site training.

What crosses sites is a model package (weights in safetensors, checksums; nothing is ever unpickled):
this module verifies a partner's package and shows its description and model card, turns volumes
and segmentations of the scene into training cases on disk, builds the sparse-4D dataset manifest
(train/validation/test split by study), and runs training in a background process through the
``segtransfer`` CLI (progress, cancel), then loads the trained package and its training curve.  For
the 4D cardiac model it runs ``segtransfer cardiac train`` (fine-tuning a partner package or from
random initialisation) and ``segtransfer cardiac segment`` on a sequence node, loading the per-phase
result as a sequence of segmentations.
"""

from __future__ import annotations

from pathlib import Path

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule

from SegTransferLib import dependencies, nodes
from SegTransferLib.module import ModuleTest, ModuleWidget, SceneLogic, describe
from SegTransferLib.process import CLIProcess

CASE_IMAGE = "image.nii.gz"
CASE_LABELS = "mask.nii.gz"
MANIFEST_FILE = "dataset.json"
#: Suffix of the folder beside a package where ``segtransfer hemorrhage train`` keeps checkpoints and its log.
CHECKPOINTS_SUFFIX = ".checkpoints"


class SegTransferTraining(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        describe(
            self.parent,
            "Model Transfer and Training",
            (
                "Receive a partner site's segmentation model package (weights in safetensors, checksums verified, "
                "nothing unpickled) and inspect its description and model card; turn local volumes and "
                "segmentations into training cases; split sparse ED/ES 4D pairs into train/validation/test by "
                "study; train in the background (Adam, Dice loss, stop when the validation loss stops improving) "
                "and load the resulting package and its training curve; fine-tune a partner's 4D cardiac model on local "
                "ED/ES-labelled studies and segment every phase of a sequence, loaded as a segmentation sequence with its "
                "LV volume curve. Only model weights ever leave a site."
            ),
        )


class SegTransferTrainingWidget(ModuleWidget):
    def connect(self):
        from SegTransferLib.widgets import ProcessMonitor

        self.monitor = ProcessMonitor(self.ui.progressBar, self.ui.logText, self.ui.applyButton, self.ui.cancelButton)
        self.ui.inspectButton.connect("clicked(bool)", self.onInspect)
        self.ui.addCaseButton.connect("clicked(bool)", self.onAddCase)
        self.ui.manifestButton.connect("clicked(bool)", self.onManifest)
        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.loadResultsButton.connect("clicked(bool)", self.onLoadResults)
        self.ui.cardiacTrainButton.connect("clicked(bool)", self.onCardiacTrain)
        self.ui.cardiacSegmentButton.connect("clicked(bool)", self.onCardiacSegment)

    def onInspect(self):
        if not self.ensureDependencies(dependencies.TRAINING):
            return
        with slicer.util.tryWithErrorDisplay("The model package was refused.", waitCursor=True):
            info, table = self.logic.packageTable(self.ui.packagePathLineEdit.currentPath, self.ui.sha256LineEdit.text.strip() or None)
            self.ui.packageStatusLabel.text = f"Verified: {info['name']} ({info['task']}), package {info['sha256'][:16]}..."
            self.showTable(table)

    def onAddCase(self):
        with slicer.util.tryWithErrorDisplay("The case could not be written.", waitCursor=True):
            folder = self.logic.exportCase(
                self.ui.caseVolumeSelector.currentNode(),
                self.ui.caseLabelsSelector.currentNode(),
                self.ui.casesDirectoryButton.directory,
                self.ui.caseNameLineEdit.text.strip() or None,
            )
            self.ui.casesStatusLabel.text = f"Wrote case {folder.name} into {folder.parent}"

    def onManifest(self):
        with slicer.util.tryWithErrorDisplay("The dataset manifest could not be built.", waitCursor=True):
            fractions = (self.ui.trainFractionSpinBox.value, self.ui.validationFractionSpinBox.value, self.ui.testFractionSpinBox.value)
            pairs = self.ui.pairsDirectoryButton.directory
            manifest, table = self.logic.buildManifest([pairs], str(Path(pairs) / MANIFEST_FILE), fractions, self.ui.seedSpinBox.value)
            counts = ", ".join(f"{name} {len(ids)}" for name, ids in manifest["splits"].items())
            self.ui.manifestStatusLabel.text = f"{len(manifest['studies'])} studies: {counts}"
            self.showTable(table)

    def onApply(self):
        if not self.ensureDependencies(dependencies.TRAINING):
            return
        with slicer.util.tryWithErrorDisplay("Training could not start.", waitCursor=True):
            package = self._packageFolder()
            process = self.logic.startTraining(
                self.ui.casesDirectoryButton.directory,
                package,
                site=self.ui.siteLineEdit.text.strip() or "local",
                lr=self.ui.learningRateSpinBox.value,
                maxEpochs=self.ui.maxEpochsSpinBox.value,
                patience=self.ui.patienceSpinBox.value,
                minDelta=self.ui.minDeltaSpinBox.value,
                resume=self.ui.resumeCheckBox.checked,
            )
            self.monitor.start(process, lambda _process: self._showResults(package))

    def onCardiacTrain(self):
        if not self.ensureDependencies(dependencies.TRAINING):
            return
        with slicer.util.tryWithErrorDisplay("Cardiac training could not start.", waitCursor=True):
            name = self.ui.cardiacPackageNameLineEdit.text.strip()
            if not name:
                raise ValueError("Give the cardiac model package a name.")
            package = str(Path(self.ui.packagesDirectoryButton.directory) / name)
            fromPartner = self.ui.cardiacFromPartnerCheckBox.checked
            process = self.logic.startCardiacTraining(
                self.ui.cardiacManifestPathLineEdit.currentPath,
                package,
                partnerPath=self.ui.packagePathLineEdit.currentPath if fromPartner else None,
                partnerSha256=(self.ui.sha256LineEdit.text.strip() or None) if fromPartner else None,
                cases=self.ui.cardiacCasesSpinBox.value or None,
                maxEpochs=self.ui.cardiacMaxEpochsSpinBox.value,
                patience=self.ui.cardiacPatienceSpinBox.value,
                freezeEncoder=self.ui.cardiacFreezeEncoderCheckBox.checked,
                encoderLrFactor=self.ui.cardiacEncoderLrFactorSpinBox.value,
                site=self.ui.siteLineEdit.text.strip() or "local",
                resume=self.ui.resumeCheckBox.checked,
            )
            self.ui.cardiacModelPathLineEdit.currentPath = package
            self.monitor.start(process, lambda _process: self._showResults(package))

    def onCardiacSegment(self):
        if not self.ensureDependencies(dependencies.TRAINING):
            return
        with slicer.util.tryWithErrorDisplay("Cardiac segmentation could not start.", waitCursor=True):
            sequence = self.ui.cardiacSequenceSelector.currentNode()
            if sequence is None:
                raise ValueError("Select the sequence of cardiac phases to segment.")
            out = str(Path(self.ui.cardiacOutputDirectoryButton.directory) / SegTransferTrainingLogic.caseName(sequence.GetName()))
            process = self.logic.startCardiacSegmentation(sequence, self.ui.cardiacModelPathLineEdit.currentPath, out)
            self.monitor.start(process, lambda _process: self._showSegmentation(out, sequence))

    def _showSegmentation(self, out, sequence):
        summary, _segmentations, curve, chart = self.logic.loadCardiacSegmentation(out, sequence)
        self.ui.cardiacStatusLabel.text = (f"ED phase {summary['ed_index']} ({summary['edv_ml']:.1f} mL), ES phase {summary['es_index']} "
                                           f"({summary['esv_ml']:.1f} mL), EF {100 * summary['ejection_fraction']:.1f}%")
        self.showTable(curve)
        self.showChart(chart)

    def onLoadResults(self):
        with slicer.util.tryWithErrorDisplay("Loading the trained package failed.", waitCursor=True):
            self._showResults(self._packageFolder())

    def _packageFolder(self):
        name = self.ui.packageNameLineEdit.text.strip()
        if not name:
            raise ValueError("Give the model package a name.")
        return str(Path(self.ui.packagesDirectoryButton.directory) / name)

    def _showResults(self, package):
        info, table, curve, chart = self.logic.loadTrainingResults(package)
        self.ui.packageStatusLabel.text = f"Trained: {info['name']}, package {info['sha256'][:16]}..."
        self.showTable(table)
        if chart is not None:
            self.showChart(chart)


class SegTransferTrainingLogic(SceneLogic):
    """Model packages, training data and training runs for the nodes of ``scene`` (default: the application's scene)."""

    def packageTable(self, path, expected_sha256=None, tableNode=None):
        """Verify a package (checksums, allowed files, safetensors only, weights match the described network)
        and show its description and card as a two-column table node.  Returns ``(info dict, tableNode)``;
        a refused package raises ``InputError`` naming the file and the problem."""
        from segtransfer.models import package_info

        if not path:
            raise ValueError("Choose a model package (folder or .zip).")
        info = package_info(path, expected_sha256=expected_sha256)
        rows = [{"field": key, "value": value} for key, value in _flatten(info)]
        return info, nodes.table_node_from_rows(self.scene, rows, "Model package", tableNode)

    @staticmethod
    def caseName(name):
        """A node name as a case folder name (see :func:`SegTransferLib.nodes.folder_name`)."""
        return nodes.folder_name(name, "case")

    def exportCase(self, volumeNode, labelsNode, casesFolder, caseName=None):
        """Write one training case as ``casesFolder/<case>/image.nii.gz`` (the volume, LPS geometry) and
        ``mask.nii.gz`` (the labels on the volume's grid: a segmentation is exported onto it, n-th segment =
        value n; a label map must already share it).  This is the layout ``segtransfer hemorrhage train``
        reads.  An existing case is never overwritten.  Returns the case folder."""
        from segtransfer.io import atomic_dir, check_same_grid, write_image, write_labels

        if volumeNode is None or labelsNode is None:
            raise ValueError("Select the case's volume and its segmentation or label map.")
        if not casesFolder:
            raise ValueError("Choose the folder of training cases.")
        name = self.caseName(caseName or volumeNode.GetName())
        folder = Path(casesFolder) / name
        if folder.exists():
            raise ValueError(f"{folder}: a case with this name already exists")
        image = nodes.image_from_volume_node(volumeNode)
        labels = nodes.label_image_from_node(labelsNode, volumeNode)
        check_same_grid(image, labels.image, volumeNode.GetName(), labelsNode.GetName())
        with atomic_dir(folder) as tmp:
            write_image(image, tmp / CASE_IMAGE)
            write_labels(labels, tmp / CASE_LABELS)
        return folder

    def buildManifest(self, pairFolders, manifestPath, fractions=(0.6, 0.2, 0.2), seed=0, tableNode=None):
        """Collect sparse-4D pair folders (or folders holding them), split them by study into train /
        validation / test reproducibly from ``seed``, write the manifest JSON to ``manifestPath`` and show one
        row per study.  Returns ``(manifest dict, tableNode)``."""
        from segtransfer.sparse4d.dataset import build_manifest, write_manifest

        if not manifestPath:
            raise ValueError("Choose where to write the dataset manifest (.json).")
        manifest = build_manifest([p for p in pairFolders if p], manifestPath, fractions, int(seed))
        write_manifest(manifest, manifestPath)
        rows = [{
            "study": s["id"],
            "split": s["split"],
            "phases": s["n_phases"],
            "labelled_phases": " ".join(str(i) for i in s["labelled_phases"]),
            "ed_index": s["ed_index"],
            "es_index": s["es_index"],
            "ejection_fraction": s["ejection_fraction"],
        } for s in manifest["studies"]]
        return manifest, nodes.table_node_from_rows(self.scene, rows, "Training dataset", tableNode)

    def startTraining(self, casesFolder, packageFolder, site="local", lr=1e-4, maxEpochs=200, patience=10, minDelta=1e-4,
                      positives=1000, negatives=1000, patchSize=128, batchSize=32, seed=0, resume=False):
        """Start ``segtransfer hemorrhage train`` on the cases of ``casesFolder`` (see :meth:`exportCase`) in a
        background process that writes a model package to ``packageFolder`` (checkpoints and the training log
        beside it, in ``<package>.checkpoints``).  Returns the running :class:`CLIProcess`."""
        if not casesFolder or not Path(casesFolder).is_dir():
            raise ValueError("Choose the folder of training cases.")
        if not packageFolder:
            raise ValueError("Choose the folder of the model package to write.")
        args = ["hemorrhage", "train", str(casesFolder), "--out", str(packageFolder), "--site", str(site),
                "--lr", f"{float(lr):g}", "--max-epochs", str(int(maxEpochs)), "--patience", str(int(patience)),
                "--min-delta", f"{float(minDelta):g}", "--positives", str(int(positives)), "--negatives", str(int(negatives)),
                "--patch-size", str(int(patchSize)), "--batch-size", str(int(batchSize)), "--seed", str(int(seed))]
        if resume:
            args.append("--resume")
        return CLIProcess(args)

    def loadTrainingResults(self, packageFolder):
        """The trained package as a table (after verification) and, when its training log is beside it, the
        log as a table with a plot of training and validation loss per epoch.  Returns ``(info,
        packageTable, curveTable or None, chart or None)``."""
        info, table = self.packageTable(packageFolder)
        log = Path(str(packageFolder).rstrip("/\\") + CHECKPOINTS_SUFFIX) / "training_log.csv"
        if not log.is_file():
            return info, table, None, None
        curve = nodes.table_node_from_csv(self.scene, log, f"{Path(packageFolder).name} training log")
        chart = nodes.plot_chart_from_table(self.scene, curve, "epoch", ["train_loss", "val_loss"], f"{Path(packageFolder).name} loss", "Dice loss")
        return info, table, curve, chart

    # ------------------------------------------------------------------ cardiac 4D model (segtransfer cardiac)

    def startCardiacTraining(self, manifestPath, packagePath, partnerPath=None, partnerSha256=None, cases=None, lr=None,
                             maxEpochs=50, patience=10, freezeEncoder=False, encoderLrFactor=1.0, seed=0, site="local",
                             resume=False, device="auto"):
        """Start ``segtransfer cardiac train`` on a sparse-4D dataset manifest in a background process:
        from random initialisation, or fine-tuning the partner package ``partnerPath`` (verified against
        ``partnerSha256`` when given).  ``lr`` ``None`` takes the study's default (1e-3 from scratch, 1e-4
        from a partner); ``cases`` ``None`` uses every training study.  The package goes to ``packagePath``,
        checkpoints, log and curves to ``<package>.checkpoints``.  Returns the running :class:`CLIProcess`."""
        if not manifestPath or not Path(manifestPath).is_file():
            raise ValueError("Choose the dataset manifest (.json) of the local sparse-4D pairs.")
        if not packagePath:
            raise ValueError("Choose the folder of the model package to write.")
        args = ["cardiac", "train", str(manifestPath), "--out", str(packagePath), "--site", str(site), "--max-epochs", str(int(maxEpochs)),
                "--patience", str(int(patience)), "--seed", str(int(seed)), "--device", str(device),
                "--encoder-lr-factor", f"{float(encoderLrFactor):g}"]
        if partnerPath:
            args += ["--partner", str(partnerPath)]
            if partnerSha256:
                args += ["--partner-sha256", str(partnerSha256)]
        if cases:
            args += ["--cases", str(int(cases))]
        if lr:
            args += ["--lr", f"{float(lr):g}"]
        if freezeEncoder:
            args.append("--freeze-encoder")
        if resume:
            args.append("--resume")
        return CLIProcess(args)

    def startCardiacSegmentation(self, imageSequenceNode, packagePath, outputFolder, expectedSha256=None, device="auto"):
        """Write the phases of ``imageSequenceNode`` (a sequence of volumes) as a 4D series into a temporary
        folder and start ``segtransfer cardiac segment`` with the package on it in a background process;
        results go to ``outputFolder`` (see :meth:`loadCardiacSegmentation`).  Returns the :class:`CLIProcess`."""
        import tempfile

        from segtransfer.io import write_series4d

        if imageSequenceNode is None:
            raise ValueError("Select the sequence of cardiac phases to segment.")
        if not packagePath:
            raise ValueError("Choose the cardiac model package.")
        if not outputFolder:
            raise ValueError("Choose the output folder of the segmentation.")
        series = nodes.series_from_sequence_nodes(imageSequenceNode)
        series.labels = {}
        work = Path(tempfile.mkdtemp(prefix="segtransfer-cardiac-"))
        write_series4d(series, work / "series")
        args = ["cardiac", "segment", str(work / "series"), "--model", str(packagePath), "--out", str(outputFolder), "--device", str(device)]
        if expectedSha256:
            args += ["--sha256", str(expectedSha256)]
        return CLIProcess(args, temporary=[work])

    def loadCardiacSegmentation(self, outputFolder, imageSequenceNode, name=None):
        """Load a ``cardiac segment`` result: the per-phase segmentations as a sequence of segmentation nodes at
        the image sequence's index values (segment names and colours from the package), the LV volume curve
        as a table with a plot.  Returns ``(summary dict, segmentation sequence, curve table, chart)``."""
        import json

        from segtransfer.io import read_labels

        folder = Path(outputFolder)
        summary_path = folder / "summary.json"
        if not summary_path.is_file():
            raise ValueError(f"{folder}: no summary.json (not a cardiac segmentation output)")
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        series = nodes.series_from_sequence_nodes(imageSequenceNode)
        if summary["n_phases"] != len(series):
            raise ValueError(f"{folder}: {summary['n_phases']} segmented phases, the sequence {imageSequenceNode.GetName()} has {len(series)}")
        labels = [read_labels(folder / f) for f in summary["files"]["phases"]]
        series.labels = {i: lab.image for i, lab in enumerate(labels)}
        name = name or f"{imageSequenceNode.GetName()} LV"
        images, segmentations = nodes.sequence_nodes_from_series(self.scene, series, name, labels_as="segmentation",
                                                                 segments=labels[0].segments)
        self.scene.RemoveNode(images)  # the phases are already in the scene: keep only the new segmentation sequence
        segmentations.SetName(name)
        curve = nodes.table_node_from_csv(self.scene, folder / "volume_curve.csv", f"{name} volume curve")
        chart = nodes.plot_chart_from_table(self.scene, curve, "phase", ["blood_pool_ml", "myocardium_ml"], f"{name} volumes", "volume (mL)")
        return summary, segmentations, curve, chart


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


class SegTransferTrainingTest(ModuleTest):
    def runTest(self):
        self.setUp()
        self.test_refuses_missing_package()
        self.setUp()
        self.test_case_keeps_geometry()

    def test_refuses_missing_package(self):
        from segtransfer.errors import InputError

        with self.assertRaises(InputError):
            SegTransferTrainingLogic().packageTable("/nonexistent/package.zip")

    def test_case_keeps_geometry(self):
        import tempfile

        import SimpleITK as sitk
        from segtransfer.phantoms import spherical_shell

        shell, _ = spherical_shell(4.0, 6.0, spacing=(0.8, 0.8, 2.0))
        volume = nodes.volume_node_from_image(slicer.mrmlScene, sitk.Cast(shell.image, sitk.sitkInt16) * 40, "ct")
        segmentation = nodes.segmentation_node_from_label_image(slicer.mrmlScene, shell, "lv")
        with tempfile.TemporaryDirectory() as folder:
            case = SegTransferTrainingLogic().exportCase(volume, segmentation, folder, "case1")
            mask = sitk.ReadImage(str(case / CASE_LABELS))
            for got, expected in zip(mask.GetSpacing(), shell.image.GetSpacing()):
                self.assertAlmostEqual(got, expected, places=5)  # NIfTI stores float32
            self.assertTrue((sitk.GetArrayFromImage(mask) == shell.array()).all())

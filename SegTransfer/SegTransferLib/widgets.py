"""Qt helpers shared by the module widgets (application only; the logic they drive is tested elsewhere).

:class:`ProcessMonitor` polls a :class:`~SegTransferLib.process.CLIProcess` from a ``qt.QTimer``,
shows its progress and log, and reports completion; its ``cancel`` kills the process tree.
"""

from __future__ import annotations

import qt
import slicer

from .process import CLIProcess


class ProcessMonitor:
    """Drive a progress bar, a log box and the Apply/Cancel buttons from a background CLI process."""

    def __init__(self, progressBar, logBox, applyButton, cancelButton, interval_ms: int = 200):
        self.progressBar, self.logBox = progressBar, logBox
        self.applyButton, self.cancelButton = applyButton, cancelButton
        self.timer = qt.QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.connect("timeout()", self._poll)
        self.process: CLIProcess | None = None
        self.onFinished = None
        self.cancelButton.connect("clicked(bool)", lambda _checked=False: self.cancel())
        self.cancelButton.enabled = False

    def start(self, process: CLIProcess, onFinished) -> None:
        """Watch ``process``; ``onFinished(process)`` is called once it ends with exit code 0."""
        self.process, self.onFinished = process, onFinished
        self.progressBar.setValue(0)
        self.logBox.clear()
        self.logBox.appendPlainText(" ".join(process.command))
        self.applyButton.enabled, self.cancelButton.enabled = False, True
        self.timer.start()

    def _poll(self) -> None:
        update = self.process.poll()
        if update.progress is not None:
            self.progressBar.setValue(int(round(100 * update.progress)))
            self.progressBar.setFormat(f"%p% {update.message}")
        for line in update.log:
            self.logBox.appendPlainText(line)
        if update.returncode is None:
            return
        self.timer.stop()
        self.applyButton.enabled, self.cancelButton.enabled = True, False
        if self.process.cancelled:
            self.logBox.appendPlainText("Cancelled.")
        elif update.returncode != 0:
            slicer.util.errorDisplay(f"SegTransfer failed: {self.process.error_summary()}")
        else:
            with slicer.util.tryWithErrorDisplay("Loading the results failed.", waitCursor=True):
                self.onFinished(self.process)

    def cancel(self) -> None:
        if self.process is not None and self.process.running:
            self.process.cancel()

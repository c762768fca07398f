"""Qt helpers shared by the module widgets (application only; the process runner they drive is tested
without Qt in ``Testing/slicer/test_process.py``).

:class:`ProcessMonitor` polls a :class:`~SegTransferLib.process.CLIProcess` from a ``qt.QTimer``,
shows its progress and log, reports the outcome, and its Cancel button kills the process tree.
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
        self.onSuccess = None
        self.cancelButton.connect("clicked(bool)", lambda _checked=False: self.cancel())
        self.cancelButton.enabled = False

    def start(self, process: CLIProcess, onSuccess) -> None:
        """Watch ``process``; ``onSuccess(process)`` loads the results once it ends with exit code 0
        (before the process's temporary files are removed)."""
        self.process, self.onSuccess = process, onSuccess
        process.onProgress = self._progress
        process.onLog = self.logBox.appendPlainText
        process.onFinished = self._finished
        self.progressBar.setValue(0)
        self.progressBar.setFormat("%p%")
        self.logBox.clear()
        self.logBox.appendPlainText(" ".join(process.command))
        self.applyButton.enabled, self.cancelButton.enabled = False, True
        self.timer.start()

    def _progress(self, fraction: float, message: str) -> None:
        self.progressBar.setValue(int(round(100 * fraction)))
        self.progressBar.setFormat(f"%p% {message}")

    def _poll(self) -> None:
        if self.process is not None:
            self.process.poll()  # calls _progress, the log box and, at the end, _finished

    def _finished(self, returncode: int) -> None:
        self.timer.stop()
        self.applyButton.enabled, self.cancelButton.enabled = True, False
        if self.process.cancelled:
            self.logBox.appendPlainText("Cancelled.")
        elif returncode != 0:
            slicer.util.errorDisplay(f"SegTransfer failed: {self.process.error_summary()}")
        else:
            with slicer.util.tryWithErrorDisplay("Loading the results failed.", waitCursor=True):
                self.onSuccess(self.process)

    def cancel(self) -> None:
        if self.process is not None and self.process.running:
            self.process.cancel()

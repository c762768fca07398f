"""Progress reporting for long work, readable by people and by the Slicer modules.

Each update is one stdout line ``PROGRESS <percent>% <message>``; the Slicer layer runs the CLI in a
background process and parses these lines (see ``SegTransferLib.process``).
"""

from __future__ import annotations

import re
import sys
import time
from typing import Callable, TextIO

PROGRESS_RE = re.compile(r"^PROGRESS\s+(\d+(?:\.\d+)?)%\s*(.*)$")

#: Signature of a progress callback: ``callback(fraction in 0..1, message)``.
ProgressCallback = Callable[[float, str], None]


def print_progress(fraction: float, message: str = "", stream: TextIO | None = None) -> None:
    """Print one progress line: ``PROGRESS 42.0% message`` (fraction clipped to 0..1)."""
    stream = stream or sys.stdout
    pct = 100.0 * min(max(float(fraction), 0.0), 1.0)
    stream.write(f"PROGRESS {pct:.1f}% {message}\n")
    stream.flush()


def parse_progress(line: str) -> tuple[float, str] | None:
    """Parse a progress line into ``(fraction, message)``, or ``None`` for any other line."""
    m = PROGRESS_RE.match(line.strip())
    if not m:
        return None
    return float(m.group(1)) / 100.0, m.group(2)


class Steps:
    """Report progress over ``total`` steps, at most every ``min_interval`` seconds (and always at the end).

    ``callback`` defaults to :func:`print_progress`.
    """

    def __init__(self, total: int, label: str, callback: ProgressCallback | None = None, min_interval: float = 0.5):
        self.total, self.label, self.done = max(int(total), 1), label, 0
        self.callback = callback or print_progress
        self.min_interval, self._last = min_interval, 0.0

    def step(self, message: str = "", n: int = 1) -> None:
        """Mark ``n`` more steps done and report if due."""
        self.done = min(self.done + n, self.total)
        now = time.monotonic()
        if self.done == self.total or now - self._last >= self.min_interval:
            self._last = now
            text = f"{self.label} {self.done}/{self.total}" + (f": {message}" if message else "")
            self.callback(self.done / self.total, text)

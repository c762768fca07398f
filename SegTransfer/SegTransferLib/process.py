"""Run the ``segtransfer`` CLI in a background process: progress, log, completion and cancel.

Qt-free, so it is tested outside the application; a module's Widget polls :meth:`CLIProcess.poll`
from a ``qt.QTimer`` and updates its progress bar, as SlicerMONAIAuto3DSeg does for its inference
process.  Inside Slicer the process starts through ``slicer.util.launchConsoleProcess`` with
Slicer's Python (``PythonSlicer``), so the core runs in Slicer's environment.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field

from segtransfer.progress import parse_progress


def python_executable() -> str:
    """The Python that runs the CLI: ``PythonSlicer`` inside the Slicer application, else this interpreter."""
    import slicer

    if hasattr(slicer, "app"):
        found = shutil.which("PythonSlicer")
        if found:
            return found
    return sys.executable


def core_path() -> str:
    """The folder that holds the ``segtransfer`` package (inside Slicer: the extension's module folder)."""
    import segtransfer

    return os.path.dirname(os.path.dirname(os.path.abspath(segtransfer.__file__)))


def cli_command(*args: str) -> list[str]:
    """Command line that runs ``segtransfer <args>`` with :func:`python_executable`."""
    return [python_executable(), "-m", "segtransfer", *[str(a) for a in args]]


@dataclass
class ProcessUpdate:
    """What happened since the last poll: latest progress (0..1 or None), its message, new log lines,
    and the exit code once the process has finished (``None`` while running)."""

    progress: float | None = None
    message: str = ""
    log: list[str] = field(default_factory=list)
    returncode: int | None = None


def _descendants(pid: int) -> list[int]:
    """PIDs of all descendants of ``pid`` (psutil when available, else /proc on Linux)."""
    try:
        import psutil

        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except ImportError:
        pass
    except Exception:  # the process is already gone
        return []
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


class CLIProcess:
    """A running ``segtransfer`` command.

    ``args`` are the CLI arguments (``["cleanup", "close", ...]``) or, with ``raw=True``, a full
    command line.  Output lines are read by a background thread; :meth:`poll` returns what arrived.
    """

    def __init__(self, args: list[str], raw: bool = False, cwd: str | None = None, env: dict | None = None):
        import slicer

        self.command = list(args) if raw else cli_command(*args)
        environment = dict(os.environ if env is None else env)
        environment.setdefault("PYTHONUNBUFFERED", "1")
        environment["PYTHONPATH"] = os.pathsep.join(p for p in (core_path(), environment.get("PYTHONPATH", "")) if p)
        self.process = slicer.util.launchConsoleProcess(
            self.command, useStartupEnvironment=hasattr(slicer, "app"), updateEnvironment=environment, cwd=cwd
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.cancelled = False
        self.returncode: int | None = None
        self.log: list[str] = []

    def _read(self) -> None:
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def poll(self) -> ProcessUpdate:
        """Collect output that arrived since the last call; ``returncode`` is set once finished."""
        update = ProcessUpdate()
        finished = False
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                finished = True
                break
            parsed = parse_progress(line)
            if parsed is not None:
                update.progress, update.message = parsed
            else:
                update.log.append(line)
        self.log.extend(update.log)
        if finished:
            self.returncode = self.process.wait()
            update.returncode = self.returncode
        return update

    def wait(self, timeout: float | None = None) -> ProcessUpdate:
        """Block until the process ends (for scripts and tests); returns everything not yet polled."""
        self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        total = ProcessUpdate()
        while total.returncode is None:
            u = self.poll()
            total.log.extend(u.log)
            if u.progress is not None:
                total.progress, total.message = u.progress, u.message
            total.returncode = u.returncode
        return total

    def cancel(self) -> None:
        """Kill the process and everything it started (e.g. data-loader workers)."""
        self.cancelled = True
        if self.process.poll() is not None:
            return
        victims = _descendants(self.process.pid) + [self.process.pid]
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
            except OSError:
                pass
        self.process.wait()

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def error_summary(self) -> str:
        """The CLI's one-line error (its last ``error:`` line), or the last log line."""
        for line in reversed(self.log):
            if "error:" in line:
                return line.strip()
        return self.log[-1].strip() if self.log else f"exit code {self.returncode}"

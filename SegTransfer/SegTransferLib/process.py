"""Run the ``segtransfer`` CLI in a background process: progress, log, completion and cancel.

Qt-free, so it is tested outside the application.  A module's Widget polls :meth:`CLIProcess.poll`
from a ``qt.QTimer`` (see :mod:`SegTransferLib.widgets`), the way SlicerMONAIAuto3DSeg watches its
inference process.  Inside the Slicer application the process starts through
``slicer.util.launchConsoleProcess`` with Slicer's Python (``PythonSlicer``) so that the core runs in
Slicer's environment; elsewhere (tests, plain Python with slicer-core) through ``subprocess.Popen``
with this interpreter.

Each stdout/stderr line is either a progress line (``PROGRESS 42.0% message``, parsed with
:func:`segtransfer.progress.parse_progress`) or a log line.
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
from typing import Callable

from segtransfer.progress import parse_progress


def in_application() -> bool:
    """True inside the Slicer application (``slicer.app`` exists), False with slicer-core or without Slicer."""
    try:
        import slicer
    except ImportError:
        return False
    return hasattr(slicer, "app")


def python_executable() -> str:
    """The Python that runs the CLI: ``PythonSlicer`` inside the Slicer application, else this interpreter."""
    if in_application():
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
    """PIDs of all descendants of ``pid``: psutil when available, else /proc (Linux); empty elsewhere."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            return [p.pid for p in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:  # the process is already gone
            return []
    if not os.path.isdir("/proc"):
        return []
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
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


def kill_tree(pid: int) -> None:
    """Kill process ``pid`` and all its descendants (a launcher such as ``PythonSlicer`` starts the real
    interpreter as a child, and training may start data-loader workers)."""
    if os.name == "nt":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        return
    for victim in [*_descendants(pid), pid]:
        try:
            os.kill(victim, signal.SIGKILL)
        except OSError:
            pass


class CLIProcess:
    """A running ``segtransfer`` command.

    ``args``: the CLI arguments (``["cleanup", "close", ...]``) or, with ``raw=True``, a full command line.
    ``onProgress(fraction, message)``, ``onLog(line)`` and ``onFinished(returncode)`` are called from
    :meth:`poll` (so from the thread that polls: the GUI thread inside Slicer); ``onFinished`` also after
    :meth:`cancel`.  ``temporary``: files or folders (the inputs written for the command, a work folder)
    removed once the process has ended or is cancelled, after ``onFinished`` has run.
    Output lines are read by a background thread.
    """

    def __init__(self, args: list[str], raw: bool = False, cwd: str | None = None, env: dict | None = None,
                 onProgress: Callable[[float, str], None] | None = None, onLog: Callable[[str], None] | None = None,
                 onFinished: Callable[[int], None] | None = None, temporary: list[str | os.PathLike] | tuple = ()):
        self.command = [str(a) for a in args] if raw else cli_command(*args)
        self.onProgress, self.onLog, self.onFinished = onProgress, onLog, onFinished
        self.temporary = [str(p) for p in temporary]
        self.cancelled = False
        self.returncode: int | None = None
        self.log: list[str] = []
        self.progress: float | None = None
        self.message = ""
        extra = {"PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
        base = dict(os.environ if env is None else env)
        extra["PYTHONPATH"] = os.pathsep.join(p for p in (core_path(), base.get("PYTHONPATH", "")) if p)
        if in_application():
            import slicer

            # The application's startup environment, as SlicerMONAIAuto3DSeg runs PythonSlicer.
            self.process = slicer.util.launchConsoleProcess(self.command, updateEnvironment={**(env or {}), **extra}, cwd=cwd)
        else:
            self.process = subprocess.Popen(self.command, env={**base, **extra}, cwd=cwd, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, text=True, encoding="utf-8", errors="replace")
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stream = self.process.stdout
        while True:
            try:
                line = stream.readline()
            except UnicodeDecodeError:  # a line in another code page: skip it, keep reading
                continue
            except ValueError:  # stream closed
                break
            if not line:
                break
            self._lines.put(line.rstrip("\r\n"))
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
                self.progress, self.message = parsed
                if self.onProgress:
                    self.onProgress(*parsed)
            else:
                update.log.append(line)
                if self.onLog:
                    self.onLog(line)
        self.log.extend(update.log)
        if finished:
            self._finish()
        update.returncode = self.returncode
        return update

    def _finish(self) -> None:
        """Record the exit code, call ``onFinished`` (which may still read the temporary files), then
        remove the temporary files."""
        if self.returncode is None:
            self.returncode = self.process.wait()
            try:
                if self.onFinished:
                    self.onFinished(self.returncode)
            finally:
                self._remove_temporary()

    def wait(self, timeout: float | None = None) -> ProcessUpdate:
        """Block until the process ends (scripts and tests); returns everything not yet polled, with the
        last progress seen.  Raises ``subprocess.TimeoutExpired`` after ``timeout`` seconds."""
        self.process.wait(timeout=timeout)
        # The output ends when every process holding the pipe has exited; a lingering grandchild must
        # not block the caller forever.
        self._reader.join(timeout=10)
        total = self.poll()
        self._finish()
        total.returncode = self.returncode
        if total.progress is None:
            total.progress, total.message = self.progress, self.message
        return total

    def cancel(self) -> None:
        """Kill the process and everything it started; the output read so far stays in :attr:`log`."""
        self.cancelled = True
        if self.process.poll() is None:
            kill_tree(self.process.pid)
        self._finish()

    def _remove_temporary(self) -> None:
        for path in self.temporary:
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.exists(path):
                os.remove(path)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def error_summary(self) -> str:
        """The CLI's one-line error (its last ``error:`` line), or the last log line."""
        for line in reversed(self.log):
            if "error:" in line:
                return line.strip()
        return self.log[-1].strip() if self.log else f"exit code {self.returncode}"

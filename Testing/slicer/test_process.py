"""The background CLI runner: progress parsing, log, exit codes and cancel, on real subprocesses."""

from __future__ import annotations

import os
import sys
import time

from SegTransferLib.process import CLIProcess, _descendants


def test_cli_help_runs_in_background():
    proc = CLIProcess(["--help"])
    result = proc.wait(timeout=120)
    assert result.returncode == 0
    assert any("usage: segtransfer" in line for line in proc.log)


def test_progress_lines_are_parsed_and_errors_reported(tmp_path):
    child = tmp_path / "child.py"
    child.write_text(
        "import sys\n"
        "print('PROGRESS 25.0% step 1/4', flush=True)\n"
        "print('working', flush=True)\n"
        "print('PROGRESS 100.0% step 4/4', flush=True)\n"
        "print('segtransfer x: error: in.nii.gz: file not found', file=sys.stderr, flush=True)\n"
        "sys.exit(2)\n"
    )
    proc = CLIProcess([sys.executable, str(child)], raw=True)
    result = proc.wait(timeout=60)
    assert result.returncode == 2
    assert result.progress == 1.0 and result.message == "step 4/4"
    assert "working" in proc.log and not any(line.startswith("PROGRESS") for line in proc.log)
    assert proc.error_summary() == "segtransfer x: error: in.nii.gz: file not found"


def test_cancel_kills_the_process_tree(tmp_path):
    child = tmp_path / "sleeper.py"
    child.write_text(
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print('PROGRESS 10.0% started', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = CLIProcess([sys.executable, str(child)], raw=True)
    deadline = time.time() + 30
    update = proc.poll()
    while update.progress is None and time.time() < deadline:
        time.sleep(0.05)
        update = proc.poll()
    assert update.progress == 0.1
    grandchildren = _descendants(proc.process.pid)
    assert grandchildren, "the child should have started a grandchild"
    proc.cancel()
    assert not proc.running and proc.cancelled
    time.sleep(0.2)
    for pid in grandchildren:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            assert state == "Z", f"grandchild {pid} still running"
        except FileNotFoundError:
            pass

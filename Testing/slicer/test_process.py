"""The background CLI runner: progress parsing, log, exit codes and cancel, on real subprocesses."""

from __future__ import annotations

import subprocess
import sys
import time

from SegTransferLib.process import CLIProcess, _descendants, in_application


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


def test_callbacks_in_order_and_temporary_files_removed_after_finish(tmp_path):
    """onProgress / onLog per line, then onFinished (which can still read the temporary files), then removal."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "input.txt").write_text("voxels")
    child = tmp_path / "child.py"
    child.write_text(
        "import sys\n"
        "print('reading ' + open(sys.argv[1]).read(), flush=True)\n"
        "print('PROGRESS 50.0% half', flush=True)\n"
        "sys.stdout.buffer.write(b'caf\\xe9 latin-1 line\\n')\n"
        "print('PROGRESS 100.0% done', flush=True)\n"
    )
    events = []
    proc = CLIProcess([sys.executable, str(child), str(work / "input.txt")], raw=True, temporary=[work],
                      onProgress=lambda f, m: events.append(("progress", f, m)),
                      onLog=lambda line: events.append(("log", line)),
                      onFinished=lambda code: events.append(("finished", code, (work / "input.txt").exists())))
    assert not in_application() and isinstance(proc.process, subprocess.Popen)
    result = proc.wait(timeout=60)
    assert result.returncode == 0 and result.progress == 1.0
    assert events == [("log", "reading voxels"), ("progress", 0.5, "half"), ("log", "caf\ufffd latin-1 line"),
                      ("progress", 1.0, "done"), ("finished", 0, True)]
    assert not work.exists()
    # polling after the end keeps reporting the exit code, and wait() returns at once
    assert proc.poll().returncode == 0 and proc.wait(timeout=1).returncode == 0
    assert events[-1][0] == "finished" and sum(e[0] == "finished" for e in events) == 1


def test_cancel_reports_finished_and_removes_temporary_files(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    child = tmp_path / "slow.py"
    child.write_text("import time\nprint('PROGRESS 1.0% started', flush=True)\ntime.sleep(60)\n")
    finished = []
    proc = CLIProcess([sys.executable, str(child)], raw=True, temporary=[work], onFinished=finished.append)
    deadline = time.time() + 30
    while proc.progress is None and time.time() < deadline:
        time.sleep(0.05)
        proc.poll()
    start = time.time()
    proc.cancel()
    assert time.time() - start < 5 and proc.cancelled and not proc.running
    assert finished == [proc.returncode] and proc.returncode != 0
    assert not work.exists()


def test_segtransfer_error_exits_non_zero_with_one_line(tmp_path):
    """A real CLI failure: the exit code and the CLI's one-line error reach the caller."""
    proc = CLIProcess(["cleanup", "close", str(tmp_path / "missing.nii.gz"), "--output", str(tmp_path / "out.nii.gz")])
    result = proc.wait(timeout=120)
    assert result.returncode == 2
    assert "missing.nii.gz" in proc.error_summary() and "error:" in proc.error_summary()
    assert not (tmp_path / "out.nii.gz").exists()

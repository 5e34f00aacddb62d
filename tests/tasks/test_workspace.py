"""One run per workspace, and what a killed run leaves behind is cleared at the next start."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gristmill.conf.schema import PipelineConfig
from gristmill.flows.cli import app
from gristmill.tasks.tracking import Tracker
from gristmill.tasks.workspace import LOCK_NAME, WorkspaceBusy, remove_temporary_files, workspace_lock

REPO = Path(__file__).resolve().parents[2]

HOLDER = """
import sys
from gristmill.tasks.workspace import workspace_lock
with workspace_lock(sys.argv[1], "gristmill run holder.yaml"):
    print("locked", flush=True)
    sys.stdin.read()  # hold until the test closes stdin (or kills us)
"""


def start_holder(workspace: Path) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(workspace)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_run_fails_at_once_naming_the_holder(tmp_path):
    holder = start_holder(tmp_path)
    try:
        busy = rf"in use by another run \(PID {holder.pid} on .*holder\.yaml"
        with pytest.raises(WorkspaceBusy, match=busy), workspace_lock(tmp_path, "second"):
            pass
    finally:
        holder.communicate("")
    with workspace_lock(tmp_path, "third") as previous:  # released: free again, and not stale
        assert previous is None
        assert json.loads((tmp_path / LOCK_NAME).read_text())["command"] == "third"
    assert (tmp_path / LOCK_NAME).read_text() == ""


def test_the_lock_of_a_killed_run_is_taken_over_with_a_warning(tmp_path, caplog):
    holder = start_holder(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    caplog.set_level(logging.WARNING, "gristmill.workspace")
    with workspace_lock(tmp_path, "next") as previous:
        assert previous.pid == holder.pid and previous.command == "gristmill run holder.yaml"
    assert f"PID {holder.pid}" in caplog.text and "did not finish" in caplog.text


def test_a_lock_written_on_another_host_is_not_taken(tmp_path):
    (tmp_path / LOCK_NAME).write_text(
        json.dumps({"host": "elsewhere", "pid": 1, "started_at": "2026-01-01T00:00:00+00:00", "command": "x"})
    )
    with pytest.raises(WorkspaceBusy, match="another host.*elsewhere") as err, workspace_lock(tmp_path, "here"):
        pass
    assert LOCK_NAME in err.value.fix


def test_the_lock_is_reentrant_within_one_process(tmp_path):
    with workspace_lock(tmp_path, "outer"), workspace_lock(tmp_path, "inner") as inner:
        assert inner is None
        assert json.loads((tmp_path / LOCK_NAME).read_text())["command"] == "outer"


def test_cli_refuses_a_busy_workspace_with_exit_code_2(tmp_path):
    holder = start_holder(tmp_path)
    try:
        result = CliRunner().invoke(app, ["run", str(REPO / "conf" / "demo.yaml"), f"workspace={tmp_path}"])
    finally:
        holder.communicate("")
    assert result.exit_code == 2, result.output
    assert f"in use by another run (PID {holder.pid} on {socket.gethostname()}" in result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME]  # nothing else was made


def test_temporary_files_of_a_killed_write_are_removed(tmp_path):
    kept = [tmp_path / "crawl" / "raw" / "part-00000.parquet", tmp_path / "notes.tmp-1"]
    left = [tmp_path / "crawl" / "raw" / ".part-00001.parquet.tmp-4242", tmp_path / "clean" / ".manifest.json.tmp-7"]
    for path in kept + left:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert sorted(remove_temporary_files(tmp_path)) == sorted(left)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in left)


KILLED_RUN = """
import os, signal, sys
from gristmill.tasks.tracking import Tracker
tracker = Tracker(sys.argv[1], None, "gristmill")
print(tracker.start_run("pipeline"), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_next_start_clears_what_a_killed_run_left_behind(tmp_path):
    from gristmill.tasks.workspace import hold_workspace

    config = PipelineConfig(workspace=str(tmp_path / "ws"), crawl={"seeds": ["http://127.0.0.1/"]})
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, config.workspace], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL
    dead_run = killed.stdout.strip()
    temporary = Path(config.workspace) / "dedup" / "documents" / ".part-00000.parquet.tmp-4242"
    temporary.parent.mkdir(parents=True)
    temporary.write_bytes(b"half a shard")
    tracker = Tracker(config.workspace, None, "gristmill")
    live_run = tracker.start_run("ours")  # this process's: alive, so left alone
    store = f"sqlite:///{Path(config.workspace) / 'mlflow' / 'mlflow.db'}"
    other_run = Tracker(tmp_path / "other", store, "gristmill").start_run("another workspace's")

    with hold_workspace(config, "test"):
        assert not temporary.exists()
    status = {run: tracker.client.get_run(run).info.status for run in (dead_run, live_run, other_run)}
    assert status == {dead_run: "FAILED", live_run: "RUNNING", other_run: "RUNNING"}
    assert "died" in tracker.client.get_run(dead_run).data.tags["gristmill.failure"]


def test_module_docstring_mentions_the_lock_file():
    from gristmill.tasks import workspace

    assert LOCK_NAME in textwrap.dedent(workspace.__doc__)

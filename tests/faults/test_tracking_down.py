"""An MLflow server that stops in the middle of a run: the run fails with a clear message, and no stage output is
lost - the rerun against the restarted server finds the stage up to date."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gristmill.conf.schema import PipelineConfig, UserError
from gristmill.tasks.documents import DOCUMENT_SCHEMA
from gristmill.tasks.shards import StageOutput, UnitRecord, write_shard
from gristmill.tasks.stage import StageContext, StageResult, execute
from gristmill.tasks.tracking import Tracker, TrackingUnavailable
from tests.tasks.test_stage import fake_crawl_output


class MlflowServer:
    """`mlflow server` on 127.0.0.1 over a sqlite store in `root`; stop() and start() again keep the store."""

    def __init__(self, root: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.root = root
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        mlflow = Path(sys.executable).parent / "mlflow"
        command = [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        command += ["--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}"]
        command += ["--default-artifact-root", (self.root / "artifacts").as_uri()]
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        self.process = subprocess.Popen(command, start_new_session=True, **quiet)
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2):
                    return
            except OSError:
                time.sleep(1)
        pytest.fail("mlflow server did not answer within 120 s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


@pytest.fixture
def server(tmp_path):
    running = MlflowServer(tmp_path / "mlflow-server")
    running.root.mkdir()
    running.start()
    yield running
    running.stop()


@pytest.mark.slow
def test_a_tracking_server_that_stops_mid_run_fails_clearly_and_loses_no_output(server, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # fail in seconds, not after minutes of backoff
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    config = PipelineConfig(
        workspace=str(tmp_path / "ws"), crawl={"seeds": ["http://127.0.0.1/"]}, tracking={"uri": server.uri}
    )
    fake_crawl_output(config)

    def copy_then_lose_the_server(ctx: StageContext) -> StageResult:
        def unit(path: Path) -> UnitRecord:
            def work() -> UnitRecord:
                if path.stem == "part-00001":
                    server.stop()  # mid-run: the stage's MLflow run is open, its last unit not yet done
                target = ctx.output.dataset_dir("documents") / path.name
                info = write_shard(target, pq.read_table(path), DOCUMENT_SCHEMA)
                return UnitRecord(unit=path.stem, shards={"documents": [info]})

            return ctx.unit(path.stem, work)

        units = ctx.map(unit, ctx.input_paths())
        return StageResult(units, 15, "docs", 15, "docs")

    tracker = Tracker(config.workspace, server.uri, config.tracking.experiment)
    with pytest.raises(TrackingUnavailable, match=rf"MLflow tracking store {server.uri} does not answer") as err:
        execute(config, "dedup", copy_then_lose_the_server, tracker)
    assert isinstance(err.value, UserError) and "run again" in err.value.fix
    output = StageOutput(config.workspace, "dedup")
    assert output.read_manifest() is not None  # the work was done and committed before tracking failed

    server.start()
    again = execute(config, "dedup", copy_then_lose_the_server, Tracker(config.workspace, server.uri, "gristmill"))
    assert again.status == "up to date"
    assert json.loads(output.manifest_path.read_text())["rows"] == {"documents": 15}

"""The demo pipeline against a real MLflow tracking server (`tracking.uri: http://...`) on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from gristmill.conf.schema import STAGES, load_config
from tests.flows.test_pipeline import DEMO, SMALL
from tests.helpers import free_port


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` with a sqlite backend and a local artifact store it serves itself (--serve-artifacts)."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    command = [
        str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
    ]  # fmt: skip
    log = open(root / "server.log", "w")  # noqa: SIM115 (open for the server's lifetime)
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        while server.poll() is None:  # until it answers, or dies (its log says why)
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        assert server.poll() is None, (root / "server.log").read_text()[-3000:]
        yield url, root
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        log.close()


@pytest.mark.slow
def test_the_demo_tracks_runs_artifacts_and_the_model_on_the_server(prefect_harness, mlflow_server, tmp_path):
    from gristmill.flows.pipeline import pipeline

    url, root = mlflow_server
    config = load_config(DEMO, [f"workspace={tmp_path}", *SMALL, "train.max_steps=20", f"tracking.uri={url}"])
    summaries = pipeline(config)
    assert [s.status for s in summaries] == ["ran"] * len(STAGES)
    assert not (tmp_path / "mlflow").exists()  # nothing went to the local default store

    client = MlflowClient(tracking_uri=url, registry_uri=url)
    experiment = client.get_experiment_by_name(config.tracking.experiment)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    children = {r.data.tags["gristmill.stage"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert sorted(children) == sorted(STAGES)
    train = children["train"].info.run_id
    assert [a.path for a in client.list_artifacts(train, "checkpoints")] == ["checkpoints/last.ckpt"]
    assert len(client.get_metric_history(train, "train/loss")) > 1
    # the artifacts went through the server into its own store
    assert any((root / "artifacts").rglob("last.ckpt"))
    manifest = client.download_artifacts(children["clean"].info.run_id, "manifest.json", str(tmp_path / "dl"))
    assert Path(manifest).is_file()
    version = client.get_model_version(config.tracking.registered_model, "1")
    assert version.run_id in {r.info.run_id for r in runs}
    assert version.tags["gristmill.pipeline_run_id"] == parents[0].info.run_id

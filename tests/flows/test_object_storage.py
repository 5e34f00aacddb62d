"""A workspace in object storage (`workspace: s3://bucket/prefix`) against a local S3 API (moto's server mode)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gristmill.conf.schema import load_config
from gristmill.tasks.shards import StageOutput
from tests.flows.test_runners import DATA_STAGES, DEMO, SMALL, real_documents
from tests.helpers import free_port, write_documents_stage


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    """moto's S3 server on 127.0.0.1, and the AWS environment that points s3fs (botocore) at it."""
    port = free_port()
    moto = Path(sys.executable).parent / "moto_server"
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")  # noqa: SIM115 (open for the server's lifetime)
    server = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        import s3fs

        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        while server.poll() is None:  # until it answers, or dies
            try:
                fs.mkdir("gristmill-test")
                break
            except OSError:
                time.sleep(0.5)
        assert server.poll() is None, "moto_server exited"
        yield fs
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        log.close()


def run_data_stages(workspace: str, cache: Path) -> list:
    from gristmill.flows.stages import STAGE_FLOWS

    config = load_config(DEMO, [f"workspace={workspace}", f"workspace_cache={cache}", *SMALL])
    return [STAGE_FLOWS[stage](config) for stage in DATA_STAGES]


@pytest.mark.slow
def test_every_stage_keeps_its_shards_and_manifest_in_s3(prefect_harness, s3_endpoint, shared_data, tmp_path):
    fs = s3_endpoint
    seeded = tmp_path / "seed"
    write_documents_stage(seeded, "crawl", real_documents(shared_data))
    fs.put(str(seeded / "crawl"), "gristmill-test/ws/crawl", recursive=True)
    workspace = "s3://gristmill-test/ws"

    first = run_data_stages(workspace, tmp_path / "cache-a")
    assert [s.status for s in first] == ["ran"] * len(DATA_STAGES)
    for stage in DATA_STAGES:
        manifest = json.loads(fs.cat_file(f"gristmill-test/ws/{stage}/manifest.json"))
        for dataset, shards in manifest["shards"].items():
            for shard in shards:
                assert fs.size(f"gristmill-test/ws/{stage}/{dataset}/{shard['name']}") == shard["bytes"]
        assert manifest == json.loads((tmp_path / "cache-a" / stage / "manifest.json").read_text())
    assert fs.exists("gristmill-test/ws/tokenize/tokenizer/tokenizer.json")

    # Another machine (an empty cache): everything is pulled from the store and found up to date.
    second = run_data_stages(workspace, tmp_path / "cache-b")
    assert [s.status for s in second] == ["up to date"] * len(DATA_STAGES)
    for stage in DATA_STAGES:
        assert StageOutput(tmp_path / "cache-b", stage).manifest_path.read_bytes() == fs.cat_file(
            f"gristmill-test/ws/{stage}/manifest.json"
        )

    # A changed setting reruns clean and what follows it, in the store too; stale shards there are removed.
    from gristmill.flows.stages import STAGE_FLOWS

    config = load_config(
        DEMO, [f"workspace={workspace}", f"workspace_cache={tmp_path / 'cache-b'}", *SMALL, "clean.min_words=200"]
    )
    assert STAGE_FLOWS["clean"](config).status == "ran"
    manifest = json.loads(fs.cat_file("gristmill-test/ws/clean/manifest.json"))
    listed = {f"{d}/{s['name']}" for d, shards in manifest["shards"].items() for s in shards}
    stored = {p.split("/ws/clean/", 1)[1] for p in fs.find("gristmill-test/ws/clean") if p.endswith(".parquet")}
    assert stored == listed

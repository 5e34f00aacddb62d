"""Task runners per stage: threads, a process pool and a real Dask LocalCluster write the same shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from prefect import flow, task

from gristmill.conf.schema import load_config
from gristmill.tasks.shards import StageOutput
from tests.helpers import document, write_documents_stage

DEMO = Path(__file__).resolve().parents[2] / "conf" / "demo.yaml"
DATA_STAGES = ("dedup", "clean", "tokenize")
SMALL = ["tokenize.vocab_size=512", "tokenize.seq_len=32"]


def real_documents(shared_data: Path) -> list[list[dict]]:
    """Clough & Stevenson's answers (near-duplicates of five sources) and article bodies, in four shards."""
    root = shared_data / "neardup" / "clough_stevenson_2009" / "corpus-20090418"
    texts = {f"https://c-s.example/{p.stem}": p.read_text(errors="replace") for p in sorted(root.glob("*.txt"))}
    truth = json.loads((shared_data / "html_extraction" / "ground-truth.json").read_text())
    for key, value in sorted(truth.items())[:80]:
        texts[f"https://articles.example/{key[:16]}"] = value["articleBody"]
    docs = [document(url, text) for url, text in texts.items()]
    return [docs[i::4] for i in range(4)]


def run_data_stages(workspace: Path, shards: list[list[dict]], overrides: list[str], chain: bool = False) -> None:
    """Each stage's flow on its own, or (`chain`) the stages as a pipeline chain runs them, sharing its runners."""
    from gristmill.flows.pipeline import run_chain
    from gristmill.flows.stages import STAGE_FLOWS

    config = load_config(DEMO, [f"workspace={workspace}", *SMALL, *overrides])
    write_documents_stage(workspace, "crawl", shards)
    if chain:
        run_chain(config, DATA_STAGES, "runner-test")
        return
    for stage in DATA_STAGES:
        STAGE_FLOWS[stage](config)


def stage_contents(workspace: Path, stage: str) -> dict[str, list[dict]]:
    """Every dataset of a stage, shard by shard, as rows (the bytes on disk are the Parquet writer's business)."""
    manifest = json.loads(StageOutput(workspace, stage).manifest_path.read_text())
    return {
        dataset: [pq.read_table(workspace / stage / dataset / shard["name"]).to_pylist() for shard in shards]
        for dataset, shards in sorted(manifest["shards"].items())
    }


@pytest.fixture(scope="module")
def threads_workspace(prefect_harness, shared_data, tmp_path_factory) -> Path:
    workspace = tmp_path_factory.mktemp("threads")
    run_data_stages(workspace, real_documents(shared_data), ["runner.kind=threads"])
    return workspace


@pytest.mark.slow
def test_a_dask_local_cluster_of_two_processes_writes_the_thread_runners_shards(
    threads_workspace, shared_data, tmp_path
):
    run_data_stages(tmp_path, real_documents(shared_data), ["runner.kind=dask", "runner.workers=2"])
    for stage in DATA_STAGES:
        ours, theirs = stage_contents(tmp_path, stage), stage_contents(threads_workspace, stage)
        assert ours == theirs, stage
        assert sum(len(rows) for shards in ours.values() for rows in shards) > 0, stage
    removed = json.loads(StageOutput(tmp_path, "dedup").manifest_path.read_text())["stats"]["removed"]
    assert sum(removed.values()) > 0  # the corpus has near-duplicates: dedup did real work on the workers


@pytest.mark.slow
def test_a_process_pool_for_one_stage_writes_the_thread_runners_shards(threads_workspace, shared_data, tmp_path):
    run_data_stages(tmp_path, real_documents(shared_data), ["runner.stages.clean.kind=processes", "runner.workers=2"])
    assert stage_contents(tmp_path, "clean") == stage_contents(threads_workspace, "clean")


@pytest.mark.slow
def test_a_chain_on_one_shared_process_pool_writes_the_thread_runners_shards(threads_workspace, shared_data, tmp_path):
    run_data_stages(tmp_path, real_documents(shared_data), ["runner.kind=processes", "runner.workers=2"], chain=True)
    for stage in DATA_STAGES:
        assert stage_contents(tmp_path, stage) == stage_contents(threads_workspace, stage), stage


def test_a_runner_setting_is_checked_and_inherited_per_stage():
    from gristmill.conf.schema import ConfigError

    config = load_config(DEMO, ["runner.kind=processes", "runner.workers=3", "runner.stages.clean.kind=dask"])
    assert config.runner.for_stage("dedup").kind == "processes"
    clean = config.runner.for_stage("clean")
    assert (clean.kind, clean.workers) == ("dask", 3)
    assert load_config(DEMO, []).runner.for_stage("crawl").kind == "threads"
    with pytest.raises(ConfigError, match="runner.stages.cleen"):
        load_config(DEMO, ["runner.stages.cleen.kind=dask"])
    with pytest.raises(ConfigError, match="needs kind: dask"):
        load_config(DEMO, ["runner.kind=processes", "runner.address=tcp://10.0.0.5:8786"])


WORKERS_REPORT_HERE = """
import json, os
from prefect import flow, task
from prefect.client.orchestration import get_client
from gristmill.conf.schema import RunnerSettings
from gristmill.flows.runners import started_runner

def api_url():
    with get_client(sync_client=True) as client:
        return str(client.api_url)

@task
def where(_):
    return os.getpid(), api_url()

@flow
def probe(kind):
    with started_runner(RunnerSettings(kind=kind, workers=2)) as runner:
        units = [future.result() for future in runner.map(where, {"_": [0, 1, 2, 3]})]
    return {"flow": api_url(), "pid": os.getpid(), "units": units}

print("RESULT", json.dumps([probe("processes"), probe("dask")]))
"""


@pytest.mark.slow
def test_local_workers_report_to_the_flows_ephemeral_api_and_start_no_server_of_their_own(tmp_path):
    """A user's first run has no PREFECT_API_URL: Prefect would give every worker process an ephemeral server of
    its own (seconds of CPU each, paid at every stage); the workers use the flow's instead."""
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", WORKERS_REPORT_HERE], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=600
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    runs = json.loads(done.stdout.split("RESULT", 1)[1])
    for run in runs:
        assert {url for _, url in run["units"]} == {run["flow"]}
        assert run["pid"] not in {pid for pid, _ in run["units"]}  # the units ran in other processes
    assert (done.stdout + done.stderr).count("Starting temporary server") == 1  # the flow's, and only it


@task
def worker_pid(_: int) -> int:
    return os.getpid()


@pytest.mark.slow
def test_a_chain_starts_each_pool_once_and_its_stages_share_the_warm_workers(prefect_harness):
    from prefect.task_runners import ThreadPoolTaskRunner

    from gristmill.flows.runners import chain_runners, stage_runner

    config = load_config(DEMO, ["runner.kind=processes", "runner.workers=2", "runner.stages.crawl.kind=threads"])

    @flow
    def chain() -> dict:
        with chain_runners(config, ("crawl", "dedup", "clean")):
            with stage_runner(config, "dedup") as dedup:
                first = [future.result() for future in dedup.map(worker_pid, {"_": list(range(4))})]
            with stage_runner(config, "clean") as clean, stage_runner(config, "crawl") as crawl:
                second = [future.result() for future in clean.map(worker_pid, {"_": list(range(4))})]
                return {
                    "same": clean is dedup,
                    "crawl_threads": isinstance(crawl, ThreadPoolTaskRunner),
                    "first": first,
                    "second": second,
                }

    seen = chain()
    assert seen["same"] and seen["crawl_threads"]
    # The second stage ran on the first one's pool: no more than its 2 worker processes across both stages (which of
    # them took the first stage's few tasks is up to the scheduler: one worker can be up before the other), none of
    # them this process. A pool started again would bring new processes.
    workers = set(seen["first"]) | set(seen["second"])
    assert len(workers) <= 2 and os.getpid() not in workers


def test_what_a_units_worker_process_imports_leaves_mlflow_out():
    """A worker unpickles a unit (`run_unit`, the stage's unit function, its `StageContext`) and imports their
    modules; MLflow stays with the flow (the tracker does not travel), and importing it took each worker process
    about 2 s of CPU at start-up, half of it."""
    modules = ["gristmill.flows.common", *(f"gristmill.tasks.{stage}.stage" for stage in DATA_STAGES)]
    code = f"import sys; import {', '.join(modules)}; print(sorted(m for m in sys.modules if m.startswith('mlflow')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]"

"""Task runners per stage: threads, a process pool and a real Dask LocalCluster write the same shards."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

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


def run_data_stages(workspace: Path, shards: list[list[dict]], overrides: list[str]) -> None:
    from gristmill.flows.stages import STAGE_FLOWS

    config = load_config(DEMO, [f"workspace={workspace}", *SMALL, *overrides])
    write_documents_stage(workspace, "crawl", shards)
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

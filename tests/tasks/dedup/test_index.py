"""The persistent index of kept documents (incremental runs) and the LSH in a real Redis server."""

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gristmill.conf.schema import DedupConfig, PipelineConfig
from gristmill.tasks.dedup.stage import run
from gristmill.tasks.shards import StageOutput, iter_records
from gristmill.tasks.stage import execute
from tests.helpers import document, requirement_missing, write_documents_stage


def lightly_edited(text: str, every: int = 100) -> str:
    return " ".join("EDITED" if i % every == every // 2 else w for i, w in enumerate(text.split()))


def dedup_once(workspace: Path, shards: list[list[dict]], **options) -> tuple[list[str], dict]:
    config = PipelineConfig(workspace=str(workspace), crawl={"seeds": ["http://x/"]}, dedup=DedupConfig(**options))
    write_documents_stage(config.workspace, "crawl", shards)
    execute(config, "dedup", run)
    out = StageOutput(config.workspace, "dedup")
    return [r["url"] for r in iter_records(out.shard_paths("documents"))], out.read_manifest().stats


def test_incremental_run_dedups_new_crawl_against_everything_kept_before(tmp_path, sources):
    first = [document(f"http://old/{i}", t) for i, t in enumerate(sources[:3])]
    first.append(document("http://old/copy", sources[0]))  # removed in the first run: not in the index
    kept, stats = dedup_once(tmp_path, [first], incremental=True)
    assert kept == ["http://old/0", "http://old/1", "http://old/2"] and stats["prior_docs"] == 0
    index_parts = list((tmp_path / "dedup_index").rglob("*.parquet"))
    assert len(index_parts) == 1

    second = [document("http://new/exact", sources[1].upper()), document("http://new/near", lightly_edited(sources[2]))]
    second += [document("http://new/fresh", sources[3])]
    kept, stats = dedup_once(tmp_path, [second], incremental=True)
    assert kept == ["http://new/fresh"]
    assert stats["prior_docs"] == 3 and stats["removed"] == {"empty": 0, "exact": 1, "near": 1}
    assert len(list((tmp_path / "dedup_index").rglob("*.parquet"))) == 2

    # Without `incremental` the same input keeps all three: the index is what removed them.
    kept, _ = dedup_once(tmp_path / "alone", [second])
    assert len(kept) == 3


def test_rerunning_the_same_input_does_not_dedup_it_against_itself(tmp_path, sources):
    docs = [document(f"http://a/{i}", t) for i, t in enumerate(sources)]
    kept, _ = dedup_once(tmp_path, [docs], incremental=True)
    config = PipelineConfig(
        workspace=str(tmp_path), crawl={"seeds": ["http://x/"]}, dedup=DedupConfig(incremental=True, verify=True)
    )
    execute(config, "dedup", run)  # a config change reruns dedup on the same crawl output
    again = [r["url"] for r in iter_records(StageOutput(config.workspace, "dedup").shard_paths("documents"))]
    assert again == kept == [f"http://a/{i}" for i in range(5)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def redis_port(tmp_path) -> Iterator[int]:
    binary = shutil.which("redis-server")
    if binary is None:
        requirement_missing("redis-server is not installed (apt-get install redis-server); .ci/run installs it")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path), "--save", "", "--appendonly"]
    server = subprocess.Popen([*args, "no"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            pytest.fail(f"redis-server did not answer on port {port}")
        yield port
        assert client.dbsize() == 0  # the run dropped its LSH keys
        client.close()
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.parametrize("candidates", ["numpy", "datasketch"])
def test_redis_storage_gives_the_same_result_as_memory(tmp_path, sources, redis_port, candidates):
    """The index of earlier runs lives in Redis (queried in bulk through a pipeline); with `candidates: datasketch`
    every document of the run does too."""
    shard0 = [document(f"http://src/{i}", t) for i, t in enumerate(sources)]
    shard1 = [document(f"http://near/{i}", lightly_edited(t, 150 + i)) for i, t in enumerate(sources)]
    shard1 += [document(f"http://exact/{i}", t.lower()) for i, t in enumerate(sources[:2])]
    later = [document(f"http://later/{i}", lightly_edited(t, 120 + i)) for i, t in enumerate(sources[:3])]
    results = {}
    for storage in ("memory", "redis"):
        options = {"storage": storage, "redis_port": redis_port, "candidates": candidates, "incremental": True}
        first = dedup_once(tmp_path / storage, [shard0, shard1], **options)
        results[storage] = first, dedup_once(tmp_path / storage, [later], **options)
    (in_memory, memory_later), (in_redis, redis_later) = results["memory"], results["redis"]
    assert in_redis[0] == in_memory[0] == [f"http://src/{i}" for i in range(5)]
    for key in ("docs_in", "removed", "clusters", "near_pairs"):  # the same order of pairs: the same work too
        assert in_redis[1][key] == in_memory[1][key]
        assert redis_later[1][key] == memory_later[1][key]
    assert in_redis[1]["removed"] == {"empty": 0, "exact": 2, "near": 5}
    assert redis_later[0] == [] and redis_later[1]["removed"]["near"] == 3 and redis_later[1]["prior_docs"] == 5


def test_a_new_document_linking_two_kept_ones_removes_only_itself(tmp_path, sources):
    # The first run keeps a text and its edited copy (a strict threshold); the second run's document is near both.
    first = [document("http://old/a", sources[4]), document("http://old/b", lightly_edited(sources[4], 100))]
    kept, _ = dedup_once(tmp_path, [first], incremental=True, threshold=0.95, verify=True)
    assert kept == ["http://old/a", "http://old/b"]
    second = [document("http://new/c", lightly_edited(sources[4], 300)), document("http://new/d", sources[0])]
    kept, stats = dedup_once(tmp_path, [second], incremental=True)
    assert kept == ["http://new/d"]
    assert stats["removed"]["near"] == 1 and stats["clusters"]["largest"] == 3

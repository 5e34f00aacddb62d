"""`gristmill gc`: old checkpoints and files no manifest lists go; every stage stays up to date."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gristmill.conf.schema import ConfigError, validate_config
from gristmill.tasks.crawl import stage as crawl_stage
from gristmill.tasks.lifecycle import collect_garbage, freed_by_stage
from gristmill.tasks.shards import StageOutput, iter_records
from gristmill.tasks.stage import execute
from tests.tasks.crawl.test_ingest_files import files_opened
from tests.tasks.test_keys import base_raw, build_pipeline, never_runs, source_config, write_jsonl


def test_gc_removes_unlisted_files_and_old_checkpoints_and_leaves_every_stage_up_to_date(tmp_path):
    raw = base_raw(tmp_path / "ws")
    build_pipeline(raw)
    ws = Path(raw["workspace"])
    stray = ws / "clean" / "documents" / "part-00009.parquet"  # a shard a rewritten unit no longer makes
    stray.write_bytes(b"x" * 1000)
    gone_unit = ws / "clean" / "_progress" / "part-00009.json"
    gone_unit.write_text(
        '{"unit": "part-00009", "shards": {"documents": [{"name": "part-00009.parquet", '
        '"rows": 1, "bytes": 1000, "sha256": "0"}]}}'
    )
    checkpoints = ws / "train" / "checkpoints"
    (checkpoints / "g001").mkdir(parents=True)
    (checkpoints / "last.ckpt").write_bytes(b"c" * 500)  # the first training's
    (checkpoints / "g001" / "last.ckpt").write_bytes(b"c" * 700)  # the continued one: it stays

    config = validate_config(raw)
    would = collect_garbage(config, keep=1, dry_run=True)
    assert stray.exists() and {f.path for f in would} == {stray, gone_unit, checkpoints / "last.ckpt"}
    record_bytes = gone_unit.stat().st_size
    freed = collect_garbage(config, keep=1)
    assert sum(f.bytes for f in freed) == 1000 + 500 + record_bytes
    assert not stray.exists() and not gone_unit.exists() and not (checkpoints / "last.ckpt").exists()
    assert (checkpoints / "g001" / "last.ckpt").exists()
    assert all(execute(config, stage, never_runs).status == "up to date" for stage in ("dedup", "clean", "train"))
    assert collect_garbage(config, keep=1) == []


def test_gc_keeps_at_least_one_generation(tmp_path):
    with pytest.raises(ConfigError, match="--keep must be at least 1"):
        collect_garbage(validate_config(base_raw(tmp_path / "ws")), keep=0)


def test_gc_removes_old_generations_raw_shards_and_a_later_refresh_keeps_their_documents(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_jsonl(corpus / "a.jsonl", ["Rivers carry water to the sea.", "Deltas spread where rivers slow down."])
    config = source_config(tmp_path / "ws", corpus / "*.jsonl")
    execute(config, "crawl", crawl_stage.run)
    write_jsonl(corpus / "b.jsonl", ["Glaciers move slowly down the valley."])  # generation 1
    execute(config, "crawl", crawl_stage.run)
    crawl = StageOutput(config.workspace, "crawl")
    first, second = crawl.read_manifest().generations
    old_raw = [crawl.dataset_dir("raw") / s.name for s in first.shards["raw"]]

    freed = collect_garbage(config, keep=1)
    assert {f.path for f in freed if f.path.parent.name == "raw"} == set(old_raw)
    assert (
        not any(p.exists() for p in old_raw)
        and crawl.dataset_dir("raw").joinpath(second.shards["raw"][0].name).exists()
    )
    assert freed_by_stage(freed, config.workspace) == [
        {"stage": "crawl", "files": 1, "bytes": sum(s.bytes for s in first.shards["raw"])}
    ]
    assert "raw" not in crawl.read_manifest().generations[0].shards
    assert execute(config, "crawl", never_runs).status == "up to date"

    # A new file later: the first generation's documents stay, without its raw shard being read or extracted again.
    write_jsonl(corpus / "c.jsonl", ["Lakes are still and deep."])
    with files_opened(corpus) as opened:
        summary = execute(config, "crawl", crawl_stage.run)
    assert summary.status == "ran" and summary.count_out == 4
    assert set(opened) == {"c.jsonl"}  # a.jsonl, whose raw shard gc removed, is not read again
    texts = {d["text"] for d in iter_records(crawl.shard_paths("documents"), ["text"])}
    assert {"Rivers carry water to the sea.", "Lakes are still and deep."} <= texts


def test_a_plain_file_changed_after_gc_collected_its_raw_shard_replaces_its_documents(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in (("a.txt", "Rivers carry water to the sea."), ("b.txt", "Glaciers move slowly.")):
        (corpus / name).write_text(text)
    config = source_config(tmp_path / "ws", corpus)
    execute(config, "crawl", crawl_stage.run)
    (corpus / "c.txt").write_text("Lakes are still and deep.")  # generation 1
    execute(config, "crawl", crawl_stage.run)
    collect_garbage(config, keep=1)  # the first batch's raw shard goes

    (corpus / "b.txt").write_text("Glaciers retreat and leave lakes behind.")
    os.utime(corpus / "b.txt", (2_000_000_000, 2_000_000_000))
    with files_opened(corpus) as opened:
        assert execute(config, "crawl", crawl_stage.run).count_out == 3
    assert set(opened) == {"b.txt"}
    crawl = StageOutput(config.workspace, "crawl")
    texts = sorted(d["text"] for d in iter_records(crawl.shard_paths("documents"), ["text"]))
    assert texts == [
        "Glaciers retreat and leave lakes behind.",
        "Lakes are still and deep.",
        "Rivers carry water to the sea.",
    ]

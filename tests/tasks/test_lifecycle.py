"""`gristmill gc`: old checkpoints and files no manifest lists go; every stage stays up to date."""

from __future__ import annotations

from pathlib import Path

import pytest

from gristmill.conf.schema import ConfigError, validate_config
from gristmill.tasks.lifecycle import collect_garbage
from gristmill.tasks.stage import execute
from tests.tasks.test_keys import base_raw, build_pipeline, never_runs


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

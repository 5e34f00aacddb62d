"""Shards are checked against their manifest (size and checksum): damage is named, and its unit is redone."""

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from gristmill.conf.schema import UserError
from gristmill.tasks.documents import DOCUMENT_SCHEMA
from gristmill.tasks.shards import ShardError, StageOutput, UnitRecord, iter_batches, write_shard
from gristmill.tasks.stage import StageContext, StageResult, execute
from tests.tasks.test_stage import fake_crawl_output, make_config

REPO = Path(__file__).resolve().parents[2]


def garble(path: Path) -> None:
    """Overwrite a shard with garbage of the same size: a size check alone does not see it."""
    path.write_bytes(bytes(range(256)) * (path.stat().st_size // 256) + b"\0" * (path.stat().st_size % 256))


def copying_stage(calls: list[str]):
    """A dedup-shaped stage whose units copy their input shard through the project's reader."""

    def run(ctx: StageContext) -> StageResult:
        def unit(path: Path) -> UnitRecord:
            def work() -> UnitRecord:
                calls.append(path.stem)
                info = write_shard(
                    ctx.output.dataset_dir("documents") / path.name, iter_batches([path]), DOCUMENT_SCHEMA
                )
                return UnitRecord(unit=path.stem, shards={"documents": [info]})

            return ctx.unit(path.stem, work)

        units = ctx.map(unit, ctx.input_paths())
        return StageResult(units, 15, "docs", sum(u.shards["documents"][0].rows for u in units), "docs")

    return run


def test_reading_a_garbled_input_shard_names_it_and_the_stage_that_wrote_it(tmp_path):
    config = make_config(tmp_path)
    fake_crawl_output(config)
    shard = StageOutput(config.workspace, "crawl").shard_paths("documents")[1]
    garble(shard)

    with pytest.raises(ShardError, match=r"part-00001\.parquet: its checksum differs.*written by stage 'crawl'") as err:
        execute(config, "dedup", copying_stage([]))
    assert isinstance(err.value, UserError) and "--stage crawl" in err.value.fix


def test_a_garbled_shard_makes_its_stage_redo_that_unit_only(tmp_path):
    config = make_config(tmp_path)
    fake_crawl_output(config)
    calls: list[str] = []
    execute(config, "dedup", copying_stage(calls))
    output = StageOutput(config.workspace, "dedup")
    [_, damaged, _] = output.shard_paths("documents")
    garble(damaged)

    assert output.verify() == [
        "dedup/documents/part-00001.parquet: its checksum differs from its manifest's (damaged or overwritten)"
    ]
    again = execute(config, "dedup", copying_stage(calls))
    assert again.status == "ran"
    assert again.warnings == [
        "damaged shard written again: dedup/documents/part-00001.parquet: its checksum differs from its manifest's "
        "(damaged or overwritten)"
    ]
    assert calls == ["part-00000", "part-00001", "part-00002", "part-00001"]
    assert output.verify() == []
    assert [len(b) for b in iter_batches([damaged])] == [5]


def test_a_shard_of_another_size_is_named_with_both_sizes(tmp_path):
    out = StageOutput(tmp_path, "clean")
    out.begin("cfg", None)
    schema = pa.schema([pa.field("x", pa.int64())])
    info = write_shard(out.dataset_dir("documents") / "part-00000.parquet", pa.table({"x": [1, 2]}), schema)
    out.commit("cfg", None, [out.finish_unit(UnitRecord(unit="u", shards={"documents": [info]}))], stats={})
    with open(out.dataset_dir("documents") / "part-00000.parquet", "ab") as fh:
        fh.write(b"x")
    [problem] = out.verify()
    assert f"{info.bytes + 1:,} bytes where its manifest says {info.bytes:,}" in problem
    assert out.up_to_date("cfg", None) is None


def test_verify_command_checks_the_whole_workspace(tmp_path):
    config = make_config(tmp_path)
    fake_crawl_output(config)
    gristmill = Path(sys.executable).parent / "gristmill"
    command = [str(gristmill), "verify", str(REPO / "conf" / "demo.yaml"), f"workspace={config.workspace}"]

    ok = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "crawl" in ok.stdout and "intact" in ok.stdout and "not run" in ok.stdout

    garble(StageOutput(config.workspace, "crawl").shard_paths("documents")[2])
    bad = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2, bad.stderr
    assert "crawl/documents/part-00002.parquet: its checksum differs" in bad.stderr
    assert "(written by stage 'crawl')" in bad.stderr and "Traceback" not in bad.stdout + bad.stderr

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


def finished_stage_with_row_groups(root: Path, rows: int = 4000) -> Path:
    """A finished stage of one shard of several row groups of random bytes (zstd cannot shrink them)."""
    import os

    out = StageOutput(root, "crawl")
    out.begin("cfg", None)
    schema = pa.schema([pa.field("blob", pa.binary())])
    blobs = (pa.array([os.urandom(1000) for _ in range(1000)]) for _ in range(rows // 1000))
    batches = (pa.record_batch([blob], schema) for blob in blobs)
    path = out.dataset_dir("documents") / "part-00000.parquet"
    info = write_shard(path, batches, schema)
    out.commit("cfg", None, [out.finish_unit(UnitRecord(unit="u", shards={"documents": [info]}))], stats={})
    return path


def test_damage_in_the_last_row_group_stops_the_reader_before_its_first_batch(tmp_path):
    path = finished_stage_with_row_groups(tmp_path)
    data = bytearray(path.read_bytes())
    data[int(len(data) * 0.9)] ^= 0xFF  # inside the last row group's pages; the footer stays readable
    path.write_bytes(bytes(data))

    batches = iter_batches([path])
    with pytest.raises(ShardError, match=r"part-00000\.parquet: its checksum differs.*written by stage 'crawl'"):
        next(batches)  # nothing handed out: a unit reading it has produced nothing to commit


ONE_READ = """
import sys
from pathlib import Path
from gristmill.tasks.shards import iter_batches

def read_chars() -> int:
    return int(dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())["rchar"])

before = read_chars()
rows = sum(batch.num_rows for batch in iter_batches([Path(sys.argv[1])]))
print(rows, read_chars() - before)
"""


@pytest.mark.skipif(not Path("/proc/self/io").is_file(), reason="needs Linux's /proc/self/io (bytes read per process)")
def test_a_verified_read_reads_the_file_once(tmp_path):
    """Checked and decoded from one memory mapping: the shard's bytes are not read twice (a hash pass, then the
    reader's own). `rchar` counts what read() calls copied; the mapping's pages come in once, without them."""
    path = finished_stage_with_row_groups(tmp_path)
    size = path.stat().st_size
    done = subprocess.run([sys.executable, "-c", ONE_READ, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows, copied = map(int, done.stdout.split())
    assert rows == 4000
    assert copied < size / 2, f"read() copied {copied:,} bytes of a {size:,}-byte shard"

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gristmill.tasks.shards import (
    ShardError,
    ShardWriter,
    StageOutput,
    UnitRecord,
    file_sha256,
    iter_records,
    write_shard,
)

SCHEMA = pa.schema([pa.field("x", pa.int64(), nullable=False)])


def test_shard_writer_rolls_over_and_leaves_no_temporary_files(tmp_path):
    with ShardWriter(tmp_path, SCHEMA, rows_per_shard=4) as writer:
        for i in range(10):
            writer.write({"x": i})
    assert [s.name for s in writer.shards] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert [s.rows for s in writer.shards] == [4, 4, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == [s.name for s in writer.shards]
    assert writer.shards[0].sha256 == file_sha256(tmp_path / "part-00000.parquet")
    assert [r["x"] for r in iter_records(tmp_path / s.name for s in writer.shards)] == list(range(10))
    assert pq.read_schema(tmp_path / "part-00000.parquet") == SCHEMA


BODY = pa.schema([pa.field("x", pa.int64(), nullable=False), pa.field("body", pa.binary(), nullable=False)])


def test_shard_writer_by_bytes_streams_batches_into_the_open_shard(tmp_path, monkeypatch):
    """With max_bytes, rows go to the open shard a batch (BATCH_BYTES of sizes) at a time: the buffer never holds
    more than one batch, a shard closes once its sizes reach max_bytes, and nothing is under a shard's name before
    it is complete."""
    monkeypatch.setattr("gristmill.tasks.shards.BATCH_BYTES", 300)
    most_buffered = 0
    with ShardWriter(tmp_path, BODY, rows_per_shard=1000, max_bytes=1000) as writer:
        for i in range(25):
            writer.write({"x": i, "body": bytes(100)}, 100)
            most_buffered = max(most_buffered, writer.buffered_bytes)
            assert sorted(p.name for p in tmp_path.glob("*.parquet")) == [s.name for s in writer.shards]
    assert most_buffered < 300
    assert [s.rows for s in writer.shards] == [10, 10, 5]
    assert pq.ParquetFile(tmp_path / "part-00000.parquet").num_row_groups == 4  # 3 + 3 + 3 + 1 rows
    assert [r["x"] for r in iter_records(tmp_path / s.name for s in writer.shards)] == list(range(25))
    assert writer.shards[1].sha256 == file_sha256(tmp_path / "part-00001.parquet")


def test_a_failure_mid_shard_keeps_the_finished_shards_and_no_temporary_file(tmp_path, monkeypatch):
    monkeypatch.setattr("gristmill.tasks.shards.BATCH_BYTES", 300)
    writer = ShardWriter(tmp_path, BODY, rows_per_shard=1000, max_bytes=1000)
    with pytest.raises(RuntimeError, match="killed"), writer:
        for i in range(15):
            writer.write({"x": i, "body": bytes(100)}, 100)
        raise RuntimeError("killed mid-shard")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-00000.parquet"]
    assert [r["x"] for r in iter_records([tmp_path / "part-00000.parquet"])] == list(range(10))


def test_a_failed_write_leaves_nothing_under_the_final_name(tmp_path):
    def batches():
        yield pa.record_batch([pa.array([1, 2])], schema=SCHEMA)
        raise RuntimeError("killed mid-shard")

    with pytest.raises(RuntimeError):
        write_shard(tmp_path / "part-00000.parquet", batches(), SCHEMA)
    assert not (tmp_path / "part-00000.parquet").exists()


def test_reading_a_corrupt_shard_names_the_file(tmp_path):
    bad = tmp_path / "part-00000.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(ShardError, match="part-00000.parquet"):
        list(iter_records([bad]))
    good = tmp_path / "part-00001.parquet"
    write_shard(good, pa.table({"x": [1]}, schema=SCHEMA), SCHEMA)
    with pytest.raises(ShardError, match="missing column.*'y'"):
        list(iter_records([good], ["y"]))


def test_manifest_is_up_to_date_only_for_the_same_config_input_and_intact_shards(tmp_path):
    out = StageOutput(tmp_path, "clean")
    out.begin("cfg1", "in1")
    info = write_shard(out.dataset_dir("documents") / "part-00000.parquet", pa.table({"x": [1, 2]}), SCHEMA)
    unit = out.finish_unit(UnitRecord(unit="part-00000", shards={"documents": [info]}))
    manifest = out.commit("cfg1", "in1", [unit], stats={"in": 2})
    assert manifest.rows == {"documents": 2} and manifest.shards["documents"][0].sha256 == info.sha256
    assert out.up_to_date("cfg1", "in1") is not None
    assert out.up_to_date("cfg2", "in1") is None
    assert out.up_to_date("cfg1", "in2") is None
    (out.dataset_dir("documents") / "part-00000.parquet").unlink()
    assert out.up_to_date("cfg1", "in1") is None


def test_begin_keeps_finished_units_for_the_same_key_and_wipes_them_for_another(tmp_path):
    out = StageOutput(tmp_path, "clean")
    out.begin("cfg", "in")
    info = write_shard(out.dataset_dir("documents") / "part-00000.parquet", pa.table({"x": [1]}), SCHEMA)
    out.finish_unit(UnitRecord(unit="part-00000", shards={"documents": [info]}))
    out.begin("cfg", "in")
    assert out.finished_unit("part-00000") is not None
    out.begin("other", "in")
    assert out.finished_unit("part-00000") is None
    assert not out.dataset_dir("documents").exists()


def test_input_hash_of_a_stage_that_never_ran_is_a_clear_error(tmp_path):
    with pytest.raises(ShardError, match="stage 'crawl' has no output.*run it first"):
        StageOutput(tmp_path, "crawl").input_hash()

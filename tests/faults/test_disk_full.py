"""A disk that fills while a shard is written: a clear error naming the file, no partial shard, nothing finished lost.

The disk is real: a tmpfs of a few hundred KB mounted for the test (needs CAP_SYS_ADMIN, as root in CI's container;
skipped with the reason elsewhere), filled up to a chosen point by a filler file.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest

from gristmill.conf.schema import PipelineConfig, UserError
from gristmill.tasks.dedup import stage as dedup
from gristmill.tasks.shards import ShardError, StageOutput, write_shard
from gristmill.tasks.stage import execute
from gristmill.tasks.workspace import TEMPORARY_FILE
from tests.helpers import document, write_documents_stage


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 1 MiB filesystem of its own at tmp_path/disk."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs CAP_SYS_ADMIN): {mounted.stderr.decode().strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=True)


def fill(disk: Path, leave: int) -> Path:
    """Fill the disk but `leave` bytes with one file; deleting it frees them again."""
    filler = disk / "filler"
    stats = os.statvfs(disk)
    filler.write_bytes(b"\0" * max(stats.f_bavail * stats.f_frsize - leave, 0))
    return filler


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if TEMPORARY_FILE.match(p.name)]


def test_a_shard_that_does_not_fit_is_a_clear_error_and_leaves_nothing(small_disk):
    fill(small_disk, leave=64 << 10)
    table = pa.table({"blob": [os.urandom(4096) for _ in range(64)]})  # 256 KiB that zstd cannot shrink
    target = small_disk / "stage" / "documents" / "part-00000.parquet"

    with pytest.raises(ShardError, match=r"cannot write .*part-00000\.parquet: No space left on device") as err:
        write_shard(target, table, table.schema)
    assert isinstance(err.value, UserError) and "free space" in err.value.fix
    assert list(target.parent.iterdir()) == []  # no partial shard, no temporary file


def random_documents(shard: int, n: int = 12) -> list[dict]:
    return [document(f"http://h.test/{shard}/{i}", os.urandom(3000).hex()) for i in range(n)]


def test_a_stage_that_fills_the_disk_keeps_its_finished_units_and_resumes(small_disk, tmp_path):
    config = PipelineConfig(workspace=str(small_disk / "ws"), crawl={"seeds": ["http://127.0.0.1/"]})
    write_documents_stage(config.workspace, "crawl", [random_documents(s) for s in range(3)])
    filler = fill(small_disk, leave=160 << 10)  # the signatures and about one shard of documents

    with pytest.raises(ShardError, match="No space left on device"):
        execute(config, "dedup", dedup.run)
    output = StageOutput(config.workspace, "dedup")
    finished = {info.name for unit in output.units() for infos in unit.shards.values() for info in infos}
    written = {p.name for p in output.path.rglob("*.parquet")}
    assert written <= finished and finished  # every shard on disk belongs to a finished unit
    assert leftovers(small_disk) == [] and output.read_manifest() is None

    filler.unlink()
    summary = execute(config, "dedup", dedup.run)
    assert summary.status == "ran" and summary.count_out == 36
    assert output.verify() == [] and leftovers(small_disk) == []

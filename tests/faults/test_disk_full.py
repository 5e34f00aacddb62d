"""A disk that fills while a shard is written: a clear error naming the file, no partial shard, nothing finished lost.

Two ways, both the kernel refusing a real write (pyarrow's own, through the project's one shard writer):
- a file size limit (`RLIMIT_FSIZE`) set in a child process that runs a stage, SIGXFSZ ignored so that the write
  fails with EFBIG instead of killing it: runs everywhere;
- a tmpfs of a few hundred KB mounted for the test, filled up to a chosen point by a filler file, so the write fails
  with ENOSPC (needs CAP_SYS_ADMIN, as root in CI's container; skipped with the reason elsewhere).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
    """Documents of random hex text (about 3 KB each once compressed: zstd cannot shrink random digits much)."""
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


LIMITED = """
import json, resource, signal, sys
from gristmill.conf.schema import PipelineConfig, UserError
from gristmill.tasks.dedup import stage as dedup
from gristmill.tasks.stage import execute
from gristmill.tasks.workspace import hold_workspace

config = PipelineConfig.model_validate_json(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG (the default kills)
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    with hold_workspace(config, "dedup with a file size limit"):
        execute(config, "dedup", dedup.run)
except UserError as err:
    print(json.dumps({"error": type(err).__name__, "message": str(err), "fix": err.fix}))
    sys.exit(2)
"""


def run_limited(config: PipelineConfig, limit: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}  # no .pyc over the limit (Python would skip it anyway)
    return subprocess.run(
        [sys.executable, "-c", LIMITED, config.model_dump_json(), str(limit)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_a_file_size_limit_fails_the_shard_that_does_not_fit_and_a_rerun_resumes(tmp_path):
    """Two small input shards and a large one (random text, which zstd cannot shrink): with a 64 KiB limit per file
    the large shard's output cannot be written; the kernel refuses pyarrow's write. The units that fit stay
    finished, and a rerun without the limit (space freed) redoes only the one that failed."""
    config = PipelineConfig(workspace=str(tmp_path / "ws"), crawl={"seeds": ["http://127.0.0.1/"]})
    write_documents_stage(config.workspace, "crawl", [random_documents(s, n) for s, n in enumerate([4, 4, 40])])

    failed = run_limited(config, 64 << 10)
    assert failed.returncode == 2, failed.stderr[-3000:]
    error = json.loads(failed.stdout.strip().splitlines()[-1])
    assert error["error"] == "ShardError"
    assert (
        error["message"]
        == f"cannot write {tmp_path / 'ws' / 'dedup' / 'documents' / 'part-00002.parquet'}: File too large"
    )
    assert "ulimit -f" in error["fix"] and "finished units are kept" in error["fix"]
    output = StageOutput(config.workspace, "dedup")
    assert output.read_manifest() is None and leftovers(tmp_path) == []
    finished = {info.name: info for unit in output.units() for infos in unit.shards.values() for info in infos}
    written = {p.name for p in output.path.rglob("*.parquet")}
    assert written <= finished.keys() and "part-00000.parquet" in written  # nothing partial; what fit is kept
    kept = {p: p.stat().st_mtime_ns for p in output.dataset_dir("documents").glob("*.parquet")}

    summary = execute(config, "dedup", dedup.run)  # the limit lifted
    assert summary.status == "ran" and summary.count_out == 48
    assert output.verify() == [] and leftovers(tmp_path) == []
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # the finished units' shards were not written again
    assert sorted(p.name for p in output.dataset_dir("documents").glob("*.parquet")) == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]


WRITER_LIMITED = """
import json, os, resource, signal, sys
from pathlib import Path
import pyarrow as pa
from gristmill.tasks.shards import ShardError, ShardWriter

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))
schema = pa.schema([pa.field("content", pa.binary(), nullable=False)])
try:
    with ShardWriter(Path(sys.argv[1]), schema, rows_per_shard=1000, max_bytes=1 << 30) as writer:
        for _ in range(8):  # 256 KiB that zstd cannot shrink, all in the shard's last write
            writer.write({"content": os.urandom(32 << 10)}, 32 << 10)
except ShardError as err:
    print(json.dumps({"message": str(err)}))
    sys.exit(2)
"""


def test_a_shard_writer_whose_last_write_does_not_fit_names_the_shard_and_leaves_no_temporary_file(tmp_path):
    """The rows of a small crawl all go out when the writer closes: a full disk there is a ShardError naming the
    shard, as anywhere else, and the open shard's temporary file is gone."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    out = tmp_path / "raw"
    done = subprocess.run(
        [sys.executable, "-c", WRITER_LIMITED, str(out)], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["message"] == (
        f"cannot write {out / 'part-00000.parquet'}: File too large"
    )
    assert leftovers(tmp_path) == [] and not any(out.iterdir())

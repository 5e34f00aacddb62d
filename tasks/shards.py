"""The one place that reads and writes shards and manifests.

Layout of a stage's output inside the workspace::

    <workspace>/<stage>/<dataset>/part-00000.parquet   one or more datasets per stage (documents, rejected, train…)
    <workspace>/<stage>/_progress/<unit>.json          one file per finished unit of work (resume)
    <workspace>/<stage>/manifest.json                   written last: the stage is complete when it exists

Every file is written under a temporary name and renamed into place, so a reader never sees half a shard and a
killed stage leaves only whole shards behind. A stage whose manifest matches its config and input is skipped; a
stage interrupted halfway keeps the units it finished (their `_progress` records) and redoes the rest.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from gristmill.conf.schema import UserError

log = logging.getLogger("gristmill.shards")

MANIFEST_SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
PROGRESS_DIR = "_progress"


class ShardInfo(BaseModel):
    name: str
    rows: int
    bytes: int
    sha256: str


class UnitRecord(BaseModel):
    """What one finished unit of work produced: its shards per dataset and its stats."""

    unit: str
    shards: dict[str, list[ShardInfo]] = Field(default_factory=dict)
    stats: dict[str, Any] = Field(default_factory=dict)


class Manifest(BaseModel):
    schema_version: int = MANIFEST_SCHEMA_VERSION
    stage: str
    config_hash: str
    input_hash: str | None
    code_version: str
    shards: dict[str, list[ShardInfo]]
    rows: dict[str, int]
    bytes: int
    files: dict[str, str] = Field(default_factory=dict, description="Other outputs, relative to the stage dir.")
    stats: dict[str, Any] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)
    mlflow_run_id: str | None = None
    created_at: str


# --------------------------------------------------------------------------------------------- atomic files


DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@contextmanager
def temporary_for(path: Path) -> Iterator[Path]:
    """A temporary name beside `path` to write to; renamed to `path` when the block ends, deleted if it fails.

    A full disk becomes a `ShardError` naming the file: nothing half-written stays behind, and what finished is kept.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in DISK_FULL:
            raise ShardError(
                f"cannot write {path}: {os.strerror(err.errno)}",
                fix=f"free space on the filesystem of {path.parent} (or move the workspace) and run again: "
                "finished units are kept",
            ) from err
        raise
    os.replace(tmp, path)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with temporary_for(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_shard(
    path: Path,
    batches: Iterable[pa.RecordBatch] | pa.Table,
    schema: pa.Schema,
    use_dictionary: bool | list[str] = True,
) -> ShardInfo:
    """Write one Parquet shard atomically and return its size and checksum. `use_dictionary` names the columns
    worth dictionary-encoding when not all are: on columns of hash values it only costs time."""
    rows = 0
    with temporary_for(path) as tmp:
        with pq.ParquetWriter(tmp, schema, compression="zstd", use_dictionary=use_dictionary) as writer:
            for batch in batches.to_batches() if isinstance(batches, pa.Table) else batches:
                writer.write_batch(batch.cast(schema) if batch.schema != schema else batch)
                rows += batch.num_rows
        info = ShardInfo(name=path.name, rows=rows, bytes=tmp.stat().st_size, sha256=file_sha256(tmp))
    return info


def shard_name(index: int, prefix: str = "part") -> str:
    return f"{prefix}-{index:05d}.parquet"


class ShardWriter:
    """Streams records into shards of at most `rows_per_shard` rows: `part-00000.parquet`, `part-00001…`.

    A `prefix` other than "part" lets several units write one dataset without name clashes. With `max_bytes`, a
    shard is also closed once the sizes passed to `write` add up to it: rows of very different sizes (web pages
    of 1 KB and 5 MB) then bound memory by bytes, not only by count.
    """

    def __init__(
        self,
        directory: Path,
        schema: pa.Schema,
        rows_per_shard: int,
        first_index: int = 0,
        prefix: str = "part",
        max_bytes: int | None = None,
    ) -> None:
        self.directory = directory
        self.prefix = prefix
        self.max_bytes = max_bytes
        self.buffered_bytes = 0
        self.schema = schema
        self.rows_per_shard = rows_per_shard
        self.next_index = first_index
        self.buffer: list[dict[str, Any]] = []
        self.shards: list[ShardInfo] = []

    def write(self, record: dict[str, Any], nbytes: int = 0) -> ShardInfo | None:
        self.buffer.append(record)
        self.buffered_bytes += nbytes
        full = len(self.buffer) >= self.rows_per_shard
        return self.flush() if full or (self.max_bytes and self.buffered_bytes >= self.max_bytes) else None

    def flush(self) -> ShardInfo | None:
        if not self.buffer:
            return None
        table = pa.Table.from_pylist(self.buffer, schema=self.schema)
        info = write_shard(self.directory / shard_name(self.next_index, self.prefix), table, self.schema)
        self.shards.append(info)
        self.buffer.clear()
        self.buffered_bytes = 0
        self.next_index += 1
        return info

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.flush()


# --------------------------------------------------------------------------------------------- reading


def iter_batches(
    paths: Iterable[Path], columns: list[str] | None = None, batch_size: int = 1024
) -> Iterator[pa.RecordBatch]:
    """Stream record batches from shards one at a time: memory is bounded by `batch_size`, not the corpus.

    A shard listed in its stage's manifest is checked against it (size and checksum) before it is read: a damaged
    or overwritten shard stops the reader with a `ShardError` naming it and the stage that wrote it.
    """
    for path in paths:
        verify_recorded_shard(path)
        try:
            parquet = pq.ParquetFile(path)
        except (OSError, pa.ArrowInvalid) as err:
            raise ShardError(f"{path}: not a readable Parquet shard: {err}") from err
        missing = [c for c in columns or [] if c not in parquet.schema_arrow.names]
        if missing:
            raise ShardError(f"{path}: missing column(s) {missing}; has {parquet.schema_arrow.names}")
        yield from parquet.iter_batches(batch_size=batch_size, columns=columns)


def iter_records(paths: Iterable[Path], columns: list[str] | None = None) -> Iterator[dict[str, Any]]:
    for batch in iter_batches(paths, columns):
        yield from batch.to_pylist()


class ShardError(UserError, RuntimeError):
    """A shard or manifest is missing, unreadable or not what its manifest says; the message names the file."""


# --------------------------------------------------------------------------------------------- verification


def shard_problem(path: Path, expected: ShardInfo) -> str | None:
    """What is wrong with a shard compared with its manifest entry (missing, size, checksum), or None."""
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size != expected.bytes:
        return f"{size:,} bytes where its manifest says {expected.bytes:,}"
    if file_sha256(path) != expected.sha256:
        return "its checksum differs from its manifest's (damaged or overwritten)"
    return None


def verify_recorded_shard(path: Path) -> None:
    """Check a shard against the manifest of the stage that wrote it, if that stage has finished."""
    recorded = _recorded_shards(path.parent.parent / MANIFEST_NAME)
    if recorded is None:
        return
    stage, shards = recorded
    expected = shards.get((path.parent.name, path.name))
    problem = shard_problem(path, expected) if expected else None
    if problem:
        raise damaged_shard(path, stage, problem)


def verified(paths: list[Path]) -> list[Path]:
    """The paths, each checked against its manifest: for readers that open shards themselves (the training loader)."""
    for path in paths:
        verify_recorded_shard(path)
    return paths


def damaged_shard(path: Path, stage: str, problem: str) -> ShardError:
    return ShardError(
        f"shard {path}: {problem}; it was written by stage {stage!r}",
        fix=f"run the pipeline again (or `--stage {stage}`): {stage} redoes the unit that wrote this shard",
    )


def _recorded_shards(manifest_path: Path) -> tuple[str, dict[tuple[str, str], ShardInfo]] | None:
    """(stage, {(dataset, shard name): info}) from a manifest; None where there is none. Cached per version."""
    try:
        stat = manifest_path.stat()
    except FileNotFoundError:
        return None
    return _manifest_index(manifest_path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=64)
def _manifest_index(
    manifest_path: Path, mtime_ns: int, size: int
) -> tuple[str, dict[tuple[str, str], ShardInfo]] | None:
    try:
        manifest = Manifest.model_validate_json(manifest_path.read_bytes())
    except (OSError, ValueError):
        return None  # the stage's own up-to-date check reports a broken manifest
    shards = {(dataset, info.name): info for dataset, infos in manifest.shards.items() for info in infos}
    return manifest.stage, shards


# --------------------------------------------------------------------------------------------- stages


@cache
def code_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        release = version("gristmill")
    except PackageNotFoundError:
        release = "0+unknown"
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{release}+g{sha}" if sha else release


class StageOutput:
    """A stage's directory in the workspace: up-to-date checks, per-unit progress, and the final manifest."""

    def __init__(self, workspace: str | Path, stage: str) -> None:
        self.stage = stage
        self.path = Path(workspace) / stage
        self.manifest_path = self.path / MANIFEST_NAME
        self._progress = self.path / PROGRESS_DIR
        self._started = time.time()
        self.damaged: list[str] = []  # shards found damaged by up-to-date and resume checks: their units run again

    def dataset_dir(self, dataset: str) -> Path:
        return self.path / dataset

    def read_manifest(self) -> Manifest | None:
        if not self.manifest_path.is_file():
            return None
        try:
            return Manifest.model_validate_json(self.manifest_path.read_text())
        except ValueError as err:
            raise ShardError(f"{self.manifest_path}: unreadable manifest: {err}") from err

    def input_hash(self) -> str:
        """Identity of this stage's output as an input to the next: the hash of its manifest's bytes."""
        if not self.manifest_path.is_file():
            raise ShardError(
                f"stage {self.stage!r} has no output at {self.path} (no {MANIFEST_NAME}); run it first",
                fix=f"run the whole pipeline, or `--stage {self.stage}` first",
            )
        return hashlib.sha256(self.manifest_path.read_bytes()).hexdigest()[:16]

    def up_to_date(self, config_hash: str, input_hash: str | None) -> Manifest | None:
        """The manifest if the stage finished with this config and input and all its files are intact."""
        manifest = self.read_manifest()
        if manifest is None or manifest.schema_version != MANIFEST_SCHEMA_VERSION:
            return None
        if manifest.config_hash != config_hash or manifest.input_hash != input_hash:
            return None
        if self.damaged_shards(manifest.shards):
            return None
        if any(not (self.path / rel).exists() for rel in manifest.files.values()):
            return None
        return manifest

    def damaged_shards(self, shards: dict[str, list[ShardInfo]]) -> list[str]:
        """Each listed shard that is missing or differs from its entry (size, then checksum), logged by name."""
        damaged = []
        for dataset, infos in shards.items():
            for info in infos:
                path = self.dataset_dir(dataset) / info.name
                problem = shard_problem(path, info)
                if problem:
                    log.warning("%s: shard %s: %s; its unit runs again", self.stage, path, problem)
                    damaged.append(f"{path.relative_to(self.path.parent)}: {problem}")
        self.damaged += [d for d in damaged if d not in self.damaged]
        return damaged

    def verify(self) -> list[str]:
        """Problems of a finished stage's output (damaged shards, missing files); empty when intact."""
        manifest = self.read_manifest()
        if manifest is None:
            return []
        problems = self.damaged_shards(manifest.shards)
        for rel in manifest.files.values():
            if not (self.path / rel).exists():
                problems.append(f"{self.stage}/{rel}: missing")
        return problems

    def begin(self, config_hash: str, input_hash: str | None) -> None:
        """Start (or resume) work: keep finished units only if they were made with this config and input."""
        key = {"config_hash": config_hash, "input_hash": input_hash}
        key_path = self._progress / "_key.json"
        if key_path.is_file() and json.loads(key_path.read_text()) == key:
            self.manifest_path.unlink(missing_ok=True)
            return
        if self.path.exists():
            shutil.rmtree(self.path)
        atomic_write_json(key_path, key)

    def finished_unit(self, unit: str) -> UnitRecord | None:
        path = self._progress / f"{unit}.json"
        if not path.is_file():
            return None
        record = UnitRecord.model_validate_json(path.read_text())
        return None if self.damaged_shards(record.shards) else record

    def finish_unit(self, record: UnitRecord) -> UnitRecord:
        atomic_write_json(self._progress / f"{record.unit}.json", record.model_dump(mode="json"))
        return record

    def units(self) -> list[UnitRecord]:
        if not self._progress.is_dir():
            return []
        paths = sorted(p for p in self._progress.glob("*.json") if not p.name.startswith("_"))
        return [UnitRecord.model_validate_json(p.read_text()) for p in paths]

    def commit(
        self,
        config_hash: str,
        input_hash: str | None,
        units: list[UnitRecord],
        stats: dict[str, Any],
        files: dict[str, str] | None = None,
        timings: dict[str, float] | None = None,
        mlflow_run_id: str | None = None,
    ) -> Manifest:
        """Write the manifest that marks the stage complete."""
        shards: dict[str, list[ShardInfo]] = {}
        for record in sorted(units, key=lambda r: r.unit):
            for dataset, infos in record.shards.items():
                shards.setdefault(dataset, []).extend(infos)
        manifest = Manifest(
            stage=self.stage,
            config_hash=config_hash,
            input_hash=input_hash,
            code_version=code_version(),
            shards=shards,
            rows={dataset: sum(s.rows for s in infos) for dataset, infos in shards.items()},
            bytes=sum(s.bytes for infos in shards.values() for s in infos),
            files=files or {},
            stats=stats,
            timings={"wall_s": round(time.time() - self._started, 3), **(timings or {})},
            mlflow_run_id=mlflow_run_id,
            created_at=datetime.now(UTC).isoformat(),
        )
        atomic_write_json(self.manifest_path, manifest.model_dump(mode="json"))
        return manifest

    def shard_paths(self, dataset: str, manifest: Manifest | None = None) -> list[Path]:
        """Paths of a finished stage's shards for one dataset, in order (empty list if it wrote none)."""
        manifest = manifest or self.read_manifest()
        if manifest is None:
            raise ShardError(
                f"stage {self.stage!r} has no manifest at {self.manifest_path}; run it first",
                fix=f"run the whole pipeline, or `--stage {self.stage}` first",
            )
        return [self.dataset_dir(dataset) / s.name for s in manifest.shards.get(dataset, [])]

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
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from functools import cache, lru_cache
from pathlib import Path
from types import TracebackType
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
    inputs: str | None = Field(None, description="Digest of what the unit read: it is reused only for the same.")
    collected: dict[str, list[ShardInfo]] = Field(
        default_factory=dict,
        description="Shards `gristmill gc` removed (old generations' intermediates): no longer listed or checked; "
        "what later units made from them is kept.",
    )


class Generation(BaseModel):
    """The shards one run added to a stage (a refresh's new and changed pages, and what later stages made of
    them). Earlier generations stay beside it; a shard rewritten by a later run moves to that run's generation."""

    number: int
    created_at: str
    shards: dict[str, list[ShardInfo]]


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
    digest: str | None = Field(
        None, description="Content digest of the output (shard checksums, files): the next stage's input hash."
    )
    generations: list[Generation] = Field(default_factory=list, description="The runs that added shards, oldest first.")


def content_digest(stage: str, shards: dict[str, list[ShardInfo]], files: dict[str, str], stage_dir: Path) -> str:
    """What a stage produced, by content only: shard names, rows and checksums, and the bytes of its other files.
    Not timings, run ids or dates, so a rebuild that writes identical shards has the same digest and nothing after
    it reruns."""
    digest = hashlib.sha256(stage.encode())
    for dataset in sorted(shards):
        for shard in shards[dataset]:
            digest.update(f"\n{dataset}/{shard.name} {shard.rows} {shard.sha256}".encode())
    for name in sorted(files):
        digest.update(f"\n{name} {path_sha256(stage_dir / files[name])}".encode())
    return digest.hexdigest()[:16]


def path_sha256(path: Path) -> str:
    """sha256 of a file, or of a directory's files (relative names and bytes, in sorted order)."""
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path)} {file_sha256(file)}\n".encode())
    return digest.hexdigest()


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
            room = (
                "raise the file size limit (`ulimit -f`) or write smaller shards (the stage's shard_rows)"
                if err.errno == errno.EFBIG
                else f"free space on the filesystem of {path.parent} (or move the workspace)"
            )
            raise ShardError(
                f"cannot write {path}: {os.strerror(err.errno)}", fix=f"{room} and run again: finished units are kept"
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
    uncompressed: list[str] | None = None,
) -> ShardInfo:
    """Write one Parquet shard atomically and return its size and checksum. `use_dictionary` names the columns
    worth dictionary-encoding when not all are, `uncompressed` the columns zstd is not worth running on: on
    columns of hash values both only cost time."""
    rows = 0
    with temporary_for(path) as tmp:
        with parquet_writer(tmp, schema, use_dictionary, uncompressed) as writer:
            for batch in batches.to_batches() if isinstance(batches, pa.Table) else batches:
                writer.write_batch(batch.cast(schema) if batch.schema != schema else batch)
                rows += batch.num_rows
        info = ShardInfo(name=path.name, rows=rows, bytes=tmp.stat().st_size, sha256=file_sha256(tmp))
    return info


def parquet_writer(
    path: Path, schema: pa.Schema, use_dictionary: bool | list[str] = True, uncompressed: list[str] | None = None
) -> pq.ParquetWriter:
    """The project's Parquet settings: zstd, except on the `uncompressed` columns."""
    compression: str | dict[str, str] = "zstd"
    if uncompressed:
        compression = {name: "none" if name in uncompressed else "zstd" for name in schema.names}
    return pq.ParquetWriter(path, schema, compression=compression, use_dictionary=use_dictionary)


def shard_name(index: int, prefix: str = "part") -> str:
    return f"{prefix}-{index:05d}.parquet"


BATCH_BYTES = 4 << 20  # ShardWriter with max_bytes: the sizes (passed to `write`) of the rows of one written batch


class ShardWriter:
    """Streams records into shards of at most `rows_per_shard` rows: `part-00000.parquet`, `part-00001…`.

    A `prefix` other than "part" lets several units write one dataset without name clashes. With `max_bytes`, a
    shard is also closed once the sizes passed to `write` add up to it, and rows go to the open shard (its temporary
    file) a batch of about BATCH_BYTES at a time: rows of very different sizes (web pages of 1 KB and 5 MB) then
    bound memory by bytes, one batch's, not by count. Holding a whole 29 MB shard of pages before writing it took the
    crawl stage's process up by 110 MB. A shard appears under its name only when it is complete; if the block
    fails, the open shard's temporary file is deleted and the finished shards stay. `use_dictionary`: as
    `write_shard`'s.
    """

    def __init__(
        self,
        directory: Path,
        schema: pa.Schema,
        rows_per_shard: int,
        first_index: int = 0,
        prefix: str = "part",
        max_bytes: int | None = None,
        use_dictionary: bool | list[str] = True,
    ) -> None:
        self.directory = directory
        self.prefix = prefix
        self.max_bytes = max_bytes
        self.use_dictionary = use_dictionary
        self.schema = schema
        self.rows_per_shard = rows_per_shard
        self.next_index = first_index
        self.buffer: list[dict[str, Any]] = []
        self.buffered_bytes = 0  # of the rows in `buffer`
        self.shards: list[ShardInfo] = []
        self._open: ExitStack | None = None  # the open shard's temporary file, renamed when it closes
        self._tmp: Path | None = None
        self._writer: pq.ParquetWriter | None = None
        self._rows = self._bytes = 0  # in the open shard, buffer included

    def write(self, record: dict[str, Any], nbytes: int = 0) -> ShardInfo | None:
        """Add a record; the shard it closed, if it was the last one the shard takes."""
        self.buffer.append(record)
        self.buffered_bytes += nbytes
        self._rows += 1
        self._bytes += nbytes
        if self._rows >= self.rows_per_shard or (self.max_bytes and self._bytes >= self.max_bytes):
            return self.flush()
        if self.max_bytes and self.buffered_bytes >= BATCH_BYTES:
            self._write_buffer()
        return None

    def flush(self) -> ShardInfo | None:
        """Close the open shard (written atomically: the temporary file renamed); None if it has no rows."""
        if self._rows == 0:
            return None
        self._write_buffer()
        assert self._open is not None and self._writer is not None and self._tmp is not None
        name = shard_name(self.next_index, self.prefix)
        try:
            self._writer.close()  # the footer: a full disk shows here too
            size, sha256 = self._tmp.stat().st_size, file_sha256(self._tmp)
        except BaseException as err:
            self._abort(err)
            raise
        info = ShardInfo(name=name, rows=self._rows, bytes=size, sha256=sha256)
        self._open.close()  # the rename
        self._open = self._writer = self._tmp = None
        self.shards.append(info)
        self.next_index += 1
        self._rows = self._bytes = 0
        return info

    def _write_buffer(self) -> None:
        if not self.buffer:
            return
        if self._open is None:
            self._open = ExitStack()
            path = self.directory / shard_name(self.next_index, self.prefix)
            self._tmp = self._open.enter_context(temporary_for(path))
        try:
            if self._writer is None:
                self._writer = self._open.enter_context(parquet_writer(self._tmp, self.schema, self.use_dictionary))
            self._writer.write_batch(pa.RecordBatch.from_pylist(self.buffer, schema=self.schema))
        except BaseException as err:
            self._abort(err)
            raise
        self.buffer.clear()
        self.buffered_bytes = 0

    def _abort(self, err: BaseException) -> None:
        """Close the open shard after `err`: its temporary file is deleted, and a full disk raises a ShardError
        naming the shard (from temporary_for)."""
        opened, self._open, self._writer, self._tmp = self._open, None, None, None
        if opened is not None:
            opened.__exit__(type(err), err, err.__traceback__)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.flush()
        elif exc is not None:  # the open shard's temporary file goes; a full disk becomes a ShardError
            self._abort(exc)


# --------------------------------------------------------------------------------------------- reading


def iter_batches(
    paths: Iterable[Path], columns: list[str] | None = None, batch_size: int = 1024
) -> Iterator[pa.RecordBatch]:
    """Stream record batches from shards one at a time: memory is bounded by `batch_size`, not the corpus.

    A shard listed in its stage's manifest is checked against it (size and checksum) in the same read that decodes
    it (`open_shard`), before its first batch: a damaged or overwritten shard stops the reader with a `ShardError`
    naming it and the stage that wrote it, before the unit reading it has produced anything.
    """
    for path in paths:
        with open_shard(path) as parquet:
            missing = [c for c in columns or [] if c not in parquet.schema_arrow.names]
            if missing:
                raise ShardError(f"{path}: missing column(s) {missing}; has {parquet.schema_arrow.names}")
            yield from parquet.iter_batches(batch_size=batch_size, columns=columns)


@contextmanager
def open_shard(path: Path) -> Iterator[pq.ParquetFile]:
    """A shard opened for reading, checked against its stage's manifest when that stage has finished.

    One read of the file, not a hash pass and then a read: the shard is memory-mapped, its sha256 taken over the
    mapping (which pulls every page in once), and pyarrow decodes from those same pages. The check comes first
    because Parquet is read footer first and then by column chunk, not front to back: a hash fed by pyarrow's own
    reads would see the bytes out of order, and only after rows had been handed out. A mapping, not a copy in
    memory, keeps memory bounded by the page cache, not the shard; shards are replaced by rename and never rewritten
    in place (the workspace lock keeps writers out), so the file cannot shrink under the mapping.
    """
    recorded = _recorded_shards(path.parent.parent / MANIFEST_NAME)
    expected = recorded[1].get((path.parent.name, path.name)) if recorded else None
    try:
        source = pa.memory_map(str(path)) if expected else pa.OSFile(str(path))
    except FileNotFoundError:
        if expected:
            raise damaged_shard(path, recorded[0], "missing") from None
        raise ShardError(f"{path}: no such shard") from None
    except OSError as err:  # a directory, no permission
        raise ShardError(f"{path}: not a readable Parquet shard: {err}") from err
    with source:
        if expected:
            problem = _mapped_problem(source, expected)
            if problem:
                raise damaged_shard(path, recorded[0], problem)
        try:
            parquet = pq.ParquetFile(source)
        except (OSError, pa.ArrowInvalid) as err:
            raise ShardError(f"{path}: not a readable Parquet shard: {err}") from err
        yield parquet


def _mapped_problem(source: pa.MemoryMappedFile, expected: ShardInfo) -> str | None:
    size = source.size()
    if size != expected.bytes:
        return f"{size:,} bytes where its manifest says {expected.bytes:,}"
    if size and hashlib.sha256(source.read_buffer()).hexdigest() != expected.sha256:
        return "its checksum differs from its manifest's (damaged or overwritten)"
    source.seek(0)
    return None


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
    """The paths, each checked against its manifest: for readers that open shards themselves (the training loader).

    A pass of its own, before training: the loader reads each shard again every epoch, in worker processes and a
    seeded order, and a damaged shard must stop the stage before its first step, not hours into it."""
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
        """Identity of this stage's output as an input to the next: its manifest's content digest."""
        manifest = self.read_manifest()
        if manifest is None:
            raise ShardError(
                f"stage {self.stage!r} has no output at {self.path} (no {MANIFEST_NAME}); run it first",
                fix=f"run the whole pipeline, or `--stage {self.stage}` first",
            )
        if manifest.digest is None:  # written before manifests carried a digest
            return hashlib.sha256(self.manifest_path.read_bytes()).hexdigest()[:16]
        return manifest.digest

    def shard_checksum(self, path: Path) -> str:
        """The sha256 the manifest records for one of this stage's shards."""
        if not hasattr(self, "_checksums"):
            manifest = self.read_manifest()
            shards = manifest.shards.items() if manifest else []
            self._checksums = {self.dataset_dir(d) / s.name: s.sha256 for d, infos in shards for s in infos}
        if path not in self._checksums:
            raise ShardError(f"{path}: not a shard in {self.manifest_path}")
        return self._checksums[path]

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

    def begin(self, config_hash: str, input_hash: str | None, incremental: bool = False) -> None:
        """Start (or resume) work: keep finished units only if they were made with this config and input. An
        `incremental` stage keeps them for another input too: each finished unit is then reused only when what it
        read is unchanged (`UnitRecord.inputs`), so only what changed is redone; other settings still wipe it."""
        key_path = self._progress / "_key.json"
        old = json.loads(key_path.read_text()) if key_path.is_file() else {}
        same_input = incremental or old.get("input_hash") == input_hash
        kept = old.get("config_hash") == config_hash and same_input
        if not kept and self.path.exists():
            shutil.rmtree(self.path)
        previous = self.read_manifest() if kept else None
        if previous is not None:  # kept until commit, also across a crash: the new generation is what differs
            atomic_write_json(self._generations_path, [g.model_dump(mode="json") for g in previous.generations])
        self.manifest_path.unlink(missing_ok=True)
        atomic_write_json(key_path, {"config_hash": config_hash, "input_hash": input_hash})

    def earlier_run_committed(self) -> bool:
        """Whether a finished (committed) run of this stage came before the work begun now: `begin` keeps its
        generations aside. Files an interrupted attempt left (a train stage's final weights) do not count."""
        return self._generations_path.is_file()

    @property
    def _generations_path(self) -> Path:
        return self._progress / "_generations.json"

    def forget_shards(self, dataset: str, names: set[str]) -> None:
        """Drop shards of one dataset from the manifest (their files were removed by `gristmill gc`). The digest
        stays: what the next stage reads is unchanged, so it stays up to date."""
        manifest = self.read_manifest()
        if manifest is None:
            return
        kept = [s for s in manifest.shards.get(dataset, []) if s.name not in names]
        shards = (
            {**manifest.shards, dataset: kept} if kept else {d: v for d, v in manifest.shards.items() if d != dataset}
        )
        generations = []
        for generation in manifest.generations:
            still = [s for s in generation.shards.get(dataset, []) if s.name not in names]
            other = {d: v for d, v in generation.shards.items() if d != dataset}
            generations.append(
                generation.model_copy(update={"shards": {**other, **({dataset: still} if still else {})}})
            )
        updated = manifest.model_copy(
            update={
                "shards": shards,
                "rows": {d: sum(s.rows for s in infos) for d, infos in shards.items()},
                "bytes": sum(s.bytes for infos in shards.values() for s in infos),
                "generations": generations,
            }
        )
        atomic_write_json(self.manifest_path, updated.model_dump(mode="json"))

    def forget_files(self, names: set[str]) -> None:
        """Drop files (relative to the stage directory) from the manifest's `files` (removed by `gristmill gc`).
        The digest stays, as with `forget_shards`."""
        manifest = self.read_manifest()
        if manifest is None:
            return
        files = {key: rel for key, rel in manifest.files.items() if rel not in names}
        atomic_write_json(self.manifest_path, manifest.model_copy(update={"files": files}).model_dump(mode="json"))

    def collect_shards(self, dataset: str, names: set[str]) -> None:
        """Move shards of one dataset from the records of the units that wrote them to their `collected` (their files
        were removed by `gristmill gc`): the units stay finished, and what was made from those shards stays."""
        for record in self.units():
            gone = [s for s in record.shards.get(dataset, []) if s.name in names]
            if not gone:
                continue
            still = [s for s in record.shards[dataset] if s.name not in names]
            shards = {d: v for d, v in record.shards.items() if d != dataset} | ({dataset: still} if still else {})
            collected = {**record.collected, dataset: [*record.collected.get(dataset, []), *gone]}
            self.finish_unit(record.model_copy(update={"shards": shards, "collected": collected}))

    def committed_unit(self, unit: str, inputs: str | None) -> UnitRecord | None:
        """A finished unit whose shards an earlier, completed run of this stage committed (not just a unit of an
        interrupted run): what an incremental stage may leave as it was."""
        record = self.finished_unit(unit, inputs)
        if record is None or not self._generations_path.is_file():
            return None
        earlier = {
            (d, s["name"], s["sha256"])
            for g in json.loads(self._generations_path.read_text())
            for d, infos in g["shards"].items()
            for s in infos
        }
        mine = {(d, s.name, s.sha256) for d, infos in record.shards.items() for s in infos}
        return record if mine and mine <= earlier else None

    def _generations(self, shards: dict[str, list[ShardInfo]]) -> list[Generation]:
        """The earlier generations, less shards no longer listed, and a new one of the shards none of them has."""
        earlier: list[Generation] = []
        if self._generations_path.is_file():
            earlier = [Generation.model_validate(g) for g in json.loads(self._generations_path.read_text())]
        listed = {(d, s.name, s.sha256) for d, infos in shards.items() for s in infos}
        seen: set[tuple[str, str, str]] = set()
        kept = []
        for generation in earlier:
            still = {d: [s for s in infos if (d, s.name, s.sha256) in listed] for d, infos in generation.shards.items()}
            still = {d: infos for d, infos in still.items() if infos}
            seen |= {(d, s.name, s.sha256) for d, infos in still.items() for s in infos}
            if still:
                kept.append(generation.model_copy(update={"shards": still}))
        new = {d: [s for s in infos if (d, s.name, s.sha256) not in seen] for d, infos in shards.items()}
        new = {d: infos for d, infos in new.items() if infos}
        if new or not kept:
            number = max((g.number for g in earlier), default=-1) + 1
            kept.append(Generation(number=number, created_at=datetime.now(UTC).isoformat(), shards=new))
        return kept

    def finished_unit(self, unit: str, inputs: str | None = None) -> UnitRecord | None:
        """The unit's record if it finished on these inputs and its shards are intact."""
        path = self._progress / f"{unit}.json"
        if not path.is_file():
            return None
        record = UnitRecord.model_validate_json(path.read_text())
        if record.inputs != inputs:
            return None
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
        files = files or {}
        manifest = Manifest(
            stage=self.stage,
            config_hash=config_hash,
            input_hash=input_hash,
            code_version=code_version(),
            shards=shards,
            rows={dataset: sum(s.rows for s in infos) for dataset, infos in shards.items()},
            bytes=sum(s.bytes for infos in shards.values() for s in infos),
            files=files,
            stats=stats,
            timings={"wall_s": round(time.time() - self._started, 3), **(timings or {})},
            mlflow_run_id=mlflow_run_id,
            created_at=datetime.now(UTC).isoformat(),
            digest=content_digest(self.stage, shards, files, self.path),
            generations=self._generations(shards),
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

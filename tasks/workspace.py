"""One run per workspace, and a clean start after a run that was killed.

`workspace_lock` holds `<workspace>/.gristmill.lock` for the length of a run: an exclusive `flock` on the file (the
kernel drops it when the holder dies, however it dies) plus the holder's host, PID, start time and command written
in it, so a second run fails at once with a message naming the holder. Finding the file written but unlocked means
its holder died: the lock is taken over with a warning, and `recover` clears what the dead run left behind - its
temporary shard files (`.<name>.tmp-<pid>`) and its MLflow runs still marked RUNNING.

The file itself is never deleted (a deleted lock file lets two processes lock two different files of one name);
a finished run empties it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from gristmill.conf.schema import STAGES, PipelineConfig, UserError

log = logging.getLogger("gristmill.workspace")

LOCK_NAME = ".gristmill.lock"
TEMPORARY_FILE = re.compile(r"^\..+\.tmp-\d+$")  # what shards.atomic_write_bytes and write_shard write first


class WorkspaceBusy(UserError):
    """Another run holds the workspace."""


@dataclass(frozen=True)
class LockHolder:
    host: str
    pid: int
    started_at: str
    command: str

    def __str__(self) -> str:
        return f"PID {self.pid} on {self.host}, started {self.started_at}: {self.command}"


_held: dict[Path, int] = {}  # workspace -> depth: a run that already holds its workspace may enter it again


@contextlib.contextmanager
def workspace_lock(workspace: str | Path, command: str) -> Iterator[LockHolder | None]:
    """Hold the workspace for one run; yields the dead holder taken over (None when the lock was free).

    Raises `WorkspaceBusy` naming the holder when another live run has it. Re-entrant within a process.
    """
    root = Path(workspace).resolve()
    if root in _held:
        _held[root] += 1
        try:
            yield None
        finally:
            _held[root] -= 1
        return
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        previous = _take(fd, path)
        me = LockHolder(socket.gethostname(), os.getpid(), datetime.now(UTC).isoformat(timespec="seconds"), command)
        _write(fd, json.dumps(asdict(me)).encode())
        _held[root] = 1
        try:
            yield previous
        finally:
            del _held[root]
            _write(fd, b"")
    finally:
        os.close(fd)  # closing drops the flock


def _take(fd: int, path: Path) -> LockHolder | None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read(fd)
        raise WorkspaceBusy(
            f"workspace {path.parent} is in use by another run ({holder or 'holder unknown'})",
            fix="wait for that run to finish or stop it; one run at a time per workspace",
        ) from None
    previous = _read(fd)
    if previous is None:
        return None
    if previous.host != socket.gethostname():
        # A lock of another host over a shared filesystem may not reach us: only its own host can tell it is dead.
        fcntl.flock(fd, fcntl.LOCK_UN)
        raise WorkspaceBusy(
            f"workspace {path.parent} is locked by a run on another host ({previous})",
            fix=f"if that run is over, empty or delete {path}",
        )
    log.warning("workspace %s: taking over the lock of a run that did not finish (%s)", path.parent, previous)
    return previous


def _read(fd: int) -> LockHolder | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 65536).decode(errors="replace").strip()
    if not text:
        return None
    try:
        return LockHolder(**json.loads(text))
    except (ValueError, TypeError):
        return LockHolder("?", 0, "?", f"unreadable lock file: {text[:80]!r}")


def _write(fd: int, data: bytes) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)


# --------------------------------------------------------------------------------------------- recovery


def remove_temporary_files(workspace: str | Path) -> list[Path]:
    """Delete the temporary files of writes a killed run never finished; call it holding the workspace lock."""
    removed = []
    for directory, _, names in os.walk(workspace):
        for name in names:
            if TEMPORARY_FILE.match(name):
                path = Path(directory) / name
                path.unlink(missing_ok=True)
                removed.append(path)
    if removed:
        log.warning("removed %d temporary file(s) left by a run that was killed, e.g. %s", len(removed), removed[0])
    return removed


def fail_abandoned_runs(config: PipelineConfig) -> list[str]:
    """Mark FAILED the MLflow runs a killed run of this workspace left RUNNING (an existing store only)."""
    from gristmill.tasks.tracking import Tracker, default_tracking_uri

    uri = config.tracking.uri or default_tracking_uri(config.workspace)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return []  # a fresh workspace: no store yet, and none is made here
    failed = Tracker(config.workspace, config.tracking.uri, config.tracking.experiment).fail_abandoned_runs()
    if failed:
        log.warning("marked %d MLflow run(s) FAILED: left RUNNING by a run that was killed", len(failed))
    return failed


@contextlib.contextmanager
def hold_workspace(config: PipelineConfig, command: str) -> Iterator[None]:
    """Lock the workspace for one run and clear what an earlier, killed run left behind."""
    with workspace_lock(config.workspace, command):
        if _held[Path(config.workspace).resolve()] == 1:  # the outermost holder recovers, once
            remove_temporary_files(config.workspace)
            fail_abandoned_runs(config)
        yield


def preflight(config: PipelineConfig, stage: str | None = None) -> None:
    """Check what can be checked before anything is written, so a missing bias file fails in seconds, not after
    the crawl and training: the files named in config (every stage's, or `stage`'s alone), the seeds' scope, the
    source globs and files a crawl will read, and, for one stage run alone, that its upstream has finished.
    Raises a `UserError` naming the key or file; the workspace is not touched."""
    from gristmill.tasks.crawl.inputs import check_seeds
    from gristmill.tasks.crawl.sources import check_source_file, expand_source, sources_digest
    from gristmill.tasks.shards import StageOutput
    from gristmill.tasks.stage import UPSTREAM, stage_fingerprint

    for name in STAGES if stage is None else (stage,):
        stage_fingerprint(config, name)  # reads every file the section names
    if stage in (None, "crawl"):
        check_seeds(config.crawl)
        for source in config.crawl.sources:
            for url in expand_source(source):
                check_source_file(url, source)
        sources_digest(config.crawl.sources)
    upstream = UPSTREAM[stage] if stage else None
    if upstream:
        StageOutput(config.workspace, upstream).input_hash()

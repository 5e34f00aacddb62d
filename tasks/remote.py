"""A workspace in object storage (`workspace: s3://bucket/prefix`, or any fsspec URL) through a local cache.

The stages read and write a local directory (the cache) exactly as they do for a local workspace; around each stage
the flows call `pull` (bring the stages it reads, and its own unfinished work, from the store when the cached copy
differs) and `push` (upload the stage's files, the manifest last, so a reader of the store never sees a manifest
whose shards are not there yet). The store is the truth: a fresh machine with an empty cache finds every finished
stage up to date after pulling it. Checkpoints travel with the train stage's directory like any other file.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import fsspec

from gristmill.tasks.shards import MANIFEST_NAME

log = logging.getLogger("gristmill.remote")


def is_remote(workspace: str) -> bool:
    return "://" in workspace and not workspace.startswith("file://")


def default_cache(workspace: str) -> Path:
    """`$XDG_CACHE_HOME/gristmill/<hash of the URL>`: one cache per store location."""
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gristmill"
    return root / hashlib.sha256(workspace.encode()).hexdigest()[:16]


class RemoteWorkspace:
    """The store at `url` and its local mirror `cache`."""

    def __init__(self, url: str, cache: Path) -> None:
        self.url = url.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.cache = Path(cache)

    def _remote(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def pull(self, stage: str) -> bool:
        """Mirror the store's copy of `stage` into the cache unless the cached manifest is the same; True if it
        downloaded anything. A stage with no manifest in the store (never finished) is left as cached."""
        remote_manifest = self._remote(stage, MANIFEST_NAME)
        if not self.fs.exists(remote_manifest):
            return False
        local = self.cache / stage
        local_manifest = local / MANIFEST_NAME
        remote_bytes = self.fs.cat_file(remote_manifest)
        if local_manifest.is_file() and local_manifest.read_bytes() == remote_bytes:
            return False
        log.info("pulling %s from %s", stage, self.url)
        for remote_path, info in self.fs.find(self._remote(stage), detail=True).items():
            relative = remote_path[len(self._remote(stage)) + 1 :]
            if relative == MANIFEST_NAME:
                continue
            target = local / relative
            if _changed(target, info["size"]):
                target.parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(remote_path, str(target))
        local_manifest.parent.mkdir(parents=True, exist_ok=True)
        local_manifest.write_bytes(remote_bytes)  # last, as in the store: the cached stage is complete
        return True

    def push(self, stage: str) -> int:
        """Upload the cached stage: new or changed files first, then the manifest; files the store has and the cache
        no longer has (an earlier config's shards) are removed. Returns the number of files uploaded."""
        local = self.cache / stage
        if not local.is_dir():
            return 0
        remote_stage = self._remote(stage)
        remote_sizes = {p: info["size"] for p, info in self.fs.find(remote_stage, detail=True).items()}
        uploaded = 0
        files = sorted(p for p in local.rglob("*") if p.is_file() and p.name != MANIFEST_NAME)
        for path in files:
            target = self._remote(stage, *path.relative_to(local).parts)
            if _changed(path, remote_sizes.get(target)):
                self.fs.put_file(str(path), target)
                uploaded += 1
        wanted = {self._remote(stage, *p.relative_to(local).parts) for p in files}
        if (local / MANIFEST_NAME).is_file():
            wanted.add(self._remote(stage, MANIFEST_NAME))  # else an earlier run's manifest must go: not complete
        stale = [p for p in remote_sizes if p not in wanted]
        if stale:
            self.fs.rm(stale)
        if (local / MANIFEST_NAME).is_file():
            self.fs.put_file(str(local / MANIFEST_NAME), self._remote(stage, MANIFEST_NAME))
            uploaded += 1
        log.info("pushed %s to %s (%d files)", stage, self.url, uploaded)
        return uploaded


def _changed(local: Path, other_size: int | None) -> bool:
    """Copy unless both sides have the file at the same size. Shard names are fixed per unit and a rewritten shard
    changes size in practice; the small JSON records (progress, keys) can keep their size, so they always copy."""
    if other_size is None or not local.is_file() or local.suffix == ".json":
        return True
    return local.stat().st_size != other_size

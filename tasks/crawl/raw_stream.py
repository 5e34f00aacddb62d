"""Raw shards written while the crawl stores its pages, so that the fetch unit ends with the crawl.

Written after the crawl from its state, the shards took the stage's process one core for a third of a second per
400 documentation pages (82 MB to read back from SQLite and compress) while the extraction workers sat idle, and
the extract units could not start before it was done. Here a thread of its own writes each page as the crawl
commits it, with the same writer, in the same order (the state's: commit order), so the shards are the ones the
state would give, byte for byte.

Opportunistic: a page that finds more than MAX_PENDING_BYTES of bodies still waiting for the writer, or a write
that fails, abandons the stream, and the fetch unit writes the shards from the state as before (`finish` returns
None). A resumed crawl does not stream at all: its earlier pages are only in the state.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gristmill.tasks.shards import ShardInfo, ShardWriter

logger = logging.getLogger("gristmill.crawl")

MAX_PENDING_BYTES = 64 << 20  # bodies queued for the writer: a bound on what a slow disk costs in memory


class RawShardStream:
    """Feeds `writer` (a ShardWriter of RAW_SCHEMA records) from the crawl's event loop without blocking it."""

    def __init__(self, writer: ShardWriter) -> None:
        self.writer = writer
        self.abandoned = False
        self._pending = 0  # body bytes submitted and not yet written
        self._lock = threading.Lock()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="raw-shards")  # one: rows in order

    def write(self, record: dict[str, Any]) -> None:
        size = len(record["content"] or b"")
        with self._lock:
            if self.abandoned:
                return
            if self._pending and self._pending + size > MAX_PENDING_BYTES:
                self._abandon("the writer fell behind")
                return
            self._pending += size
        self._thread.submit(self._write, record, size)

    def _write(self, record: dict[str, Any], size: int) -> None:
        try:
            if not self.abandoned:
                self.writer.write(record, size)
        except Exception as error:  # a full disk, say: the state still has every page
            with self._lock:
                self._abandon(f"{type(error).__name__}: {error}")
        finally:
            with self._lock:
                self._pending -= size

    def _abandon(self, why: str) -> None:
        if not self.abandoned:
            logger.warning("raw shards: writing them during the crawl stopped (%s); they are written after it", why)
        self.abandoned = True

    def finish(self) -> list[ShardInfo] | None:
        """The shards, the last one closed; None when the stream was abandoned (write them from the state)."""
        self._thread.shutdown(wait=True)
        if not self.abandoned:
            try:
                self.writer.flush()
                return self.writer.shards
            except Exception as error:
                self._abandon(f"{type(error).__name__}: {error}")
        self.writer.discard()
        return None

    def abort(self) -> None:
        """The crawl failed: stop, and delete the open shard's temporary file."""
        with self._lock:
            self.abandoned = True
        self._thread.shutdown(wait=True, cancel_futures=True)
        self.writer.discard()

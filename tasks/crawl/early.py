"""Extraction while the crawl still fetches: each stored page goes to the extraction pool as it arrives, so fetching
and extracting overlap instead of running one after the other (the extract units used to start only when the fetch
unit had finished).

Bounded. At most EARLY_BODY_BYTES of bodies wait in this process for a worker: a page that finds that much waiting
keeps only its place in the queue, and its body is read back from the crawl state when there is room (without the
state, it is left to its shard's extract unit). Fetching outruns extraction on large pages, and the pages left to
the extract units were extracted after the crawl, a few at a time (on 400 documentation pages, 20-70 of them):
reading them back keeps both workers busy to the end (docs/benchmarks.md, "Crawl speed"). At most EARLY_TEXT_CHARS of
extracted text is held (past that, the rest waits for the extract units).

An extract unit takes a page's early document only when the record is the same fetch (the page's URL and fetch time,
which the crawl state stores with the body, and a read-back asks for) and the early extraction succeeded within its
time limit; everything else it extracts itself. The documents are therefore the ones the extract units would have
made, with or without this, and the extract units need not read the bodies of the pages extracted already. The
stage's one pool serves both (`EarlyDocuments.pool`).
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
from typing import Any

from gristmill.conf.schema import CrawlConfig
from gristmill.tasks.crawl.extraction_pool import ExtractionPool, extraction_worker
from gristmill.tasks.crawl.state import StoredBodies

logger = logging.getLogger("gristmill.crawl.extract")

EARLY_TEXT_CHARS = 64_000_000  # text held for the extract units: a bound on the stage process's memory
EARLY_BODY_BYTES = 16_000_000  # each page in flight holds its body in this process until a worker is done with it


class EarlyDocuments:
    """Documents extracted during the fetch, by doc_id, for the extract units, and the stage's extraction pool.
    Picklable once the fetch is done (a process runner sends it to the units): without the pool, which stays."""

    def __init__(self, pool: ExtractionPool | None = None) -> None:
        self.pool = pool
        self.documents: dict[str, dict[str, Any]] = {}  # by doc_id
        self.text_chars = 0

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "pool": None}

    def add(self, document: dict[str, Any]) -> None:
        self.documents[document["doc_id"]] = document
        self.text_chars += len(document.get("text") or "")

    def take(self, raw: dict[str, Any]) -> dict[str, Any] | None:
        """The early document of this record (which need not hold its body) if it was made from the same fetch:
        the same page fetched at the same time. Handed out once (memory)."""
        found = self.documents.pop(raw["doc_id"], None)
        if found is None or found["fetched_at"] != raw["fetched_at"]:
            return None
        return found

    def __len__(self) -> int:
        return len(self.documents)


class EarlyExtraction:
    """Sends stored pages to `pool` as the crawl stores them and collects their documents into `early`.

    `submit` is called from the crawl's event loop and never blocks: a thread of its own hands the pages to the
    pool (the pool's first page waits for its workers to start, 0.7 s on a quiet machine, which held up every fetch
    when the event loop did it) and waits for room for the bodies it reads back with `stored_body`. Results arrive
    on the pool's threads."""

    def __init__(
        self,
        pool: ExtractionPool,
        cfg: CrawlConfig,
        early: EarlyDocuments,
        stored_body: StoredBodies | None = None,
    ) -> None:
        self.pool, self.cfg, self.early = pool, cfg, early
        self._stored_body = stored_body  # a stored page's body by URL and fetch time; called on the feeding thread only
        self._worker = extraction_worker(cfg)
        self._lock = threading.Condition()
        # (record, body bytes, whether its body is to be read back)
        self._waiting: queue.SimpleQueue[tuple[dict[str, Any], int, bool] | None] = queue.SimpleQueue()
        self._in_flight: dict[concurrent.futures.Future, int] = {}  # -> body bytes
        self._bytes = 0  # bodies held: queued with their record, or in a worker
        self.submitted = self.skipped = self.read_back = 0
        self.broken = False
        self._feeder = threading.Thread(target=self._feed, name="early-extraction", daemon=True)
        self._feeder.start()

    def submit(self, raw: dict[str, Any]) -> None:
        size = len(raw["content"] or b"")
        with self._lock:
            if self.broken:
                return
            room = not self._bytes or self._bytes + size <= EARLY_BODY_BYTES
            if self.early.text_chars >= EARLY_TEXT_CHARS or not (room or self._stored_body):
                self.skipped += 1
                return
            if room:
                self._bytes += size
            self.submitted += 1
        self._waiting.put(({**raw, "content": None}, size, True) if not room else (raw, size, False))

    def _feed(self) -> None:
        try:
            self._hand_on()
        finally:
            if self._stored_body is not None:
                self._stored_body.close()  # on the thread that opened it

    def _hand_on(self) -> None:
        try:
            self.pool.start()  # the workers start while the crawl fetches its first pages
        except Exception as error:
            self._stop(error)
        while (item := self._waiting.get()) is not None:
            raw, size, deferred = item
            if self.broken:  # its extract unit extracts it
                if not deferred:
                    self._release(size)
                continue
            if deferred and (raw := self._read_back(raw, size)) is None:
                continue
            try:
                future = self.pool.submit(
                    raw, self.cfg.extractor, self.cfg.extract_timeout_s, self._worker, self.cfg.extract_timeout_s_per_mb
                )
            except Exception as error:  # the pool broke: a help, not the crawl's business; the units extract
                self._stop(error)
                self._release(size)
                continue
            with self._lock:
                self._in_flight[future] = size
            future.add_done_callback(self._collect)

    def _read_back(self, raw: dict[str, Any], size: int) -> dict[str, Any] | None:
        """The record with its body read back from the crawl state, once there is room for it (or nothing is in a
        worker: the bodies held then are the queue's, which wait behind this one)."""
        assert self._stored_body is not None
        with self._lock:
            self._lock.wait_for(lambda: not self._in_flight or self._bytes + size <= EARLY_BODY_BYTES)
            self._bytes += size
        try:
            body = self._stored_body(raw["url"], raw["fetched_at"])
        except Exception as error:  # an unreadable state file: a help, not the crawl's business; the units extract
            self._stop(error)
            body = None
        if body is None or len(body) != size:  # not the page the crawl stored (cannot happen): its unit extracts
            self._release(size)
            with self._lock:
                self.skipped += 1
            return None
        self.read_back += 1
        return {**raw, "content": body}

    def _stop(self, error: Exception) -> None:
        logger.warning("extraction during the fetch stopped (%s); the extract units do the rest", error)
        self.broken = True

    def _release(self, size: int) -> None:
        with self._lock:
            self._bytes -= size

    def _collect(self, future: concurrent.futures.Future) -> None:
        with self._lock:
            self._bytes -= self._in_flight.pop(future, 0)
            self._lock.notify_all()
            if future.cancelled() or future.exception() is not None:
                return  # timed out or failed: its extract unit tries again, with the time-limit fallback
            self.early.add(future.result())

    def close(self, abandon: bool = False) -> None:
        """No more pages: the feeding thread ends once it has handed on the ones queued (`abandon`: dropped)."""
        if abandon:
            self.broken = True
        self._waiting.put(None)
        self._feeder.join()

    def wait(self) -> None:
        """Let the pages in flight finish (their extract unit would wait for them anyway)."""
        self.close()
        with self._lock:  # until every page's callback has run (a future counts as done before its callbacks)
            self._lock.wait_for(lambda: not self._in_flight)
        logger.info(
            "extracted %d of the crawl's pages while it fetched (%d read back from the crawl state when the pool had "
            "room; %d left to the extract units)",
            len(self.early),
            self.read_back,
            self.skipped,
        )

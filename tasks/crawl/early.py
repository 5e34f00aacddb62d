"""Extraction while the crawl still fetches: each stored page goes to the extraction pool as it arrives, so fetching
and extracting overlap instead of running one after the other (the extract units used to start only when the fetch
unit had finished).

A page goes to the pool without its body: the worker reads it from the crawl state, which the crawl commits before
it hands the page on (`stored_page_worker`). Bodies through the pool's pipe cost this process a copy and, worse,
left workers waiting: a 2 MB body crosses a 64 KB pipe in 32 writes, each waiting for the GIL this process's event
loop holds (docs/benchmarks.md, "Crawl speed"). It also bounds memory without a budget: what waits for a worker is
a few hundred bytes a page. At most EARLY_TEXT_CHARS of extracted text is held (past that, the rest waits for the
extract units).

An extract unit takes a page's early document only when the record is the same fetch (the page's URL and fetch time,
which the crawl state stores with the body, and by which the worker reads it) and the early extraction succeeded
within its time limit; everything else it extracts itself. The documents are therefore the ones the extract units
would have made, with or without this, and the extract units need not read the bodies of the pages extracted
already. The stage's one pool serves both (`EarlyDocuments.pool`).
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
from pathlib import Path
from typing import Any

from gristmill.conf.schema import CrawlConfig
from gristmill.tasks.crawl.extraction_pool import ExtractionPool, stored_page_worker, time_limit

logger = logging.getLogger("gristmill.crawl.extract")

EARLY_TEXT_CHARS = 64_000_000  # text held for the extract units: a bound on the stage process's memory


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
        found = self.documents.get(raw["doc_id"])
        if found is None or found["fetched_at"] != raw["fetched_at"]:
            return None  # another fetch's (kept: a later record may be its own)
        del self.documents[raw["doc_id"]]
        return found

    def __len__(self) -> int:
        return len(self.documents)


class EarlyExtraction:
    """Sends stored pages to `pool` as the crawl stores them and collects their documents into `early`.

    `submit` is called from the crawl's event loop and never blocks: a thread of its own hands the pages to the
    pool (the pool's first page waits for its workers to start, 0.7 s on a quiet machine, which held up every fetch
    when the event loop did it). Workers read the bodies from the crawl state at `state_path`. Results arrive on the
    pool's threads."""

    def __init__(self, pool: ExtractionPool, cfg: CrawlConfig, early: EarlyDocuments, state_path: Path) -> None:
        self.pool, self.cfg, self.early = pool, cfg, early
        self._worker = stored_page_worker(cfg, state_path)
        self._lock = threading.Condition()
        # (record without its body, its time limit: set by the body's size, while the record still has it)
        self._waiting: queue.SimpleQueue[tuple[dict[str, Any], float] | None] = queue.SimpleQueue()
        self._in_flight: set[concurrent.futures.Future] = set()
        self.submitted = self.skipped = self.extracted = 0
        self.broken = False
        self._feeder = threading.Thread(target=self._hand_on, name="early-extraction", daemon=True)
        self._feeder.start()

    def submit(self, raw: dict[str, Any]) -> None:
        """One stored and committed page (its record as the crawl state holds it)."""
        with self._lock:
            if self.broken:
                return
            if self.early.text_chars >= EARLY_TEXT_CHARS:
                self.skipped += 1
                return
            self.submitted += 1
        limit = time_limit(raw, self.cfg.extract_timeout_s, self.cfg.extract_timeout_s_per_mb)
        self._waiting.put(({**raw, "content": None}, limit))

    def _hand_on(self) -> None:
        try:
            self.pool.start()  # the workers start while the crawl fetches its first pages
        except Exception as error:
            self._stop(error)
        while (item := self._waiting.get()) is not None:
            if self.broken:  # its extract unit extracts it
                continue
            raw, limit = item
            try:
                future = self.pool.submit(raw, self.cfg.extractor, limit, self._worker, timeout_s_per_mb=0.0)
            except Exception as error:  # the pool broke: a help, not the crawl's business; the units extract
                self._stop(error)
                continue
            with self._lock:
                self._in_flight.add(future)
            future.add_done_callback(self._collect)

    def _stop(self, error: Exception) -> None:
        logger.warning("extraction during the fetch stopped (%s); the extract units do the rest", error)
        self.broken = True

    def _collect(self, future: concurrent.futures.Future) -> None:
        with self._lock:
            self._in_flight.discard(future)
            self._lock.notify_all()
            if future.cancelled() or future.exception() is not None:
                # timed out or failed (a body the state no longer holds): its extract unit tries again, with the
                # time-limit fallback
                return
            self.early.add(future.result())
            self.extracted += 1

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
            "extracted %d of the crawl's pages while it fetched (%d left to the extract units)",
            self.extracted,
            self.submitted + self.skipped - self.extracted,
        )

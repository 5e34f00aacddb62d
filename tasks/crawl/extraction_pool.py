"""Extraction in worker processes, each page within a limit on the CPU time it may use (growing with its size), in
input order.

One pathological page cannot stall a shard: a page that runs past its limit has its worker killed and replaced,
and is extracted again with resiliparse (a few milliseconds where trafilatura takes seconds), so it still has text.
The limit counts the CPU a page's extraction used, not the seconds that passed: a busy machine slows a page down
without cutting it.
"""

from __future__ import annotations

import concurrent.futures
import functools
import io
import logging
import multiprocessing
import multiprocessing.context
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from multiprocessing import forkserver, popen_forkserver, reduction, spawn, util
from multiprocessing.context import set_spawning_popen
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pebble

from gristmill.tasks.crawl.extract import EXTRACTORS, document_from_raw, document_without_text
from gristmill.tasks.crawl.memory import give_back_free_memory
from gristmill.tasks.crawl.state import StoredBodies

if TYPE_CHECKING:  # not at run time: the forkserver imports this module, and every import is its workers' memory
    from gristmill.conf.schema import CrawlConfig

logger = logging.getLogger("gristmill.crawl.extract")

FALLBACK_EXTRACTOR = "resiliparse"


def extraction_worker(cfg: CrawlConfig) -> Callable[[dict, str], dict]:
    """`document_from_raw` with the crawl's settings, in a worker (a partial of a module-level function: it
    pickles)."""
    return functools.partial(extract_in_worker, long_text_chars=cfg.extract_long_text_chars)


# A worker's heap grows with the largest page it has parsed (a 2.4 MB page's trees take tens of MB) and the C
# allocator keeps what was freed: on 400 documentation pages the two workers stayed at 70-80 MB each, 35-50 MB with
# the freed memory handed back after each large page (malloc_trim takes about a millisecond).
LARGE_PAGE_BYTES = 1_000_000


def stored_page_worker(cfg: CrawlConfig, state_path: Path) -> Callable[[dict, str], dict]:
    """`extraction_worker` for a record sent without its body, which the worker reads from the crawl state."""
    return functools.partial(
        # absolute: a workspace may be relative, and a worker's working directory need not be the crawl's
        extract_stored_page,
        state_path=str(state_path.resolve()),
        long_text_chars=cfg.extract_long_text_chars,
    )


def extract_stored_page(raw: dict, extractor: str, state_path: str, long_text_chars: int) -> dict:
    body = _stored_bodies(state_path)(raw["url"], raw["fetched_at"])
    if body is None:
        raise LookupError(f"{raw['url']}: no body fetched at {raw['fetched_at']} in the crawl state {state_path}")
    return extract_in_worker({**raw, "content": body}, extractor, long_text_chars)


@functools.lru_cache(maxsize=1)
def _stored_bodies(state_path: str) -> StoredBodies:
    """The worker's one read-only connection to the crawl state (a worker serves one stage's pool)."""
    return StoredBodies(Path(state_path))


def extract_in_worker(raw: dict, extractor: str, long_text_chars: int) -> dict:
    document = document_from_raw(raw, extractor, long_text_chars)
    if len(raw["content"] or b"") > LARGE_PAGE_BYTES:
        give_back_free_memory()
    return document


# A page's limit counts the CPU its extraction used, not the wall-clock time that passed: on a busy machine a worker
# gets part of a core, and its pages take longer without being any harder (under load, the wall-clock limit cut 7
# pages of a documentation site at 5 s). A worker that makes no progress at all (blocked, not computing) is cut after
# this many times its page's limit in wall-clock time: enough for a worker that shares its core with a dozen busy
# processes.
WALL_CLOCK_FACTOR = 20


def start_worker() -> None:
    """A worker's start (the pool's initializer): SIGPROF's default action ends it (the CPU limit), whatever
    handler it may have inherited. (The pool's processes come from a forkserver, which only POSIX systems have,
    and they all have SIGPROF and its timer.)"""
    signal.signal(signal.SIGPROF, signal.SIG_DFL)


def within_cpu_limit(worker: Callable[[dict, str], dict], raw: dict, extractor: str, limit_s: float) -> dict:
    """`worker(raw, extractor)` in a worker, which the kernel ends (SIGPROF) once the call has used `limit_s` seconds
    of CPU: a signal's default action stops a process stuck in C code too, where no Python handler would run."""
    signal.setitimer(signal.ITIMER_PROF, limit_s)
    try:
        return worker(raw, extractor)
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)


def time_limit(raw: dict, timeout_s: float, timeout_s_per_mb: float) -> float:
    """The CPU seconds a page may use: the base limit, plus an allowance per MB of body (extraction time grows with
    the page: trafilatura took up to 2 s on 2.5 MB documentation pages on a quiet machine, 7 s under load)."""
    return timeout_s + timeout_s_per_mb * len(raw["content"] or b"") / 1e6  # None: a record without its body


class ExtractionPool:
    """Worker processes that turn RAW_SCHEMA records into DOCUMENT_SCHEMA records, each within a CPU-time limit.

    A page that takes longer is extracted again with resiliparse and yielded with that text and the reason; a page
    that crashes its worker is yielded with text None and the reason. The worker is killed and replaced (pebble).
    Processes come from a forkserver, never fork(): the caller may run in a Prefect worker thread, and forking a
    threaded process can copy held locks into the child.
    """

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.workers = workers
        self._pool: pebble.ProcessPool | None = None
        self._in_flight: set[concurrent.futures.Future] = set()

    def __enter__(self) -> ExtractionPool:
        context = multiprocessing.get_context("forkserver")
        # Workers forked by the server start with the extractors imported and warmed up (a replaced worker too:
        # see tasks/crawl/warm_up.py for why that matters to the time limit), and without this process's __main__
        # (WorkerContext). Takes effect only if this process has not started its forkserver yet; harmless otherwise.
        if WITHOUT_MAIN:
            context.set_forkserver_preload([__name__, "gristmill.tasks.crawl.warm_up"])
            context = WorkerContext()
        else:  # a Python whose process start we have not checked: the server imports __main__ once, for all workers
            context.set_forkserver_preload(["__main__", __name__, "gristmill.tasks.crawl.warm_up"])
        self._pool = pebble.ProcessPool(max_workers=self.workers, context=context, initializer=start_worker)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for future in list(self._in_flight):  # a map() its consumer left unfinished: do not wait for its pages
            future.cancel()
        self._in_flight.clear()
        if exc_type is None:
            pool.close()
        else:
            pool.stop()
        pool.join()

    def map(
        self,
        raws: Iterable[dict],
        extractor: str,
        timeout_s: float,
        worker: Callable[[dict, str], dict] = document_from_raw,
        timeout_s_per_mb: float = 0.0,
        ready: Callable[[dict], dict | None] | None = None,
    ) -> Iterator[tuple[dict, str | None]]:
        """(document, problem) for each raw record, in input order; problem is None, or what went wrong
        ("extraction timed out after 5.0 s of CPU; resiliparse's text kept", "extraction failed: ValueError: ...").
        `worker` must be a module-level function (it is pickled by reference). At most 4 x workers records are in
        flight. `ready` is asked once for each record, in input order, as the record is taken: it may hold the record's
        document already (extracted while the crawl fetched), which is used as is (and then the record need not hold
        its body)."""
        self._entered("map")
        if extractor not in EXTRACTORS:
            raise ValueError(f"unknown extractor {extractor!r}; choose one of {', '.join(EXTRACTORS)}")
        window: deque[tuple[dict, float, concurrent.futures.Future]] = deque()
        records = iter(raws)
        try:
            while True:
                while len(window) < 4 * self.workers:
                    raw = next(records, None)
                    if raw is None:
                        break
                    limit = time_limit(raw, timeout_s, timeout_s_per_mb)
                    document = ready(raw) if ready is not None else None
                    if document is not None:
                        window.append((raw, limit, _done(document)))
                    else:
                        window.append((raw, limit, self._schedule(worker, raw, extractor, limit)))
                if not window:
                    return
                raw, limit, future = window.popleft()
                outcome = self._outcome(raw, future, limit)
                if (
                    outcome[1] is not None
                    and outcome[1].startswith("extraction timed out")
                    and (extractor != FALLBACK_EXTRACTOR)
                ):
                    outcome = self._fallback(worker, raw, limit, outcome[1])
                yield outcome
        finally:
            for _, _, future in window:  # the consumer stopped early: do not leave work running
                future.cancel()
                self._in_flight.discard(future)

    def start(self) -> None:
        """Start the workers now (they start at the first page otherwise, which then waits for them)."""
        self._entered("start").schedule(os.getpid)

    def submit(
        self, raw: dict, extractor: str, timeout_s: float, worker: Callable[[dict, str], dict], timeout_s_per_mb: float
    ) -> concurrent.futures.Future:
        """One record, on its own (no time-limit fallback): the future's result is its document, or the error."""
        self._entered("submit")
        future = self._schedule(worker, raw, extractor, time_limit(raw, timeout_s, timeout_s_per_mb))
        future.add_done_callback(self._in_flight.discard)  # its caller keeps the future; the pool need not
        return future

    def _entered(self, method: str) -> pebble.ProcessPool:
        if self._pool is None:
            raise RuntimeError(f"ExtractionPool.{method} needs the pool entered: use `with ExtractionPool(n) as pool:`")
        return self._pool

    def _schedule(
        self, worker: Callable[[dict, str], dict], raw: dict, extractor: str, limit: float
    ) -> concurrent.futures.Future:
        future = self._entered("_schedule").schedule(
            within_cpu_limit, args=(worker, raw, extractor, limit), timeout=limit * WALL_CLOCK_FACTOR
        )
        self._in_flight.add(future)
        return future

    def _fallback(
        self, worker: Callable[[dict, str], dict], raw: dict, limit: float, problem: str
    ) -> tuple[dict, str | None]:
        """The page again with resiliparse: its text, rather than none, with the first attempt's problem."""
        future = self._schedule(worker, raw, FALLBACK_EXTRACTOR, limit)
        document, second = self._outcome(raw, future, limit)
        if second is not None:
            return document, f"{problem}; {FALLBACK_EXTRACTOR} too: {second}"
        return {**document, "extractor": FALLBACK_EXTRACTOR}, f"{problem}; {FALLBACK_EXTRACTOR}'s text kept"

    def _outcome(self, raw: dict, future: concurrent.futures.Future, limit: float) -> tuple[dict, str | None]:
        try:
            return future.result(), None
        except pebble.ProcessExpired as error:  # the worker died: at its CPU limit (SIGPROF), or of something else
            if error.exitcode == -signal.SIGPROF:
                problem = f"extraction timed out after {limit:.1f} s of CPU"
            else:
                problem = f"extraction failed: {type(error).__name__}: {error}"
        except concurrent.futures.TimeoutError:  # pebble's: no result within WALL_CLOCK_FACTOR x the limit
            problem = f"extraction timed out after {limit * WALL_CLOCK_FACTOR:.0f} s without finishing"
        except Exception as error:  # an extractor error
            problem = f"extraction failed: {type(error).__name__}: {error}"
        finally:
            self._in_flight.discard(future)
        logger.debug("%s: %s", raw["url"], problem)
        return document_without_text(raw), problem


def _done(document: dict) -> concurrent.futures.Future:
    future: concurrent.futures.Future = concurrent.futures.Future()
    future.set_result(document)
    return future


# -- worker processes without the parent's __main__ ---------------------------------------------------------------
#
# multiprocessing starts every child by importing the parent's main module (the `gristmill` command, a benchmark's
# script): with it come Prefect and MLflow, 140 MB and seconds of imports in the forkserver, whose pages every worker
# then shares and partly copies; a pool's first page waited ~10 s for it on a loaded 2-core machine. Extraction
# workers run only module-level functions of importable modules, so they start without it.


WITHOUT_MAIN = (3, 11) <= sys.version_info[:2] <= (3, 13)  # the CPython versions whose _launch is copied below


class _PopenWithoutMain(popen_forkserver.Popen):
    def _launch(self, process_obj: Any) -> None:  # popen_forkserver.Popen._launch (CPython 3.11-3.13), less __main__
        prep_data = spawn.get_preparation_data(process_obj._name)
        prep_data.pop("init_main_from_path", None)
        prep_data.pop("init_main_from_name", None)
        buf = io.BytesIO()
        set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            set_spawning_popen(None)
        self.sentinel, w = forkserver.connect_to_new_process(self._fds)
        _parent_w = os.dup(w)  # as CPython: the child sees the parent die through it
        self.finalizer = util.Finalize(self, util.close_fds, (_parent_w, self.sentinel))
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class _WorkerProcess(multiprocessing.context.ForkServerProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> popen_forkserver.Popen:  # noqa: N802 - multiprocessing's name
        return _PopenWithoutMain(process_obj)


class WorkerContext(multiprocessing.context.ForkServerContext):
    """The forkserver context, its processes started without importing this process's __main__."""

    Process = _WorkerProcess

"""Crawl progress for people: a live bar on a terminal, a log line now and then elsewhere, and the stage's
progress artifact (Prefect) - all fed from the crawler's `CrawlProgress` snapshots."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gristmill.tasks.crawl.crawler import CrawlProgress

logger = logging.getLogger("gristmill.crawl")
LOG_EVERY_S = 10.0


class CrawlProgressReporter:
    """Use as a context manager; call it with each snapshot."""

    def __init__(
        self, max_pages: int, *, bar: bool = True, artifact: Callable[[float, str], None] | None = None
    ) -> None:
        console = Console(stderr=True)
        self._bar = Progress(
            TextColumn("crawl"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not (bar and console.is_terminal),
        )
        self._task = self._bar.add_task("crawl", total=max_pages, detail="")
        self._artifact = artifact
        self._last_log = 0.0

    def __call__(self, snapshot: CrawlProgress) -> None:
        detail = (
            f"queued {snapshot.queued} · failed {snapshot.failed} · skipped {snapshot.skipped} · "
            f"{snapshot.pages_per_s:.1f} pages/s"
        )
        self._bar.update(self._task, completed=snapshot.stored, detail=detail)
        if self._artifact is not None:
            self._artifact(snapshot.fraction, f"{snapshot.stored}/{snapshot.max_pages} pages stored; {detail}")
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY_S:
            self._last_log = now
            logger.info("crawl: %d/%d pages stored; %s", snapshot.stored, snapshot.max_pages, detail)

    def __enter__(self) -> CrawlProgressReporter:
        self._bar.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._bar.stop()

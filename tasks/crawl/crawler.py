"""A polite, resumable, asynchronous crawler: seeds in, stored pages and a fetch log (in `CrawlState`) out.

Politeness and safety come before coverage: robots.txt is obeyed (Disallow, Crawl-delay, Sitemap), each host
gets at most `per_host_concurrency` requests in flight and a minimum delay between request starts, a 429's
Retry-After pauses the whole host, hosts that resolve to non-public addresses are refused, and every redirect
hop is checked like a new link. Every queued URL ends as one fetch-log row: stored, skipped (a rule said no)
or failed (with the error class). Parts: `urls` (normalisation, scope), `fetch` (one bounded HTTP exchange),
`state` (the durable frontier), `warc` (raw responses); this module only decides what to fetch when.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from lxml import etree
from protego import Protego

from gristmill.conf.schema import CrawlConfig
from gristmill.tasks.crawl.extract import HTML_TYPES, extract_links
from gristmill.tasks.crawl.fetch import (
    AddressGuard,
    Fetcher,
    FetchError,
    Response,
    backoff_seconds,
    client_session,
    retry_after_seconds,
)
from gristmill.tasks.crawl.state import CrawlState, Fetch, Page
from gristmill.tasks.crawl.urls import Scope, host_of, origin_of, resolve
from gristmill.tasks.crawl.warc import WarcSink
from gristmill.tasks.removals import REMOVED
from gristmill.tasks.urls import UrlNormalizer

logger = logging.getLogger("gristmill.crawl")

T = TypeVar("T")
ROBOTS_MAX_REDIRECTS = 5  # RFC 9309 asks crawlers to follow at least five
MAX_SITEMAPS_PER_HOST = 50  # a sitemap index can point to thousands; enough to seed a bounded crawl
# A rule said no (or the page was already seen): "skipped". Anything else that stores no page: "failed".
SKIP_REASONS = frozenset(
    {"robots", "out_of_scope", "excluded", "not_included", "max_depth", "content_type", "redirect_seen",
     "max_pages_per_host", "private_address"}
)  # fmt: skip
PROGRESS_EVERY_S = 1.0
GONE_STATUSES = frozenset({404, 410})  # a refreshed URL that answers these had its page removed
ALLOW_ALL = Protego.parse("")
DISALLOW_ALL = Protego.parse("User-agent: *\nDisallow: /")


@dataclass(frozen=True)
class CrawlProgress:
    """A snapshot for progress bars and artifacts."""

    stored: int
    queued: int
    failed: int
    skipped: int
    pages_per_s: float  # pages stored per second in this session
    max_pages: int
    finished: bool = False  # the frontier ran out (or max_pages was reached)

    @property
    def fraction(self) -> float:
        if self.finished:
            return 1.0
        return min(1.0, self.stored / self.max_pages) if self.max_pages else 0.0


ProgressCallback = Callable[[CrawlProgress], None]


class HostGate:
    """Per-host politeness: at most `connections` requests in flight, and `delay` seconds between their starts.

    The spacing holds between the moments requests actually start (on the event loop's clock), not between
    reserved slots: a request that woke late must not shorten the gap to the next one. `closest_starts` is the
    smallest gap so far, the measure of what the host saw from us."""

    def __init__(self, connections: int, delay: float) -> None:
        self._slots = asyncio.Semaphore(connections)
        self.delay = delay
        self._not_before = 0.0  # no request starts before this: the last start + delay, or a Retry-After
        self._last_start: float | None = None
        self.closest_starts = math.inf

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        async with self._slots:
            loop = asyncio.get_running_loop()
            # Look again after every sleep: another request started, or a Retry-After came, meanwhile.
            while (wait := self._not_before - loop.time()) > 0:
                await asyncio.sleep(wait)
            started = loop.time()
            if self._last_start is not None:
                self.closest_starts = min(self.closest_starts, started - self._last_start)
            self._last_start = started
            self._not_before = started + self.delay
            yield

    def slow_down(self, delay: float) -> None:
        """Raise the delay (robots.txt's Crawl-delay); it holds from the last start, robots.txt's own request."""
        if delay > self.delay:
            self.delay = delay
            if self._last_start is not None:
                self._not_before = max(self._not_before, self._last_start + delay)

    def defer(self, seconds: float) -> None:
        """Start nothing on this host for `seconds` (a 429 or 503 with Retry-After speaks for the whole host)."""
        self._not_before = max(self._not_before, asyncio.get_running_loop().time() + seconds)


class Crawler:
    """Breadth-first crawl into a `CrawlState`; run it again on the same state and it continues where it stopped."""

    def __init__(
        self,
        config: CrawlConfig,
        state: CrawlState,
        *,
        warc: WarcSink | None = None,
        on_progress: ProgressCallback | None = None,
        on_page: Callable[[Page], None] | None = None,
    ) -> None:
        self.config = config
        self.state = state
        self.warc = warc
        self.on_progress = on_progress
        self.on_page = on_page  # each stored page once committed (the stage starts its extraction; must not block)
        self.normalize = UrlNormalizer(config.strip_query_params)
        self.dropped_links: Counter[str] = Counter()  # links never queued, by the scope rule that refused them
        self._guard = AddressGuard(config.allow_private_networks)
        self._scope = Scope([])
        self._gates: dict[str, HostGate] = {}
        self._robots: dict[str, Protego] = {}
        self._robots_locks: dict[str, asyncio.Lock] = {}
        self._running: dict[asyncio.Task[None], str] = {}
        self._claimed: set[str] = set()  # URLs in flight, redirect hops included: nobody else fetches them
        self._pending_per_host: Counter[str] = Counter()
        self._fetcher: Fetcher | None = None
        self._session_stored = 0
        self._started = time.monotonic()
        self._last_progress = 0.0
        self._progress_task: asyncio.Task[None] | None = None
        self._archiver: ThreadPoolExecutor | None = None  # writes the WARC during `crawl`

    def run(self, seeds: list[str]) -> None:
        """Crawl until the frontier is empty or max_pages pages are stored (blocking)."""
        run_coroutine(self.crawl(seeds))

    async def crawl(self, seeds: list[str]) -> None:
        normal_seeds = [n for n in map(self.normalize, seeds) if n]
        cfg = self.config
        self._scope = Scope(
            normal_seeds,
            same_site=cfg.same_site,
            allowed_domains=cfg.allowed_domains,
            include=cfg.include,
            exclude=cfg.exclude,
            max_depth=cfg.max_depth,
        )
        self.state.enqueue((seed, 0) for seed in normal_seeds)  # a resumed crawl has them already
        self._started = time.monotonic()
        # One writer, so records go in order; leaving the block waits for the records of stored pages.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="warc") as self._archiver:
            session = client_session(
                self._guard,
                concurrency=cfg.concurrency,
                user_agent=cfg.user_agent,
                connect_timeout_s=cfg.connect_timeout_s,
            )
            async with session:
                self._fetcher = Fetcher(
                    session,
                    max_body_bytes=cfg.max_body_bytes,
                    total_timeout_s=cfg.request_timeout_s,
                    content_types=cfg.content_types,
                )
                try:
                    await self._loop()
                finally:
                    for task in self._running:
                        task.cancel()
                    await asyncio.gather(*self._running, return_exceptions=True)
        self._archiver = None
        await self._report(finished=True)
        logger.info("crawl finished: %s", self.state.outcome_counts())

    # -- scheduling -------------------------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            self._launch()
            if not self._running:
                return
            done, _ = await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                url = self._running.pop(task)
                host = host_of(url)
                self._pending_per_host[host] -= 1
                if not self._pending_per_host[host]:
                    del self._pending_per_host[host]  # only hosts with requests in flight are kept
                task.result()  # _visit handles every fetch error itself: anything raised here is a bug
            await self._report()

    def _launch(self) -> None:
        """Start visits for the oldest queued URLs, within the global, per-host and page limits.

        Each pass asks the state for queued URLs of hosts that can take another request now; a host that fills up
        during a pass is left out of the next, so one host's long backlog never hides another host's URLs.
        """
        cfg = self.config
        slots = min(cfg.concurrency - len(self._running), cfg.max_pages - self.state.stored - len(self._running))
        while slots > 0:
            full = [h for h in self._pending_per_host if not self._host_can_take_more(h)]
            launched = 0
            for url, depth in self.state.queued(limit=len(self._claimed) + 4 * slots, skip_hosts=full):
                host = host_of(url)
                # Claimed: running, or a redirect hop of a running visit; its outcome is about to be recorded.
                if slots == 0 or url in self._claimed or not self._host_can_take_more(host):
                    continue
                if cfg.max_pages_per_host and self.state.stored_per_host[host] >= cfg.max_pages_per_host:
                    self.state.finish(Fetch(url, depth, "skipped", error="max_pages_per_host"))
                    continue
                self._claimed.add(url)
                self._running[asyncio.create_task(self._visit(url, depth))] = url
                self._pending_per_host[host] += 1
                slots -= 1
                launched += 1
            if launched == 0:
                return

    def _host_can_take_more(self, host: str) -> bool:
        cfg, pending = self.config, self._pending_per_host[host]
        if pending >= cfg.per_host_concurrency:
            return False
        # Under max_pages_per_host, pages in flight count: one may still fail and leave room for another.
        return not (
            cfg.max_pages_per_host and pending and self.state.stored_per_host[host] + pending >= cfg.max_pages_per_host
        )

    # -- one URL ----------------------------------------------------------------------------------------------

    async def _visit(self, url: str, depth: int) -> None:
        """Fetch one queued URL (redirects followed) and record its outcome; never raises a fetch error."""
        fetch = Fetch(url, depth, outcome="failed")
        started = time.monotonic()
        fetched = None
        page, links = None, []
        try:
            response = await self._follow(url, depth, fetch, self.state.validators(url))
            fetched = time.monotonic()
            if response.status == 304:  # a refresh: the stored page is still current, keep it
                fetch.outcome = "not_modified"
            else:
                page, links = self._page(response), self._links(response, depth)
                fetch.outcome, fetch.bytes = "stored", len(response.body)
                # Before the commit (a kill in between duplicates a record, loses none), and while this URL is
                # still claimed: the visit waits here, so no other visit may take the URL up again meanwhile.
                await self._archive(response)
        except FetchError as err:
            fetch.outcome = "skipped" if err.reason in SKIP_REASONS else "failed"
            if err.status in GONE_STATUSES and self.state.had_page(url):
                fetch.outcome = REMOVED  # it had a page: the site took it down
            fetch.error = err.reason
            fetch.status = err.status if err.status is not None else fetch.status
            level = logging.DEBUG if fetch.outcome == "skipped" else logging.WARNING
            logger.log(level, "%s %s: %s", fetch.outcome, url, err)
        finally:
            # Every URL this visit claimed: its own, the hops, and the final target of a redirect (fetch.final_url
            # is only ever a URL this visit claimed). A target left claimed would stay in the set for the rest of
            # the crawl, and each scheduling pass reads len(claimed) more queued rows.
            self._claimed.difference_update([url, *fetch.redirects, *([fetch.final_url] if fetch.final_url else [])])
        fetch.elapsed_ms = round(((fetched or time.monotonic()) - started) * 1000, 3)
        self.state.finish(fetch, page, links)
        self._session_stored += page is not None
        if page is not None and self.on_page is not None:
            self.on_page(page)

    async def _archive(self, response: Response) -> None:
        """Stored pages go to the WARC (robots.txt and sitemaps do not: re-ingesting the WARC gives the same
        documents as the crawl did). On the archiving thread: gzip and the record digests release the GIL, and on
        the event loop they took as long as fetching (150 documentation pages, 29 MB: 0.8 s)."""
        if self.warc is not None:
            assert self._archiver is not None, "pages are archived during crawl() only"
            await asyncio.get_running_loop().run_in_executor(self._archiver, self.warc.write, response)

    async def _follow(
        self, url: str, depth: int, fetch: Fetch, validators: tuple[str | None, str | None] | None = None
    ) -> Response:
        """The final response for `url`, each redirect hop admitted like a new link. With the validators of a
        stored page, the first request is conditional, and a 304 is returned as it is."""
        hop = url
        for _ in range(self.config.max_redirects + 1):
            await self._admit(hop, depth, first=hop == url)
            headers = conditional_headers(validators) if hop == url else {}
            response = await self._get(hop, fetch, headers=headers)
            fetch.status, fetch.final_url = response.status, hop
            location = response.redirect_location
            if response.status == 304 and headers:
                return response
            if location is None:
                if not 200 <= response.status < 300:
                    raise FetchError(f"http_{response.status}", status=response.status)
                return response
            target = self.normalize(resolve(hop, location))
            if target is None:
                raise FetchError("bad_redirect", location)
            fetch.redirects.append(hop)
            if target in fetch.redirects:
                raise FetchError("redirect_loop", " -> ".join([*fetch.redirects, target]))
            if target in self._claimed or self.state.seen(target):
                raise FetchError("redirect_seen", target)  # fetched (or to be fetched) as its own URL
            self._claimed.add(target)
            fetch.final_url = hop = target
        raise FetchError("too_many_redirects", f"more than {self.config.max_redirects}")

    async def _admit(self, url: str, depth: int, first: bool) -> None:
        """Address (first: it is the safety rule), scope (for redirect targets: links were checked when queued),
        then robots.txt."""
        await self._guard.check(url)
        if not first and (why := self._scope.why_not(url, depth)):
            raise FetchError(why, url)
        rules = await self._rules(url)
        if not rules.can_fetch(url, self.config.user_agent):
            raise FetchError("robots", url)

    async def _get(
        self, url: str, fetch: Fetch | None = None, any_type: bool = False, headers: dict[str, str] | None = None
    ) -> Response:
        """GET with retries: timeouts, connection errors, 429 and 5xx, with backoff or the server's Retry-After."""
        cfg, gate = self.config, self._gate(url)
        for attempt in range(cfg.max_retries + 1):
            if fetch is not None:
                fetch.attempts += 1
            try:
                async with gate.turn():
                    response = await self._fetcher_for().get(url, any_type=any_type, headers=headers)
            except FetchError as err:
                if not err.retryable or attempt == cfg.max_retries:
                    raise
                delay = backoff_seconds(attempt, cfg.backoff_base_s, cfg.backoff_max_s)
            else:
                if response.status != 429 and response.status < 500:
                    return response
                if attempt == cfg.max_retries:
                    raise FetchError(f"http_{response.status}", "retries exhausted", status=response.status)
                delay = self._retry_delay(response, attempt)
                if response.header("retry-after") is not None:
                    gate.defer(delay)
            logger.debug("retrying %s in %.2f s (attempt %d)", url, delay, attempt + 1)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    def _retry_delay(self, response: Response, attempt: int) -> float:
        cfg = self.config
        retry_after = retry_after_seconds(response.header("retry-after"))
        if retry_after is None:
            return backoff_seconds(attempt, cfg.backoff_base_s, cfg.backoff_max_s)
        if retry_after > cfg.max_retry_after_s:
            raise FetchError(
                "retry_after_too_long",
                f"Retry-After {retry_after:.0f} s over max_retry_after_s={cfg.max_retry_after_s:g}",
                status=response.status,
            )
        return retry_after

    def _fetcher_for(self) -> Fetcher:
        assert self._fetcher is not None, "only called while crawl() runs"
        return self._fetcher

    def closest_request_starts(self) -> dict[str, float]:
        """Per host, the smallest gap in seconds between two of our request starts (politeness as the host saw it,
        measured on the crawler's own clock); inf for a host asked only once."""
        return {host: gate.closest_starts for host, gate in self._gates.items()}

    def _gate(self, url: str) -> HostGate:
        host = host_of(url)
        if host not in self._gates:
            self._gates[host] = HostGate(self.config.per_host_concurrency, self.config.min_delay_s)
        return self._gates[host]

    # -- what a stored page gives ---------------------------------------------------------------------------

    @staticmethod
    def _page(response: Response) -> Page:
        return Page(
            url=response.url,
            fetched_at=response.fetched_at,
            status=response.status,
            content_type=response.content_type,
            charset=response.charset,
            lang_hint=response.header("content-language"),
            content=response.body,
            etag=response.header("etag"),
            last_modified=response.header("last-modified"),
        )

    def _links(self, response: Response, depth: int) -> list[tuple[str, int]]:
        if response.content_type not in HTML_TYPES:
            return []
        return self._in_scope(extract_links(response.body, response.url, response.charset), depth + 1)

    def _in_scope(self, urls: list[str], depth: int) -> list[tuple[str, int]]:
        kept = []
        for url in urls:
            normal = self.normalize(url)
            why = "invalid" if normal is None else self._scope.why_not(normal, depth)
            if why:
                self.dropped_links[why] += 1
            else:
                kept.append((normal, depth))
        return kept

    # -- robots.txt and sitemaps ------------------------------------------------------------------------------

    async def _rules(self, url: str) -> Protego:
        """The origin's robots.txt rules, fetched once; the first time, its sitemaps seed the frontier too."""
        origin = origin_of(url)
        if origin in self._robots:
            return self._robots[origin]
        async with self._robots_locks.setdefault(origin, asyncio.Lock()):
            if origin not in self._robots:
                rules = await self._load_robots(origin) if self.config.respect_robots else ALLOW_ALL
                delay = min(rules.crawl_delay(self.config.user_agent) or 0.0, self.config.max_crawl_delay_s)
                self._gate(url).slow_down(delay)
                self._robots[origin] = rules
                if self.config.use_sitemaps:
                    await self._read_sitemaps(origin, rules)
        return self._robots[origin]

    async def _load_robots(self, origin: str) -> Protego:
        """RFC 9309: 2xx -> parse; 4xx -> no rules; 5xx or unreachable -> disallow all (the rules are unknown)."""
        url = f"{origin}/robots.txt"
        for _ in range(ROBOTS_MAX_REDIRECTS + 1):
            try:
                await self._guard.check(url)
                response = await self._get(url, any_type=True)
            except FetchError as err:
                if err.status is not None and 400 <= err.status < 500 and err.status != 429:
                    return ALLOW_ALL
                logger.warning("robots.txt of %s unavailable (%s): not crawling that origin", origin, err)
                return DISALLOW_ALL
            location = response.redirect_location
            if location is None:
                if 200 <= response.status < 300:
                    return Protego.parse(response.body.decode("utf-8", errors="replace"))
                # 429 is the site asking us to slow down, not saying it has no rules (Google reads it as 5xx).
                return ALLOW_ALL if 400 <= response.status < 500 and response.status != 429 else DISALLOW_ALL
            target = resolve(url, location)
            if target is None:
                return ALLOW_ALL  # a robots.txt redirect that goes nowhere: as good as none (4xx)
            url = target
        return ALLOW_ALL  # RFC 9309: past the redirect limit, treat as unavailable (4xx)

    async def _read_sitemaps(self, origin: str, rules: Protego) -> None:
        """Queue the pages of the sitemaps robots.txt names (else /sitemap.xml), at depth 1."""
        named = [resolve(origin + "/", s) for s in rules.sitemaps]
        pending = [s for s in named if s] or [f"{origin}/sitemap.xml"]
        read: set[str] = set()
        while pending and len(read) < MAX_SITEMAPS_PER_HOST:
            url = self.normalize(pending.pop(0))
            if (
                url is None
                or url in read
                or self._scope.why_not(url)
                or not rules.can_fetch(url, self.config.user_agent)
            ):
                continue
            read.add(url)
            try:
                await self._guard.check(url)
                response = await self._get(url, any_type=True)
            except FetchError as err:
                logger.debug("sitemap %s unavailable: %s", url, err)
                continue
            if response.status != 200:
                continue
            pages, nested = parse_sitemap(response.body, url)
            added = self.state.enqueue(self._in_scope(pages, 1))
            logger.info("sitemap %s: %d pages, %d new", url, len(pages), added)
            pending.extend(nested)

    # -- progress ---------------------------------------------------------------------------------------------

    async def _report(self, finished: bool = False) -> None:
        now = time.monotonic()
        if self.on_progress is None or (not finished and now - self._last_progress < PROGRESS_EVERY_S):
            return
        self._last_progress = now
        outcomes = self.state.outcome_counts()
        snapshot = CrawlProgress(
            stored=outcomes.get("stored", 0),
            queued=self.state.queued_count(),
            failed=outcomes.get("failed", 0),
            skipped=outcomes.get("skipped", 0),
            pages_per_s=self._session_stored / max(now - self._started, 1e-9),
            max_pages=self.config.max_pages,
            finished=finished,
        )
        # A thread: the callback may block (an HTTP call to Prefect's API) and must not stall the fetches. One
        # report in flight at a time; the final one is awaited so it is not lost.
        if self._progress_task is not None and not self._progress_task.done():
            if not finished:
                return
            await self._progress_task
        self._progress_task = asyncio.create_task(asyncio.to_thread(self.on_progress, snapshot))
        if finished:
            await self._progress_task


def conditional_headers(validators: tuple[str | None, str | None] | None) -> dict[str, str]:
    """If-None-Match / If-Modified-Since from a stored page's ETag / Last-Modified (RFC 9110, 13.1)."""
    etag, last_modified = validators or (None, None)
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    return headers


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, also where this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    context = contextvars.copy_context()  # keeps Prefect's run context visible to the callbacks
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(context.run, asyncio.run, coro).result()


# The sitemap is untrusted XML: no entities, no network, no DTDs.
_SITEMAP_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def parse_sitemap(body: bytes, url: str) -> tuple[list[str], list[str]]:
    """(page URLs, nested sitemap URLs) from a <urlset> or <sitemapindex>; relative <loc>s are resolved."""
    try:
        root = etree.fromstring(body, parser=_SITEMAP_PARSER)
    except etree.XMLSyntaxError:
        return [], []
    resolved = (resolve(url, loc.text or "") for loc in root.iter("{*}loc") if (loc.text or "").strip())
    locs = [loc for loc in resolved if loc]
    if etree.QName(root).localname == "sitemapindex":
        return [], locs
    return locs, []

"""The crawler against real HTTP servers on 127.0.0.1: the served demo site and small hand-made sites.

The hostile corner (timeouts, bombs, traps, retries) is in test_crawler_hostile.py; resume after SIGKILL in
test_crawl_resume.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from warcio.archiveiterator import ArchiveIterator

from gristmill.conf.schema import CrawlConfig
from gristmill.tasks.crawl.crawler import Crawler, HostGate
from gristmill.tasks.crawl.fetch import (
    AddressGuard,
    BoundedDecoder,
    FetchError,
    client_session,
    is_public_address,
    retry_after_seconds,
)
from gristmill.tasks.crawl.state import CrawlState
from gristmill.tasks.crawl.urls import Scope
from gristmill.tasks.crawl.warc import WarcSink
from gristmill.tasks.demo_site.build import SiteStats, build_demo_site
from gristmill.tasks.demo_site.serve import serve_directory, serve_in_thread

LOCAL = ["127.0.0.0/8", "::1/128"]  # localhost may resolve to both


def _config(**overrides: Any) -> CrawlConfig:
    return CrawlConfig(**{"allow_private_networks": LOCAL, "max_pages": 1000, "backoff_base_s": 0.01, **overrides})


@dataclass
class Crawled:
    state: CrawlState
    crawler: Crawler

    @property
    def pages(self) -> dict[str, Any]:
        return {urlsplit(p.url).path: p for p in self.state.iter_pages()}

    @property
    def fetches(self) -> dict[str, dict[str, Any]]:
        return {urlsplit(f["url"]).path: f for f in self.state.iter_fetches()}


def crawl(tmp_path: Path, seeds: list[str], **overrides: Any) -> Crawled:
    state = CrawlState(tmp_path / f"state-{time.monotonic_ns()}.sqlite")
    crawler = Crawler(_config(**overrides), state)
    crawler.run(seeds)
    return Crawled(state, crawler)


# -- the demo site ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, SiteStats]]:
    root = tmp_path_factory.mktemp("demo") / "site"
    stats = build_demo_site(root, max_packages=15)
    with serve_directory(root) as base:
        yield base, stats


def test_demo_crawl_stores_every_public_page_once(demo, tmp_path) -> None:
    base, site = demo
    done = crawl(tmp_path, [base])
    urls = [p.url for p in done.state.iter_pages()]
    assert len(urls) == len(set(urls))
    assert sorted(urls) == sorted(base.rstrip("/") + path for path in site.urls)
    assert done.state.outcome_counts() == {"stored": len(urls), "skipped": 1}  # the home page links to /private/
    assert done.fetches["/private/"]["error"] == "robots"
    for page in done.state.iter_pages():
        assert page.status == 200 and page.content_type == "text/html" and page.content.startswith(b"<!DOCTYPE")


def test_max_pages_is_honoured_breadth_first(demo, tmp_path) -> None:
    base, _ = demo
    done = crawl(tmp_path, [base], max_pages=7, concurrency=1)
    pages = list(done.state.iter_pages())
    assert len(pages) == 7
    assert pages[0].url == base  # breadth-first: the seed comes first
    assert done.state.queued_count() > 0  # stopped by the limit, not by running out of links


# -- a hand-made site -------------------------------------------------------------------------------------------


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str | None = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    send_length: bool = True  # False: no Content-Length, the body runs until the connection closes
    delay_s: float = 0.0  # wait before answering
    reason: str | None = None  # the status line's reason phrase (sent as latin-1); None: the standard one
    hang_up: bool = False  # close the connection without answering


NOT_FOUND = Route(b"<html><head><title>Not found</title></head><body><p>No such page.</p></body></html>", 404)


class HandMadeSite:
    """Routes set by each test; every request is logged with its arrival time."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.first_answers: dict[str, list[Route]] = {}  # served (and used up) before `routes`, in order
        self.hits: list[tuple[str, float]] = []
        self.user_agents: set[str] = set()
        self.cookies: dict[str, str | None] = {}  # the Cookie header of each path's last request
        self.in_flight = 0
        self.max_in_flight = 0
        self.held: set[str] = set()  # paths whose answers wait until `released` is set
        self.released = threading.Event()
        self._lock = threading.Lock()

    @property
    def paths(self) -> list[str]:
        return [path for path, _ in self.hits]

    def page(self, path: str, text: str, links: list[str] = ()) -> None:
        anchors = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
        paragraphs = "".join(f"<p>{text} This is paragraph {i} of a page written for the test.</p>" for i in range(3))
        body = (
            f"<html><head><title>{path}</title></head><body><main>{paragraphs}<ul>{anchors}</ul></main></body></html>"
        )
        self.routes[path] = Route(body.encode())


class Handler(BaseHTTPRequestHandler):
    server: Any

    def do_GET(self) -> None:
        site: HandMadeSite = self.server.site
        with site._lock:
            site.hits.append((self.path, time.monotonic()))
            site.in_flight += 1
            site.max_in_flight = max(site.max_in_flight, site.in_flight)
        try:
            self._answer(site)
        finally:
            with site._lock:
                site.in_flight -= 1

    def _answer(self, site: HandMadeSite) -> None:
        site.user_agents.add(self.headers.get("User-Agent", ""))
        site.cookies[self.path] = self.headers.get("Cookie")
        with site._lock:
            queue = site.first_answers.get(self.path)
            route = queue.pop(0) if queue else site.routes.get(self.path, NOT_FOUND)
        if self.path in site.held:
            site.released.wait(timeout=120)  # a guard: the test releases them
        time.sleep(route.delay_s)
        if route.hang_up:
            self.close_connection = True
            return
        self.send_response(route.status, route.reason)
        if route.content_type:
            self.send_header("Content-Type", route.content_type)
        for key, value in route.headers.items():
            self.send_header(key, value)
        if route.send_length:
            self.send_header("Content-Length", str(len(route.body)))
        self.end_headers()
        # The crawler hangs up on an oversized body, as it should.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(route.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@contextmanager
def serve(site: HandMadeSite) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.site = site
    with serve_in_thread(server, "hand-made-site") as base:
        yield base


@pytest.fixture
def site() -> Iterator[tuple[HandMadeSite, str]]:
    hand_made = HandMadeSite()
    with serve(hand_made) as base:
        yield hand_made, base


def test_404_is_a_failure_and_not_retried(site, tmp_path) -> None:
    hand_made, base = site
    hand_made.page("/", "Home.", ["/missing"])
    done = crawl(tmp_path, [base])
    assert set(done.pages) == {"/"}
    missing = done.fetches["/missing"]
    assert (missing["outcome"], missing["error"], missing["status"], missing["attempts"]) == (
        "failed", "http_404", 404, 1
    )  # fmt: skip
    assert hand_made.paths.count("/missing") == 1


def test_redirect_is_followed_and_stored_under_the_final_url(site, tmp_path) -> None:
    hand_made, base = site
    hand_made.page("/", "Home.", ["/old"])
    hand_made.routes["/old"] = Route(b"", 301, headers={"Location": "/new"})
    hand_made.page("/new", "The new page.", ["/new", "/old", "/"])
    done = crawl(tmp_path, [base])
    assert set(done.pages) == {"/", "/new"}
    assert b"The new page." in done.pages["/new"].content
    old = done.fetches["/old"]
    assert old["final_url"] == base + "new" and old["redirects"] == [base + "old"]
    assert hand_made.paths.count("/new") == 1 and hand_made.paths.count("/old") == 1


def test_too_many_redirects_ends_as_a_failure(site, tmp_path) -> None:
    hand_made, base = site
    for i in range(15):
        hand_made.routes[f"/r{i}"] = Route(b"", 302, headers={"Location": f"/r{i + 1}"})
    done = crawl(tmp_path, [base + "r0"], max_redirects=10, use_sitemaps=False)
    assert done.pages == {}
    assert done.fetches["/r0"]["error"] == "too_many_redirects"
    assert len(done.fetches["/r0"]["redirects"]) == 11
    assert hand_made.paths == ["/robots.txt"] + [f"/r{i}" for i in range(11)]  # the first request and 10 redirects


@pytest.mark.parametrize("send_length", [True, False], ids=["declared", "streamed"])
def test_oversized_body_is_cut_off(site, tmp_path, send_length: bool) -> None:
    hand_made, base = site
    hand_made.page("/", "Home.", ["/big", "/small"])
    hand_made.routes["/big"] = Route(b"<p>" + b"x" * 200_000 + b"</p>", send_length=send_length)
    hand_made.page("/small", "Small page.")
    done = crawl(tmp_path, [base], max_body_bytes=4096)
    assert set(done.pages) == {"/", "/small"}
    assert done.fetches["/big"]["error"] == "too_large"
    assert "/big" in hand_made.paths


def test_out_of_scope_links_are_not_followed(site, tmp_path) -> None:
    hand_made, base = site
    other = HandMadeSite()
    other.page("/by-name", "Another site.")
    other.page("/by-port", "Another site.")
    with serve(other) as other_base:
        # Another host name for the same address, and the same host name on another port: both other sites.
        by_name = other_base.replace("127.0.0.1", "localhost") + "by-name"
        by_port = other_base + "by-port"
        hand_made.page("/", "Home.", [by_name, by_port, "mailto:someone@example.org", "ftp://example.org/file"])
        done = crawl(tmp_path, [base])
        assert set(done.pages) == {"/"}
        assert other.hits == []
        assert done.crawler.dropped_links["out_of_scope"] == 2
        # The same crawl without same_site does follow them: the check above is about scope, not reachability.
        assert len(crawl(tmp_path, [base], same_site=False).pages) == 3
        assert sorted(p for p in other.paths if p != "/sitemap.xml") == [
            "/by-name", "/by-port", "/robots.txt", "/robots.txt"
        ]  # fmt: skip


def test_robots_disallow_for_our_user_agent(site, tmp_path) -> None:
    hand_made, base = site
    hand_made.routes["/robots.txt"] = Route(
        b"User-agent: gristmill\nDisallow: /secret\n\nUser-agent: *\nDisallow: /\n", content_type="text/plain"
    )
    hand_made.page("/", "Home.", ["/secret/page", "/open"])
    hand_made.page("/open", "Open page.")
    done = crawl(tmp_path, [base])
    assert set(done.pages) == {"/", "/open"}
    assert done.fetches["/secret/page"]["outcome"] == "skipped"
    assert done.fetches["/secret/page"]["error"] == "robots"
    assert not any(p.startswith("/secret") for p in hand_made.paths)
    # respect_robots=False is the switch that makes this test meaningful.
    assert crawl(tmp_path, [base], respect_robots=False).fetches["/secret/page"]["error"] == "http_404"


def test_robots_5xx_means_disallow_all_and_4xx_allow_all(site, tmp_path) -> None:
    hand_made, base = site
    hand_made.page("/", "Home.")
    hand_made.routes["/robots.txt"] = Route(b"down", 503, content_type="text/plain")
    done = crawl(tmp_path, [base], max_retries=1)
    assert done.pages == {} and done.fetches["/"]["error"] == "robots"
    del hand_made.routes["/robots.txt"]  # now a 404
    assert set(crawl(tmp_path, [base]).pages) == {"/"}


def test_crawl_delay_spaces_requests(site, tmp_path) -> None:
    hand_made, base = site
    hand_made.routes["/robots.txt"] = Route(b"User-agent: *\nCrawl-delay: 0.3\n", content_type="text/plain")
    hand_made.page("/", "Home.", ["/a", "/b", "/c"])
    for path in ("/a", "/b", "/c"):
        hand_made.page(path, f"Page {path}.")
    done = crawl(tmp_path, [base], min_delay_s=0.1, per_host_concurrency=4)
    assert len(done.pages) == 4
    assert len(hand_made.hits) == 6  # robots.txt, sitemap.xml (a 404), then four pages
    # Measured on the crawler's clock (arrivals at the server jitter): the Crawl-delay holds from robots.txt's own
    # request on, min_delay_s (0.1) would allow less.
    (gap,) = done.crawler.closest_request_starts().values()  # one host
    assert gap >= 0.3


def test_a_request_that_starts_late_does_not_shorten_the_gap_to_the_next() -> None:
    async def main() -> tuple[list[float], float]:
        gate, loop = HostGate(connections=3, delay=0.2), asyncio.get_running_loop()
        starts: list[float] = []

        async def request() -> None:
            async with gate.turn():
                starts.append(loop.time())

        await request()
        # Two requests wait for their turns (0.2 s and 0.4 s on); the loop is then busy until 0.35 s (a slow
        # callback, a loaded machine), so the first of them starts late: the second must still wait 0.2 s after it.
        loop.call_later(0.1, time.sleep, 0.25)
        await asyncio.gather(request(), request())
        return starts, gate.closest_starts

    starts, closest = asyncio.run(main())
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert gaps[0] >= 0.3 and gaps[1] >= 0.2, gaps  # all on the event loop's clock
    assert closest >= 0.2


def test_min_delay_applies_without_robots(site, tmp_path) -> None:
    hand_made, base = site
    hand_made.page("/", "Home.", ["/a"])
    hand_made.page("/a", "A.")
    done = crawl(tmp_path, [base], min_delay_s=0.25)
    assert len(hand_made.hits) == 4
    (gap,) = done.crawler.closest_request_starts().values()  # one host, on the crawler's own clock
    assert gap >= 0.25


def test_per_host_concurrency_limits_requests_in_flight(site, tmp_path) -> None:
    hand_made, base = site
    links = [f"/p{i}" for i in range(12)]
    hand_made.page("/", "Home.", links)
    for path in links:
        hand_made.page(path, f"Page {path}.")
        hand_made.routes[path].delay_s = 0.2
    crawl(tmp_path, [base], per_host_concurrency=3, concurrency=16)
    assert hand_made.max_in_flight == 3


def test_private_hosts_are_refused_unless_allowed(site, tmp_path) -> None:
    hand_made, base = site
    hand_made.page("/", "Home.")
    done = crawl(tmp_path, [base], allow_private_networks=[])
    assert done.pages == {}
    assert (done.fetches["/"]["outcome"], done.fetches["/"]["error"]) == ("skipped", "private_address")
    assert hand_made.hits == []  # not even robots.txt was asked for
    assert len(crawl(tmp_path, [base], allow_private_networks=["127.0.0.1/32"]).pages) == 1


def test_redirect_hops_are_checked_like_links(site, tmp_path) -> None:
    hand_made, base = site
    other = HandMadeSite()
    other.page("/", "Another site.")
    with serve(other) as other_base:
        hand_made.routes["/"] = Route(b"", 302, headers={"Location": other_base.replace("127.0.0.1", "localhost")})
        done = crawl(tmp_path, [base])
        assert done.pages == {}
        assert done.fetches["/"]["error"] == "out_of_scope"
        assert other.hits == []


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("192.168.0.1", False),
        ("169.254.169.254", False),  # cloud metadata endpoints live here
        ("::1", False),
        ("fe80::1%eth0", False),
        ("::ffff:127.0.0.1", False),
        ("240.0.0.1", False),  # reserved
        ("0.0.0.0", False),
        ("224.0.0.1", False),
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    assert is_public_address(address) is public


def _guard_verdict(guard: AddressGuard, url: str) -> str | None:
    try:
        asyncio.run(guard.check(url))
    except FetchError as err:
        return err.reason
    return None


def test_guard_resolves_names_and_literals() -> None:
    guard = AddressGuard([])
    assert _guard_verdict(guard, "http://localhost:8000/") == "private_address"
    assert _guard_verdict(guard, "http://10.0.0.7/") == "private_address"
    assert _guard_verdict(guard, "http://8.8.8.8/") is None  # a literal: no DNS needed
    assert _guard_verdict(guard, "http://no-such-host.invalid/") == "unresolvable"
    allowing_loopback = AddressGuard(["127.0.0.0/8", "::1/128"])
    assert _guard_verdict(allowing_loopback, "http://localhost/") is None
    assert _guard_verdict(allowing_loopback, "http://169.254.169.254/") == "private_address"


def test_sitemap_from_robots_adds_unlinked_pages(site, tmp_path) -> None:
    hand_made, base = site
    hand_made.routes["/robots.txt"] = Route(b"User-agent: *\nSitemap: /sitemap.xml\n", content_type="text/plain")
    hand_made.routes["/sitemap.xml"] = Route(
        b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        b"<url><loc>/orphan</loc></url></urlset>",
        content_type="application/xml",
    )
    hand_made.page("/", "Home.")
    hand_made.page("/orphan", "Only the sitemap links here.")
    assert set(crawl(tmp_path, [base]).pages) == {"/", "/orphan"}
    assert set(crawl(tmp_path, [base], use_sitemaps=False).pages) == {"/"}


def test_sitemap_xml_is_discovered_without_robots(site, tmp_path) -> None:
    hand_made, base = site
    hand_made.routes["/sitemap.xml"] = Route(
        b'<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        b"<sitemap><loc>/pages.xml</loc></sitemap></sitemapindex>",
        content_type="application/xml",
    )
    hand_made.routes["/pages.xml"] = Route(
        b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        b"<url><loc>/orphan</loc></url></urlset>",
        content_type="text/xml",
    )
    hand_made.page("/", "Home.")
    hand_made.page("/orphan", "Only the nested sitemap links here.")
    done = crawl(tmp_path, [base])
    assert set(done.pages) == {"/", "/orphan"}
    assert done.fetches["/orphan"]["depth"] == 1


def test_pages_with_long_headers_and_cookies_are_fetched_as_a_browser_would(site, tmp_path) -> None:
    """A 12 KB header line (long Content-Security-Policy headers exist) is no error; a cookie the site sets is sent
    back on the next request, as before on sites addressed by IP."""
    hand_made, base = site
    policy = "default-src 'self'; " + "; ".join(f"img-src https://cdn{i}.example.org" for i in range(400))
    assert 12_000 < len(policy) < 16_000
    hand_made.routes["/"] = Route(
        b"<html><body><p>Home.</p><a href='/next'>next</a></body></html>",
        headers={"Content-Security-Policy": policy, "Set-Cookie": "session=abc; Path=/"},
    )
    hand_made.page("/next", "Next.")
    done = crawl(tmp_path, [base], respect_robots=False, use_sitemaps=False)
    assert set(done.pages) == {"/", "/next"}
    assert hand_made.cookies["/next"] == "session=abc"


def test_headers_in_latin_1_reach_the_warc_and_the_state_as_sent(site, tmp_path) -> None:
    """Header values and a reason phrase with a latin-1 byte (not UTF-8) are stored, names in the case sent, and
    the record's digests hold."""
    hand_made, base = site
    hand_made.routes["/"] = Route(
        b"<html><body><p>Caf\xc3\xa9 menu.</p></body></html>",
        reason="Tr\u00e8s bien",
        headers={"ETag": '"caf\u00e9"', "Content-Language": "d\u00e9", "x-lower-case": "kept"},
    )
    state = CrawlState(tmp_path / "state.sqlite")
    with WarcSink(tmp_path / "warc", "test") as warc:
        Crawler(_config(respect_robots=False, use_sitemaps=False), state, warc=warc).run([base])
    (page,) = state.iter_pages()
    state.close()
    assert (page.etag, page.lang_hint) == ('"caf\u00e9"', "d\u00e9")
    with next((tmp_path / "warc").glob("*.warc.gz")).open("rb") as fh:
        # each record's payload and block digests (those headers bytes included) verified as they are read
        records = [(r, r.content_stream().read()) for r in ArchiveIterator(fh, check_digests="raise")]
    ((record, payload),) = [(r, payload) for r, payload in records if r.rec_type == "response"]
    assert payload == b"<html><body><p>Caf\xc3\xa9 menu.</p></body></html>"
    assert record.rec_headers.get_header("WARC-Payload-Digest") and record.rec_headers.get_header("WARC-Block-Digest")
    assert record.http_headers.statusline == "200 Tr%C3%A8s bien"  # WARC headers are ASCII: percent-encoded
    names = [name for name, _ in record.http_headers.headers]
    assert "ETag" in names and "x-lower-case" in names


def test_the_url_requested_is_the_url_recorded(site, tmp_path) -> None:
    """Escapes of reserved characters are sent as they are: /wiki/AT%26T is not /wiki/AT&T to every server."""
    hand_made, base = site
    hand_made.page("/", "Home.", ["/wiki/AT%26T", "/q?a=%3D1&b=2"])
    hand_made.page("/wiki/AT%26T", "A company.")
    hand_made.page("/q?a=%3D1&b=2", "A query.")
    done = crawl(tmp_path, [base], respect_robots=False, use_sitemaps=False)
    assert {"/wiki/AT%26T", "/q?a=%3D1&b=2"} <= set(hand_made.paths)
    assert {base + "wiki/AT%26T", base + "q?a=%3D1&b=2"} <= {page.url for page in done.state.iter_pages()}


def test_every_request_is_an_attempt_the_crawler_counts(site, tmp_path) -> None:
    """A server that hangs up without answering gets exactly one request per counted attempt (the HTTP client's
    own silent retry is off), and many headers (200) are no error."""
    hand_made, base = site
    hand_made.page("/", "Home.", ["/gone-quiet", "/many-headers"])
    hand_made.routes["/gone-quiet"] = Route(hang_up=True)
    hand_made.routes["/many-headers"] = Route(
        b"<html><body><p>Many headers.</p></body></html>", headers={f"X-Header-{i}": str(i) for i in range(200)}
    )
    done = crawl(tmp_path, [base], respect_robots=False, use_sitemaps=False, max_retries=2, backoff_base_s=0.01)
    quiet = done.fetches["/gone-quiet"]
    assert (quiet["outcome"], quiet["error"], quiet["attempts"]) == ("failed", "connect", 3)
    assert hand_made.paths.count("/gone-quiet") == 3
    assert "/many-headers" in done.pages


def test_only_allowed_content_types_are_stored(site, tmp_path) -> None:
    hand_made, base = site
    hand_made.page("/", "Home.", ["/notes.txt", "/data.bin"])
    hand_made.routes["/notes.txt"] = Route(b"  Plain notes.\n", content_type="text/plain; charset=utf-8")
    hand_made.routes["/data.bin"] = Route(b"\x00\x01binary", content_type="application/octet-stream")
    done = crawl(tmp_path, [base])
    assert done.pages["/notes.txt"].content == b"  Plain notes.\n"
    assert (done.pages["/notes.txt"].content_type, done.pages["/notes.txt"].charset) == ("text/plain", "utf-8")
    assert (done.fetches["/data.bin"]["outcome"], done.fetches["/data.bin"]["error"]) == ("skipped", "content_type")


def test_unreachable_host_fails_after_retries(tmp_path) -> None:
    with serve(HandMadeSite()) as base:
        pass  # the server is gone: its port refuses connections
    done = crawl(tmp_path, [base], respect_robots=False, use_sitemaps=False, max_retries=2)
    fetch = done.fetches["/"]
    assert (fetch["outcome"], fetch["error"], fetch["attempts"]) == ("failed", "connect", 3)


def test_scope_rules_bound_depth_and_patterns(site, tmp_path) -> None:
    hand_made, base = site
    hand_made.page("/", "Home.", ["/a", "/skip/me", "/b?sessionid=1"])
    hand_made.page("/a", "A.", ["/a/deeper"])
    hand_made.page("/a/deeper", "Deeper.")
    hand_made.page("/skip/me", "Skipped.")
    done = crawl(tmp_path, [base], max_depth=1, exclude=[r"/skip/", r"sessionid="])
    assert set(done.pages) == {"/", "/a"}
    assert done.crawler.dropped_links == {"excluded": 2, "max_depth": 1}
    only_a = crawl(tmp_path, [base], include=[r"/$", r"/a"])
    assert set(only_a.pages) == {"/", "/a", "/a/deeper"}


def test_max_pages_per_host(site, tmp_path) -> None:
    hand_made, base = site
    hand_made.page("/", "Home.", ["/a", "/b", "/c"])
    for path in ("/a", "/b", "/c"):
        hand_made.page(path, f"Page {path}.")
    done = crawl(tmp_path, [base], max_pages_per_host=2)
    assert len(done.pages) == 2
    assert done.state.error_counts() == {"max_pages_per_host": 2}


def test_scope_is_the_seeds_hosts_with_their_ports_plus_allowed_domains() -> None:
    scope = Scope(["http://example.org/start", "http://127.0.0.1:8080/"], allowed_domains=["example.net"])
    assert scope.why_not("https://example.org/other") is None  # http and https of one name are one site
    assert scope.why_not("http://127.0.0.1:8080/x") is None
    assert scope.why_not("http://127.0.0.1:8000/x") == "out_of_scope"
    assert scope.why_not("http://www.example.org/") == "out_of_scope"
    assert scope.why_not("http://docs.example.net/") is None
    assert scope.why_not("http://example.net/") is None
    assert scope.why_not("http://notexample.net/") == "out_of_scope"
    assert Scope(["http://example.org/"], same_site=False).why_not("https://anything.example.com/") is None


def test_malformed_urls_from_the_server_fail_one_fetch_not_the_crawl(site, tmp_path) -> None:
    hand_made, base = site
    hand_made.routes["/robots.txt"] = Route(
        b"User-agent: *\nSitemap: http://[broken/map.xml\n", content_type="text/plain"
    )
    hand_made.page("/", "Home.", ["/bad-redirect", "/ok", "/sitemap-with-bad-loc.xml"])
    hand_made.routes["/bad-redirect"] = Route(b"", 302, headers={"Location": "http://[broken/"})
    hand_made.page("/ok", "Fine.")
    done = crawl(tmp_path, [base])
    assert set(done.pages) == {"/", "/ok"}
    assert done.fetches["/bad-redirect"]["error"] == "bad_redirect"


def test_a_redirect_target_that_is_also_linked_is_fetched_once(site, tmp_path) -> None:
    hand_made, base = site
    hand_made.page("/", "Home.", ["/a", "/b"])
    hand_made.routes["/a"] = Route(b"", 302, headers={"Location": "/c"}, delay_s=0.1)
    hand_made.page("/b", "B links to C.", ["/c"])
    hand_made.page("/c", "C.")
    hand_made.routes["/c"].delay_s = 0.3  # still in flight (as /a's hop) when /b's link to it is queued
    done = crawl(tmp_path, [base], per_host_concurrency=4)
    assert hand_made.paths.count("/c") == 1
    urls = [p.url for p in done.state.iter_pages()]
    assert len(urls) == len(set(urls)) and base + "c" in urls


def test_redirect_targets_that_are_also_linked_are_stored_once_and_released(site, tmp_path) -> None:
    """Half the links redirect: /r{i} -> /t{i}, and every target also links to itself and the next target, so a
    target is often linked while a redirect holds its claim. Each is fetched and stored exactly once, and every
    claim (the redirect's final target included) is released: a leaked claim makes each scheduling pass read one
    more queued row for the rest of the crawl."""
    hand_made, base = site
    count = 30
    hand_made.page("/", "Home.", [f"/r{i}" for i in range(count)])
    for i in range(count):
        hand_made.routes[f"/r{i}"] = Route(b"", 302, headers={"Location": f"/t{i}"})
        hand_made.page(f"/t{i}", f"Target {i}.", [f"/t{i}", f"/t{(i + 1) % count}"])
    done = crawl(tmp_path, [base], concurrency=8, per_host_concurrency=8, use_sitemaps=False)
    targets = {f"/t{i}" for i in range(count)}
    assert set(done.pages) == {"/"} | targets
    urls = [p.url for p in done.state.iter_pages()]
    assert len(urls) == len(set(urls)) == count + 1
    assert all(hand_made.paths.count(t) == 1 for t in targets)
    assert done.crawler._claimed == set()
    assert done.state.queued_count() == 0


def test_robots_429_means_disallow_all(site, tmp_path) -> None:
    hand_made, base = site
    hand_made.page("/", "Home.")
    hand_made.routes["/robots.txt"] = Route(b"slow down", 429, content_type="text/plain")
    done = crawl(tmp_path, [base], max_retries=0)
    assert done.pages == {} and done.fetches["/"]["error"] == "robots"


def test_retry_after_is_waited_for_and_pauses_the_host(site, tmp_path) -> None:
    hand_made, base = site
    hand_made.page("/", "Home.", ["/limited", "/other"])
    hand_made.page("/limited", "Rate limited once.")
    hand_made.page("/other", "Another page of the same host.")
    hand_made.first_answers["/limited"] = [Route(b"", 429, headers={"Retry-After": "1"})]
    hand_made.routes["/limited"].delay_s = 0.0
    done = crawl(tmp_path, [base], per_host_concurrency=1, backoff_base_s=0.01)
    assert set(done.pages) == {"/", "/limited", "/other"}
    times = {}
    for path, at in hand_made.hits:
        times.setdefault(path, []).append(at)
    first_429, retried = times["/limited"]
    assert retried - first_429 >= 0.95  # the server's 1 s, not the 0.01 s backoff
    assert times["/other"][0] - first_429 >= 0.95  # the whole host waited


def test_one_busy_host_does_not_hold_back_another(tmp_path) -> None:
    busy, quiet = HandMadeSite(), HandMadeSite()
    with serve(busy) as busy_base, serve(quiet) as quiet_base:
        links = [f"/p{i}" for i in range(60)]
        busy.page("/", "A big site.", [*links, quiet_base + "late"])
        for path in links:
            busy.page(path, f"Page {path}.")
            busy.routes[path].delay_s = 0.05
        quiet.page("/", "A small site.")
        quiet.page("/late", "Linked last from the big site.")
        crawl(tmp_path, [busy_base, quiet_base], per_host_concurrency=1, concurrency=4, use_sitemaps=False)
        late_at = next(at for path, at in quiet.hits if path == "/late")
        busy_before = sum(1 for path, at in busy.hits if path.startswith("/p") and at < late_at)
        assert busy_before <= 3, busy_before  # not after the big site's 60-page backlog


def test_the_configured_user_agent_is_sent(site, tmp_path) -> None:
    hand_made, base = site
    hand_made.page("/", "Home.")
    crawl(tmp_path, [base], user_agent="test-bot/1.0 (+https://example.org/bot)")
    assert hand_made.user_agents == {"test-bot/1.0 (+https://example.org/bot)"}


def test_allowed_domains_alone_limit_the_crawl() -> None:
    scope = Scope(["http://seed.org/"], same_site=False, allowed_domains=["a.org"])
    assert scope.why_not("http://docs.a.org/x") is None
    assert scope.why_not("http://evil.com/") == "out_of_scope"
    assert scope.why_not("http://seed.org/") == "out_of_scope"  # without same_site, only the named domains


@pytest.mark.parametrize("encoding", ["gzip", "deflate-zlib", "deflate-raw"])
def test_bounded_decoder_decodes_and_cuts_off(encoding: str) -> None:
    data = b"<p>hello</p>" * 10_000
    if encoding == "gzip":
        compressor = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    else:
        compressor = zlib.compressobj(wbits=zlib.MAX_WBITS if encoding == "deflate-zlib" else -zlib.MAX_WBITS)
    body = compressor.compress(data) + compressor.flush()
    name = encoding.split("-")[0]
    decoder = BoundedDecoder(name, limit=len(data))
    assert b"".join(decoder.feed(body[i : i + 100]) for i in range(0, len(body), 100)) == data
    with pytest.raises(FetchError, match="too_large"):
        BoundedDecoder(name, limit=1000).feed(body)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_the_transport_itself_refuses_unchecked_addresses(site) -> None:
    """The guard sits at the socket too: whatever a URL's name resolves to at connection time is checked then, so
    a DNS answer that changes after the crawler's early check (rebinding) cannot reach a private address."""
    hand_made, base = site
    hand_made.page("/", "Home.")

    async def get(allowed: list[str], url: str) -> int:
        session = client_session(AddressGuard(allowed), concurrency=1, user_agent="test", connect_timeout_s=5.0)
        async with session, session.get(url) as response:
            return response.status

    # a name; an IP literal (aiohttp resolves none); the legacy short form of 127.0.0.1 (getaddrinfo expands it)
    for url in (base.replace("127.0.0.1", "localhost"), base, base.replace("127.0.0.1", "127.1")):
        with pytest.raises(FetchError, match="private_address"):
            asyncio.run(get([], url))
        assert hand_made.hits == []
        assert asyncio.run(get(LOCAL, url)) == 200
        hand_made.hits.clear()


def test_a_url_s_latest_page_is_found_by_index_not_by_scanning_every_page(tmp_path) -> None:
    """`validators` runs once per visit: a scan of every stored page made a crawl's cost grow with its square."""
    state = CrawlState(tmp_path / "state.sqlite")
    statements: list[str] = []
    state._db.set_trace_callback(statements.append)  # the statement validators() runs, its parameters filled in
    state.validators("http://example.org/")
    state._db.set_trace_callback(None)
    plan = " ".join(row[3] for row in state._db.execute("EXPLAIN QUERY PLAN " + statements[-1]))
    state.close()
    assert "USING INDEX pages_url" in plan or "USING COVERING INDEX pages_url" in plan, plan

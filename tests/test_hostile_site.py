"""Self-test of tests/hostile_site.py: every route does what the crawler tests rely on, and the server never hangs."""

from __future__ import annotations

import re
import socket
import threading
import time
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator

import httpx
import pytest

from tests.hostile_site import (
    DRIP_INTERVAL_S,
    DRIP_LENGTH,
    EXPECTED_FAILURES,
    GZIP_BOMB_SIZE,
    HUGE_LENGTH,
    INDEX_LINKS,
    MAX_HANDLER_S,
    SLOW_HEADERS_S,
    HostileSite,
    gzip_bomb,
    hostile_site,
)

PAGES = 5
MB = 1_000_000


@pytest.fixture
def site() -> Iterator[HostileSite]:
    with hostile_site(pages=PAGES) as hostile:
        yield hostile


@pytest.fixture
def client(site: HostileSite) -> Iterator[httpx.Client]:
    timeout = httpx.Timeout(5.0, connect=2.0)
    with httpx.Client(base_url=site.base, trust_env=False, timeout=timeout, follow_redirects=False) as c:
        yield c


def _links(page: str) -> list[str]:
    return re.findall(r'href="([^"]+)"', page)


def _words(page: str) -> int:
    main = re.search(r"<article>(.*)</article>", page, re.S)
    assert main, page[:200]
    return len(re.sub(r"<[^>]+>", " ", main[1]).split())


def test_robots_and_sitemap(site, client) -> None:
    robots = client.get("/robots.txt")
    assert robots.status_code == 200
    assert robots.headers["content-type"].startswith("text/plain")
    lines = robots.text.splitlines()
    assert "User-agent: *" in lines
    assert "Disallow: /private/" in lines
    assert f"Sitemap: {site.base}sitemap.xml" in lines
    sitemap = client.get("/sitemap.xml")
    assert sitemap.status_code == 200
    locs = [e.text for e in ET.fromstring(sitemap.content).iter("{http://www.sitemaps.org/schemas/sitemap/0.9}loc")]
    assert locs == [site.url(f"/ok/{n}") for n in range(PAGES)]


def test_index_links_every_route(site, client) -> None:
    index = client.get("/")
    assert index.status_code == 200
    assert index.headers["content-type"] == "text/html; charset=utf-8"
    links = [link.replace("&amp;", "&") for link in _links(index.text)]
    expected = {f"/ok/{n}" for n in range(PAGES)} | set(INDEX_LINKS) | set(EXPECTED_FAILURES)
    expected |= {"/redirect-chain/3", "/calendar/2024/01", "http://example.invalid/"}
    assert expected <= set(links)
    assert "/tracking?utm_source=x&id=1" in links and "/tracking?id=1&fbclid=abc" in links
    assert any(re.fullmatch(r"/session/\w+/page", link) for link in links)


def test_ok_pages_are_distinct_articles(site, client) -> None:
    bodies = []
    for n in range(PAGES):
        page = client.get(f"/ok/{n}")
        assert page.status_code == 200
        assert int(page.headers["content-length"]) == len(page.content)
        assert _words(page.text) >= 60
        assert "/" in _links(page.text)
        if n + 1 < PAGES:
            assert f"/ok/{n + 1}" in _links(page.text)
        bodies.append(page.text)
    assert len(set(bodies)) == PAGES
    assert client.get(f"/ok/{PAGES}").status_code == 404


def test_good_pages_are_articles(site, client) -> None:
    paths = [site.url(p) for p in ("/", "/flaky", "/rate-limited", "/gzip-ok", "/tracking?id=1")]
    assert set(paths) <= set(site.good_pages)
    assert len(site.good_pages) == len(set(site.good_pages)) == 1 + PAGES + 7
    texts = set()
    for url in site.good_pages:
        for _ in range(3):  # /flaky and /rate-limited need a few tries
            page = client.get(url)
            if page.status_code == 200:
                break
        assert page.status_code == 200, url
        assert page.headers["content-type"].startswith("text/html"), url
        text = page.content.decode("cp1252" if url.endswith("/latin1") else "utf-8")
        if url != site.base:
            assert _words(text) >= 60, url
        texts.add(text)
    assert len(texts) == len(site.good_pages)


def test_error_statuses(site, client) -> None:
    for _ in range(3):
        assert client.get("/error500").status_code == 500
    assert client.get("/not-found").status_code == 404
    assert client.get("/no/such/page").status_code == 404
    assert client.get("/calendar/2024/13").status_code == 404
    assert site.hits["/error500"] == 3
    assert site.hits["/not-found"] == 1


def test_flaky_then_ok(client) -> None:
    assert [client.get("/flaky").status_code for _ in range(4)] == [503, 503, 200, 200]


def test_rate_limited(client) -> None:
    first = client.get("/rate-limited")
    assert (first.status_code, first.headers["retry-after"]) == (429, "1")
    assert client.get("/rate-limited").status_code == 200
    for _ in range(2):
        long = client.get("/rate-limited-long")
        assert (long.status_code, long.headers["retry-after"]) == (429, "3600")


def test_redirects(site, client) -> None:
    assert client.get("/redirect-loop/a").headers["location"] == "/redirect-loop/b"
    assert client.get("/redirect-loop/b").headers["location"] == "/redirect-loop/a"
    hop = client.get("/redirect-chain/3")
    assert (hop.status_code, hop.headers["location"]) == (301, "/redirect-chain/2")
    followed = client.get("/redirect-chain/3", follow_redirects=True)
    assert followed.status_code == 200 and str(followed.url) == site.url("/redirect-chain/0")
    assert [str(r.url) for r in followed.history] == [site.url(f"/redirect-chain/{k}") for k in (3, 2, 1)]
    client.max_redirects = 10
    with pytest.raises(httpx.TooManyRedirects):
        client.get("/redirect-chain/20", follow_redirects=True)
    with pytest.raises(httpx.TooManyRedirects):
        client.get("/redirect-loop/a", follow_redirects=True)
    for path, location in [
        ("/to-private", "http://169.254.169.254/latest/meta-data/"),
        ("/to-private-ip", "http://10.0.0.1/"),
    ]:
        response = client.get(path)
        assert (response.status_code, response.headers["location"]) == (302, location)


def test_slow_headers_times_out(site) -> None:
    # The ReadTimeout is the proof: the server would answer, after SLOW_HEADERS_S.
    with httpx.Client(trust_env=False, timeout=httpx.Timeout(0.5)) as c, pytest.raises(httpx.ReadTimeout):
        c.get(site.url("/slow-headers"))
    assert site.hits["/slow-headers"] == 1


def test_drip(site, client) -> None:
    started = time.monotonic()
    received = b""
    with client.stream("GET", "/drip") as response:
        assert response.headers["content-length"] == str(DRIP_LENGTH)
        for chunk in response.iter_raw():
            received += chunk
            if len(received) >= 4:
                break
    # A lower bound, which load can only make longer: the server waits DRIP_INTERVAL_S before each byte.
    assert time.monotonic() - started >= 4 * DRIP_INTERVAL_S * 0.9
    assert set(received) == {ord(" ")} and len(received) < DRIP_LENGTH
    assert site.wait_handled("/drip")  # the client left: the handler stops dripping


@pytest.mark.parametrize("path", ["/huge", "/huge-chunked"])
def test_huge_bodies_stop_when_the_client_leaves(site, client, path) -> None:
    received = 0
    with client.stream("GET", path) as response:
        assert response.status_code == 200
        if path == "/huge":
            assert response.headers["content-length"] == "1000000000"
        else:
            assert response.headers["transfer-encoding"] == "chunked"
            assert "content-length" not in response.headers
        for chunk in response.iter_raw():
            received += len(chunk)
            if received >= MB:
                break
    assert MB <= received < HUGE_LENGTH
    # The handler returns when the client leaves; unread, its write would block for SOCKET_TIMEOUT_S instead.
    assert site.wait_handled(path)
    assert client.get("/ok/0").status_code == 200  # the pool recovers: a fresh connection


def test_gzip_bomb(site, client) -> None:
    with client.stream("GET", "/gzip-bomb") as response:
        assert response.headers["content-encoding"] == "gzip"
        assert response.headers["content-type"].startswith("text/html")
        compressed = int(response.headers["content-length"])
        assert compressed < 2 * MB
        inflate = zlib.decompressobj(31)
        out = b""
        for chunk in response.iter_raw():  # inflate ourselves, bounded: httpx would inflate a chunk whole
            out += inflate.decompress(chunk, MB - len(out))
            if len(out) >= MB:
                break
    assert len(out) == MB and set(out) == {ord(" ")}
    bomb = gzip_bomb()
    assert len(bomb) == compressed
    assert int.from_bytes(bomb[-4:], "little") == GZIP_BOMB_SIZE
    # The same construction, small enough to inflate whole here: a valid gzip stream, CRC and length checked.
    small = zlib.decompress(gzip_bomb(10 * MB), 31)
    assert small == b" " * (10 * MB)


def test_gzip_ok(client) -> None:
    response = client.get("/gzip-ok")
    assert response.headers["content-encoding"] == "gzip"
    assert _words(response.text) >= 60


def test_charsets(client) -> None:
    latin1 = client.get("/latin1")
    assert latin1.headers["content-type"] == "text/html; charset=utf-8"
    with pytest.raises(UnicodeDecodeError):
        latin1.content.decode("utf-8")
    text = latin1.content.decode("cp1252")
    for word in ("café", "naïve", "Müller", "\u201c", "\u201d"):
        assert word in text
    nocharset = client.get("/nocharset")
    assert nocharset.headers["content-type"] == "text/html"
    assert b"<meta" not in nocharset.content.lower()  # no <meta charset> either
    text = nocharset.content.decode("utf-8")
    assert "Straße" in text and "θάλασσα" in text


def test_traps(client) -> None:
    january = _links(client.get("/calendar/2024/01").text)
    assert "/calendar/2023/12" in january and "/calendar/2024/02" in january
    assert "/calendar/2025/01" in _links(client.get("/calendar/2024/12").text)
    sessions = set()
    for _ in range(2):
        page = client.get("/session/abc123/page")
        assert page.status_code == 200
        (next_session,) = [link for link in _links(page.text) if link.startswith("/session/")]
        assert re.fullmatch(r"/session/\w+/page", next_session) and next_session != "/session/abc123/page"
        sessions.add(next_session)
    assert len(sessions) == 2


def test_other_routes_and_hits(site, client) -> None:
    image = client.get("/image.png")
    assert image.headers["content-type"] == "image/png" and image.content.startswith(b"\x89PNG\r\n\x1a\n")
    secret = client.get("/private/secret")
    assert secret.status_code == 200  # the server serves it; robots.txt is what should stop a crawler
    tracked = [client.get(p) for p in ("/tracking?utm_source=x&id=1", "/tracking?id=1&fbclid=abc", "/tracking?id=1")]
    assert [r.status_code for r in tracked] == [200, 200, 200]
    assert len({r.text for r in tracked}) == 1
    assert client.get("/tracking").status_code == 404
    assert site.hits["/tracking?utm_source=x&id=1"] == 1
    assert site.hits["/tracking?id=1"] == 1
    assert site.hits["/private/secret"] == 1
    assert site.hits["/robots.txt"] == 0


def test_keep_alive(site, client) -> None:
    for path in ("/", "/ok/1", "/not-found", "/error500", "/rate-limited-long", "/redirect-loop/a", "/image.png"):
        client.get(path)
    client.get("/gzip-ok")
    assert site.connections == 1


def test_quiet(site, client, capfd) -> None:
    for path in ("/", "/not-found", "/error500"):
        client.get(path)
    with client.stream("GET", "/huge") as response:
        next(response.iter_raw())
    assert site.wait_handled("/huge")  # the handler met the closed socket
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_shutdown_is_fast_with_clients_connected() -> None:
    clients: list[socket.socket] = []
    with hostile_site(pages=2) as hostile:
        port = int(hostile.base.rsplit(":", 1)[1].strip("/"))
        paths = ("/drip", "/huge", "/huge-chunked", "/gzip-bomb", "/slow-headers", "/ok/0")
        for path in paths:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            clients.append(sock)  # never read: the server's writes block (or it sleeps)
        assert hostile.wait_until(lambda: all(hostile.hits[path] == 1 for path in paths))
        assert hostile.wait_handled("/ok/0")  # the one quick answer; the rest still sleep, drip or block
        handlers = [t for t in threading.enumerate() if "process_request" in t.name]
        assert len(handlers) == len(clients)
    # Leaving the block stopped every handler mid-way: each socket reaches its end (EOF or reset) without the rest
    # of its answer. Unstopped, /slow-headers would still answer after SLOW_HEADERS_S, /drip drip for a minute.
    received = {}
    for path, sock in zip(paths, clients, strict=True):
        sock.settimeout(2 * SLOW_HEADERS_S)  # a guard against a hang, not a bound
        received[path] = b""
        with sock:
            try:
                while chunk := sock.recv(1 << 20):
                    received[path] += chunk
            except ConnectionResetError:
                pass
    assert b"Finally" not in received["/slow-headers"]
    assert received["/drip"].count(b" ") < DRIP_LENGTH and len(received["/huge"]) < HUGE_LENGTH
    for handler in handlers:
        handler.join(timeout=MAX_HANDLER_S / 2)  # a stopped handler is done long before its own limit
    assert not [t for t in handlers if t.is_alive()]

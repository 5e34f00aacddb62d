"""A real HTTP server on 127.0.0.1 with a hostile corner, for crawler tests (standard library only).

    with hostile_site(pages=20) as site:
        crawl([site.base])
        assert site.hits["/private/secret"] == 0

It speaks HTTP/1.1 with keep-alive (every response carries a Content-Length or is chunked), logs nothing, and
shuts down fast: leaving the context sets a stop event that every slow loop checks, and shuts down every open
client socket, so a handler blocked sleeping, dripping or writing to a client that stopped reading ends at once.
Without a shutdown, no handler runs longer than ``MAX_HANDLER_S`` (60 s) or blocks on a socket longer than
``SOCKET_TIMEOUT_S`` (30 s, which is also how long an idle keep-alive connection is kept).

Pages a correct crawl stores (``HostileSite.good_pages``): the index ``/``, ``/ok/0``..``/ok/{pages-1}``, ``/flaky``
(after two 503s), ``/rate-limited`` (after one 429 with ``Retry-After: 1``), ``/redirect-chain/0`` (reached from
``/redirect-chain/3`` through 3 redirects), ``/gzip-ok``, ``/latin1`` (declares UTF-8, is cp1252), ``/nocharset``
(no charset anywhere, UTF-8 with German and Greek words) and ``/tracking?id=1`` (linked as
``/tracking?utm_source=x&id=1`` and ``/tracking?id=1&fbclid=abc``; a crawler that drops tracking parameters fetches it
once). Every good page is a distinct English article (title, four paragraphs, 150+ words, nav and footer links).

Routes that a correct crawl does not store, and the reason class a crawler is expected to give
(``EXPECTED_FAILURES`` has the same as data):

======================  =====================  ==============================================================
route                   reason                 what the server does
======================  =====================  ==============================================================
/error500               http_500               always 500 (retried, then given up)
/rate-limited-long      retry_after_too_long   always 429 with ``Retry-After: 3600`` (give up, do not wait)
/not-found              http_404               always 404 (must not be retried)
/slow-headers           timeout                sleeps 10 s before sending anything (a read timeout)
/drip                   timeout                Content-Length 100000, then one byte per 0.2 s (a total limit)
/redirect-loop/a        redirect_loop          302 to /redirect-loop/b, which 302s back to /redirect-loop/a
/redirect-chain/20      too_many_redirects     301 to /redirect-chain/19 ... /redirect-chain/0 (20 hops > 10)
/huge                   too_large              Content-Length 1e9, zeros in 64 KB chunks until the client leaves
/huge-chunked           too_large              chunked, 64 KB chunks of HTML filler until the client leaves or 1 GB
/gzip-bomb              too_large              ~1 MB of gzip that inflates to 1e9 spaces (Content-Length ~990 KB)
/to-private             private_address        302 to http://169.254.169.254/latest/meta-data/ (cloud metadata)
/to-private-ip          private_address        302 to http://10.0.0.1/
/private/secret         robots                 a 200 page that robots.txt disallows: ``hits`` must stay 0
/image.png              content_type           a 1x1 image/png
/calendar/YYYY/MM       (bounded)              endless months, each linking the previous and the next month
/session/<id>/page      (bounded)              endless session ids, each page linking a new random id
http://example.invalid  (out of scope)         an external link on the index
======================  =====================  ==============================================================

The two traps must be bounded by max_depth / max_pages or include/exclude patterns; their pages are HTML with a
little text (a crawl may store a few, none is a good page).

The gzip bomb's bytes are built once per process (``gzip_bomb()``, cached): one 1 MB block of spaces is deflated
once with a full flush, which makes it independent of what came before, and repeated 1000 times, plus a CRC over
the whole. That takes about half a second (the CRC), and ``hostile_site()`` pays it on entry, before the server
takes requests, so a crawler's first request to /gzip-bomb is not slowed by it.

Any other path is a 404; ``/robots.txt`` and ``/sitemap.xml`` (which lists the /ok/ pages) complete the site.
"""

from __future__ import annotations

import collections
import contextlib
import html
import random
import re
import secrets
import socket
import struct
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_HANDLER_S = 60.0  # the slowest endpoint (drip) gives up after this long
SOCKET_TIMEOUT_S = 30.0  # a blocked write or an idle keep-alive connection ends after this long
SLOW_HEADERS_S = 10.0
DRIP_LENGTH = 100_000
DRIP_INTERVAL_S = 0.2
HUGE_LENGTH = 1_000_000_000
CHUNK = 64 * 1024
GZIP_BOMB_SIZE = 1_000_000_000  # inflated bytes
_BOMB_BLOCK = 1_000_000

EXTERNAL_URL = "http://example.invalid/"
METADATA_URL = "http://169.254.169.254/latest/meta-data/"
PRIVATE_IP_URL = "http://10.0.0.1/"
SESSION_SEED_ID = "a1b2c3d4e5f6"
CALENDAR_START = "/calendar/2024/01"
TRACKING_LINKS = ("/tracking?utm_source=x&id=1", "/tracking?id=1&fbclid=abc")
TRACKING_CANONICAL = "/tracking?id=1"

# route (as linked from the index) -> the reason class a correct crawler gives for not storing it
EXPECTED_FAILURES: dict[str, str] = {
    "/error500": "http_500",
    "/rate-limited-long": "retry_after_too_long",
    "/not-found": "http_404",
    "/slow-headers": "timeout",
    "/drip": "timeout",
    "/redirect-loop/a": "redirect_loop",
    "/redirect-chain/20": "too_many_redirects",
    "/huge": "too_large",
    "/huge-chunked": "too_large",
    "/gzip-bomb": "too_large",
    "/to-private": "private_address",
    "/to-private-ip": "private_address",
    "/private/secret": "robots",
    "/image.png": "content_type",
}

# Good pages other than the index and /ok/<n>, as paths.
GOOD_EXTRA_PATHS = (
    "/flaky",
    "/rate-limited",
    "/redirect-chain/0",
    "/gzip-ok",
    "/latin1",
    "/nocharset",
    TRACKING_CANONICAL,
)

# Everything the index links, in order (besides /ok/<n> and the external link).
INDEX_LINKS = (
    "/error500",
    "/flaky",
    "/rate-limited",
    "/rate-limited-long",
    "/not-found",
    "/slow-headers",
    "/drip",
    "/redirect-loop/a",
    "/redirect-chain/3",
    "/redirect-chain/20",
    "/huge",
    "/huge-chunked",
    "/gzip-bomb",
    "/gzip-ok",
    "/latin1",
    "/nocharset",
    "/private/secret",
    CALENDAR_START,
    f"/session/{SESSION_SEED_ID}/page",
    "/to-private",
    "/to-private-ip",
    "/image.png",
    *TRACKING_LINKS,
)

# ---------------------------------------------------------------------------------------------------------------------
# Content


def _png_1x1() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    pixels = zlib.compress(b"\x00\xff\x80\x00")  # filter byte + one orange pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


PNG_BYTES = _png_1x1()

_ADJ = (
    "quiet", "ancient", "restless", "brilliant", "modest", "curious", "weathered", "stubborn", "gentle", "hidden",
    "narrow", "golden", "crowded", "forgotten", "sturdy", "patient", "remote", "noisy", "elegant", "humble",
    "bitter", "cheerful", "careful", "sprawling", "fragile", "generous", "silent", "clever", "rusty", "vivid",
)  # fmt: skip
_NOUN = (
    "lighthouse", "orchard", "bakery", "railway", "library", "glacier", "harbour", "workshop", "vineyard",
    "observatory", "market", "bridge", "monastery", "factory", "meadow", "archive", "theatre", "canal",
    "greenhouse", "quarry", "mill", "ferry", "garden", "tavern", "school", "forge", "museum", "valley",
    "printing press", "windmill",
)  # fmt: skip
_PLACE = (
    "the northern hills", "a coastal village", "the old quarter", "the river delta", "a mountain pass",
    "the eastern plains", "a fishing town", "the capital", "a desert oasis", "the lake district", "an island colony",
    "the border towns", "a university town", "the southern marshes", "a mining settlement", "the high plateau",
)  # fmt: skip
_PERSON = (
    "Ada", "Bartholomew", "Celia", "Desmond", "Eleanor", "Fitzgerald", "Greta", "Horace", "Imogen", "Jasper",
    "Katherine", "Leopold", "Marguerite", "Nathaniel", "Ophelia", "Percival", "Rosalind", "Sebastian", "Theodora",
    "Ulysses", "Vivienne", "Winifred",
)  # fmt: skip
_VERB = (  # (past tense, -ing form)
    ("repaired", "repairing"), ("painted", "painting"), ("measured", "measuring"), ("rebuilt", "rebuilding"),
    ("studied", "studying"), ("guarded", "guarding"), ("sketched", "sketching"), ("polished", "polishing"),
    ("catalogued", "cataloguing"), ("explored", "exploring"), ("restored", "restoring"), ("described", "describing"),
    ("moved", "moving"), ("admired", "admiring"), ("photographed", "photographing"), ("inspected", "inspecting"),
)  # fmt: skip
_ADVERB = (
    "slowly", "carefully", "eagerly", "reluctantly", "quietly", "boldly", "patiently", "cheerfully", "thoroughly",
    "nervously", "gracefully", "steadily",
)  # fmt: skip
_TIME = (
    "the first frost", "a long winter", "the spring floods", "the harvest festival", "midsummer", "the great storm",
    "the autumn fair", "three dry summers", "the new year", "the war years", "a decade of neglect", "the election",
)  # fmt: skip
_TEMPLATES = (
    "The {adj} {noun} near {place} was {past} by {person} soon after {time}.",
    "{person} said that nobody had {past} the {noun} so {adverb} since {time}.",
    "Few visitors to {place} remember how the {adj} {noun} looked before {time}.",
    "By {time}, {person} and {person2} were {ing} the {noun} every single morning.",
    "{person} kept a notebook about the {noun}, writing {adverb} about its {adj} walls and {adj2} doors.",
    "It is often claimed in {place} that a {adj} {noun} cannot survive {time} without help.",
    "Local records show that the {noun} was {past} twice, once by {person} and once by strangers from {place}.",
    "When {person2} arrived from {place}, the {adj} {noun} had already been {past} {adverb}.",
    "Children in {place} still tell stories about the {adj2} {noun} and the night of {time}.",
    "{person} believed that {ing} the {noun} {adverb} was the only way to understand {place}.",
    "After {time}, the council voted to keep the {adj} {noun} open for anyone {ing} it.",
    "Nobody expected the {adj} {noun} to matter much, yet {person} {past} it {adverb} for years.",
    "Between {time} and the following spring, travellers from {place} came to see the {noun}.",
    "The letters of {person} mention a {adj2} {noun} that stood for a century near {place}.",
)  # fmt: skip


def _sentence(rng: random.Random) -> str:
    adj, adj2 = rng.sample(_ADJ, 2)
    person, person2 = rng.sample(_PERSON, 2)
    past, ing = rng.choice(_VERB)
    return rng.choice(_TEMPLATES).format(
        adj=adj,
        adj2=adj2,
        noun=rng.choice(_NOUN),
        place=rng.choice(_PLACE),
        person=person,
        person2=person2,
        past=past,
        ing=ing,
        adverb=rng.choice(_ADVERB),
        time=rng.choice(_TIME),
    )


def article_text(seed: str) -> tuple[str, list[str]]:
    """A deterministic English article for `seed`: (title, four paragraphs of four sentences)."""
    rng = random.Random(f"hostile-site:{seed}")
    title = f"The {rng.choice(_ADJ).title()} {rng.choice(_NOUN).title()} of {rng.choice(_PLACE).title()} ({seed})"
    paragraphs = [" ".join(_sentence(rng) for _ in range(4)) for _ in range(4)]
    return title, paragraphs


def html_page(
    title: str, paragraphs: list[str], nav: list[tuple[str, str]] | None = None, *, meta_charset: bool = True
) -> str:
    """An article page with a header nav, a main article and a footer (boilerplate for extraction to drop)."""
    esc = html.escape
    links = [("/", "Home"), *(nav or [])]
    nav_html = " | ".join(f'<a href="{html.escape(href)}">{html.escape(label)}</a>' for href, label in links)
    body = "\n".join(f"<p>{esc(p)}</p>" for p in paragraphs)
    meta = '<meta charset="utf-8">\n' if meta_charset else ""
    return (
        f'<!doctype html>\n<html lang="en">\n<head>\n{meta}<title>{esc(title)}</title>\n</head>\n<body>\n'
        f"<header><nav>{nav_html}</nav></header>\n"
        f"<main><article>\n<h1>{esc(title)}</h1>\n{body}\n</article></main>\n"
        '<footer><p>Hostile Test Site. <a href="/">Home</a> | <a href="/ok/0">First article</a> | '
        "All rights reserved.</p></footer>\n</body>\n</html>\n"
    )


def good_article(seed: str) -> str:
    title, paragraphs = article_text(seed)
    return html_page(title, paragraphs)


def ok_page(n: int, pages: int) -> str:
    title, paragraphs = article_text(f"ok-{n}")
    nav = [(f"/ok/{n + 1}", "Next article")] if n + 1 < pages else [("/ok/0", "First article")]
    if n > 0:
        nav.append((f"/ok/{n - 1}", "Previous article"))
    return html_page(title, paragraphs, nav)


def latin1_page() -> bytes:
    """A good article in cp1252 with accented words and smart quotes (served as if it were UTF-8)."""
    title, paragraphs = article_text("latin1")
    paragraphs = [
        "At the café on the corner, the naïve Herr Müller ordered a crème brûlée and said \u201cthis is the best "
        "façade in town\u201d to the señora, who smiled and handed him her résumé.",
        *paragraphs[:2],
        "Everyone agreed that the café\u2019s jalapeño soup was über-spicy, and Müller\u2019s naïve "
        "\u2018fiancée\u2019 wrote a long critique of it in her diary \u2013 in French, of course.",
        *paragraphs[2:],
    ]
    return html_page(f"Café Society ({title})", paragraphs, meta_charset=False).encode("cp1252")


def nocharset_page() -> bytes:
    """A good article in UTF-8 with German and Greek words, with no charset in the header or the page."""
    title, paragraphs = article_text("nocharset")
    paragraphs = [
        "The German words Straße, Größe, Übung, schön and Mädchen sit beside the Greek words καλημέρα, θάλασσα, "
        "φιλοσοφία and ελληνικά in this article, which never says how it is encoded.",
        *paragraphs[:2],
        "A traveller wrote: «Η θάλασσα ήταν ήρεμη και ο ουρανός καθαρός», and later, in German, "
        "„Die Brücke über den Fluß war größer als erwartet, und die Mühle stand still.“",
        *paragraphs[2:],
    ]
    return html_page(f"Words Abroad ({title})", paragraphs, meta_charset=False).encode("utf-8")


def index_page(pages: int) -> str:
    links = [f"/ok/{n}" for n in range(pages)] + list(INDEX_LINKS)
    items = "\n".join(f'<li><a href="{html.escape(href)}">{html.escape(href)}</a></li>' for href in links)
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Hostile Test Site</title>\n'
        '</head>\n<body>\n<header><nav><a href="/">Home</a></nav></header>\n<main>\n<h1>Hostile Test Site</h1>\n'
        "<p>This site is a test bed for web crawlers. Most of its pages are ordinary articles about lighthouses, "
        "orchards and old railways, written to look like the real thing, but a corner of it is hostile: pages that "
        "fail, pages that are slow, pages that never end, redirects that go round in circles, and links into spaces "
        "of addresses that have no end at all.</p>\n"
        "<p>A polite and careful crawler reads the robots file first, keeps to its limits of time, size, depth and "
        "redirects, and stores every ordinary article exactly once, whatever the server does to it.</p>\n"
        f"<ul>\n{items}\n</ul>\n"
        f'<p>Elsewhere: <a href="{EXTERNAL_URL}">an external site</a>.</p>\n'
        "</main>\n<footer><p>Hostile Test Site.</p></footer>\n</body>\n</html>\n"
    )


_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


def calendar_page(year: int, month: int) -> str:
    prev_y, prev_m = (year - 1, 12) if month == 1 else (year, month - 1)
    next_y, next_m = (year + 1, 1) if month == 12 else (year, month + 1)
    name = _MONTHS[month - 1]
    nav = [
        (f"/calendar/{prev_y:04d}/{prev_m:02d}", "Previous month"),
        (f"/calendar/{next_y:04d}/{next_m:02d}", "Next month"),
    ]
    return html_page(f"Events in {name} {year:04d}", [f"No events are scheduled for {name} {year:04d}."], nav)


def session_page(session_id: str) -> str:
    nav = [(f"/session/{secrets.token_hex(6)}/page", "Continue")]
    return html_page(f"Session {session_id}", [f"You are browsing in session {session_id}."], nav)


def robots_txt(base: str) -> str:
    return f"User-agent: *\nDisallow: /private/\n\nSitemap: {base}sitemap.xml\n"


def sitemap_xml(base: str, pages: int) -> str:
    urls = "".join(f"  <url><loc>{base}ok/{n}</loc></url>\n" for n in range(pages))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n{urls}</urlset>\n'
    )


_bomb_lock = threading.Lock()
_bomb_cache: dict[int, bytes] = {}


def gzip_bomb(size: int = GZIP_BOMB_SIZE) -> bytes:
    """gzip bytes that inflate to `size` spaces (a multiple of 1 MB), built once per process and size.

    One 1 MB block is deflated once and ended with a full flush (which resets the compressor, so the block does
    not refer back to what precedes it) and repeated; only the CRC-32 has to see every byte. 1e9 bytes: ~990 KB
    compressed, ~0.5 s to build."""
    if size % _BOMB_BLOCK:
        raise ValueError(f"size must be a multiple of {_BOMB_BLOCK}")
    with _bomb_lock:
        if size not in _bomb_cache:
            block = b" " * _BOMB_BLOCK
            compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
            deflated = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
            final = compressor.flush(zlib.Z_FINISH)
            crc = 0
            for _ in range(size // _BOMB_BLOCK):
                crc = zlib.crc32(block, crc)
            header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # gzip, deflate, no name, no mtime, max compression
            trailer = struct.pack("<II", crc, size & 0xFFFFFFFF)
            _bomb_cache[size] = header + deflated * (size // _BOMB_BLOCK) + final + trailer
        return _bomb_cache[size]


def _gzip(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


# ---------------------------------------------------------------------------------------------------------------------
# Server


@dataclass
class HostileSite:
    base: str  # "http://127.0.0.1:<port>/"
    pages: int
    hits: collections.Counter = field(default_factory=collections.Counter)  # path with query -> GET requests
    good_pages: list[str] = field(default_factory=list)  # absolute URLs a correct crawl stores
    connections: int = 0  # TCP connections accepted (to check that a client keeps connections alive)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _route_hits: collections.Counter = field(default_factory=collections.Counter, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    handled: collections.Counter = field(default_factory=collections.Counter)  # route -> handlers that returned
    _changed: threading.Condition = field(default_factory=threading.Condition, repr=False)  # hits or handled
    _sockets: set[socket.socket] = field(default_factory=set, repr=False)

    def url(self, path: str) -> str:
        return self.base + path.lstrip("/")

    def _hit(self, target: str, route: str) -> int:
        """Count a request; returns how many times `route` (the path without query) has now been requested."""
        with self._lock, self._changed:
            self.hits[target] += 1
            self._route_hits[route] += 1
            self._changed.notify_all()
            return self._route_hits[route]

    def wait_until(self, condition: Callable[[], bool], timeout: float = SOCKET_TIMEOUT_S / 2) -> bool:
        """Wait until `condition` (of `hits` and `handled`) holds. The timeout guards against a hang only: what
        happens at all happens far sooner."""
        with self._changed:
            return self._changed.wait_for(condition, timeout)

    def wait_handled(self, route: str, count: int = 1) -> bool:
        """Wait until `count` requests of `route` have been handled to the end (finished, failed or stopped)."""
        return self.wait_until(lambda: self.handled[route] >= count)

    def _done(self, route: str) -> None:
        with self._changed:
            self.handled[route] += 1
            self._changed.notify_all()

    def _open(self, sock: socket.socket) -> None:
        with self._lock:
            self.connections += 1
            self._sockets.add(sock)

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)

    def _stop_all(self) -> None:
        self._stop.set()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:  # wakes handlers blocked in recv or sendall
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


_DISCONNECTED = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a crawler opens many connections at once; a backlog of 5 drops SYNs (1 s stalls)
    site: HostileSite

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, _DISCONNECTED) or self.site._stop.is_set():
            return
        super().handle_error(request, client_address)  # a bug in this module: worth a traceback


_CALENDAR = re.compile(r"/calendar/(\d{4})/(\d{2})")
_SESSION = re.compile(r"/session/([A-Za-z0-9]+)/page")
_OK = re.compile(r"/ok/(\d+)")
_CHAIN = re.compile(r"/redirect-chain/(\d+)")
_HTML = "text/html; charset=utf-8"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "HostileSite/1.0"
    timeout = SOCKET_TIMEOUT_S
    disable_nagle_algorithm = True  # headers and body go in two writes: Nagle + delayed ACK would add 40 ms each
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.site._open(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.site._close(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    # -- helpers -------------------------------------------------------------------------------------------------------

    @property
    def site(self) -> HostileSite:
        return self.server.site

    def _send(
        self,
        status: int,
        body: bytes | str = b"",
        content_type: str | None = _HTML,
        headers: dict[str, str] | None = None,
    ) -> None:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _status_page(self, status: int, headers: dict[str, str] | None = None) -> None:
        phrase = self.responses.get(status, ("",))[0]
        body = (
            f"<!doctype html><html><head><title>{status} {phrase}</title></head>"
            f"<body><h1>{status} {phrase}</h1></body></html>"
        )
        self._send(status, body, headers=headers)

    def _redirect(self, status: int, location: str) -> None:
        self._send(status, f'<a href="{html.escape(location)}">moved</a>', headers={"Location": location})

    def _wait(self, seconds: float) -> bool:
        """Sleeps; True when the server is shutting down."""
        return self.site._stop.wait(seconds)

    # -- routes --------------------------------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        path = parts.path
        count = self.site._hit(self.path, path)
        try:
            self._route(path, parts.query, count)
        except _DISCONNECTED:
            self.close_connection = True
        except OSError:
            if not self.site._stop.is_set():
                raise
            self.close_connection = True
        finally:
            self.site._done(path)

    def _route(self, path: str, query: str, count: int) -> None:  # noqa: C901 - one flat table of routes
        site = self.site
        if path == "/":
            self._send(200, index_page(site.pages))
        elif path == "/robots.txt":
            self._send(200, robots_txt(site.base), "text/plain; charset=utf-8")
        elif path == "/sitemap.xml":
            self._send(200, sitemap_xml(site.base, site.pages), "application/xml")
        elif (m := _OK.fullmatch(path)) and int(m[1]) < site.pages:
            self._send(200, ok_page(int(m[1]), site.pages))
        elif path == "/error500":
            self._status_page(500)
        elif path == "/flaky":
            if count <= 2:
                self._status_page(503)
            else:
                self._send(200, good_article("flaky"))
        elif path == "/rate-limited":
            if count <= 1:
                self._status_page(429, {"Retry-After": "1"})
            else:
                self._send(200, good_article("rate-limited"))
        elif path == "/rate-limited-long":
            self._status_page(429, {"Retry-After": "3600"})
        elif path == "/slow-headers":
            self._slow_headers()
        elif path == "/drip":
            self._drip()
        elif path == "/redirect-loop/a":
            self._redirect(302, "/redirect-loop/b")
        elif path == "/redirect-loop/b":
            self._redirect(302, "/redirect-loop/a")
        elif m := _CHAIN.fullmatch(path):
            k = int(m[1])
            if k == 0:
                self._send(200, good_article("redirect-chain"))
            else:
                self._redirect(301, f"/redirect-chain/{k - 1}")
        elif path == "/huge":
            self._huge()
        elif path == "/huge-chunked":
            self._huge_chunked()
        elif path == "/gzip-bomb":
            self._send(200, gzip_bomb(), _HTML, {"Content-Encoding": "gzip"})
        elif path == "/gzip-ok":
            self._send(200, _gzip(good_article("gzip-ok").encode("utf-8")), _HTML, {"Content-Encoding": "gzip"})
        elif path == "/latin1":
            self._send(200, latin1_page(), _HTML)  # the header lies: the bytes are cp1252
        elif path == "/nocharset":
            self._send(200, nocharset_page(), "text/html")
        elif path == "/private/secret":
            self._send(200, good_article("private-secret"))
        elif m := _CALENDAR.fullmatch(path):
            year, month = int(m[1]), int(m[2])
            if 1 <= month <= 12:
                self._send(200, calendar_page(year, month))
            else:
                self._status_page(404)
        elif m := _SESSION.fullmatch(path):
            self._send(200, session_page(m[1]))
        elif path == "/to-private":
            self._redirect(302, METADATA_URL)
        elif path == "/to-private-ip":
            self._redirect(302, PRIVATE_IP_URL)
        elif path == "/image.png":
            self._send(200, PNG_BYTES, "image/png")
        elif path == "/tracking" and parse_qs(query).get("id") == ["1"]:
            self._send(200, good_article("tracking"))
        else:
            self._status_page(404)

    def _slow_headers(self) -> None:
        if self._wait(SLOW_HEADERS_S):
            self.close_connection = True
            return
        self._send(200, html_page("Finally", ["This page took ten seconds to start."]))

    def _drip(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", _HTML)
        self.send_header("Content-Length", str(DRIP_LENGTH))
        self.end_headers()
        deadline = time.monotonic() + MAX_HANDLER_S
        for _ in range(DRIP_LENGTH):
            if time.monotonic() > deadline or self._wait(DRIP_INTERVAL_S):
                self.close_connection = True  # the body is incomplete
                return
            self.wfile.write(b" ")

    def _huge(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", _HTML)
        self.send_header("Content-Length", str(HUGE_LENGTH))
        self.end_headers()
        zeros = bytes(CHUNK)
        sent = 0
        while sent < HUGE_LENGTH:
            if self.site._stop.is_set():
                self.close_connection = True
                return
            piece = zeros if HUGE_LENGTH - sent >= CHUNK else zeros[: HUGE_LENGTH - sent]
            self.wfile.write(piece)
            sent += len(piece)

    def _huge_chunked(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", _HTML)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        filler = (b"<p>" + b"filler text that never ends " * 2400)[: CHUNK - 4] + b"</p>"
        frame = f"{len(filler):x}\r\n".encode("ascii") + filler + b"\r\n"
        self.wfile.write(f"{len(b'<html><body>'):x}\r\n<html><body>\r\n".encode("ascii"))
        sent = 0
        while sent < HUGE_LENGTH:
            if self.site._stop.is_set():
                self.close_connection = True
                return
            self.wfile.write(frame)
            sent += len(filler)
        self.wfile.write(b"0\r\n\r\n")


@contextmanager
def hostile_site(pages: int = 20) -> Iterator[HostileSite]:
    """Serves the hostile site on 127.0.0.1 (a free port) in a background thread for the duration of the block."""
    gzip_bomb()  # built before the server takes requests (~0.5 s, once per process)
    server = _Server(("127.0.0.1", 0), _Handler)
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    site = HostileSite(base=base, pages=pages)
    site.good_pages = [base] + [f"{base}ok/{n}" for n in range(pages)] + [site.url(p) for p in GOOD_EXTRA_PATHS]
    server.site = site
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="hostile-site", daemon=True
    )
    thread.start()
    try:
        yield site
    finally:
        site._stop.set()
        server.shutdown()
        site._stop_all()
        server.server_close()
        thread.join(timeout=5)

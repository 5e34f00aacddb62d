"""One HTTP exchange, bounded in every dimension: time, body size, decompressed size, content type, address.

The crawler composes these parts; none of them knows about frontiers or robots.txt. Failures are raised as
`FetchError` with a short machine-readable `reason` (timeout, connect, too_large, private_address, ...) that
ends up in the fetch log.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import random
import re
import socket
import ssl
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import certifi
from aiohttp.abc import ResolveResult
from yarl import URL

from gristmill.tasks.crawl.charset import parse_content_type

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_HEADER_BYTES = 16_384
MAX_HEADERS = 512
ACCEPT_ENCODING = "gzip, deflate"  # what we can decode with a size limit (no brotli/zstd bombs to worry about)


class FetchError(Exception):
    """A URL that produced no usable response; `reason` is its class in the fetch log."""

    def __init__(self, reason: str, detail: str = "", *, retryable: bool = False, status: int | None = None):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.retryable = retryable
        self.status = status


@dataclass(frozen=True)
class Response:
    """One HTTP response as received: no redirect followed; body decompressed and complete (or absent)."""

    url: str
    status: int
    reason_phrase: str
    http_version: str
    headers: list[tuple[str, str]]
    content_type: str | None  # media type only, lowercase
    charset: str | None
    body: bytes
    fetched_at: datetime

    def header(self, name: str) -> str | None:
        return header_value(self.headers, name)

    @property
    def redirect_location(self) -> str | None:
        return self.header("location") if self.status in REDIRECT_STATUSES else None


class BoundedDecoder:
    """Content-Encoding decoding that never produces more than `limit` bytes, whatever the compression ratio.

    HTTP clients decode a whole network chunk at once (a 64 KB gzip chunk of zeros is 64 MB); here every call asks
    zlib for at most what is left of the limit, so a compression bomb costs `limit` bytes of memory at most.
    """

    def __init__(self, encoding: str | None, limit: int) -> None:
        encoding = (encoding or "identity").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._zlib = zlib.decompressobj()  # zlib-wrapped; raw deflate handled on the first chunk
        elif encoding == "identity":
            self._zlib = None
        else:
            raise FetchError("encoding", f"unsupported Content-Encoding {encoding!r}")
        self._encoding = encoding
        self._limit = limit
        self.size = 0
        self._first = True

    def feed(self, chunk: bytes) -> bytes:
        """Decoded bytes of `chunk`; raises FetchError("too_large") once the output passes the limit."""
        out = chunk if self._zlib is None else self._decompress(chunk)
        self.size += len(out)
        if self.size > self._limit:
            raise FetchError("too_large", f"body over {self._limit} bytes (decoded)")
        return out

    def _decompress(self, chunk: bytes) -> bytes:
        if self._first and self._encoding == "deflate" and chunk[:1] and (chunk[0] & 0x0F) != 8:
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)  # servers that send raw deflate
        self._first = False
        parts, data = [], chunk
        budget = self._limit - self.size + 1  # one byte over is enough to know it is too large
        try:
            while data and budget > 0:
                out = self._zlib.decompress(data, budget)
                parts.append(out)
                budget -= len(out)
                data = self._zlib.unconsumed_tail
        except zlib.error as err:
            raise FetchError("decoding", str(err)) from err
        return b"".join(parts)


class Fetcher:
    """GETs one URL: redirects not followed (each hop is the crawler's decision), limits enforced."""

    def __init__(
        self, session: aiohttp.ClientSession, *, max_body_bytes: int, total_timeout_s: float, content_types: list[str]
    ) -> None:
        self._session = session
        self._max_body = max_body_bytes
        self._timeout = total_timeout_s
        self._types = frozenset(t.lower() for t in content_types)

    async def get(self, url: str, any_type: bool = False, headers: dict[str, str] | None = None) -> Response:
        """The response, with a body only for a 2xx of an allowed type (any type for robots.txt and sitemaps).
        `headers` are added to the request (a refresh's If-None-Match / If-Modified-Since)."""
        try:
            async with asyncio.timeout(self._timeout):  # the whole exchange: a slow drip cannot stall a slot
                return await self._get(url, any_type, headers or {})
        except aiohttp.ServerTimeoutError as err:  # a connect or a read that stalled (connect_timeout_s)
            raise FetchError("timeout", type(err).__name__, retryable=True) from err
        except TimeoutError as err:
            raise FetchError("timeout", f"no complete response in {self._timeout:g} s", retryable=True) from err
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as err:
            # refused, reset, cut short, or not HTTP (a malformed status line or header): maybe better next time
            raise FetchError("connect", f"{type(err).__name__}: {err}", retryable=True) from err
        except (aiohttp.ClientError, ValueError) as err:  # an invalid URL among them
            raise FetchError("http_error", f"{type(err).__name__}: {err}") from err

    async def _get(self, url: str, any_type: bool, headers: dict[str, str]) -> Response:
        fetched_at = datetime.now(UTC)
        async with self._session.get(request_url(url), headers=headers, allow_redirects=False) as response:
            received = decoded_headers(response.raw_headers)
            media_type, charset = parse_content_type(header_value(received, "content-type"))
            body = b""
            if 200 <= response.status < 300:
                if not any_type and media_type not in self._types:
                    raise FetchError("content_type", f"{media_type} is not in {sorted(self._types)}")
                body = await self._read(response)
            return Response(
                url=url,
                status=response.status,
                reason_phrase=_header_text((response.reason or "").encode("utf-8", "surrogateescape")),
                http_version=f"HTTP/{response.version.major}.{response.version.minor}",
                headers=received,
                content_type=media_type,
                charset=charset,
                body=body,
                fetched_at=fetched_at,
            )

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        declared = response.headers.get("content-length", "")
        encoding = response.headers.get("content-encoding")
        if declared.isdigit() and int(declared) > self._max_body and not encoding:
            raise FetchError("too_large", f"Content-Length {declared} over {self._max_body} bytes")
        decoder = BoundedDecoder(encoding, self._max_body)  # the session leaves bodies encoded (auto_decompress off)
        chunks = [decoder.feed(chunk) async for chunk in response.content.iter_any()]
        return b"".join(chunks)


def client_session(
    guard: AddressGuard, *, concurrency: int, user_agent: str, connect_timeout_s: float
) -> aiohttp.ClientSession:
    """The crawler's HTTP client: connections only to addresses `guard` checked, at most `concurrency` open, bodies
    as sent (`BoundedDecoder` decodes them), no proxies from the environment (a proxy would connect on our behalf,
    making the address guard meaningless, and would swallow requests to a 127.0.0.1 site), cookies kept per site."""
    session = aiohttp.ClientSession(
        connector=GuardedConnector(guard, limit=concurrency),
        headers={"User-Agent": user_agent, "Accept-Encoding": ACCEPT_ENCODING},
        # connect and every read: a server that stops sending fails in connect_timeout_s, not at the total limit
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s, sock_read=connect_timeout_s),
        auto_decompress=False,
        trust_env=False,
        cookie_jar=aiohttp.CookieJar(unsafe=True),  # unsafe: cookies of sites addressed by IP are kept too
        # Header lines of up to 16 KB (aiohttp's default is 8 KB; long Content-Security-Policy headers exist), and
        # up to 512 of them (its default is 128; sites send dozens of Set-Cookie lines).
        max_line_size=MAX_HEADER_BYTES,
        max_field_size=MAX_HEADER_BYTES,
        max_headers=MAX_HEADERS,
    )
    # aiohttp sends a GET again at once, unspaced and uncounted, when the server closes without answering; every
    # attempt is the crawler's to make (its retries wait for the host's turn and are counted in the fetch log).
    session._retry_connection = False
    return session


def request_url(url: str) -> URL:
    """The URL to request: `url` exactly as the crawler recorded it when it is plain ASCII URL text. yarl would
    otherwise requote it, decoding escapes of reserved characters (/AT%26T became /AT&T: another resource on some
    servers); a URL with other characters (non-ASCII, spaces) is left to yarl to encode."""
    return URL(url, encoded=_URL_TEXT.fullmatch(url) is not None)


_URL_TEXT = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")  # RFC 3986's characters, and % escapes


def decoded_headers(raw: Sequence[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """Response headers as sent (name case, order, repeats), values decoded as UTF-8, else as latin-1 (HTTP's old
    default): a stray byte must reach the WARC and the crawl state as text that encodes again."""
    return [(name.decode("latin-1"), _header_text(value)) for name, value in raw]


def header_value(headers: list[tuple[str, str]], name: str) -> str | None:
    """The first value of header `name` (any case), or None."""
    name = name.lower()
    return next((v for k, v in headers if k.lower() == name), None)


def _header_text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_seconds(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2^attempt)]."""
    return random.uniform(0, min(cap, base * 2**attempt))


class AddressGuard:
    """Refuses hosts that resolve to loopback, private, link-local or reserved addresses (SSRF protection).

    A crawler fed links from the web must not become a way to reach the machine it runs on or its network
    (169.254.169.254 is a cloud's metadata service). Networks in `allowed` are exempt (a local test site).
    `check` is the early, cached refusal (before robots.txt is asked for); `pin` is the enforcement: the
    connector (`GuardedConnector`) connects to the very address `pin` resolved and checked, so a DNS answer that
    changes between a check and the connection (rebinding) gains nothing.
    """

    def __init__(self, allowed: list[str]) -> None:
        self._allowed = [ipaddress.ip_network(n, strict=False) for n in allowed]
        self._verdicts: dict[str, str | None] = {}

    async def check(self, url: str) -> None:
        """Raise FetchError("private_address" | "unresolvable") unless every address of the host may be reached."""
        host = urlsplit(url).hostname or ""
        if host not in self._verdicts:
            verdict, _ = await self._resolve(host)
            if verdict == "unresolvable":  # DNS can fail for a moment: not remembered, and worth a retry
                raise FetchError(verdict, host, retryable=True)
            self._verdicts[host] = verdict
        if self._verdicts[host] is not None:
            raise FetchError(self._verdicts[host], host)

    async def pin(self, host: str) -> str:
        """Resolve `host` now and return the address to connect to; raise FetchError if any address is refused."""
        verdict, addresses = await self._resolve(host)
        if verdict is not None:
            raise FetchError(verdict, host, retryable=verdict == "unresolvable")
        return addresses[0]

    async def _resolve(self, host: str) -> tuple[str | None, list[str]]:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return "unresolvable", []
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        if not addresses:
            return "unresolvable", []
        # One refused address is enough: another resolution could hand out any of them.
        return (None if all(self._reachable(a) for a in addresses) else "private_address"), addresses

    def _reachable(self, address: str) -> bool:
        ip = parse_address(address)
        return any(ip in network for network in self._allowed) or is_public_address(ip)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """Certificates are checked against Mozilla's CA bundle (certifi), the same on every machine."""
    return ssl.create_default_context(cafile=certifi.where())


class GuardedConnector(aiohttp.TCPConnector):
    """aiohttp's connector whose connections go only to the address `AddressGuard.pin` resolved and checked, IP
    literals included. TLS still verifies the host name (SNI and certificate use the URL's host; only the TCP
    destination is pinned)."""

    def __init__(self, guard: AddressGuard, limit: int) -> None:
        super().__init__(limit=limit, use_dns_cache=False, ssl=tls_context())
        self._guard = guard

    async def _resolve_host(self, host: str, port: int, traces: Sequence[Any] | None = None) -> list[ResolveResult]:
        # The one place we reach in: aiohttp connects to what this returns, and calls no resolver for an IP literal,
        # so a resolver of our own would not see those.
        address = await self._guard.pin(host)
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        flags = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
        return [{"hostname": host, "host": address, "port": port, "family": family, "proto": 0, "flags": flags}]


def parse_address(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = ipaddress.ip_address(address.split("%")[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback, whatever Python version judges it
    return ip


def is_public_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address | str) -> bool:
    ip = parse_address(ip) if isinstance(ip, str) else ip
    return ip.is_global and not ip.is_multicast

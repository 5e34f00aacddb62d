"""A polite, breadth-first web crawler: seeds in, one `DOCUMENT_SCHEMA` record per fetched page out.

Politeness and safety come before coverage: robots.txt is obeyed (Disallow and Crawl-delay), requests to one
host are spaced out, hosts that resolve to private addresses are refused, bodies are capped while streaming,
and every redirect hop is checked like a new link. The parts are small classes (URL normalisation, frontier,
scope, address guard, robots cache, throttle, fetcher) so that async fetching, retries and WARC output can
replace one part at a time.
"""

from __future__ import annotations

import codecs
import enum
import ipaddress
import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
from lxml import etree
from protego import Protego

from conf.schema import CrawlConfig
from tasks.crawl.extract import extract, extract_links
from tasks.crawl.records import doc_id

logger = logging.getLogger("gristmill.crawl")

MAX_REDIRECTS = 10
ROBOTS_MAX_REDIRECTS = 5  # RFC 9309 asks crawlers to follow at least five
MAX_SITEMAPS_PER_HOST = 50  # a sitemap index can point to thousands; enough to seed a bounded crawl
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
EXTRACTABLE_TYPES = HTML_TYPES | {"text/plain"}
DEFAULT_PORTS = {"http": 80, "https": 443}
PROGRESS_EVERY = 50


def normalize_url(url: str) -> str | None:
    """Canonical form used for the seen-set and doc ids; None for anything but an absolute http(s) URL.

    Lowercases scheme and host, drops default ports, fragments and credentials, and gives an empty path "/".
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:  # bad port or bracketed host
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if scheme not in DEFAULT_PORTS or not host:
        return None
    if ":" in host:  # IPv6 literal: urlsplit strips the brackets, a URL needs them
        host = f"[{host}]"
    if port is not None and port != DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    return urlunsplit((scheme, host, parts.path or "/", parts.query, ""))


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class CrawlStats:
    fetched: int = 0  # pages with an HTTP response, i.e. records yielded (any status)
    ok: int = 0  # of those, status 2xx
    failed: int = 0  # pages with no response: network error, timeout, DNS failure, redirect loop
    skipped_robots: int = 0
    skipped_scope: int = 0  # distinct URLs outside the seeds' hosts (links and redirect targets)
    skipped_private: int = 0  # URLs refused because their host resolves to a non-public address
    too_large: int = 0  # bodies over max_body_bytes, cut off and not recorded
    bytes: int = 0  # body bytes of the recorded pages
    extracted: int = 0  # recorded pages with main text

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Response:
    """One HTTP response as received: no redirect followed, body possibly cut at the size limit."""

    url: str
    status: int
    content_type: str | None  # media type only, lowercase
    charset: str | None
    location: str | None
    body: bytes
    truncated: bool
    fetched_at: datetime


class Fetcher:
    """One GET per call, streamed so that an oversized body is cut off instead of loaded.

    Redirects are not followed here: the crawler checks each hop like a new link (scope, address, robots).
    """

    def __init__(self, client: httpx.Client, max_body_bytes: int) -> None:
        self._client = client
        self._max = max_body_bytes

    def get(self, url: str) -> Response:
        """Raises httpx.HTTPError or httpx.InvalidURL when no response arrives."""
        fetched_at = datetime.now(UTC)
        with self._client.stream("GET", url) as response:
            body, truncated = self._read(response)
            media_type, charset = parse_content_type(response.headers.get("content-type"))
            return Response(
                url=url,
                status=response.status_code,
                content_type=media_type,
                charset=charset,
                location=response.headers.get("location"),
                body=body,
                truncated=truncated,
                fetched_at=fetched_at,
            )

    def _read(self, response: httpx.Response) -> tuple[bytes, bool]:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max:
            return b"", True  # no need to download what we would throw away
        chunks: list[bytes] = []
        size = 0
        # iter_bytes decodes gzip/deflate, so the cap also bounds what a compression bomb expands to.
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self._max:
                return b"".join(chunks), True
            chunks.append(chunk)
        return b"".join(chunks), False


def parse_content_type(value: str | None) -> tuple[str | None, str | None]:
    """("text/html", "utf-8") from "text/html; charset=UTF-8"; (None, None) when absent."""
    if not value:
        return None, None
    media_type, *params = (part.strip() for part in value.split(";"))
    charset = None
    for param in params:
        key, _, val = param.partition("=")
        if key.strip().lower() == "charset" and val.strip():
            charset = val.strip().strip("\"'").lower()
    return media_type.lower() or None, charset


class Frontier:
    """FIFO queue with a seen-set: breadth-first order, and no URL is ever queued (or fetched) twice."""

    def __init__(self) -> None:
        self._queue: deque[str] = deque()
        self._seen: set[str] = set()

    def claim(self, url: str) -> str | None:
        """Mark the URL as seen; return its normalised form if it was new, else None."""
        normal = normalize_url(url)
        if normal is None or normal in self._seen:
            return None
        self._seen.add(normal)
        return normal

    def push(self, normal_url: str) -> None:
        self._queue.append(normal_url)

    def pop(self) -> str:
        return self._queue.popleft()

    def __len__(self) -> int:
        return len(self._queue)


class Scope:
    """Which URLs the crawl may visit: http(s) only and, when same_site, only the seeds' hosts.

    A host is the name plus any non-default port: http and https of one name are one site, but another port
    is another server (READMEs link to http://127.0.0.1:8000/ - which must not pull in whatever runs there).
    """

    def __init__(self, seeds: Iterable[str], same_site: bool) -> None:
        hosts = frozenset(urlsplit(normal).netloc for normal in map(normalize_url, seeds) if normal)
        self._hosts: frozenset[str] | None = hosts if same_site else None

    def allows(self, url: str) -> bool:
        normal = normalize_url(url)
        if normal is None:
            return False
        return self._hosts is None or urlsplit(normal).netloc in self._hosts


class Verdict(enum.Enum):
    ALLOWED = "allowed"
    PRIVATE = "private"
    UNRESOLVABLE = "unresolvable"


class AddressGuard:
    """Refuses hosts that resolve to loopback, private, link-local or reserved addresses (SSRF protection).

    A crawler fed links from the web must not become a way to reach the machine it runs on or its network.
    The check resolves the name itself; httpx resolves again when connecting, so a DNS answer that changes
    in between (rebinding) is not caught here - pinning the address belongs in a custom transport.
    """

    def __init__(self, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._verdicts: dict[str, Verdict] = {}

    def check(self, url: str) -> Verdict:
        if self._allow_private:
            return Verdict.ALLOWED
        host = urlsplit(url).hostname or ""
        if host not in self._verdicts:
            self._verdicts[host] = self._resolve(host)
            if self._verdicts[host] is not Verdict.ALLOWED:
                logger.warning("refusing host %s: %s address", host, self._verdicts[host].value)
        return self._verdicts[host]

    @staticmethod
    def _resolve(host: str) -> Verdict:
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return Verdict.UNRESOLVABLE
        addresses = {info[4][0] for info in infos}
        if not addresses:
            return Verdict.UNRESOLVABLE
        # One non-public address is enough to refuse: the connection could use any of them.
        return Verdict.ALLOWED if all(is_public_address(a) for a in addresses) else Verdict.PRIVATE


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback, whatever Python version judges it
    return ip.is_global and not ip.is_multicast


ALLOW_ALL = Protego.parse("")
DISALLOW_ALL = Protego.parse("User-agent: *\nDisallow: /")


class RobotsCache:
    """robots.txt rules per origin, fetched once each, interpreted as RFC 9309 says.

    2xx: parse; 4xx: no rules (allow all); 5xx or unreachable: disallow all, since the site may be down or
    overloaded and the rules are unknown.
    """

    def __init__(self, fetch: Callable[[str], Response | None], user_agent: str, enabled: bool) -> None:
        self._fetch = fetch
        self._user_agent = user_agent
        self._enabled = enabled
        self._rules: dict[str, Protego] = {}
        self._sitemaps: dict[str, list[str]] = {}

    def allowed(self, url: str) -> bool:
        return self._for(url).can_fetch(url, self._user_agent)

    def crawl_delay(self, url: str) -> float:
        return self._for(url).crawl_delay(self._user_agent) or 0.0

    def sitemaps(self, url: str) -> list[str]:
        """Absolute sitemap URLs listed in the origin's robots.txt (relative ones resolved, leniently)."""
        self._for(url)
        return self._sitemaps.get(origin_of(url), [])

    def _for(self, url: str) -> Protego:
        origin = origin_of(url)
        if origin not in self._rules:
            self._rules[origin] = self._load(origin) if self._enabled else ALLOW_ALL
        return self._rules[origin]

    def _load(self, origin: str) -> Protego:
        robots_url = f"{origin}/robots.txt"
        response = self._fetch(robots_url)
        if response is None or response.status >= 500:
            logger.warning("robots.txt of %s unavailable: not crawling that host", origin)
            return DISALLOW_ALL
        if not 200 <= response.status < 300:
            return ALLOW_ALL  # 4xx (typically 404): the site has no rules
        rules = Protego.parse(response.body.decode("utf-8", errors="replace"))
        self._sitemaps[origin] = [urljoin(robots_url, s) for s in rules.sitemaps]
        return rules


class HostThrottle:
    """Keeps at least `delay` seconds between the starts of two requests to one host (host:port)."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def wait(self, url: str, delay: float) -> None:
        key = urlsplit(url).netloc
        last = self._last.get(key)
        if last is not None and delay > 0:
            remaining = last + delay - time.monotonic()
            if remaining > 0:
                time.sleep(remaining)
        self._last[key] = time.monotonic()


class Crawler:
    """Breadth-first crawl from seeds; `crawl` yields one record per fetched page, `stats` counts the rest.

    One instance is one crawl: the seen-set, robots rules and counters live as long as the instance.
    """

    def __init__(self, config: CrawlConfig, *, use_sitemaps: bool = True) -> None:
        self.config = config
        self.use_sitemaps = use_sitemaps  # also enqueue the URLs of sitemaps named in robots.txt
        self.stats = CrawlStats()
        self._guard = AddressGuard(config.allow_private_hosts)
        self._throttle = HostThrottle()
        self._frontier = Frontier()
        self._scope = Scope([], config.same_site)
        self._fetcher: Fetcher | None = None
        self._robots = RobotsCache(self._fetch_robots, config.user_agent, config.respect_robots)
        self._sitemap_origins: set[str] = set()

    def crawl(self, seeds: list[str] | None = None) -> Iterator[dict[str, Any]]:
        """Yield a `DOCUMENT_SCHEMA` record for each fetched page (non-2xx included), up to max_pages."""
        seeds = list(self.config.seeds if seeds is None else seeds)
        self._scope = Scope(seeds, self.config.same_site)
        self._enqueue(seeds)
        with self._client() as client:
            self._fetcher = Fetcher(client, self.config.max_body_bytes)
            try:
                while self._frontier and self.stats.fetched < self.config.max_pages:
                    response = self._fetch_page(self._frontier.pop())
                    if response is not None:
                        yield self._record(response)
            finally:  # also when the consumer stops early and the generator is closed
                self._fetcher = None
                logger.info("crawl finished: %s", self.stats.as_dict())

    def _client(self) -> httpx.Client:
        return httpx.Client(
            headers={"User-Agent": self.config.user_agent},
            timeout=self.config.request_timeout_s,
            follow_redirects=False,  # each hop is checked by _fetch_page
            # Proxies from the environment would connect on our behalf, making the address guard meaningless
            # (and would swallow requests to the 127.0.0.1 demo site); a proxy setting can come via config.
            trust_env=False,
        )

    # -- the frontier -------------------------------------------------------------------------------------------

    def _enqueue(self, urls: Iterable[str]) -> None:
        for url in urls:
            normal = self._frontier.claim(url)
            if normal is None:
                continue
            if not self._scope.allows(normal):
                self.stats.skipped_scope += 1
                logger.debug("out of scope: %s", normal)
                continue
            self._frontier.push(normal)

    def _admit(self, url: str) -> bool:
        """Scope, address and robots checks, in order of cost; each refusal is counted, not raised."""
        if not self._scope.allows(url):
            self.stats.skipped_scope += 1
            logger.debug("out of scope: %s", url)
            return False
        verdict = self._guard.check(url)
        if verdict is Verdict.PRIVATE:
            self.stats.skipped_private += 1
            return False
        if verdict is Verdict.UNRESOLVABLE:
            self.stats.failed += 1
            return False
        if not self._robots.allowed(url):
            self.stats.skipped_robots += 1
            logger.debug("disallowed by robots.txt: %s", url)
            return False
        self._read_sitemaps(url)
        return True

    # -- fetching -----------------------------------------------------------------------------------------------

    def _get(self, url: str, delay: float) -> Response:
        assert self._fetcher is not None, "only called while crawl() runs"
        self._throttle.wait(url, delay)
        return self._fetcher.get(url)

    def _page_delay(self, url: str) -> float:
        return max(self.config.min_delay_s, self._robots.crawl_delay(url))

    def _fetch_page(self, url: str) -> Response | None:
        """Fetch one page, following up to MAX_REDIRECTS redirects, each hop admitted like a new link."""
        for _ in range(MAX_REDIRECTS + 1):
            if not self._admit(url):
                return None
            try:
                response = self._get(url, self._page_delay(url))
            except (httpx.HTTPError, httpx.InvalidURL) as err:
                self.stats.failed += 1
                logger.warning("fetch failed: %s: %s", url, err)
                return None
            if response.truncated:
                self.stats.too_large += 1
                logger.warning("skipped %s: body over %d bytes", url, self.config.max_body_bytes)
                return None
            target = redirect_target(response)
            if target is None:
                return response
            # The target is a URL like any other: fetched once at most, so a redirect to a seen page ends here.
            next_url = self._frontier.claim(target)
            if next_url is None:
                logger.debug("redirect from %s to an already seen or invalid URL %s", url, target)
                return None
            url = next_url
        self.stats.failed += 1
        logger.warning("too many redirects, gave up at %s", url)
        return None

    def _fetch_robots(self, url: str) -> Response | None:
        """GET a robots.txt (redirects followed, address-checked); None when it cannot be had."""
        for _ in range(ROBOTS_MAX_REDIRECTS + 1):
            if self._guard.check(url) is not Verdict.ALLOWED:
                return None
            try:
                response = self._get(url, self.config.min_delay_s)
            except (httpx.HTTPError, httpx.InvalidURL) as err:
                logger.warning("robots.txt fetch failed: %s: %s", url, err)
                return None
            target = redirect_target(response)
            if target is None:
                return response  # a truncated robots.txt is still parsed: RFC 9309 allows a size limit
            url = target
        return None

    # -- sitemaps -----------------------------------------------------------------------------------------------

    def _read_sitemaps(self, url: str) -> None:
        """On the first admitted URL of an origin, enqueue the pages its robots.txt sitemaps list."""
        origin = origin_of(url)
        if not self.use_sitemaps or origin in self._sitemap_origins:
            return
        self._sitemap_origins.add(origin)
        pending = deque(self._robots.sitemaps(url))
        read: set[str] = set()
        while pending and len(read) < MAX_SITEMAPS_PER_HOST:
            sitemap_url = normalize_url(pending.popleft())
            if sitemap_url is None or sitemap_url in read:
                continue
            read.add(sitemap_url)
            pages, nested = self._read_sitemap(sitemap_url)
            self._enqueue(pages)
            pending.extend(nested)

    def _read_sitemap(self, url: str) -> tuple[list[str], list[str]]:
        """(page URLs, nested sitemap URLs) of one sitemap; empty when it cannot be fetched or parsed."""
        if not (self._scope.allows(url) and self._guard.check(url) is Verdict.ALLOWED):
            return [], []
        if not self._robots.allowed(url):
            return [], []
        try:
            response = self._get(url, self._page_delay(url))
        except (httpx.HTTPError, httpx.InvalidURL) as err:
            logger.warning("sitemap fetch failed: %s: %s", url, err)
            return [], []
        if response.status != 200 or response.truncated:
            return [], []
        return parse_sitemap(response.body, url)

    # -- records ------------------------------------------------------------------------------------------------

    def _record(self, response: Response) -> dict[str, Any]:
        title = text = None
        if 200 <= response.status < 300 and response.content_type in EXTRACTABLE_TYPES:
            title, text, links = self._extract(response)
            self._enqueue(links)
        self._count(response, text)
        return {
            "doc_id": doc_id(response.url),
            "url": response.url,
            "fetched_at": response.fetched_at,
            "status": response.status,
            "content_type": response.content_type,
            "title": title,
            "text": text,
            "raw_bytes": len(response.body),
        }

    @staticmethod
    def _extract(response: Response) -> tuple[str | None, str | None, list[str]]:
        decoded = decode_body(response.body, response.charset)
        if response.content_type not in HTML_TYPES:
            plain = decoded if decoded is not None else response.body.decode("utf-8", errors="replace")
            return None, plain.strip() or None, []
        # Without a declared charset, hand over the bytes: trafilatura and lxml sniff <meta charset>.
        markup: str | bytes = decoded if decoded is not None else response.body
        extracted = extract(markup, response.url)
        return extracted.title, extracted.text, extract_links(markup, response.url)

    def _count(self, response: Response, text: str | None) -> None:
        stats = self.stats
        stats.fetched += 1
        stats.ok += 200 <= response.status < 300
        stats.extracted += text is not None
        stats.bytes += len(response.body)
        level = logging.INFO if stats.fetched % PROGRESS_EVERY == 0 else logging.DEBUG
        queued = len(self._frontier)
        logger.log(level, "page %d: %s %s (%d queued)", stats.fetched, response.status, response.url, queued)


def redirect_target(response: Response) -> str | None:
    if response.status in REDIRECT_STATUSES and response.location:
        return urljoin(response.url, response.location.strip())
    return None


def decode_body(body: bytes, charset: str | None) -> str | None:
    """The body as text in its declared charset; None when no (known) charset is declared."""
    if not charset:
        return None
    try:
        codecs.lookup(charset)
    except LookupError:
        return None
    return body.decode(charset, errors="replace")


# The sitemap is untrusted XML: no entities, no network, no DTDs.
_SITEMAP_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def parse_sitemap(body: bytes, url: str) -> tuple[list[str], list[str]]:
    """(page URLs, nested sitemap URLs) from a <urlset> or <sitemapindex>; relative <loc>s are resolved."""
    try:
        root = etree.fromstring(body, parser=_SITEMAP_PARSER)
    except etree.XMLSyntaxError:
        return [], []
    locs = [urljoin(url, (loc.text or "").strip()) for loc in root.iter("{*}loc") if (loc.text or "").strip()]
    if etree.QName(root).localname == "sitemapindex":
        return [], locs
    return locs, []

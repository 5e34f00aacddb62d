"""URLs as the crawler sees them: one canonical form per page, and the rules for which pages are in scope."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


class UrlNormalizer:
    """Canonical form used for the seen-set and doc ids; None for anything but an absolute http(s) URL.

    Lowercases scheme and host, drops default ports, fragments, credentials and tracking parameters (patterns
    with `*`), sorts the query, and gives an empty path "/" - so `/a?b=1&utm_source=x` and `/a?b=1` are one page.
    """

    def __init__(self, strip_params: Iterable[str] = ()) -> None:
        patterns = [fnmatch.translate(p.lower()) for p in strip_params]
        self._strip = re.compile("|".join(patterns)) if patterns else None

    def __call__(self, url: str | None) -> str | None:
        if url is None:
            return None
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
        return urlunsplit((scheme, host, parts.path or "/", self._query(parts.query), ""))

    def _query(self, query: str) -> str:
        if not query:
            return ""
        pairs = parse_qsl(query, keep_blank_values=True)
        kept = [(k, v) for k, v in pairs if not (self._strip and self._strip.fullmatch(k.lower()))]
        return urlencode(sorted(kept))


def host_of(url: str) -> str:
    """host[:port] of a normalised URL: the unit of politeness (another port is another server)."""
    return urlsplit(url).netloc


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class Scope:
    """Which URLs the crawl may visit; `why_not` names the rule that refuses one (None = in scope).

    Hosts: with same_site, the seeds' hosts (http and https of one name are one site; another port is another
    server); plus `allowed_domains` and their subdomains (without same_site: only those). Neither: any host.
    Then exclude patterns, include patterns and depth - which together bound traps such as endless calendars and
    session-id URL spaces.
    """

    def __init__(
        self,
        seeds: Iterable[str],
        *,
        same_site: bool = True,
        allowed_domains: Iterable[str] = (),
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        max_depth: int | None = None,
    ) -> None:
        self._hosts = frozenset(urlsplit(s).netloc for s in seeds) if same_site else None
        self._domains = tuple(d.lower().strip(".") for d in allowed_domains)
        self._include = [re.compile(p) for p in include]
        self._exclude = [re.compile(p) for p in exclude]
        self._max_depth = max_depth

    def why_not(self, url: str, depth: int = 0) -> str | None:
        if not self._host_allowed(url):
            return "out_of_scope"
        if any(p.search(url) for p in self._exclude):
            return "excluded"
        if self._include and not any(p.search(url) for p in self._include):
            return "not_included"
        if self._max_depth is not None and depth > self._max_depth:
            return "max_depth"
        return None

    def _host_allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        if self._hosts is None and not self._domains:
            return True  # same_site off and no domains named: the whole web
        if self._hosts is not None and parts.netloc in self._hosts:
            return True
        host = (parts.hostname or "").lower()
        return any(host == d or host.endswith("." + d) for d in self._domains)

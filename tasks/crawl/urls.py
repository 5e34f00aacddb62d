"""Which pages the crawler may visit, and the hosts and origins it is polite to. The canonical form of a URL is
shared with dedup: `tasks/urls.py`."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urljoin, urlsplit


def host_of(url: str) -> str:
    """host[:port] of a normalised URL: the unit of politeness (another port is another server)."""
    return urlsplit(url).netloc


def resolve(base: str, reference: str) -> str | None:
    """`reference` made absolute against `base`; None for a reference no URL parser accepts ("http://[broken")."""
    try:
        return urljoin(base, reference.strip())
    except ValueError:
        return None


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

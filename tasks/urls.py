"""One canonical form per web page, shared by the stages that compare URLs: crawl (its seen-set and doc ids)
and dedup (`dedup.url`: the same page ingested twice)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from gristmill.conf.schema import DEFAULT_TRACKING_PARAMS

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


_SAME_PAGE = UrlNormalizer(DEFAULT_TRACKING_PARAMS)


def same_page_key(url: str) -> str:
    """What two records of one page share: the canonical form, with a trailing slash ignored as well (`/a/` and
    `/a` are one page to a reader, not to a crawler's seen-set). A locator that is not an http(s) URL (`file:///`,
    `data.jsonl#L3`) is its own key: its fragment names the record, so it is kept."""
    canonical = _SAME_PAGE(url)
    if canonical is None:
        return url.strip()
    parts = urlsplit(canonical)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") or "/"))

"""From a fetched page to what the corpus keeps (main text and title) and what the crawler follows (links)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urldefrag, urljoin, urlsplit

import lxml.html
from lxml.etree import ParserError
from trafilatura import bare_extraction

logger = logging.getLogger("gristmill.crawl.extract")

FOLLOWABLE_SCHEMES = frozenset({"http", "https"})


@dataclass(frozen=True)
class Extracted:
    title: str | None
    text: str | None  # main text only; None when the page has none worth keeping


def extract(html: str | bytes, url: str) -> Extracted:
    """Main text and title of an HTML page; navigation, footers and comments are left out."""
    if not html or not html.strip():
        return Extracted(title=None, text=None)
    document = bare_extraction(html, url=url, with_metadata=True, include_comments=False)
    if document is None:
        # trafilatura found no main text; the title is still worth having (and cheap to get).
        return Extracted(title=_html_title(html), text=None)
    return Extracted(title=_clean(document.title), text=_clean(document.text))


def extract_links(html: str | bytes, base_url: str) -> list[str]:
    """Absolute http(s) targets of the page's <a>/<area> links, without fragments, in page order, unique."""
    tree = _parse(html)
    if tree is None:
        return []
    base = _document_base(tree, base_url)
    links: dict[str, None] = {}  # an ordered set: page order makes the crawl order reproducible
    for element in tree.iter("a", "area"):
        href = (element.get("href") or "").strip()
        if not href:
            continue
        try:
            absolute, _ = urldefrag(urljoin(base, href))
            scheme = urlsplit(absolute).scheme
        except ValueError:  # e.g. "http://[broken" - a bad link on someone's page is not our error
            continue
        if scheme in FOLLOWABLE_SCHEMES:
            links.setdefault(absolute)
    return list(links)


def _document_base(tree: lxml.html.HtmlElement, base_url: str) -> str:
    # <base href> changes what relative links mean; it may itself be relative to the page URL.
    for element in tree.iter("base"):
        href = (element.get("href") or "").strip()
        if href:
            return urljoin(base_url, href)
    return base_url


def _parse(html: str | bytes) -> lxml.html.HtmlElement | None:
    if not html or not html.strip():
        return None
    # lxml refuses str input that carries an XML encoding declaration, so str goes in as UTF-8 bytes.
    data = html.encode("utf-8") if isinstance(html, str) else html
    parser = lxml.html.HTMLParser(encoding="utf-8") if isinstance(html, str) else None
    try:
        return lxml.html.document_fromstring(data, parser=parser)
    except (ParserError, ValueError):
        return None


def _html_title(html: str | bytes) -> str | None:
    tree = _parse(html)
    return _clean(tree.findtext(".//title")) if tree is not None else None


def _clean(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None

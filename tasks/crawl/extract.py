"""From a fetched page to what the corpus keeps (main text, title, date, language hint) and what the crawler
follows (links).

`extract` runs one extractor in this process; `document_from_raw` maps one RAW_SCHEMA record to one
DOCUMENT_SCHEMA record (`extraction_pool` runs that in worker processes, each page within a time limit; `charset`
turns the bytes into text). Which extractor to use: see docs/benchmarks.md, "Extraction quality".
"""

from __future__ import annotations

import html as html_module
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from html.entities import html5 as NAMED_REFERENCES
from urllib.parse import urldefrag, urljoin, urlsplit

import lxml.html
from htmldate import find_date
from lxml.etree import ParserError
from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.html import DOMNode, HTMLTree
from trafilatura import bare_extraction
from trafilatura.metadata import examine_meta, extract_title
from trafilatura.utils import load_html

from gristmill.tasks.crawl.charset import decode_html, parse_content_type
from gristmill.tasks.crawl.urls import resolve

logger = logging.getLogger("gristmill.crawl.extract")

FOLLOWABLE_SCHEMES = frozenset({"http", "https"})
EXTRACTORS = ("trafilatura", "trafilatura-precision", "trafilatura-recall", "resiliparse")
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
TEXT_TYPES = frozenset({"text/plain", "text/markdown"})


@dataclass(frozen=True)
class Extracted:
    title: str | None
    text: str | None  # main text only; None when the page has none worth keeping
    published: str | None = None  # publication date, YYYY-MM-DD
    lang: str | None = None  # <html lang>, og:locale or Content-Language as the page wrote it, lowercased: a hint
    extractor: str | None = None  # set when not the extractor asked for (a long page: see LONG_TEXT_CHARS)


# Pages whose main text, as resiliparse finds it, is longer than this (about 1,500 words) are resiliparse's. On long
# documentation pages (pydoc pages of 50 KB-2.5 MB) trafilatura kept a fifth or less of the text (it drops the tables
# and definition lists that hold the method docs: 4,951 of 25,124 characters on dask.utils) at 20-100x resiliparse's
# time; on the extraction benchmark's 181 news pages the rule takes 17 pages (F1 -0.0021 ± 0.0017 against
# trafilatura-precision as is). docs/benchmarks.md, "Long pages".
LONG_TEXT_CHARS = 10_000


def extract(
    html: str | bytes, url: str, extractor: str = "trafilatura", long_text_chars: int = LONG_TEXT_CHARS
) -> Extracted:
    """Main text, title, publication date and language hint of an HTML page; navigation, footers and comments are
    left out. Bytes are decoded with `decode_html` (no declared charset). A trafilatura extractor leaves a page with
    more than `long_text_chars` of main text to resiliparse (0: never), and the result says so in `extractor`."""
    if extractor not in EXTRACTORS:
        raise ValueError(f"unknown extractor {extractor!r}; choose one of {', '.join(EXTRACTORS)}")
    if isinstance(html, bytes):
        html = decode_html(html, None)
    if not html or not html.strip():
        return Extracted(title=None, text=None)
    lang = html_lang(html)
    if extractor == "resiliparse":
        return _resiliparse(html, url, lang)
    if long_text_chars and len(html) > long_text_chars:  # shorter markup cannot hold that much text
        # resiliparse's main text first, as the measure: a few ms, against trafilatura's tens (short pages) to
        # seconds (long); its title and date only for a page it keeps (most pages go on to trafilatura)
        tree = HTMLTree.parse(html)
        text = _resiliparse_text(tree)
        if text is not None and len(text) > long_text_chars:
            return _resiliparse_extracted(tree, text, url, lang, extractor="resiliparse")
    return _trafilatura(html, url, extractor, lang)


# trafilatura compares its own result with readability's and, when that looks short or unclean, justext's: a rescue
# for pages where it found little main text, at about half its time on long pages. On the extraction benchmark's
# 61 pages with more than this much text, skipping the comparison changed no page's result (F1 identical), and it
# cost F1 0.018 when skipped on every page; documentation pages of 50 KB-2.5 MB mostly have more (docs/benchmarks.md).
LONG_PAGE_CHARS = 15_000


def _trafilatura(html: str, url: str, extractor: str, lang: str | None) -> Extracted:
    tree = load_html(html)
    if tree is None:
        return Extracted(title=_html_title(html), text=None, lang=lang)
    # Title and date before extraction, which prunes the tree in place (trafilatura's own order). Not
    # with_metadata=True: that also looks for authors, site names and categories we do not keep, and searches the
    # whole text for a date (dateparser); together a third of the time on long pages. The title and date found
    # here are trafilatura's own on 180 and 179 of the benchmark's 181 pages.
    title, published = _title(tree), _iso_date(find_date(tree, url=url, original_date=True, extensive_search=False))
    document = bare_extraction(
        tree,
        url=url,
        include_comments=False,
        favor_precision=extractor == "trafilatura-precision",
        favor_recall=extractor == "trafilatura-recall",
        fast=_text_chars(tree) > LONG_PAGE_CHARS,
    )
    text = _clean(document.text) if document is not None else None  # None: trafilatura found no main text
    return Extracted(title=title, text=text, published=published, lang=lang)


def _title(tree: lxml.html.HtmlElement) -> str | None:
    """The page's title as trafilatura finds it: og/twitter/Dublin Core metadata, else <title>, <h1> heuristics."""
    return _clean(examine_meta(tree).title or extract_title(tree))


def _text_chars(tree: lxml.html.HtmlElement) -> int:
    """Characters of text in the page, scripts and styles left out (a cheap measure of how long it is)."""
    chars = 0
    for element in tree.iter():
        chars += len(element.tail or "")
        if element.tag not in ("script", "style") and isinstance(element.tag, str):
            chars += len(element.text or "")
    return chars


# Where pages state their publication date, most specific first: (tag, or "" for any; attribute; its value, or ""
# for any). resiliparse does not look for dates and htmldate.find_date(extensive_search=False) re-parses the page
# with lxml: on the 181 pages of the extraction benchmark it took 0.72 s against resiliparse's 0.67 s (it doubles
# resiliparse's time), so the resiliparse path reads these tags from the tree it already has instead: a date on 127
# of the 181 pages (htmldate: 179), the same day as htmldate's original date on 117 of them, a day apart (time
# zones) on the rest.
_DATE_RULES = (
    ("meta", "property", "article:published_time"),
    ("meta", "property", "og:published_time"),
    ("meta", "name", "article:published_time"),
    ("meta", "itemprop", "datepublished"),
    ("meta", "name", "pubdate"),
    ("meta", "name", "publishdate"),
    ("meta", "name", "publish-date"),
    ("meta", "name", "parsely-pub-date"),
    ("meta", "name", "sailthru.date"),
    ("meta", "name", "dc.date.issued"),
    ("meta", "name", "dcterms.created"),
    ("meta", "name", "date"),
    ("", "itemprop", "datepublished"),
    ("time", "pubdate", ""),
    ("time", "datetime", ""),
)
# A lookup by an attribute that no element of the page has costs lexbor nothing, but a page with `<a name>` anchors
# (documentation has thousands) makes every name= lookup and every <time> query a walk of the whole tree. One probe
# decides whether those rules are worth their walks: on 400 documentation pages the dates took 0.08 s against 0.35 s
# for one query of a selector per rule, on the 181 news pages 0.03 s against 0.05 s.
_WALKED_RULES = "meta[name], time[datetime]"


def _published(tree: HTMLTree, url: str) -> str | None:
    """The publication date the page's markup states, by the most specific of `_DATE_RULES` that holds one, else
    the year/month/day in its URL (news sites' /2019/11/18/ paths), as htmldate reads them too."""
    return _markup_date(tree) or _url_date(url)


def _markup_date(tree: HTMLTree) -> str | None:
    document = tree.document
    if document is None:
        return None
    walk = document.query_selector(_WALKED_RULES) is not None
    for tag, attribute, value in _DATE_RULES:
        if not walk and (attribute == "name" or tag == "time"):
            continue
        for element in _rule_elements(document, tag, attribute, value):
            date = _iso_date(element.getattr("content") or element.getattr("datetime"))
            if date:
                return date
    return None


def _rule_elements(document: DOMNode, tag: str, attribute: str, value: str) -> Iterator[DOMNode]:
    """The elements a rule takes, in document order: a <meta> holds its date in `content`; any other element must
    have a `datetime`."""
    if value:
        found = document.get_elements_by_attr(attribute, value, case_insensitive=True)
    else:
        found = document.query_selector_all(f"{tag}[{attribute}]")
    for element in found:
        if (not tag or element.tag == tag) and (element.tag == "meta" or element.hasattr("datetime")):
            yield element


# htmldate's URL pattern: a 4-digit year, month and day between / _ or -, not inside a longer number
_URL_DATE = re.compile(r"\D((?:19|20)\d{2})[/_-](\d{1,2})[/_-](\d{1,2})(?:\D|$)")


def _url_date(url: str) -> str | None:
    match = _URL_DATE.search(url)
    return _iso_date(f"{match[1]}-{int(match[2]):02d}-{int(match[3]):02d}") if match else None


def _resiliparse(html: str, url: str, lang: str | None) -> Extracted:
    tree = HTMLTree.parse(html)
    return _resiliparse_extracted(tree, _resiliparse_text(tree), url, lang)


def _resiliparse_text(tree: HTMLTree) -> str | None:
    # Comment sections and bylines/date lines are not main content (trafilatura runs with include_comments=False
    # too); on the extraction benchmark they take resiliparse's F1 from 0.898 (defaults) to 0.909 and 0.915.
    return _clean(extract_plain_text(tree, main_content=True, comments=False, post_meta=False))


def _resiliparse_extracted(
    tree: HTMLTree, text: str | None, url: str, lang: str | None, extractor: str | None = None
) -> Extracted:
    published = _published(tree, url)
    return Extracted(title=_clean(tree.title), text=text, published=published, lang=lang, extractor=extractor)


_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")


def _iso_date(value: str | None) -> str | None:
    match = _DATE.search(value or "")
    if match is None or not (1 <= int(match[2]) <= 12 and 1 <= int(match[3]) <= 31):
        return None
    return match[0]


# ---------------------------------------------------------------------------------------------------------------
# language hint

_LANG_SCAN_CHARS = 65536  # <html lang> and the <head> metadata sit at the top; inline scripts can make heads long
_HTML_TAG = re.compile(r"<html\b[^>]*>", re.IGNORECASE)
_META_TAG = re.compile(r"<meta\b[^>]*>", re.IGNORECASE)
_ATTRIBUTE = re.compile(r"""([a-zA-Z_:][-\w:.]*)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""")
_LANG_CODE = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{1,8})*")


def html_lang(html: str) -> str | None:
    """The page's own language claim: <html lang> (or xml:lang), else og:locale, else a Content-Language meta;
    lowercased as written ("en", "en-us"; og:locale's "en_US" becomes "en-us"). A hint, not language id."""
    head = html[:_LANG_SCAN_CHARS]
    match = _HTML_TAG.search(head)
    if match:
        attributes = _attributes(match[0])
        lang = _lang_code(attributes.get("lang") or attributes.get("xml:lang"))
        if lang:
            return lang
    end = head.lower().find("</head")
    for tag in _META_TAG.finditer(head, 0, end if end >= 0 else len(head)):
        attributes = _attributes(tag[0])
        kind = (attributes.get("property") or attributes.get("http-equiv") or attributes.get("name") or "").lower()
        if kind in ("og:locale", "content-language", "language"):
            lang = _lang_code(attributes.get("content"))
            if lang:
                return lang
    return None


def _attributes(tag: str) -> dict[str, str]:
    return {
        m[1].lower(): m[2] if m[2] is not None else m[3] if m[3] is not None else m[4] for m in _ATTRIBUTE.finditer(tag)
    }


def _lang_code(value: str | None) -> str | None:
    code = (value or "").split(",")[0].strip().lower().replace("_", "-")
    return code if _LANG_CODE.fullmatch(code) else None


# ---------------------------------------------------------------------------------------------------------------
# records


def document_from_raw(raw: dict, extractor: str, long_text_chars: int = LONG_TEXT_CHARS) -> dict:
    """One RAW_SCHEMA record to one DOCUMENT_SCHEMA record: HTML is decoded and extracted, plain text and
    Markdown are kept as they are (stripped); `text` is None when nothing is worth keeping (or the type is neither).
    `extractor` is set only when another extractor than the one asked for made the text (a long page).
    """
    if extractor not in EXTRACTORS:
        raise ValueError(f"unknown extractor {extractor!r}; choose one of {', '.join(EXTRACTORS)}")
    content = raw["content"] or b""
    media_type = _media_type(raw.get("content_type"), content)
    extracted = Extracted(title=None, text=None)
    if media_type in HTML_TYPES:
        extracted = extract(decode_html(content, raw.get("charset")), raw["url"], extractor, long_text_chars)
    elif media_type in TEXT_TYPES:
        # The same charset checks as HTML (declared, then detected): plain text lies or says nothing just as often.
        extracted = Extracted(title=None, text=_clean(decode_html(content, raw.get("charset"))))
    return _document(raw, extracted)


def document_without_text(raw: dict) -> dict:
    """The DOCUMENT_SCHEMA record of a page whose extraction failed: kept, with text None."""
    return _document(raw, Extracted(title=None, text=None, lang=None))


def _document(raw: dict, extracted: Extracted) -> dict:
    document = {
        "doc_id": raw["doc_id"],
        "url": raw["url"],
        "fetched_at": raw["fetched_at"],
        "status": raw["status"],
        "content_type": raw.get("content_type"),
        "title": extracted.title,
        "text": extracted.text,
        "raw_bytes": len(raw["content"] or b""),
        "source": raw.get("source"),
        "published": extracted.published,
        "lang_hint": extracted.lang or raw.get("lang_hint"),
    }
    if extracted.extractor:  # otherwise the one asked for: the stage fills it in (tasks/crawl/fallback.py)
        document["extractor"] = extracted.extractor
    return document


def _media_type(content_type: str | None, content: bytes) -> str:
    media_type, _ = parse_content_type(content_type)
    if media_type:
        return media_type
    # No type: a body that opens with markup is HTML, anything else plain text.
    return "text/html" if content.lstrip()[:1] == b"<" else "text/plain"


# A page without a visible date: htmldate's whole-text search would hand text to dateparser, which loads its locale
# data on that first call (~2.5 s here, more on a busy machine). `extract` no longer runs that search; the page still
# pays each extractor's other first-call costs (stop lists, parsers) outside any time limit.
WARM_UP_PAGE = (
    b'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Warm-up</title></head><body><main><article>'
    b"<h1>Packages: O</h1><ul><li><a href='/p/oauthlib/'>oauthlib</a> 4.0.1 &mdash; A generic implementation of the"
    b" OAuth request-signing logic</li><li><a href='/p/otel/'>opentelemetry-api</a> 1.45.2 &mdash; OpenTelemetry"
    b" Python API</li></ul></article></main></body></html>"
)


def warm_up() -> None:
    """Pay each extractor's one-time lazy loading now, outside any per-document time limit."""
    for extractor in EXTRACTORS:
        extract(WARM_UP_PAGE, "http://warm.up/", extractor)


# ---------------------------------------------------------------------------------------------------------------
# links


def extract_links(html: str | bytes, base_url: str, charset: str | None = None) -> list[str]:
    """Absolute http(s) targets of the page's <a>/<area> links, without fragments, in page order, unique. Bytes
    are decoded with `decode_html` (`charset`: the declared one, if any)."""
    if isinstance(html, bytes):
        html = decode_html(html, charset)
    if not html or html.isspace():
        return []
    return resolve_links(link_attributes(html), base_url)


def resolve_links(attributes: Iterable[tuple[str, str]], base_url: str) -> list[str]:
    """Absolute http(s) targets, without fragments, in order, unique, of a page's (tag, href) pairs: <a>/<area>
    hrefs resolved against the page's first <base href> (relative to the page itself), or the page's URL."""
    base: str | None = None
    hrefs: dict[str, None] = {}  # an ordered set: page order makes the crawl order reproducible
    for tag, href in attributes:
        if tag == "base":  # it changes what relative links mean, wherever it stands; the first one counts
            base = base or href
        elif href:
            # Resolved once per target: reference pages repeat their links (2,703 links, 98 distinct on a pydoc
            # page, most of them anchors of one page), and urljoin was most of the crawler's own CPU time on them.
            hrefs.setdefault(href.split("#", 1)[0])
    # <base href> may itself be relative to the page; a broken one ("http://[x") is left out
    base = (resolve(base_url, base) or base_url) if base else base_url
    links: dict[str, None] = {}
    for href in hrefs:
        try:
            absolute, _ = urldefrag(urljoin(base, href))
            scheme = urlsplit(absolute).scheme
        except ValueError:  # e.g. "http://[broken" - a bad link on someone's page is not our error
            continue
        if scheme in FOLLOWABLE_SCHEMES:
            links.setdefault(absolute)
    return list(links)


# The crawler reads every page it stores for its links alone, so they are found by scanning the markup rather than
# parsing it into a tree: on 421 documentation pages (50 KB-2.5 MB) the scan took 0.4 s against 0.9-1.2 s for
# lexbor's parse (itself a third of lxml's), and it found the same links in the same order there, on 6,000 rustdoc
# pages and on the shared WARCs' web pages (tests/tasks/crawl/test_links.py checks it against lexbor on
# documentation pages, those web pages and the tokenizer's corner cases, and that pages of half-open tags take it
# linear time). Where it differs: a literal "<a href" inside another tag's attribute value (legal, rare) is taken for a
# link; a tag with more than 64 attributes before its href, or with "<" or a quote in an attribute name or "<" in an
# unquoted value before it, is not read.
# Where "<a" is no tag to an HTML parser: comments and other markup declarations, and the contents of elements that
# hold text, never tags (raw text, RCDATA, template contents; <plaintext> to the end). The lookahead turns most tags
# away at their first letter. Each alternative consumes what it matches, to the end of the page where nothing closes
# it (as a parser reads it), so the scan stays linear on a page of unclosed tags.
_NOT_MARKUP = re.compile(
    r"<(?=[!?stxinp])(?:!--.*?(?:-->|\Z)|[!?][^>]*>?"
    r"|(script|style|textarea|title|xmp|iframe|noembed|noframes|template)(?=[\s/>])[^>]*(?:>|\Z)"
    r".*?(?:</\1(?=[\s/>])[^>]*(?:>|\Z)|\Z)"
    r"|plaintext(?=[\s/>]).*)",
    re.DOTALL | re.IGNORECASE,
)
# An <a>, <area> or <base> start tag's href, attribute by attribute as the HTML tokenizer reads them: a quoted value
# may hold ">" or white space, an unquoted one ends at either; the first href counts, and an attribute merely ending
# in "href" (data-href) is not it. Each other attribute is an atomic group (read one way only), at most 64 of them,
# a name never holds "<" or a quote and an unquoted value no "<" (the tokenizer keeps them there as errors; pages do
# not write them): so a tag that is not one ends at the next "<", and a hostile page of half-open tags ("<a <a <a",
# '<a b="<a b="') costs the scan a few characters a tag, not the rest of the page each.
_NAME = r"""[^\s/>=<"'][^\s/>=<"']*"""
_UNQUOTED = r"""[^\s"'<>`][^\s<>]*"""
_NOT_HREF = rf"""(?>[\s/]*(?!href[\s/>=]){_NAME}(?:\s*=\s*(?:"[^"]*"|'[^']*'|{_UNQUOTED}))?)"""
_LINK_TAG = re.compile(
    rf"""<(?=[ab])(a|area|base)(?=[\s/>]){_NOT_HREF}{{0,64}}?[\s/]*href\s*=\s*(?:"([^"]*)"|'([^']*)'|({_UNQUOTED}))""",
    re.IGNORECASE,
)


def link_attributes(html: str) -> list[tuple[str, str]]:
    """(tag, href) of each <a>, <area> and <base> with an href, in page order: tag lowercased, href with its
    character references decoded (as in an attribute) and its surrounding white space stripped."""
    visible, start = [], 0
    for hidden in _NOT_MARKUP.finditer(html):
        visible.append(html[start : hidden.start()])
        start = hidden.end()
    text = " ".join([*visible, html[start:]]) if visible else html
    return [
        (tag.lower(), _attribute_value(double or single or bare).strip())
        for tag, double, single, bare in _LINK_TAG.findall(text)
    ]


_CHARACTER_REFERENCE = re.compile(r"&(?:#[0-9]+;?|#[xX][0-9a-fA-F]+;?|([A-Za-z][A-Za-z0-9]*)(;?))")


def _attribute_value(value: str) -> str:
    """`value` with its character references decoded as the HTML tokenizer decodes them in an attribute: a named
    reference without its ";" (&copy) stays as written when a letter, digit or "=" follows it, so a query string's
    "&copy=2" or "&not=1" keeps its parameter."""
    if "&" not in value:
        return value
    return _CHARACTER_REFERENCE.sub(lambda ref: _decoded(ref, value), value)


def _decoded(ref: re.Match[str], value: str) -> str:
    name, semicolon = ref.group(1), ref.group(2)
    if name is None or semicolon:
        return html_module.unescape(ref[0])
    # Without ";": only the legacy names decode, and only when the name is the whole run of letters and digits
    # (the regex took them all) and no "=" follows.
    if name in NAMED_REFERENCES and value[ref.end() : ref.end() + 1] != "=":
        return NAMED_REFERENCES[name]
    return ref[0]


def _html_title(html: str) -> str | None:
    """<title> of a page trafilatura could not load (lxml, more lenient)."""
    # lxml refuses str input that carries an XML encoding declaration, so the page goes in as UTF-8 bytes.
    try:
        tree = lxml.html.document_fromstring(html.encode("utf-8"), parser=lxml.html.HTMLParser(encoding="utf-8"))
    except (ParserError, ValueError):
        return None
    return _clean(tree.findtext(".//title"))


def _clean(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None

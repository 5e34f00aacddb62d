"""From a fetched page to what the corpus keeps (main text, title, date, language hint) and what the crawler
follows (links).

`extract` runs one extractor in this process; `document_from_raw` maps one RAW_SCHEMA record to one
DOCUMENT_SCHEMA record; `ExtractionPool` runs that in worker processes with a per-document time limit, so one
pathological page cannot stall a shard. Which extractor to use: see docs/benchmarks.md, "Extraction quality".
"""

from __future__ import annotations

import codecs
import concurrent.futures
import logging
import multiprocessing
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urldefrag, urljoin, urlsplit

import charset_normalizer
import lxml.html
import pebble
from lxml.etree import ParserError
from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.html import HTMLTree
from trafilatura import bare_extraction

from gristmill.tasks.crawl.fetch import parse_content_type

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


def extract(html: str | bytes, url: str, extractor: str = "trafilatura") -> Extracted:
    """Main text, title, publication date and language hint of an HTML page; navigation, footers and comments are
    left out. Bytes are decoded with `decode_html` (no declared charset)."""
    if extractor not in EXTRACTORS:
        raise ValueError(f"unknown extractor {extractor!r}; choose one of {', '.join(EXTRACTORS)}")
    if isinstance(html, bytes):
        html = decode_html(html, None)
    if not html or not html.strip():
        return Extracted(title=None, text=None)
    lang = html_lang(html)
    if extractor == "resiliparse":
        return _resiliparse(html, lang)
    document = bare_extraction(
        html,
        url=url,
        with_metadata=True,  # title and date (htmldate, original date) come from trafilatura's metadata
        include_comments=False,
        favor_precision=extractor == "trafilatura-precision",
        favor_recall=extractor == "trafilatura-recall",
    )
    if document is None:
        # trafilatura found no main text; the title is still worth having (and cheap to get).
        return Extracted(title=_html_title(html), text=None, lang=lang)
    return Extracted(
        title=_clean(document.title), text=_clean(document.text), published=_iso_date(document.date), lang=lang
    )


# Where pages state their publication date, most specific first. resiliparse does not look for dates and
# htmldate.find_date(extensive_search=False) re-parses the page with lxml: on the 181 pages of the extraction
# benchmark it took 0.72 s against resiliparse's 0.67 s (it doubles resiliparse's time), so the resiliparse path
# reads these tags from the tree it already has instead (0.5 ms a page): a date on 127 of the 181 pages
# (htmldate: 179), the same day as htmldate's original date on 117 of them, a day apart (time zones) on the rest.
_DATE_SELECTORS = (
    'meta[property="article:published_time"]',
    'meta[property="og:published_time"]',
    'meta[name="article:published_time"]',
    'meta[itemprop="datePublished"]',
    'meta[name="pubdate"]',
    'meta[name="publishdate"]',
    'meta[name="publish-date"]',
    'meta[name="parsely-pub-date"]',
    'meta[name="sailthru.date"]',
    'meta[name="dc.date.issued" i]',
    'meta[name="dcterms.created" i]',
    'meta[name="date"]',
    '[itemprop="datePublished"][datetime]',
    "time[pubdate][datetime]",
    "time[datetime]",
)


def _resiliparse(html: str, lang: str | None) -> Extracted:
    tree = HTMLTree.parse(html)
    # Comment sections and bylines/date lines are not main content (trafilatura runs with include_comments=False
    # too); on the extraction benchmark they take resiliparse's F1 from 0.898 (defaults) to 0.909 and 0.915.
    text = extract_plain_text(tree, main_content=True, comments=False, post_meta=False)
    published = None
    if tree.document is not None:
        for selector in _DATE_SELECTORS:
            element = tree.document.query_selector(selector)
            if element is not None:
                published = _iso_date(element.getattr("content") or element.getattr("datetime"))
                if published:
                    break
    return Extracted(title=_clean(tree.title), text=_clean(text), published=published, lang=lang)


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
# charset

_PRESCAN_BYTES = 2048
_META_CHARSET = re.compile(rb"""<meta\b[^>]*?charset\s*=\s*["']?\s*([-\w.:]+)""", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""^\s*<\?xml\b[^>]*?encoding\s*=\s*["']([-\w.:]+)""", re.IGNORECASE)
# Labels that browsers read as a superset (WHATWG Encoding): pages labelled latin-1 are written in cp1252 (curly
# quotes at 0x91-0x94), pages labelled Shift_JIS in cp932, and so on.
_SUPERSETS = {
    "ascii": "cp1252",
    "iso8859-1": "cp1252",
    "iso8859-9": "cp1254",
    "iso8859-11": "cp874",
    "tis-620": "cp874",
    "shift_jis": "cp932",
    "euc_kr": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
}
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def decode_html(content: bytes, declared: str | None) -> str:
    """HTML bytes to text for pages that state the wrong charset or none: a byte-order mark; else the declared
    charset (the response header), if the bytes decode in it; else a <meta> charset (or XML encoding) in the first
    2 KB, likewise; else UTF-8; else charset_normalizer's guess; else cp1252 with replacement characters.
    Unknown charset names are ignored. A multi-byte character cut off at the end (a truncated body) is dropped."""
    if not content:
        return ""
    for bom, codec in _BOMS:
        if content.startswith(bom):
            text = _decode_strictly(content, codec)
            if text is not None:
                return text
    candidates = list(_codecs(declared))
    prefix = content[:_PRESCAN_BYTES]
    if match := _XML_ENCODING.search(prefix) or _META_CHARSET.search(prefix):
        # A page readable as ASCII to find its <meta> is not UTF-16/32, whatever the <meta> says (WHATWG: UTF-8).
        candidates += ["utf-8" if c.startswith(("utf-16", "utf-32")) else c for c in _codecs(match[1].decode("ascii"))]
    candidates.append("utf-8")
    for codec in dict.fromkeys(candidates):  # in order, each once
        text = _decode_strictly(content, codec)
        if text is not None:
            return text
    matches = charset_normalizer.from_bytes(content)
    best = matches.best()
    if best is not None:
        # Among equally good guesses, the web's most common legacy charset: charset_normalizer breaks ties by name,
        # and cp1250 before cp1252 turns French "è" into "č".
        for match in matches:
            if match.encoding == "cp1252" and (match.chaos, match.coherence) == (best.chaos, best.coherence):
                return str(match)
        return str(best)
    return content.decode("cp1252", errors="replace")


def _codecs(label: str | None) -> tuple[str, ...]:
    """Python codecs to try for a charset label: its browser superset first, then itself; none if unknown."""
    if not label or not label.strip():
        return ()
    try:
        name = codecs.lookup(label.strip().strip("\"'").lower()).name
    except LookupError:
        return ()
    return (_SUPERSETS[name], name) if name in _SUPERSETS else (name,)


def _decode_strictly(content: bytes, codec: str) -> str | None:
    try:
        # final=False: an incomplete multi-byte sequence at the very end is left out, invalid bytes elsewhere raise.
        return codecs.getincrementaldecoder(codec)("strict").decode(content, final=False)
    except (LookupError, ValueError):  # UnicodeDecodeError is a ValueError
        return None


# ---------------------------------------------------------------------------------------------------------------
# records


def document_from_raw(raw: dict, extractor: str) -> dict:
    """One RAW_SCHEMA record to one DOCUMENT_SCHEMA record: HTML is decoded and extracted, plain text and
    Markdown are kept as they are (stripped); `text` is None when nothing is worth keeping (or the type is neither).
    """
    if extractor not in EXTRACTORS:
        raise ValueError(f"unknown extractor {extractor!r}; choose one of {', '.join(EXTRACTORS)}")
    content = raw["content"] or b""
    media_type = _media_type(raw.get("content_type"), content)
    extracted = Extracted(title=None, text=None)
    if media_type in HTML_TYPES:
        extracted = extract(decode_html(content, raw.get("charset")), raw["url"], extractor)
    elif media_type in TEXT_TYPES:
        # The same charset checks as HTML (declared, then detected): plain text lies or says nothing just as often.
        extracted = Extracted(title=None, text=_clean(decode_html(content, raw.get("charset"))))
    return _document(raw, extracted)


def _document(raw: dict, extracted: Extracted) -> dict:
    return {
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


def _media_type(content_type: str | None, content: bytes) -> str:
    media_type, _ = parse_content_type(content_type)
    if media_type:
        return media_type
    # No type: a body that opens with markup is HTML, anything else plain text.
    return "text/html" if content.lstrip()[:1] == b"<" else "text/plain"


# A page without a visible date: htmldate then hands text to dateparser, which loads its locale data on that
# first call (~2.5 s here, more on a busy machine).
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


class ExtractionPool:
    """Worker processes that turn RAW_SCHEMA records into DOCUMENT_SCHEMA records, each within a time limit.

    A page that takes longer (or crashes its worker) is still yielded, with text None and the reason, and its
    worker is killed and replaced (pebble). Processes come from a forkserver, never fork(): the caller may run in
    a Prefect worker thread, and forking a threaded process can copy held locks into the child.
    """

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.workers = workers
        self._pool: pebble.ProcessPool | None = None
        self._in_flight: set[concurrent.futures.Future] = set()

    def __enter__(self) -> ExtractionPool:
        context = multiprocessing.get_context("forkserver")
        # Workers forked by the server start with the extractors imported and warmed up (a replaced worker too:
        # see tasks/crawl/warm_up.py for why that matters to the time limit). Takes effect
        # only if this process has not started its forkserver yet; harmless otherwise.
        context.set_forkserver_preload(["__main__", __name__, "gristmill.tasks.crawl.warm_up"])
        self._pool = pebble.ProcessPool(max_workers=self.workers, context=context)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for future in self._in_flight:  # a map() its consumer left unfinished: do not wait for its pages
            future.cancel()
        self._in_flight.clear()
        if exc_type is None:
            pool.close()
        else:
            pool.stop()
        pool.join()

    def map(
        self,
        raws: Iterable[dict],
        extractor: str,
        timeout_s: float,
        worker: Callable[[dict, str], dict] = document_from_raw,
    ) -> Iterator[tuple[dict, str | None]]:
        """(document, problem) for each raw record, in input order; problem is None, or why the document has no
        text ("extraction timed out after 5.0 s", "extraction failed: ValueError: ..."). `worker` must be a
        module-level function (it is pickled by reference). At most 4 x workers records are in flight."""
        if self._pool is None:
            raise RuntimeError("ExtractionPool.map needs the pool entered: use `with ExtractionPool(n) as pool:`")
        if extractor not in EXTRACTORS:
            raise ValueError(f"unknown extractor {extractor!r}; choose one of {', '.join(EXTRACTORS)}")
        window: deque[tuple[dict, concurrent.futures.Future]] = deque()
        records = iter(raws)
        try:
            while True:
                while len(window) < 4 * self.workers:
                    raw = next(records, None)
                    if raw is None:
                        break
                    future = self._pool.schedule(worker, args=(raw, extractor), timeout=timeout_s)
                    self._in_flight.add(future)
                    window.append((raw, future))
                if not window:
                    return
                raw, future = window.popleft()
                outcome = self._outcome(raw, future, timeout_s)
                self._in_flight.discard(future)
                yield outcome
        finally:
            for _, future in window:  # the consumer stopped early: do not leave work running
                future.cancel()
                self._in_flight.discard(future)

    @staticmethod
    def _outcome(raw: dict, future: concurrent.futures.Future, timeout_s: float) -> tuple[dict, str | None]:
        try:
            return future.result(), None
        except concurrent.futures.TimeoutError:  # pebble's: the task ran past `timeout`, its worker was killed
            problem = f"extraction timed out after {timeout_s:.1f} s"
        except Exception as error:  # an extractor error, or pebble.ProcessExpired when the worker died
            problem = f"extraction failed: {type(error).__name__}: {error}"
        logger.debug("%s: %s", raw["url"], problem)
        return _document(raw, Extracted(title=None, text=None, lang=None)), problem


# ---------------------------------------------------------------------------------------------------------------
# links


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

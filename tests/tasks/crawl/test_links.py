"""The crawler's links (`extract_links`) are found by scanning the markup, not by parsing it: the same links, in the
same order, as an HTML5 parser's tree gives (lexbor, through selectolax: what the crawler used before), on real
pages and on every corner of the HTML tokenizer the scan has to respect."""

from __future__ import annotations

import difflib
import email
import gzip
import json
import pydoc
import random
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
from selectolax.lexbor import LexborHTMLParser
from warcio.archiveiterator import ArchiveIterator

from gristmill.tasks.crawl.charset import decode_html
from gristmill.tasks.crawl.extract import extract_links, resolve_links
from tests.tasks.crawl.test_extract import pydoc_page


def parser_links(html: str, base_url: str) -> list[str]:
    """The links as the crawler found them from lexbor's tree: <a>/<area> hrefs and the first <base href>."""
    elements = LexborHTMLParser(html).css("a[href], area[href], base[href]")
    return resolve_links(((e.tag, (e.attributes.get("href") or "").strip()) for e in elements), base_url)


# What the scan must read as a parser does: each case holds links it must find and markup where "<a" is no link.
CASES = {
    "comment": '<p><!-- <a href="/hidden"> --><a href="/ok">',
    "unterminated comment": '<a href="/ok"><!-- <a href="/hidden">',
    "declaration and processing instruction": '<!DOCTYPE html><? <a href="/hidden"> ?><a href="/ok">',
    "script": '<script>var s = "<a href=\'/hidden\'>";</script><a href="/ok">',
    "script in capitals": '<SCRIPT type="x">"<a href=/hidden>"</SCRIPT ><a href="/ok">',
    "style": '<style>a[href="/hidden"] { color: red }</style><a href=/ok>',
    "textarea": '<textarea><a href="/hidden"></textarea><a href="/ok">',
    "title": '<title><a href="/hidden"></title><a href="/ok">',
    "template": '<template><a href="/hidden"></template><a href="/ok">',
    "noscript (parsed: scripting off)": '<noscript><a href="/shown"></noscript><a href="/ok">',
    "iframe": '<iframe><a href="/hidden"></iframe><a href="/ok">',
    "plaintext": '<a href="/ok"><plaintext><a href="/hidden">',
    "svg": '<svg><a href="/svg"></a><a xlink:href="/xlink"></a></svg>',
    "capitals": '<A HREF="/UP">x</A><AREA HREF=/area>',
    "unquoted": "<a href=/un/quoted?x=1 class=y>",
    "single quotes": "<a href='/single' >",
    "spaces around =": '<a href = " /spaced " >',
    "newline and slash": '<a\nhref="/newline"><a/href="/slash">',
    "data-href and hreflang": '<a data-href="/hidden" hreflang="en" href="/ok">',
    "> in an earlier value": '<a title="a > b" onclick=\'return a>b\' href="/ok">',
    "no space after a quote": '<a class="x"href="/ok">',
    "duplicate href": '<a href="/first" href="/second">',
    "empty href": '<a href="">e</a><a href>f</a><a href="/ok">',
    "character references": '<a href="/q?a=1&amp;b=2&#47;&#x2F;">',
    "legacy reference before =": '<a href="/q?a=1&copy=2&not=3&para=4">',
    "legacy reference at the end": '<a href="/q?x&copy">',
    "legacy reference before a letter": '<a href="/q?x&copyright&notin;">',
    "unknown reference": '<a href="/q?a&foo;b&bar=1">',
    "base": '<base target=_self><base href="/b/"><base href="/c/"><a href="relative">',
    "tags that start like a": '<abbr href="/hidden">x</abbr><address href="/hidden"></address><a href="/ok">',
    "apostrophe in an unquoted value": '<a title=don\'t href="/ok">',
    "unterminated value": '<a href="/ok"><a href="/unterminated',
    "white space in a value": '<a href="\n  /padded\t">',
    "fragments and schemes": '<a href="#top"><a href="/p#s"><a href="mailto:x@y"><a href="javascript:0"><a href="/p">',
}


@pytest.mark.parametrize("name", CASES)
def test_the_scan_finds_the_links_a_parser_finds(name: str) -> None:
    html = f"<html><head></head><body>{CASES[name]}</body></html>"
    assert extract_links(html, "https://example.org/dir/page.html") == parser_links(
        html, "https://example.org/dir/page.html"
    )


def test_character_references_are_decoded_as_in_an_attribute() -> None:
    links = extract_links(CASES["legacy reference before ="] + CASES["character references"], "https://example.org/")
    assert links == ["https://example.org/q?a=1&copy=2&not=3&para=4", "https://example.org/q?a=1&b=2//"]


def test_a_long_tag_without_an_href_is_read_in_one_pass() -> None:
    """Each attribute reads one way (an atomic group): a tag of a thousand quoted attributes and no href, which
    could be split in 2**1000 ways, is passed over and the link after it found."""
    tag = "<a " + " ".join(f'data-{i}="v{i}"' for i in range(1000)) + ">"
    assert extract_links(tag + '<a href="/after">', "https://example.org/") == ["https://example.org/after"]


# Pages of half-open tags, where a scan that let a tag run on to the next quote or ">" would read the rest of the page
# again for every "<a" (quadratic: 50 KB of "<a " took 16 s, a 5 MB page days). Linear, each takes well under a
# second at 1 MB; the child's generous limit only stops a hang.
HOSTILE = {
    "a a a": "<a " * 300_000,
    "half-open quotes": '<a b="xxxx' * 100_000,
    "half-open single quotes": "<a b='xx" * 120_000,
    "unquoted runs": "<a/b=xxxxxxxx" * 80_000,
    "area slashes": "<area/" * 160_000,
    "mixed quotes": '<a b="' + "<a c='x'" * 120_000 + '"',
    "unclosed script tags": "<script " * 120_000,
    "unclosed raw text": "<title>" + "<a href=x>" * 100_000,
    "unclosed comment": "<!--" + "<a href=x>" * 100_000,
}


def test_hostile_pages_are_scanned_in_linear_time() -> None:
    code = (
        "import json, sys\n"
        "from gristmill.tasks.crawl.extract import link_attributes\n"
        "pages = json.loads(sys.stdin.read())\n"
        "print(json.dumps({name: len(link_attributes(page)) for name, page in pages.items()}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(HOSTILE), capture_output=True, text=True, timeout=600, check=True
    )
    assert json.loads(done.stdout) == dict.fromkeys(HOSTILE, 0)


def test_the_scan_finds_the_links_a_parser_finds_on_documentation_pages() -> None:
    modules = [difflib, pydoc, json, email, gzip, random, urllib.parse, pytest]
    for module in modules:
        page = pydoc_page(module)
        base = f"https://docs.example.org/{module.__name__}.html"
        links = extract_links(page, base)
        assert links == parser_links(page, base), module.__name__
        assert len(links) >= 3, module.__name__


def test_the_scan_finds_the_links_a_parser_finds_on_real_web_pages(shared_data: Path) -> None:
    warcs = [w for w in sorted((shared_data / "warc").glob("*.warc*")) if not w.name.endswith(("wat.gz", "wet.gz"))]
    pages = 0
    for warc in warcs:
        with warc.open("rb") as stream:
            for record in ArchiveIterator(stream):
                content_type = record.http_headers.get_header("Content-Type") if record.http_headers else None
                if record.rec_type != "response" or "html" not in (content_type or ""):
                    continue
                url = record.rec_headers.get_header("WARC-Target-URI")
                html = decode_html(record.content_stream().read(), None)
                assert extract_links(html, url) == parser_links(html, url), url
                pages += 1
    assert pages >= 30  # the shared WARCs hold 40 HTML responses

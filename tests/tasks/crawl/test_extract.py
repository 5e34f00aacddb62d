"""Main-text extraction and link extraction on hand-written pages."""

from __future__ import annotations

from tasks.crawl.extract import Extracted, extract, extract_links

ARTICLE = [
    "The river mill at Lower Weston ground wheat for three villages from the twelfth century onwards.",
    "Its wheel was rebuilt in 1842 after a winter flood carried away the old oak paddles and the sluice gate.",
    "The miller kept a ledger of every sack that passed through, and the ledgers survive in the county archive.",
    "Today the building houses a small museum where visitors can watch the stones turn on open days.",
]

PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>The Lower Weston mill | Local history society</title></head>
<body>
  <header class="site-header"><a href="/">Local history society</a>
    <nav><ul><li><a href="/about">About us</a></li><li><a href="/join">Join the society</a></li>
    <li><a href="/events">Upcoming events</a></li></ul></nav>
  </header>
  <main><article>
    <h1>The Lower Weston mill</h1>
    {"".join(f"<p>{p}</p>" for p in ARTICLE)}
  </article>
  <div id="comments" class="comments"><h3>Comments</h3>
    <div class="comment"><p>Spam spam: buy cheap watches at the best prices online today!</p></div>
  </div></main>
  <footer><p>Copyright 2024 Local history society. All rights reserved.</p>
    <p><a href="/privacy">Privacy policy</a> | <a href="/cookies">Cookie settings</a></p></footer>
</body></html>
"""


def test_main_text_is_kept_and_boilerplate_dropped() -> None:
    result = extract(PAGE, "https://history.example.org/mill")
    assert isinstance(result, Extracted)
    assert result.text is not None
    for paragraph in ARTICLE:
        assert paragraph in result.text
    for boilerplate in ("Join the society", "Upcoming events", "Copyright 2024", "Privacy policy", "cheap watches"):
        assert boilerplate not in result.text


def test_title_is_found() -> None:
    title = extract(PAGE, "https://history.example.org/mill").title
    assert title is not None and "Lower Weston mill" in title


def test_bytes_input_in_a_declared_charset() -> None:
    page = PAGE.replace('charset="utf-8"', 'charset="iso-8859-1"').replace("wheat", "blé wheat")
    result = extract(page.encode("iso-8859-1"), "https://history.example.org/mill")
    assert result.text is not None and "blé wheat" in result.text


def test_page_without_main_text() -> None:
    assert extract("", "https://example.org/") == Extracted(title=None, text=None)
    empty = extract("<html><head><title>Just a title</title></head><body></body></html>", "https://example.org/")
    assert empty.text is None
    assert empty.title == "Just a title"


def test_links_are_absolute_unique_and_http_only() -> None:
    html = """<html><body>
      <a href="/a#section">a</a> <a href="/a">a again</a> <a href="b?x=1">b</a>
      <a href="https://other.example.org/c#top">c</a> <a href="//cdn.example.org/d">d</a>
      <a href="mailto:someone@example.org">mail</a> <a href="javascript:void(0)">js</a>
      <a href="#only-fragment">self</a> <a>no href</a> <a href="http://[broken">broken</a>
      <map><area href="/e" alt="e"></map>
    </body></html>"""
    assert extract_links(html, "https://example.org/dir/page") == [
        "https://example.org/a",
        "https://example.org/dir/b?x=1",
        "https://other.example.org/c",
        "https://cdn.example.org/d",
        "https://example.org/dir/page",
        "https://example.org/e",
    ]


def test_base_href_changes_what_relative_links_mean() -> None:
    html = '<html><head><base href="/docs/"></head><body><a href="intro.html">intro</a></body></html>'
    assert extract_links(html, "https://example.org/index.html") == ["https://example.org/docs/intro.html"]


def test_links_from_bytes_and_from_nothing() -> None:
    html = '<?xml version="1.0" encoding="utf-8"?><html><body><a href="/x">x</a></body></html>'
    assert extract_links(html, "https://example.org/") == ["https://example.org/x"]
    assert extract_links(html.encode(), "https://example.org/") == ["https://example.org/x"]
    assert extract_links("", "https://example.org/") == []

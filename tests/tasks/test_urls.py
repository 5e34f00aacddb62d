"""The one canonical URL form: as the crawler keys pages by it, and as dedup compares pages with it."""

from __future__ import annotations

import pytest

from gristmill.conf.schema import CrawlConfig
from gristmill.tasks.urls import UrlNormalizer, same_page_key


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("HTTP://Example.ORG/a/", "http://example.org/a"),  # case and a trailing slash
        ("http://example.org/a?utm_source=x&id=7", "http://example.org/a?id=7"),  # tracking parameters (crawl's rule)
        ("http://example.org:80/a#top", "http://example.org/a"),  # default port and fragment
        ("http://example.org/?b=2&a=1", "http://example.org/?a=1&b=2"),
    ],
)
def test_one_page_has_one_key(a: str, b: str) -> None:
    assert same_page_key(a) == same_page_key(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("http://example.org/a", "https://example.org/a"),
        ("http://example.org/a?id=7", "http://example.org/a?id=8"),
        ("data/dump.jsonl#L3", "data/dump.jsonl#L4"),  # a locator's fragment names the record
        ("file:///corpus/a.txt", "file:///corpus/b.txt"),
    ],
)
def test_different_pages_and_records_keep_different_keys(a: str, b: str) -> None:
    assert same_page_key(a) != same_page_key(b)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://Example.ORG", "http://example.org/"),
        ("http://example.org:80/a?b=1#frag", "http://example.org/a?b=1"),
        ("https://example.org:443/", "https://example.org/"),
        ("https://example.org:8443/x", "https://example.org:8443/x"),
        ("http://user:pw@example.org/", "http://example.org/"),
        ("http://[::1]:8080/", "http://[::1]:8080/"),
        ("http://example.org/?b=2&a=1", "http://example.org/?a=1&b=2"),
        ("http://example.org/p?utm_source=x&id=7&fbclid=abc&UTM_Medium=y", "http://example.org/p?id=7"),
        ("http://example.org/p?utm_source=x", "http://example.org/p"),
        ("http://example.org/p?q=a+b&empty=", "http://example.org/p?empty=&q=a+b"),
        ("ftp://example.org/", None),
        ("mailto:a@example.org", None),
        ("http://example.org:99999/", None),
        ("/relative", None),
    ],
)
def test_normalize_url(url: str, expected: str | None) -> None:
    assert UrlNormalizer(CrawlConfig().strip_query_params)(url) == expected

"""The one canonical URL form, as dedup compares pages with it."""

from __future__ import annotations

import pytest

from gristmill.tasks.urls import same_page_key


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

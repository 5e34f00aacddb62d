"""The extraction fallback, on a real local shop site: where the chosen extractor returns the same sidebar for
every product page (or nothing), the crawl keeps the other extractor's text and says which extractor made each
document."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from gristmill.tasks.crawl import stage as crawl_stage
from gristmill.tasks.crawl.fallback import needs_fallback, other_extractor, raw_rows
from gristmill.tasks.shards import iter_records
from gristmill.tasks.stage import execute
from tests.tasks.crawl.test_crawler import HandMadeSite, Route, serve
from tests.tasks.crawl.test_stage import _config

SIDEBAR = (
    "<article><h2>店舗のご案内</h2><p>営業時間は午前十時から午後八時までです。定休日は毎週水曜日となっております。"
    "お問い合わせはお電話またはメールでお願いいたします。送料は全国一律五百円です。</p></article>"
)
PRODUCTS = 4


def item(page: int, line: int) -> str:
    return f"商品番号{page}-{line}：手作りの陶器で、形が少しずつ異なります。サイズは直径{10 + line}センチです。"


def product_page(page: int, layout: str) -> bytes:
    """Product text in a block trafilatura takes for boilerplate (`product-footer`, the shop's sidebar in an
    <article> beside it), or only as a list (`ul`, the sidebar in an <aside>: resiliparse finds nothing)."""
    if layout == "product-footer":
        main = "<div class='product-footer'>" + "".join(f"<p>{item(page, j)}</p>" for j in range(5)) + "</div>"
        main += SIDEBAR
    else:
        main = "<div id='main'><ul>" + "".join(f"<li>{item(page, j)}</li>" for j in range(5)) + "</ul></div>"
        main += f"<aside>{SIDEBAR}</aside>"
    links = "".join(f"<a href='/item/{i}'>商品 {i}</a>" for i in range(PRODUCTS))
    head = f"<head><title>商品 {page}</title></head>"
    return f"<html lang='ja-JP'>{head}<body><nav>{links}</nav>{main}</body></html>".encode()


@pytest.fixture(scope="module")
def shop() -> Iterator[str]:
    site = HandMadeSite()
    links = "".join(f"<a href='/item/{i}'>商品 {i}</a> <a href='/list/{i}'>一覧 {i}</a>" for i in range(PRODUCTS))
    site.routes["/"] = Route(f"<html><body><nav>{links}</nav></body></html>".encode())
    for i in range(PRODUCTS):
        site.routes[f"/item/{i}"] = Route(product_page(i, "product-footer"))
        site.routes[f"/list/{i}"] = Route(product_page(i, "ul"))
    with serve(site) as base:
        yield base


def _documents(workspace: Path) -> dict[str, dict[str, Any]]:
    return {d["url"]: d for d in iter_records(sorted((workspace / "crawl" / "documents").glob("*.parquet")))}


def test_pages_where_trafilatura_returns_the_same_sidebar_are_extracted_by_resiliparse(shop, tmp_path) -> None:
    config = _config(tmp_path / "ws", seeds=[shop], include=["/item/", "/$"])
    execute(config, "crawl", crawl_stage.run)
    docs = _documents(tmp_path / "ws")
    products = [docs[f"{shop}item/{i}"] for i in range(PRODUCTS)]
    assert [d["text"].splitlines()[0] for d in products] == [item(i, 0) for i in range(PRODUCTS)]
    assert {d["extractor"] for d in products} == {"resiliparse"}
    assert {d["lang_hint"] for d in products} == {"ja"}  # ja-JP, normalised in one place
    manifest = (tmp_path / "ws" / "crawl" / "manifest.json").read_text()
    assert '"fallback_used_repeated": 4' in manifest


def test_without_the_fallback_every_product_page_is_the_sidebar(shop, tmp_path) -> None:
    config = _config(tmp_path / "ws", seeds=[shop], include=["/item/", "/$"], extract_fallback=False)
    execute(config, "crawl", crawl_stage.run)
    docs = _documents(tmp_path / "ws")
    texts = {docs[f"{shop}item/{i}"]["text"] for i in range(PRODUCTS)}
    assert len(texts) == 1 and texts.pop().startswith("店舗のご案内")
    assert {docs[f"{shop}item/{i}"]["extractor"] for i in range(PRODUCTS)} == {"trafilatura-precision"}


def test_pages_where_resiliparse_finds_no_text_are_extracted_by_trafilatura(shop, tmp_path) -> None:
    config = _config(tmp_path / "ws", seeds=[shop], include=["/list/", "/$"], extractor="resiliparse")
    execute(config, "crawl", crawl_stage.run)
    docs = _documents(tmp_path / "ws")
    lists = [docs[f"{shop}list/{i}"] for i in range(PRODUCTS)]
    assert all(item(i, 3) in d["text"] for i, d in enumerate(lists))
    assert {d["extractor"] for d in lists} == {"trafilatura-precision"}


def test_which_pages_are_retried():
    docs = [{"url": f"https://a.example/{i}", "text": "Menu Home Contact"} for i in range(3)]
    docs += [{"url": "https://b.example/1", "text": "Menu Home Contact"}, {"url": "https://a.example/x", "text": None}]
    docs += [{"url": "https://a.example/y", "text": "A real article."}, {"url": "file:///n.txt", "text": None}]
    html = [True] * 6 + [False]  # plain text is never re-extracted
    # three pages of a.example share a text: navigation; b.example's one page with it is not
    assert needs_fallback(docs, html, 3) == {0: "repeated", 1: "repeated", 2: "repeated", 4: "no_text"}
    assert needs_fallback(docs, html, 4) == {4: "no_text"}
    assert other_extractor("trafilatura-recall") == "resiliparse" and other_extractor("resiliparse").startswith("traf")


FETCHED_AT = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize("page_bytes", [300_000, 20_000])  # a few rows per row group; more than a read batch's 64
def test_raw_rows_reads_back_exactly_the_rows_asked_for_across_row_groups(tmp_path: Path, page_bytes: int) -> None:
    """Rows in several row groups of a shard (each written batch is one), scattered, first and last included."""
    rows = 40 if page_bytes > 100_000 else 400
    records = [
        {
            "doc_id": f"d{i}",
            "url": f"https://x.org/{i}",
            "source": "crawl",
            "fetched_at": FETCHED_AT,
            "status": 200,
            "content": bytes([65 + i % 26]) * page_bytes,
        }
        for i in range(rows)
    ]
    (info,) = crawl_stage.write_records(tmp_path, crawl_stage.RAW_SCHEMA, iter(records), 1000, "fetch")
    shard = tmp_path / info.name
    assert pq.ParquetFile(shard).num_row_groups > 1
    for wanted in ({0}, {rows - 1}, {0, 13, 14, rows // 2, rows - 1}, {rows * 3 // 4}, set(range(0, rows, 7))):
        got = list(raw_rows(shard, wanted))
        assert [r["doc_id"] for r in got] == [f"d{i}" for i in sorted(wanted)]
        assert [r["content"] for r in got] == [records[i]["content"] for i in sorted(wanted)]
    assert list(raw_rows(shard, set())) == []

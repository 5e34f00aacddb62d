"""Extraction fallback, per site: a post-pass over one raw shard's extracted documents.

An extractor sometimes fails a whole site the same way: on shop pages whose product text sits in a block it takes
for boilerplate, trafilatura returned the same sidebar for every page (dedup then collapses them into one), and
resiliparse returns nothing for pages made only of lists. So after a shard is extracted, a page is extracted again
with the other extractor when the chosen one found no text, or found the same text as on `extract_fallback_pages`
or more pages of its site; the other extractor's text is kept when it has some and is not itself repeated across
the site. Each document records which extractor produced it (`extractor`).

Sites are grouped within one raw shard (a crawl writes a site's pages together; bounded memory is one shard).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from gristmill.conf.schema import CrawlConfig
from gristmill.tasks.crawl.extract import HTML_TYPES
from gristmill.tasks.crawl.extraction_pool import ExtractionPool, extraction_worker
from gristmill.tasks.shards import open_shard
from gristmill.tasks.text.languages import normalize_code

RAW_READ_ROWS = 16  # decoded at a time: 16 pages of up to 5 MB (64 of 2 MB pages cost ~130 MB, twice)


def other_extractor(extractor: str) -> str:
    """The extractor that works differently from `extractor`: resiliparse for every trafilatura mode, and back."""
    return "trafilatura-precision" if extractor == "resiliparse" else "resiliparse"


def site(url: str) -> str:
    return urlsplit(url).netloc.lower()


def repeated(documents: list[dict[str, Any]], rows: list[int], min_pages: int) -> set[int]:
    """Rows whose text is the same as on at least `min_pages` pages of the same site (themselves included)."""
    key = {row: (site(documents[row]["url"]), documents[row]["text"]) for row in rows if documents[row].get("text")}
    counts = Counter(key.values())
    return {row for row, k in key.items() if counts[k] >= min_pages}


def needs_fallback(documents: list[dict[str, Any]], is_html: list[bool], min_pages: int) -> dict[int, str]:
    """Rows of HTML pages to extract again, and why: `no_text` or `repeated`."""
    html_rows = [row for row, html in enumerate(is_html) if html]
    why = {row: "no_text" for row in html_rows if not documents[row].get("text")}
    why.update(dict.fromkeys(repeated(documents, html_rows, min_pages), "repeated"))
    return dict(sorted(why.items()))


def refine(
    pool: ExtractionPool,
    raw_shard: Path,
    documents: list[dict[str, Any]],
    is_html: list[bool],
    cfg: CrawlConfig,
    counts: Counter[str],
) -> None:
    """Replace, in place, the documents the other extractor does better; count what it tried and what it kept."""
    for document in documents:  # language codes from one place: <html lang="en-US">, Content-Language: eng -> en
        document["lang_hint"] = normalize_code(document.get("lang_hint"))
        document["extractor"] = (
            document.get("extractor") or cfg.extractor
        )  # the pool's time-limit fallback names its own
    if not cfg.extract_fallback:
        return
    why = needs_fallback(documents, is_html, cfg.extract_fallback_pages)
    if not why:
        return
    other = other_extractor(cfg.extractor)
    results = pool.map(  # a failure: no text, kept
        raw_rows(raw_shard, set(why)),
        other,
        cfg.extract_timeout_s,
        worker=extraction_worker(cfg),
        timeout_s_per_mb=cfg.extract_timeout_s_per_mb,
    )
    retried = {row: document for row, (document, _problem) in zip(why, results, strict=True)}
    candidates = [*documents]
    for row, document in retried.items():
        candidates[row] = document
    still_repeated = repeated(candidates, list(retried), cfg.extract_fallback_pages)
    for row, document in retried.items():
        counts[f"fallback_tried_{why[row]}"] += 1
        if not document.get("text") or row in still_repeated or document["text"] == documents[row].get("text"):
            continue
        counts[f"fallback_used_{why[row]}"] += 1
        documents[row] = {**document, "lang_hint": normalize_code(document.get("lang_hint")), "extractor": other}


def raw_rows(raw_shard: Path, rows: set[int]) -> Iterator[dict[str, Any]]:
    """The raw records at `rows` of the shard, in order (read again: raw bodies are not kept in memory). Only the
    row groups holding them are decoded (a shard its finished stage lists is still hashed whole: `open_shard`), and
    only those rows become Python objects: the whole 30 MB shard was decoded to take one page back."""
    with open_shard(raw_shard) as parquet:
        group_start = 0
        for group in range(parquet.num_row_groups):
            group_end = group_start + parquet.metadata.row_group(group).num_rows
            if any(group_start <= row < group_end for row in rows):
                yield from _rows_of_group(parquet, group, group_start, rows)
            group_start = group_end


def _rows_of_group(parquet: pq.ParquetFile, group: int, first_row: int, rows: set[int]) -> Iterator[dict[str, Any]]:
    for batch in parquet.iter_batches(batch_size=RAW_READ_ROWS, row_groups=[group]):
        wanted = [row - first_row for row in range(first_row, first_row + batch.num_rows) if row in rows]
        first_row += batch.num_rows
        if wanted:
            yield from batch.take(pa.array(wanted, pa.int64())).to_pylist()


def is_html_record(raw: dict[str, Any]) -> bool:
    """HTML, or untyped content that opens with markup: what an extractor (not plain-text reading) handles."""
    content_type = raw.get("content_type")
    if content_type:
        return content_type in HTML_TYPES
    return (raw.get("content") or b"").lstrip()[:1] == b"<"

"""The crawl stage's own record schemas.

`RAW_SCHEMA` is what every source ends in - a crawled page, a WARC/WET record, a JSONL line, a Parquet row, a
file - before extraction; `FETCH_SCHEMA` logs every crawl fetch, failures included. What crawl writes after
extraction is the cross-stage DOCUMENT schema (`tasks/documents.py`).
"""

from __future__ import annotations

import hashlib

import pyarrow as pa

CRAWL_SOURCE = "crawl"  # the `source` of pages fetched by the crawler; ingested records carry their file's URL

RAW_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),  # see doc_id() and record_id()
        pa.field("url", pa.string(), nullable=False),  # page URL, or a locator (file URL, file#line) without one
        pa.field("source", pa.string(), nullable=False),  # "crawl" or the file the record was read from
        pa.field("source_offset", pa.int64()),  # byte offset of a WARC record, line of a JSONL, row of a Parquet
        pa.field("fetched_at", pa.timestamp("us", tz="UTC"), nullable=False),  # WARC-Date, fetch time, file mtime
        pa.field("status", pa.int16(), nullable=False),  # HTTP status; 200 for sources without one
        pa.field("content_type", pa.string()),  # media type without parameters: text/html, text/plain, ...
        pa.field("charset", pa.string()),  # as declared by the response header, if it declared one
        pa.field("lang_hint", pa.string()),  # Content-Language, or the WET record's identified language
        pa.field("content", pa.binary(), nullable=False),  # the body: HTML bytes, or UTF-8 text
    ]
)

FETCH_SCHEMA = pa.schema(
    [
        pa.field("url", pa.string(), nullable=False),  # as queued (normalised)
        pa.field("final_url", pa.string()),  # after redirects
        pa.field("depth", pa.int32(), nullable=False),  # links from a seed; sitemap URLs count as depth 1
        pa.field("fetched_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("status", pa.int16()),  # HTTP status of the last response; null when none arrived
        pa.field("outcome", pa.string(), nullable=False),  # stored | skipped | failed
        pa.field("error", pa.string()),  # why it was not stored: timeout, connect, http_503, too_large, ...
        pa.field("attempts", pa.int16(), nullable=False),
        pa.field("bytes", pa.int64(), nullable=False),  # body bytes received (after decompression)
        pa.field("elapsed_ms", pa.float64(), nullable=False),  # first request to last byte, retries included
        pa.field("redirects", pa.list_(pa.string())),  # the chain of URLs redirected through, in order
    ]
)


def doc_id(url: str) -> str:
    """Id of a crawled page: sha1 of its normalised URL, stable across reruns."""
    return hashlib.sha1(url.encode()).hexdigest()


def record_id(source: str, offset: int) -> str:
    """Id of an ingested record: its file and position, so two captures of one URL stay two records."""
    return hashlib.sha1(f"{source}#{offset}".encode()).hexdigest()

"""The DOCUMENT schema: the contract between the text stages.

Crawl writes it after extraction, dedup reads and writes it unchanged, clean reads it and appends its language
columns (`tasks/clean/stage.py: CLEAN_SCHEMA`). It lives here, beside `shards.py`, so that no stage imports
another stage's package to read its input. The columns are described in docs/data-contract.md.
"""

from __future__ import annotations

import pyarrow as pa

DOCUMENT_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("url", pa.string(), nullable=False),
        pa.field("fetched_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("status", pa.int16(), nullable=False),  # HTTP status of the final response
        pa.field("content_type", pa.string()),  # media type without parameters, e.g. text/html
        pa.field("title", pa.string()),
        pa.field("text", pa.string()),  # extracted main text; null when extraction found none
        pa.field("raw_bytes", pa.int64(), nullable=False),  # size of the response body as received
        pa.field("source", pa.string()),  # "crawl" or the ingested file
        pa.field("published", pa.string()),  # publication date (YYYY-MM-DD) found by the extractor, if any
        pa.field("lang_hint", pa.string()),  # <html lang>, Content-Language or WET language: a hint, not language id
        pa.field("extractor", pa.string()),  # which extractor produced `text` (tasks/crawl/fallback.py); null: none
    ]
)

"""The document record: what crawl writes and dedup and clean read and write (same schema throughout)."""

from __future__ import annotations

import hashlib

import pyarrow as pa

DOCUMENT_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),  # sha1 of the normalised URL: stable across reruns
        pa.field("url", pa.string(), nullable=False),
        pa.field("fetched_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("status", pa.int16(), nullable=False),  # HTTP status of the final response
        pa.field("content_type", pa.string()),  # media type without parameters, e.g. text/html
        pa.field("title", pa.string()),
        pa.field("text", pa.string()),  # extracted main text; null when extraction found none
        pa.field("raw_bytes", pa.int64(), nullable=False),  # size of the response body as received
    ]
)


def doc_id(url: str) -> str:
    return hashlib.sha1(url.encode()).hexdigest()

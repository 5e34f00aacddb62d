"""Exact duplicates: documents whose text is identical after normalisation."""

from __future__ import annotations

import hashlib
import re

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalize_for_dedup(text: str) -> str:
    """Case, punctuation and whitespace differences do not make two documents different."""
    return _NON_WORD.sub(" ", text.lower()).strip()


def exact_hash(text: str) -> bytes:
    return hashlib.blake2b(normalize_for_dedup(text).encode(), digest_size=8).digest()

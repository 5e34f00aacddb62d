"""Exact duplicates: documents whose text is identical after normalisation, and URL duplicates.

Normalisation runs in Arrow compute kernels over a whole batch: one Python regex call per document cost more than
hashing the document's shingles. RE2 classes are used so that non-ASCII letters and digits count as word characters.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_NON_WORD = r"[^\p{L}\p{N}]+"  # punctuation, symbols, underscores and whitespace
_NON_WORD_KEEP_PUNCT = r"\s+"


@dataclass(frozen=True)
class Normalizer:
    """Which differences do not make two documents different: case, punctuation, digits. Whitespace and Unicode
    compatibility forms never do (NFKC: full-width ＡＢＣ１２ is ABC12, half-width ｶﾞ is ガ, ﬁ is fi)."""

    lowercase: bool = True
    punctuation: bool = True
    digits: bool = False

    def batch(self, texts: pa.Array) -> pa.Array:
        """Normalised texts; nulls become empty strings."""
        out = nfkc(texts)
        if self.lowercase:
            out = pc.utf8_lower(out)
        if self.digits:
            out = pc.replace_substring_regex(out, r"\p{N}+", "0")
        out = pc.replace_substring_regex(out, _NON_WORD if self.punctuation else _NON_WORD_KEEP_PUNCT, " ")
        return pc.utf8_trim_whitespace(out)

    def hashes(self, texts: pa.Array) -> list[bytes]:
        """8-byte digests of the normalised texts. When punctuation is ignored and digits are not rewritten, the
        normalised text is just its word sequence, so the digest is a hash of the word hashes, computed in numpy
        (Arrow's regex replace cost more than all of the MinHash work); otherwise blake2b of the normalised text."""
        if self.punctuation and not self.digits:
            from gristmill.tasks.dedup.minhash import sequence_hashes, word_tokens

            return [int(h).to_bytes(8, "little") for h in sequence_hashes(*word_tokens(texts, self.lowercase))]
        return [_digest(t) for t in self.batch(texts).to_pylist()]


DEFAULT = Normalizer()


def nfkc(texts: pa.Array) -> pa.Array:
    """Texts in Unicode NFKC (nulls become empty strings). Python's unicodedata, not Arrow's utf8_normalize, which
    returned decomposed text for every form in pyarrow 25. Only non-ASCII texts that are not already in NFKC are
    touched (most of a crawl is either), so an English batch costs an ASCII check and a quick check per text."""
    texts = large_strings(texts)
    wide = np.flatnonzero(~pc.string_is_ascii(texts).to_numpy(zero_copy_only=False))
    if not len(wide):
        return texts
    changed = {
        int(i): unicodedata.normalize("NFKC", value)
        for i, value in zip(wide, texts.take(pa.array(wide)).to_pylist(), strict=True)
        if not unicodedata.is_normalized("NFKC", value)
    }
    return replace_values(texts, changed)


def large_strings(texts: pa.Array) -> pa.Array:
    """One contiguous large_string array, nulls as empty strings."""
    texts = pc.fill_null(texts.cast(pa.large_string()), "")
    return texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts


def replace_values(texts: pa.Array, changed: dict[int, str]) -> pa.Array:
    if not changed:
        return texts
    values = texts.to_pylist()
    for i, value in changed.items():
        values[i] = value
    return pa.array(values, pa.large_string())


def normalize_for_dedup(text: str) -> str:
    """Case, punctuation and whitespace differences do not make two documents different."""
    return DEFAULT.batch(pa.array([text]))[0].as_py()


def exact_hash(text: str, normalizer: Normalizer = DEFAULT) -> bytes:
    return normalizer.hashes(pa.array([text]))[0]


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=8).digest()


def normalize_url(url: str | None) -> str:
    """Two URLs name the same page when they differ only in scheme/host case, fragment or a trailing slash."""
    if not url:
        return ""
    parts = urlsplit(url.strip())
    path = parts.path.rstrip("/") or "/"
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, parts.query, ""))

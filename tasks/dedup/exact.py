"""Exact duplicates: documents whose text is identical after normalisation (URL duplicates: `tasks/urls.py`).

Normalisation runs in Arrow compute kernels over a whole batch: one Python regex call per document cost more than
hashing the document's shingles. RE2 classes are used so that non-ASCII letters and digits count as word characters.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from gristmill.tasks.dedup.tokens import nfkc, sequence_hashes, word_tokens

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
        """8-byte digests of the normalised texts (see `digests`)."""
        return self.digests(texts).to_pylist()

    def digests(self, texts: pa.Array) -> pa.FixedSizeBinaryArray:
        """8-byte digests of the normalised texts, as an Arrow column. When punctuation is ignored and digits are not
        rewritten, the normalised text is just its word sequence, so the digest is a hash of the word hashes,
        computed in numpy (Arrow's regex replace cost more than all of the MinHash work), its little-endian bytes
        the column's buffer; otherwise blake2b of the normalised text."""
        if self.punctuation and not self.digits:
            values = sequence_hashes(*word_tokens(texts, self.lowercase)).astype("<u8")
            return pa.FixedSizeBinaryArray.from_buffers(pa.binary(8), len(values), [None, pa.py_buffer(values)])
        return pa.array([_digest(t) for t in self.batch(texts).to_pylist()], pa.binary(8))


DEFAULT = Normalizer()


def normalize_for_dedup(text: str) -> str:
    """Case, punctuation and whitespace differences do not make two documents different."""
    return DEFAULT.batch(pa.array([text]))[0].as_py()


def exact_hash(text: str, normalizer: Normalizer = DEFAULT) -> bytes:
    return normalizer.hashes(pa.array([text]))[0]


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=8).digest()

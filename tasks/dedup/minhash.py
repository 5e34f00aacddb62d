"""Vectorised MinHash signatures over whole batches of documents, compatible with datasketch's `affine32` scheme.

Per batch, with no Python loop over documents or words: lower-case in Arrow, split words on the UTF-8 bytes with a
byte-class table and hash every word with a polynomial taken from prefix sums (`tokens.py`), chain word hashes into
n-gram shingle hashes, then apply datasketch's permutations (`fmix32(h)`, then `a * h + b` in uint32, where the
wraparound is the modulo) laid out permutations-major and reduce per document with `np.minimum.reduceat`.
Given the same shingle hash values, the result is bit-identical to `MinHash(hashfunc=...).update_batch`, so stored
values load into `LeanMinHash(seed, hashvalues, scheme="affine32")` and compare with datasketch sketches.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import pyarrow as pa
from datasketch import LeanMinHash, MinHash

from gristmill.tasks.dedup.exact import DEFAULT, normalize_for_dedup
from gristmill.tasks.dedup.tokens import (
    K64,
    byte_pairs,
    char_tokens,
    fmix64,
    large_strings,
    replace_values,
    texts_with,
    word_tokens,
)
from gristmill.tasks.text.units import SEGMENTED_SCRIPT_RANGES, guess_segmenters
from gristmill.tasks.text.units import words as segment_words

# datasketch 2.0's default; stored hash values must be read back with the scheme that made them.
SCHEME = "affine32"
_MAX32 = np.uint32(0xFFFFFFFF)
_BLOCK_BYTES = 4 << 20  # permutation block: 4 MiB stays in cache; 32 MiB blocks ran 3.6x slower here


def _fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))  # a new array: the rest works in place on it
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


@dataclass
class Shingles:
    """Shingle hash values of a batch: `hashes[offsets[d]:offsets[d + 1]]` belong to document d."""

    hashes: np.ndarray  # uint32
    offsets: np.ndarray  # int64, len = docs + 1


@dataclass(frozen=True)
class Shingler:
    """Word or character n-grams of the normalised text; a text shorter than n tokens is one shingle."""

    unit: str = "word"
    n: int = 5

    def batch(self, texts: pa.Array) -> Shingles:
        tokens, lengths = self._tokens(texts)
        return _ngrams(tokens, lengths, self.n)

    def _tokens(self, texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        if self.unit == "char":
            return char_tokens(DEFAULT.batch(texts))
        return word_tokens(segment_unspaced(texts))


def _utf8_prefixes(ranges: tuple[tuple[int, int], ...]) -> dict[int, tuple[int, ...]]:
    """The first two UTF-8 bytes of every code point in the ranges (all 3 or 4 bytes long): a pair covers an
    aligned block of 64 (or 4,096) code points, so every 64th point and the last one find them all."""
    pairs: dict[int, set[int]] = {}
    for low, high in ranges:
        for point in (*range(low, high + 1, 64), high):
            lead, second = chr(point).encode()[:2]
            pairs.setdefault(lead, set()).add(second)
    return {lead: tuple(sorted(seconds)) for lead, seconds in pairs.items()}


# Texts holding a character of a script written without spaces (kana, Han, Thai, Lao, Tibetan, Myanmar, Khmer), by
# its first two UTF-8 bytes: the only ones the script guess can send to a segmenter. Hangul is not among them:
# Korean keeps its space-separated words, so a sixth of the benchmark's pages (Korean words in them) skip the guess.
_UNSPACED = byte_pairs(_utf8_prefixes(SEGMENTED_SCRIPT_RANGES))


SPACED = frozenset({"spaces", "kiwi"})


def segment_unspaced(texts: pa.Array) -> pa.Array:
    """Texts mostly in Chinese, Japanese, Korean, Thai, ... re-spaced word by word by the same segmenter the clean
    filters use (tasks/text/units.py; chosen by script, as dedup runs before language id), so their shingles are
    word n-grams as for English (a Chinese page would otherwise be a few long "words"). Other texts pass through
    untouched; only texts with such characters reach Python."""
    texts = large_strings(texts)
    found = texts_with(texts, _UNSPACED)
    values = texts.take(pa.array(found, pa.int64())).to_pylist()
    changed = {}
    for i, value, segmenter in zip(found.tolist(), values, guess_segmenters(values), strict=True):
        # A CJK name in an English page leaves the page as it is; Korean is written with spaces between its words,
        # so its shingles need no morpheme analysis (Kiwi costs ~30 ms a page: it bounded the whole stage).
        if segmenter not in SPACED:
            changed[i] = " ".join(segment_words(value, segmenter=segmenter))
    return replace_values(texts, changed)


def _ngrams(tokens: np.ndarray, lengths: np.ndarray, n: int) -> Shingles:
    """Chain n consecutive token hashes (h = h * K + t, wrapping) at every start that stays inside its document."""
    starts = np.concatenate(([0], np.cumsum(lengths)))
    total = len(tokens)
    span = min(n, total) if total else 0
    chained = tokens[: total - span + 1].copy() if span else np.zeros(0, np.uint64)
    for j in range(1, span):
        np.multiply(chained, K64, out=chained)
        np.add(chained, tokens[j : total - span + 1 + j], out=chained)
    full = np.where(lengths >= n, lengths - n + 1, 0)
    # Starts of the full n-grams of each document, without a Python loop over documents.
    first = np.repeat(starts[:-1] - np.concatenate(([0], np.cumsum(full)[:-1])), full)
    picked = chained[np.arange(len(first)) + first] if span == n else np.zeros(0, np.uint64)
    counts = full.copy()
    short = np.flatnonzero((lengths > 0) & (lengths < n))
    if len(short):  # rare: a document shorter than one shingle is a single shingle of all its tokens
        extra = np.array([_chain(tokens[starts[d] : starts[d] + lengths[d]]) for d in short], dtype=np.uint64)
        counts[short] = 1
        doc_of = np.concatenate((np.repeat(np.arange(len(lengths)), full), short))
        picked = np.concatenate((picked, extra))
        order = np.argsort(doc_of, kind="stable")
        picked = picked[order]
    hashes = (fmix64(picked) >> np.uint64(32)).astype(np.uint32)
    return Shingles(hashes, np.concatenate(([0], np.cumsum(counts))).astype(np.int64))


def _chain(tokens: np.ndarray) -> np.uint64:
    h = tokens[:1].copy()  # 1-element arrays wrap silently where numpy scalars warn on overflow
    for j in range(1, len(tokens)):
        h = h * K64 + tokens[j : j + 1]
    return h[0]


@cache
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's own (a, b) for this seed, taken from a MinHash so they cannot drift from its generator."""
    a, b = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations
    return a.astype(np.uint32), b.astype(np.uint32)


class MinHasher:
    """Signatures (docs x num_perm, uint32) of a batch; a document without shingles gets the empty sketch."""

    def __init__(self, num_perm: int, seed: int, shingler: Shingler) -> None:
        self.num_perm, self.seed, self.shingler = num_perm, seed, shingler
        a, b = permutations(num_perm, seed)
        self.a, self.b = a[:, None], b[:, None]

    def batch(self, texts: pa.Array) -> np.ndarray:
        return self.from_shingles(self.shingler.batch(texts))

    def from_shingles(self, shingles: Shingles) -> np.ndarray:
        offsets = shingles.offsets
        docs = len(offsets) - 1
        out = np.full((docs, self.num_perm), _MAX32, dtype=np.uint32)
        mixed = _fmix32(shingles.hashes)
        has = np.flatnonzero(offsets[1:] > offsets[:-1])
        width = max(256, _BLOCK_BYTES // (4 * self.num_perm))
        scratch = np.empty((self.num_perm, width), dtype=np.uint32)
        for lo, hi in _doc_chunks(offsets, has, width):
            s0, s1 = offsets[has[lo]], offsets[has[hi - 1] + 1]
            # A document longer than a block gets a bigger one of its own.
            block = scratch[:, : s1 - s0] if s1 - s0 <= width else np.empty((self.num_perm, s1 - s0), np.uint32)
            np.multiply(self.a, mixed[None, s0:s1], out=block)
            np.add(block, self.b, out=block)
            # Documents with shingles are contiguous in shingle space, so their starts are valid reduceat indices.
            out[has[lo:hi]] = np.minimum.reduceat(block, offsets[has[lo:hi]] - s0, axis=1).T
        return out


def _doc_chunks(offsets: np.ndarray, has: np.ndarray, width: int) -> list[tuple[int, int]]:
    """Split the documents that have shingles into runs of at most `width` shingles (at least one document each)."""
    chunks, lo = [], 0
    while lo < len(has):
        limit = offsets[has[lo]] + width
        hi = int(np.searchsorted(offsets[has + 1], limit, side="right"))
        hi = max(hi, lo + 1)
        chunks.append((lo, hi))
        lo = hi
    return chunks


def shingles(text: str, n: int) -> set[bytes]:
    """Word n-grams of the normalised text as strings: the reference definition the hashed shingles stand for."""
    words = normalize_for_dedup(segment_unspaced(pa.array([text]))[0].as_py()).split()
    if len(words) <= n:
        return {" ".join(words).encode()}
    return {" ".join(words[i : i + n]).encode() for i in range(len(words) - n + 1)}


def signature(text: str, num_perm: int, n: int, seed: int) -> np.ndarray:
    return MinHasher(num_perm, seed, Shingler("word", n)).batch(pa.array([text]))[0]


def lean(hashvalues: np.ndarray, seed: int) -> LeanMinHash:
    """A compact, read-only sketch for the LSH index, rebuilt from stored hash values."""
    return LeanMinHash(seed=seed, hashvalues=hashvalues, scheme=SCHEME)


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.count_nonzero(a == b)) / len(a)

"""Vectorised MinHash signatures over whole batches of documents, compatible with datasketch's `affine32` scheme.

Per batch, with no Python loop over documents or words: lower-case in Arrow, split words on the UTF-8 bytes with a
byte-class table and hash every word with a polynomial taken from prefix sums, chain word hashes into n-gram shingle
hashes, then apply datasketch's permutations (`fmix32(h)`, then `a * h + b` in uint32, where the
wraparound is the modulo) laid out permutations-major and reduce per document with `np.minimum.reduceat`.
Given the same shingle hash values, the result is bit-identical to `MinHash(hashfunc=...).update_batch`, so stored
values load into `LeanMinHash(seed, hashvalues, scheme="affine32")` and compare with datasketch sketches.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasketch import LeanMinHash, MinHash

from gristmill.tasks.dedup.exact import DEFAULT, normalize_for_dedup

# datasketch 2.0's default; stored hash values must be read back with the scheme that made them.
SCHEME = "affine32"
_MAX32 = np.uint32(0xFFFFFFFF)
_K64 = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier of the polynomial that chains token hashes into a shingle
_BLOCK_BYTES = 4 << 20  # permutation block: 4 MiB stays in cache; 32 MiB blocks ran 3.6x slower here


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


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
            return _char_tokens(DEFAULT.batch(texts))
        return word_tokens(texts)


def word_tokens(texts: pa.Array, lowercase: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of the words of a batch (flat) and the number of words per text."""
    # A batch's MinHash and its exact hash both start from its words: the second call reuses the first's tokens
    # (per thread, and only for the very same array object, so any other input is tokenised afresh).
    last = getattr(_last_batch, "tokens", None)
    if last is not None and last[0] is texts and last[1] == lowercase:
        return last[2]
    # Words split on non-word bytes, so only case needs normalising first (Arrow's regex replace is slow).
    normal = pc.fill_null(texts.cast(pa.large_string()), "")
    tokens = _word_tokens(pc.utf8_lower(normal) if lowercase else normal)
    _last_batch.tokens = (texts, lowercase, tokens)
    return tokens


_last_batch = threading.local()


def sequence_hashes(tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """One order-sensitive 64-bit hash per text of its token sequence: equal iff the word sequences are equal
    (up to 64-bit collisions). The same prefix-sum polynomial as for bytes, over token hashes."""
    ends = np.cumsum(lengths)
    up, down = _powers(len(tokens) + 1)
    prefix = np.concatenate(([np.uint64(0)], np.cumsum(tokens * down[: len(tokens)], dtype=np.uint64)))
    sums = (prefix[ends] - prefix[ends - lengths]) * up[np.maximum(ends - 1, 0)]
    return _fmix64(sums ^ (lengths.astype(np.uint64) * _K64))


def _word_tokens(normal: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hash per word occurrence, computed on the UTF-8 bytes of the whole batch at once.

    A word is a maximal run of word bytes (see `_WORD_BYTE`). Its hash is a polynomial over its bytes, taken
    from prefix sums: with S[i] = sum_{j<=i} byte_j * P^-j (mod 2^64; P odd, so invertible),
    hash(s..e) = (S[e] - S[s-1]) * P^e, the same value wherever the word occurs. fmix64 then spreads it."""
    data, offsets = _utf8_buffers(normal)
    word = _WORD_BYTE[data]
    word[_non_ascii_punctuation(data)] = False
    # A word never spans two documents: a run of word bytes is cut where a document starts.
    word_start = word & ~np.concatenate(([False], word[:-1]))
    word_start[offsets[:-1][offsets[:-1] < len(data)]] = word[offsets[:-1][offsets[:-1] < len(data)]]
    word_end = word & ~np.concatenate((word[1:], [False]))
    word_end[offsets[1:-1][offsets[1:-1] > 0] - 1] = word[offsets[1:-1][offsets[1:-1] > 0] - 1]
    starts, ends = np.flatnonzero(word_start), np.flatnonzero(word_end)  # ends inclusive
    doc_of = np.searchsorted(offsets, starts, side="right") - 1
    lengths = np.bincount(doc_of, minlength=len(offsets) - 1).astype(np.int64)
    up, down = _powers(len(data))
    prefix = np.cumsum(data.astype(np.uint64) * down, dtype=np.uint64)
    before = np.where(starts > 0, prefix[np.maximum(starts - 1, 0)], np.uint64(0))
    hashes = (prefix[ends] - before) * up[ends]
    return _fmix64(hashes ^ (ends - starts + 1).astype(np.uint64)), lengths


def _utf8_buffers(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The UTF-8 bytes of a batch and each text's [start, end) offsets into them, zero-copy from Arrow."""
    texts = pc.fill_null(texts.cast(pa.large_string()), "")
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int64)[texts.offset : texts.offset + len(texts) + 1]
    data = np.frombuffer(texts.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]] if len(texts) else None
    if data is None or not len(data):
        return np.zeros(0, np.uint8), np.zeros(len(texts) + 1, np.int64)
    return data, offsets - offsets[0]


# After normalisation only letters, digits and single spaces remain, but Arrow's \p{L}/\p{N} replace costs more than
# all the hashing; the byte classes below are the same split for ASCII, and treat non-ASCII bytes as letters
# except the common punctuation blocks (see _non_ascii_punctuation).
_WORD_BYTE = np.zeros(256, dtype=bool)
_WORD_BYTE[[*range(ord("0"), ord("9") + 1), *range(ord("a"), ord("z") + 1), *range(ord("A"), ord("Z") + 1)]] = True
_WORD_BYTE[0x80:] = True


def _non_ascii_punctuation(data: np.ndarray) -> np.ndarray:
    """Bytes of the non-ASCII punctuation and symbols of web text: U+0080-U+00BF (nbsp, guillemets, degree; not
    the letters and numbers among them), U+2000-U+2FFF (quotes, dashes, ellipsis, bullets, currency, arrows, math),
    U+3000-U+303F (CJK punctuation), U+FE00-U+FE3F (variation selectors) and U+1F000-U+1FFFF (emoji).
    Elsewhere it differs from Python's `\\W`: combining marks and other scripts' punctuation stay inside words."""
    mask = np.zeros(len(data), dtype=bool)
    leads = np.flatnonzero(data >= 0xC2)  # English text has few non-ASCII bytes: look only at those
    if not len(leads):
        return mask
    first = data[leads]
    second = np.append(data, np.uint8(0))[leads + 1]
    width = np.zeros(len(leads), dtype=np.int64)
    width[(first == 0xC2) & ~_LATIN1_WORDS[second]] = 2
    width[(first == 0xE2) | ((first == 0xE3) & (second == 0x80)) | ((first == 0xEF) & (second == 0xB8))] = 3
    width[(first == 0xF0) & (second == 0x9F)] = 4
    for shift in range(4):
        hit = leads[width > shift] + shift
        mask[hit[hit < len(data)]] = True
    return mask


# Second bytes of U+00AA ª, U+00B2 ², U+00B3 ³, U+00B5 µ, U+00B9 ¹, U+00BA º, U+00BC-U+00BE ¼ ½ ¾: letters/numbers.
_LATIN1_WORDS = np.zeros(256, dtype=bool)
_LATIN1_WORDS[[0xAA, 0xB2, 0xB3, 0xB5, 0xB9, 0xBA, 0xBC, 0xBD, 0xBE]] = True


_P = np.uint64(0x100000001B3)  # FNV prime: odd, so it has an inverse modulo 2^64
_P_INV = np.uint64(pow(int(_P), -1, 1 << 64))
_pow_cache: list[np.ndarray] = [np.ones(1, np.uint64), np.ones(1, np.uint64)]


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """P^i and P^-i for i < n (mod 2^64), grown on demand and kept: batches reuse them."""
    if len(_pow_cache[0]) < n:
        size = max(n, 2 * len(_pow_cache[0]))
        up = np.empty(size, np.uint64)
        down = np.empty(size, np.uint64)
        up[0] = down[0] = 1
        up[1:] = np.cumprod(np.full(size - 1, _P, dtype=np.uint64), dtype=np.uint64)
        down[1:] = np.cumprod(np.full(size - 1, _P_INV, dtype=np.uint64), dtype=np.uint64)
        _pow_cache[:] = [up, down]
    return _pow_cache[0][:n], _pow_cache[1][:n]


def _char_tokens(normal: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """One token per Unicode code point (spaces included), mixed so that neighbouring code points spread out."""
    texts = normal.to_pylist()
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    points = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    return _fmix64(points + _K64), lengths


def _ngrams(tokens: np.ndarray, lengths: np.ndarray, n: int) -> Shingles:
    """Chain n consecutive token hashes (h = h * K + t, wrapping) at every start that stays inside its document."""
    starts = np.concatenate(([0], np.cumsum(lengths)))
    total = len(tokens)
    span = min(n, total) if total else 0
    chained = tokens[: total - span + 1].copy() if span else np.zeros(0, np.uint64)
    for j in range(1, span):
        chained = chained * _K64 + tokens[j : total - span + 1 + j]
    full = np.where(lengths >= n, lengths - n + 1, 0)
    # Starts of the full n-grams of each document, without a Python loop over documents.
    doc_of = np.repeat(np.arange(len(lengths)), full)
    first = np.repeat(starts[:-1] - np.concatenate(([0], np.cumsum(full)[:-1])), full)
    picked = chained[np.arange(len(doc_of)) + first] if span == n else np.zeros(0, np.uint64)
    counts = full.copy()
    short = np.flatnonzero((lengths > 0) & (lengths < n))
    if len(short):  # rare: a document shorter than one shingle is a single shingle of all its tokens
        extra = np.array([_chain(tokens[starts[d] : starts[d] + lengths[d]]) for d in short], dtype=np.uint64)
        counts[short] = 1
        doc_of = np.concatenate((doc_of, short))
        picked = np.concatenate((picked, extra))
        order = np.argsort(doc_of, kind="stable")
        picked = picked[order]
    hashes = (_fmix64(picked) >> np.uint64(32)).astype(np.uint32)
    return Shingles(hashes, np.concatenate(([0], np.cumsum(counts))).astype(np.int64))


def _chain(tokens: np.ndarray) -> np.uint64:
    h = tokens[:1].copy()  # 1-element arrays wrap silently where numpy scalars warn on overflow
    for j in range(1, len(tokens)):
        h = h * _K64 + tokens[j : j + 1]
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
    words = normalize_for_dedup(text).split()
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

"""Tokens of a batch of texts and their 64-bit hashes, computed on the whole batch at once in numpy.

The layer under both kinds of duplicate: `exact.py` hashes a text's word sequence with `sequence_hashes`, and
`minhash.py` chains word (or character) token hashes into shingles. Neither imports the other for it.
"""

from __future__ import annotations

import functools
import inspect
import threading
import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

K64 = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier of the polynomial that chains token hashes into a shingle


def fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))  # a new array: the rest works in place on it
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


def word_tokens(texts: pa.Array, lowercase: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of the words of a batch (flat) and the number of words per text."""
    # Words split on non-word bytes, so only NFKC (full-width and compatibility forms: ＡＢＣ１２ is ABC12) and case
    # need normalising first (Arrow's regex replace is slow).
    texts = nfkc(texts)
    return _word_tokens(pc.utf8_lower(texts) if lowercase else texts)


def byte_pairs(pairs: dict[int, range | tuple[int, ...]]) -> np.ndarray:
    """A 256 x 256 table: True at (lead byte, next byte) for the UTF-8 prefixes of the characters looked for."""
    table = np.zeros((256, 256), dtype=bool)
    for lead, seconds in pairs.items():
        table[lead, list(seconds)] = True
    return table


def texts_with(texts: pa.Array, table: np.ndarray) -> np.ndarray:
    """Indices of the texts holding a character whose first two UTF-8 bytes are marked in `table`: only the
    non-ASCII bytes of the batch are looked at (few in English), in numpy, without a Python call per text."""
    data, offsets = _utf8_buffers(texts)
    leads = np.flatnonzero(data >= 0xC2)
    if not len(leads):
        return leads
    hit = leads[table[data[leads], _next_bytes(data, leads)]]
    return np.unique(np.searchsorted(offsets, hit, side="right") - 1)


def _next_bytes(data: np.ndarray, leads: np.ndarray, ahead: int = 1) -> np.ndarray:
    """The byte `ahead` of each lead byte (past the end, only in broken UTF-8, the last byte is read instead: no
    table marks a continuation byte >= 0xC0), without copying the batch's bytes to pad them."""
    return data[np.minimum(leads + ahead, len(data) - 1)]


# Characters whose NFKC form differs in what the word splitter sees: combining marks (NFC composition), Hangul
# jamo, superscripts and fractions, letterlike and number forms, enclosed and CJK compatibility characters,
# ligatures, full-width and half-width forms (by their first two UTF-8 bytes; a few neighbours come along, which
# costs one needless normalisation). Punctuation compatibility characters (no-break space, ellipsis) are word
# breaks either way, so a text with only those (most non-ASCII English) is left alone.
_COMPATIBILITY = byte_pairs(
    {
        0xC2: (0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB9, 0xBA, 0xBC, 0xBD, 0xBE),
        0xCC: range(0x80, 0xC0),
        0xCD: range(0x80, 0xB0),
        0xE1: range(0x84, 0x88),
        0xE2: (*range(0x81, 0x87), *range(0x91, 0x94), *range(0xBC, 0xC0)),
        0xE3: range(0x84, 0x90),
        0xEF: (*range(0xA4, 0xAE), *range(0xBC, 0xC0)),
        0xF0: (0xAF,),
    }
)


def nfkc(texts: pa.Array) -> pa.Array:
    """Texts in Unicode NFKC where it changes their words (full-width ＡＢＣ１２ is ABC12, half-width ｶﾞ is ガ, ﬁ is
    fi, a decomposed é is é); nulls become empty strings. Python's unicodedata, not Arrow's utf8_normalize, which
    returned decomposed text for every form in pyarrow 25. Only texts with such characters reach Python."""
    texts = large_strings(texts)
    found = texts_with(texts, _COMPATIBILITY)
    if not len(found):
        return texts
    values = texts.take(pa.array(found)).to_pylist()
    changed = {  # is_normalized is C-fast where a text is already in NFKC (most are: ² or µ alone, say)
        i: unicodedata.normalize("NFKC", v)
        for i, v in zip(found.tolist(), values, strict=True)
        if not unicodedata.is_normalized("NFKC", v)
    }
    return replace_values(texts, changed)


def large_strings(texts: pa.Array) -> pa.Array:
    """One contiguous large_string array, nulls as empty strings."""
    texts = pc.fill_null(texts.cast(pa.large_string()), "")
    return texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts


def replace_values(texts: pa.Array, changed: dict[int, str]) -> pa.Array:
    """`texts` with the values at the given indices replaced, in Arrow (no Python list of the whole batch)."""
    if not changed:
        return texts
    mask = np.zeros(len(texts), dtype=bool)
    rows = sorted(changed)
    mask[rows] = True
    return pc.replace_with_mask(texts, pa.array(mask), pa.array([changed[i] for i in rows], pa.large_string()))


def sequence_hashes(tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """One order-sensitive 64-bit hash per text of its token sequence: equal iff the word sequences are equal
    (up to 64-bit collisions). The same prefix-sum polynomial as for bytes, over token hashes."""
    ends = np.cumsum(lengths)
    up, down = _powers(len(tokens) + 1)
    prefix = np.concatenate(([np.uint64(0)], np.cumsum(tokens * down[: len(tokens)], dtype=np.uint64)))
    sums = (prefix[ends] - prefix[ends - lengths]) * up[np.maximum(ends - 1, 0)]
    return fmix64(sums ^ (lengths.astype(np.uint64) * K64))


def _word_tokens(normal: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hash per word occurrence, computed on the UTF-8 bytes of the whole batch at once.

    A word is a maximal run of word bytes (see `_WORD_BYTE`). Its hash is a polynomial over its bytes, taken
    from prefix sums: with S[i] = sum_{j<i} byte_j * P^-j (mod 2^64; P odd, so invertible),
    hash(s..e) = (S[e + 1] - S[s]) * P^e, the same value wherever the word occurs. fmix64 then spreads it."""
    data, offsets = _utf8_buffers(normal)
    word = _WORD_BYTE[data]
    word[_non_ascii_punctuation(data)] = False
    # A word never spans two documents: a run of word bytes is cut where a document starts.
    word_start = word & ~np.concatenate(([False], word[:-1]))
    word_start[offsets[:-1][offsets[:-1] < len(data)]] = word[offsets[:-1][offsets[:-1] < len(data)]]
    word_end = word & ~np.concatenate((word[1:], [False]))
    word_end[offsets[1:-1][offsets[1:-1] > 0] - 1] = word[offsets[1:-1][offsets[1:-1] > 0] - 1]
    starts, ends = np.flatnonzero(word_start), np.flatnonzero(word_end)  # ends inclusive
    lengths = np.diff(np.searchsorted(starts, offsets))  # words whose first byte lies in each document
    up, down = _powers(len(data))
    prefix = np.empty(len(data) + 1, np.uint64)
    prefix[0] = 0
    np.multiply(data, down, out=prefix[1:], dtype=np.uint64)
    np.cumsum(prefix, out=prefix)
    hashes = (prefix[ends + 1] - prefix[starts]) * up[ends]
    return fmix64(hashes ^ (ends - starts + 1).astype(np.uint64)), lengths


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
    """Positions of the bytes of the non-ASCII punctuation and symbols of web text: U+0080-U+00BF (nbsp, guillemets,
    degree; not the letters and numbers among them), U+2000-U+2FFF (quotes, dashes, ellipsis, bullets, currency,
    arrows, math), U+3000-U+303F (CJK punctuation; not the letters and numbers among them), the katakana marks ゠ and
    ・, U+FE00-U+FE3F (variation selectors) and U+1F000-U+1FFFF (emoji).
    Elsewhere it differs from Python's `\\W`: combining marks and other scripts' punctuation stay inside words."""
    leads = np.flatnonzero(data >= 0xC2)  # English text has few non-ASCII bytes: look only at those
    if not len(leads):
        return leads
    first = data[leads]
    second, third = _next_bytes(data, leads), _next_bytes(data, leads, ahead=2)
    width = np.zeros(len(leads), dtype=np.int64)
    width[(first == 0xC2) & ~_LATIN1_WORDS[second]] = 2
    cjk_symbols = (first == 0xE3) & (second == 0x80) & ~_CJK_SYMBOL_WORDS[third]
    kana_marks = (first == 0xE3) & (((second == 0x82) & (third == 0xA0)) | ((second == 0x83) & (third == 0xBB)))
    width[(first == 0xE2) | cjk_symbols | kana_marks | ((first == 0xEF) & (second == 0xB8))] = 3
    width[(first == 0xF0) & (second == 0x9F)] = 4
    hits = [leads[width > shift] + shift for shift in range(4)]
    return np.concatenate([hit[hit < len(data)] for hit in hits])


# Second bytes of U+00AA ª, U+00B2 ², U+00B3 ³, U+00B5 µ, U+00B9 ¹, U+00BA º, U+00BC-U+00BE ¼ ½ ¾: letters/numbers.
_LATIN1_WORDS = np.zeros(256, dtype=bool)
_LATIN1_WORDS[[0xAA, 0xB2, 0xB3, 0xB5, 0xB9, 0xBA, 0xBC, 0xBD, 0xBE]] = True
# Third bytes of the letters and numbers among U+3000-U+303F (E3 80 xx), which stay inside words as \p{L}/\p{N}
# keep them: 々 (U+3005, 人々), 〆, 〇 (U+3007, 二〇二四年), 〡-〩, 〱-〵 (kana repetition), 〸-〼. The katakana
# block's punctuation is cut instead: ゠ (U+30A0) and the middle dot ・ (U+30FB, between the words of a loanword).
_CJK_SYMBOL_WORDS = np.zeros(256, dtype=bool)
_CJK_SYMBOL_WORDS[[0x85, 0x86, 0x87, *range(0xA1, 0xAA), *range(0xB1, 0xB6), *range(0xB8, 0xBD)]] = True


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


def char_tokens(normal: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """One token per Unicode code point (spaces included), mixed so that neighbouring code points spread out."""
    texts = normal.to_pylist()
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    points = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    return fmix64(points + K64), lengths


def _reusing_the_last_batch(tokenize):
    """A batch's MinHash and its exact hash both start from its words: the second call gets the first's tokens
    (per thread, and only for the same Arrow buffers with the same options, so any other input is tokenised
    afresh; `large_strings` of an array without nulls shares its buffers, so it counts as the same)."""
    last = threading.local()
    signature = inspect.signature(tokenize)

    @functools.wraps(tokenize)
    def tokens(texts: pa.Array, *args: object, **kwargs: object) -> tuple[np.ndarray, np.ndarray]:
        bound = signature.bind(texts, *args, **kwargs)
        bound.apply_defaults()  # word_tokens(t) and word_tokens(t, True) ask for the same tokens
        options = tuple((name, value) for name, value in bound.arguments.items() if name != "texts")
        seen = getattr(last, "batch", None)
        if seen is not None and _same_buffers(seen[0], texts) and seen[1] == options:
            return seen[2]
        result = tokenize(texts, *args, **kwargs)
        last.batch = (texts, options, result)
        return result

    return tokens


def _same_buffers(a: pa.Array, b: pa.Array) -> bool:
    """The same values for sure: the same object, or views of the same (immutable) buffers at the same place. The
    memo holds the first array, so its buffers cannot be freed and their addresses reused meanwhile."""
    if a is b:
        return True
    if not (isinstance(a, pa.Array) and isinstance(b, pa.Array)) or a.type != b.type:
        return False
    same_place = len(a) == len(b) and a.offset == b.offset
    return same_place and [x and x.address for x in a.buffers()] == [x and x.address for x in b.buffers()]


word_tokens = _reusing_the_last_batch(word_tokens)

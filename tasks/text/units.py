"""Words and sentences of a text in any language: the one place that splits text, for every clean filter and for
dedup's shingles, so no filter splits text its own way.

The segmenter is chosen from the document's language (the clean stage's language id), or, where none is known
(dedup runs before language id), from the script the text is mostly written in:

    spaces   Latin, Cyrillic, Greek, Arabic, Devanagari, ... : whitespace, then punctuation peeled off (spaCy's
             blank tokenizer, what datatrove counts English words with)
    jieba    Chinese (zh, yue, wuu)
    sudachi  Japanese (SudachiPy + sudachidict-core, split mode A: the shortest units, as spaCy's `ja` uses)
    kiwi     Korean (kiwipiepy: the text spanned by each morpheme)
    chars    scripts written without spaces and without a segmenter here (Thai, Lao, Khmer, Myanmar, Tibetan):
             one word per character

All three segmenters ship their dictionaries in their wheels; nothing is downloaded. They load on first use.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from functools import cache, lru_cache

import numpy as np

SEGMENTERS = ("spaces", "jieba", "sudachi", "kiwi", "chars")

# Which segmenter a language uses when its row in the language table does not say.
_LANGUAGE_SEGMENTER = {
    "zh": "jieba",
    "yue": "jieba",
    "wuu": "jieba",
    "ja": "sudachi",
    "ko": "kiwi",
    **dict.fromkeys(("th", "lo", "km", "my", "bo", "dz"), "chars"),
}

# The language a segmenter chosen by script stands for (where language id has not said).
SEGMENTER_LANGUAGE = {"jieba": "zh", "sudachi": "ja", "kiwi": "ko"}

# Sentence ends. `.!?` end a sentence only before whitespace or the line's end (so 3.14 and e.g.x do not);
# the full-width and other scripts' marks end one wherever they stand (Chinese and Japanese put no space after).
LATIN_TERMINALS = ".!?"
DEFAULT_TERMINALS = LATIN_TERMINALS + "。！？｡．︒﹒﹖﹗।॥؟۔።፧჻"
_CLOSERS = "'\")]"  # what may follow a Latin terminal and still belong to the sentence (C4's rule)
_WIDE_CLOSERS = "」』）》〉】”’" + _CLOSERS


# -- words -------------------------------------------------------------------------------------------------------

# spaCy's blank English tokenizer (what datatrove 0.10 counts words with), at regex speed: split on whitespace,
# then peel punctuation off both ends of each chunk (one token per mark, "..." as one); inner punctuation stays,
# except a hyphen before a letter. So `foo(bar)` gives `foo(bar` + `)`, as spaCy does.
_CHUNK = re.compile(r"(?P<pre>[^\w\s-]*)(?P<core>\S*?)(?P<suf>(?:\.\.\.|[^\w\s])*)(?=\s|$)")
_SUFFIX = re.compile(r"\.\.\.|.")
_HYPHEN = re.compile(r"(?<=[^\W_])(-)(?=[^\W\d_])")  # spaCy's infix: letter or digit, hyphen, letter


def split_words(text: str) -> list[str]:
    """Whitespace-separated languages: words and punctuation marks as spaCy's blank tokenizer gives them."""
    out: list[str] = []
    for m in _CHUNK.finditer(text):
        pre, core, suf = m.group("pre", "core", "suf")
        if not (pre or core or suf):
            continue
        out.extend(pre)
        if core:
            out.extend(_HYPHEN.split(core) if "-" in core else (core,))
        if suf:
            out.extend(_SUFFIX.findall(suf))
    return out


def split_chars(text: str) -> list[str]:
    """Scripts without spaces or a segmenter: every non-space character is a word."""
    return [ch for ch in text if not ch.isspace()]


@cache
def _jieba() -> Callable[[str], list[str]]:
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)  # it logs its dictionary loading at INFO
    tokenizer = jieba.Tokenizer()
    return lambda text: [w for w in tokenizer.cut(text) if not w.isspace()]


_SUDACHI_MAX_CHARS = 8000  # SudachiPy refuses inputs over 49,149 bytes; a CJK character is 3 bytes in UTF-8


@cache
def _sudachi() -> Callable[[str], list[str]]:
    from sudachipy import Dictionary, SplitMode

    tokenizer = Dictionary(dict="core").create(mode=SplitMode.A)

    def split(text: str) -> list[str]:
        out: list[str] = []
        for line in text.split("\n"):
            for i in range(0, len(line), _SUDACHI_MAX_CHARS):
                out.extend(m.surface() for m in tokenizer.tokenize(line[i : i + _SUDACHI_MAX_CHARS]))
        return [w for w in out if w and not w.isspace()]

    return split


@cache
def _kiwi() -> Callable[[str], list[str]]:
    from kiwipiepy import Kiwi

    kiwi = Kiwi()
    # The text each morpheme spans, as datatrove's KiwiTokenizer takes it (FineWeb-2's Korean stop words and bounds
    # were measured so): 합니다 gives 합 and 합니다, where the morphemes' forms would be 하 and ᆸ니다.
    return lambda text: [text[t.start : t.end] for t in kiwi.tokenize(text) if not text[t.start : t.end].isspace()]


_SPLITTERS: dict[str, Callable[[], Callable[[str], list[str]]]] = {
    "spaces": lambda: split_words,
    "chars": lambda: split_chars,
    "jieba": _jieba,
    "sudachi": _sudachi,
    "kiwi": _kiwi,
}


def splitter(segmenter: str) -> Callable[[str], list[str]]:
    if segmenter not in _SPLITTERS:
        raise ValueError(f"unknown segmenter {segmenter!r}; known: {', '.join(SEGMENTERS)}")
    return _SPLITTERS[segmenter]()


# -- choosing the segmenter --------------------------------------------------------------------------------------

_SCRIPT_SAMPLE = 2000  # characters looked at to guess the script: enough for a page, cheap for a book


# Code-point ranges per script (they do not overlap). Other letters (`str.isalpha`) count as "other".
_SCRIPT_RANGES = {
    "kana": ((0x3040, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9D)),
    "hangul": ((0xAC00, 0xD7AF), (0x1100, 0x11FF), (0x3130, 0x318F)),
    "han": ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2FFFF), (0xF900, 0xFAFF)),
    "nospace": ((0x0E00, 0x0EFF), (0x1780, 0x17FF), (0x1000, 0x109F), (0x0F00, 0x0FFF)),  # Thai, Lao, Khmer, ...
}
# A text is guessed to need a segmenter other than "spaces" or "kiwi" only if it holds a character of these.
SEGMENTED_SCRIPT_RANGES = (*_SCRIPT_RANGES["kana"], *_SCRIPT_RANGES["han"], *_SCRIPT_RANGES["nospace"])
_CLASSES = ("none", *_SCRIPT_RANGES, "other")  # what each character counts as, by number
_OTHER = len(_CLASSES) - 1


def guess_segmenter(text: str) -> str:
    """The segmenter for a text whose language is not known, from the script most of its letters are in."""
    return guess_segmenters([text])[0]


def guess_segmenters(texts: list[str]) -> list[str]:
    """`guess_segmenter` of many texts at once: their samples' code points are counted per script in whole-array
    numpy steps (a Python call per text cost dedup a third of its time on a corpus where a sixth of the pages hold
    a few Korean words; one per character, most of it)."""
    samples = [text[:_SCRIPT_SAMPLE] for text in texts]
    points = np.frombuffer("".join(samples).encode("utf-32-le"), dtype="<u4")
    owner = np.repeat(np.arange(len(texts)), [len(sample) for sample in samples])
    counts = np.bincount(owner * len(_CLASSES) + _classes(points), minlength=len(texts) * len(_CLASSES))
    kana, hangul, han, nospace, other = counts.reshape(len(texts), len(_CLASSES))[:, 1:].T
    letters = kana + hangul + han + nospace + other
    cjk = kana + han
    verdict = np.select(
        [
            letters == 0,
            # Kana only occur in Japanese; kanji-heavy Japanese still has some.
            (kana > 0) & (cjk >= hangul) & (cjk * 2 >= letters),
            hangul * 2 >= letters,
            han * 2 >= letters,
            nospace * 2 >= letters,
        ],
        [0, 1, 2, 3, 4],
        default=0,
    )
    return [_VERDICTS[v] for v in verdict.tolist()]


_VERDICTS = ("spaces", "sudachi", "kiwi", "jieba", "chars")


def _classes(points: np.ndarray) -> np.ndarray:
    """The class of each code point: a table lookup below U+30000 (the planes that hold letters), a Python call for
    the rare characters beyond."""
    table = _class_table()
    out = table[np.minimum(points, len(table) - 1)].astype(np.int64)
    beyond = np.flatnonzero(points >= len(table))
    if len(beyond):
        out[beyond] = [_OTHER if chr(p).isalpha() else 0 for p in points[beyond].tolist()]
    return out


@cache
def _class_table() -> np.ndarray:
    """Class of every code point below U+30000 (built once, ~30 ms): a script's range, else "other" for a letter."""
    size = 0x30000
    table = np.fromiter((chr(p).isalpha() for p in range(size)), dtype=bool, count=size).astype(np.uint8) * _OTHER
    for number, ranges in enumerate(_SCRIPT_RANGES.values(), 1):
        for low, high in ranges:
            table[low : high + 1] = number
    return table


def segmenter_for(language: str | None, text: str = "") -> str:
    """The default segmenter of a language; with no language, the text's script decides."""
    if language is None:
        return guess_segmenter(text)
    return _LANGUAGE_SEGMENTER.get(language, "spaces")


def words(text: str, language: str | None = None, segmenter: str | None = None) -> list[str]:
    """The text's words (and punctuation marks, as separate tokens) in its language's segmentation."""
    return splitter(segmenter or segmenter_for(language, text))(text)


def line_words(line: str, segmenter: str) -> list[str]:
    """Words of one line as C4 counts them: whitespace-separated chunks where words are spaced (C4's own rule,
    kept exactly), the segmenter's words without punctuation where they are not."""
    if segmenter == "spaces":
        return line.split()
    return [w for w in splitter(segmenter)(line) if any(unicodedata.category(ch)[0] in "LN" for ch in w)]


# -- sentences ---------------------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def sentence_end(terminals: str = DEFAULT_TERMINALS) -> re.Pattern[str]:
    """A sentence's end: a run of terminal marks and the closing quotes or brackets after it."""
    spaced = "".join(ch for ch in terminals if ch in LATIN_TERMINALS)
    unspaced = "".join(ch for ch in terminals if ch not in LATIN_TERMINALS)
    parts = []
    if spaced:
        parts.append(f"[{re.escape(spaced)}]+[{re.escape(_CLOSERS)}]*(?=\\s|$)")
    if unspaced:
        parts.append(f"[{re.escape(unspaced + spaced)}]*[{re.escape(unspaced)}][{re.escape(_WIDE_CLOSERS)}]*")
    return re.compile("|".join(parts) or "(?!)")


def count_sentence_ends(text: str, terminals: str = DEFAULT_TERMINALS) -> int:
    return len(sentence_end(terminals).findall(text))


def sentences(text: str, terminals: str = DEFAULT_TERMINALS) -> list[str]:
    """The text cut after each sentence end (and at line breaks); text after the last end is a sentence too."""
    out: list[str] = []
    for line in text.split("\n"):
        start = 0
        for m in sentence_end(terminals).finditer(line):
            out.append(line[start : m.end()].strip())
            start = m.end()
        out.append(line[start:].strip())
    return [s for s in out if s]

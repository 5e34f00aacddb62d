"""The small interface every clean step shares (datatrove style): a filter says why it drops a document, a
formatter rewrites text, and both keep per-step counters that the stage adds up across shards."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# spaCy's blank English tokenizer (what datatrove 0.10 counts words with), at regex speed: split on whitespace,
# then peel punctuation off both ends of each chunk (one token per mark, "..." as one); inner punctuation stays,
# except a hyphen before a letter. So `foo(bar)` gives `foo(bar` + `)`, as spaCy does.
_CHUNK = re.compile(r"(?P<pre>[^\w\s-]*)(?P<core>\S*?)(?P<suf>(?:\.\.\.|[^\w\s])*)(?=\s|$)")
_SUFFIX = re.compile(r"\.\.\.|.")
_HYPHEN = re.compile(r"(?<=[^\W_])(-)(?=[^\W\d_])")  # spaCy's infix: letter or digit, hyphen, letter


def split_words(text: str) -> list[str]:
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


@dataclass(frozen=True)
class Verdict:
    """Why a document was removed: the rule, the measured value, and the bound it broke."""

    rule: str
    value: float
    bound: float


@dataclass
class Doc:
    """The text a step sees plus the metadata steps add (language, score); the stage maps it back to a row."""

    text: str
    url: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    _words: tuple[str, list[str]] | None = field(default=None, repr=False)

    def words(self) -> list[str]:
        """The text's words, split once and reused until a step changes the text (repetition and quality share)."""
        if self._words is None or self._words[0] is not self.text:
            self._words = (self.text, split_words(self.text))
        return self._words[1]


class Filter:
    """Decides keep (None) or drop (a Verdict); may also rewrite `doc.text` (C4 drops lines)."""

    name = "filter"

    def __init__(self) -> None:
        self.stats: Counter[str] = Counter()

    def check(self, doc: Doc) -> Verdict | None:
        raise NotImplementedError


class Formatter:
    """Rewrites text and never drops a document."""

    name = "formatter"

    def __init__(self) -> None:
        self.stats: Counter[str] = Counter()

    def format(self, text: str) -> str:
        raise NotImplementedError

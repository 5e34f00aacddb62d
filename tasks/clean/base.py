"""The small interface every clean step shares (datatrove style): a filter says why it drops a document, a
formatter rewrites text, and both keep per-step counters that the stage adds up across shards."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from gristmill.tasks.text.units import SEGMENTER_LANGUAGE, segmenter_for, split_words, splitter

__all__ = ["Doc", "Filter", "Formatter", "Verdict", "split_words"]  # split_words lived here first


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
    _words: tuple[str, str | None, list[str]] | None = field(default=None, repr=False)

    @property
    def language(self) -> str | None:
        """The language id's answer (None before the language filter, or with it disabled)."""
        return self.metadata.get("language")

    def rules_language(self) -> str | None:
        """Whose filter settings apply: language id's answer; with language id off, the language a Chinese, Japanese
        or Korean script implies (other scripts: the clean section's own settings, as before)."""
        return self.language or SEGMENTER_LANGUAGE.get(self.segmenter())

    def segmenter(self) -> str:
        """How this document splits into words: by its language, or by its script while that is unknown."""
        return segmenter_for(self.language, self.text)

    def words(self) -> list[str]:
        """The text's words in its language's segmentation (`tasks/text/units.py`), split once and reused until a
        step changes the text or the language becomes known (repetition, quality and FineWeb share them)."""
        if self._words is None or self._words[0] is not self.text or self._words[1] != self.language:
            self._words = (self.text, self.language, splitter(self.segmenter())(self.text))
        return self._words[2]


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

"""FineWeb's own quality rules (Penedo et al. 2024), as datatrove's FineWebQualityFilter measures them."""

from __future__ import annotations

from functools import cache

import regex

from gristmill.conf.schema import FineWebConfig
from gristmill.tasks.clean.base import Doc, Filter, Verdict
from gristmill.tasks.clean.repetition import find_duplicates
from gristmill.tasks.clean.rules import RuleBook


@cache
def sentence_terminals() -> frozenset[str]:
    """Unicode's Sentence_Terminal characters (. ! ? and their kin in other scripts): what datatrove 0.10 counts
    as a line ending in punctuation. Quotes are not among them."""
    every = "".join(chr(c) for c in range(0x20000) if not 0xD800 <= c <= 0xDFFF)  # none above
    return frozenset(regex.findall(r"\p{Sentence_Terminal}", every))


class FineWebQuality(Filter):
    name = "fineweb"

    def __init__(self, cfg: FineWebConfig, book: RuleBook | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.book = book  # per-language bounds; without one, FineWeb's English bounds

    def check(self, doc: Doc) -> Verdict | None:
        cfg = self.book.get(doc.rules_language()).clean.fineweb if self.book is not None else self.cfg
        text = doc.text
        lines = [line for line in text.split("\n") if line.strip()]
        if not lines:
            return Verdict("fineweb_empty", 0.0, 1.0)
        stops = sentence_terminals()
        if (v := sum(line[-1] in stops for line in lines) / len(lines)) < cfg.line_punct_thr:
            return Verdict("fineweb_line_punct_ratio", v, cfg.line_punct_thr)
        if (v := sum(len(line) <= cfg.short_line_length for line in lines) / len(lines)) > cfg.short_line_thr:
            return Verdict("fineweb_short_line_ratio", v, cfg.short_line_thr)
        if (v := find_duplicates(lines)[1] / len(text.replace("\n", ""))) > cfg.char_duplicates_ratio:
            return Verdict("fineweb_char_dup_ratio", v, cfg.char_duplicates_ratio)
        if (v := text.count("\n") / max(len(doc.words()), 1)) > cfg.new_line_ratio:
            return Verdict("fineweb_list_ratio", v, cfg.new_line_ratio)
        return None

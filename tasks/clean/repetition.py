"""Gopher repetition rules (Rae et al. 2021, table A1), as datatrove's GopherRepetitionFilter measures them."""

from __future__ import annotations

import re
from collections import Counter

from gristmill.conf.schema import RepetitionConfig
from gristmill.tasks.clean.base import Doc, Filter, Verdict
from gristmill.tasks.clean.rules import RuleBook

_PARAGRAPH = re.compile(r"\n{2,}")
_LINES = re.compile(r"\n+")


def find_duplicates(items: list[str]) -> tuple[int, int]:
    """(count, characters) of items that repeat an earlier item."""
    seen: set[str] = set()
    count = chars = 0
    for item in items:
        if item in seen:
            count += 1
            chars += len(item)
        else:
            seen.add(item)
    return count, chars


def top_ngram_chars(words: list[str], n: int) -> int:
    """Characters covered by all occurrences of the most frequent n-gram, its words joined with spaces: datatrove's
    measure (`find_top_duplicate`) in every language, as FineWeb-2 filtered with its per-language bounds."""
    counts = Counter(zip(*(words[i:] for i in range(n)), strict=False))
    gram, freq = counts.most_common(1)[0]
    return (sum(map(len, gram)) + n - 1) * freq


def duplicated_ngram_chars(words: list[str], n: int) -> int:
    """Characters in n-grams seen before, the gram's words joined WITHOUT spaces (datatrove 0.10's
    `find_all_duplicate`, in every language); after a repeat, skip past it so overlapping repeats count once.

    Counting the spaces between words too (as this did before) made a spaced language's repeats ~20% larger than
    datatrove's and than the same repeats in Chinese or Japanese (no spaces between words)."""
    seen: set[str] = set()
    chars, i, last = 0, 0, len(words) - n + 1
    while i < last:
        gram = "".join(words[i : i + n])  # datatrove's key: grams that spell the same characters are the same
        if gram in seen:
            chars += len(gram)
            i += n
        else:
            seen.add(gram)
            i += 1
    return chars


class GopherRepetition(Filter):
    name = "gopher_repetition"

    def __init__(self, cfg: RepetitionConfig, book: RuleBook | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.book = book  # per-language bounds; without one, Gopher's

    def check(self, doc: Doc) -> Verdict | None:
        cfg = self.book.get(doc.rules_language()).clean.repetition if self.book is not None else self.cfg
        text = doc.text
        if not text:
            return Verdict("gopher_rep_empty", 0.0, 1.0)
        size = len(text)
        paragraphs = _PARAGRAPH.split(text.strip())
        dup, chars = find_duplicates(paragraphs)
        if (v := dup / len(paragraphs)) > cfg.dup_para_frac:
            return Verdict("gopher_rep_dup_para_frac", v, cfg.dup_para_frac)
        if (v := chars / size) > cfg.dup_para_char_frac:
            return Verdict("gopher_rep_dup_para_char_frac", v, cfg.dup_para_char_frac)
        lines = _LINES.split(text)
        dup, chars = find_duplicates(lines)
        if (v := dup / len(lines)) > cfg.dup_line_frac:
            return Verdict("gopher_rep_dup_line_frac", v, cfg.dup_line_frac)
        if (v := chars / size) > cfg.dup_line_char_frac:
            return Verdict("gopher_rep_dup_line_char_frac", v, cfg.dup_line_char_frac)
        words = doc.words()
        for n, bound in sorted(cfg.top_ngram_char_frac.items()):
            if len(words) >= n and (v := top_ngram_chars(words, n) / size) > bound:
                return Verdict(f"gopher_rep_top_{n}_gram", v, bound)
        for n, bound in sorted(cfg.dup_ngram_char_frac.items()):
            if (v := duplicated_ngram_chars(words, n) / size) > bound:
                return Verdict(f"gopher_rep_dup_{n}_grams", v, bound)
        return None

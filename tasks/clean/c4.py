"""C4 rules (Raffel et al. 2020) as datatrove's C4QualityFilter applies them: drop bad lines, then judge the rest."""

from __future__ import annotations

import re

from gristmill.conf.schema import C4Config
from gristmill.tasks.clean.base import Doc, Filter, Verdict
from gristmill.tasks.clean.rules import RuleBook
from gristmill.tasks.text.units import LATIN_TERMINALS, count_sentence_ends, line_words

CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
END_PUNCTUATION = (".", "?", "!", '"', "'")
POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")


def count_sentences(line: str, terminals: str = LATIN_TERMINALS) -> int:
    """Sentences in a line: its sentence ends (tasks/text/units.py), and at least one."""
    return max(1, count_sentence_ends(line, terminals))


class C4Quality(Filter):
    name = "c4"

    def __init__(self, cfg: C4Config, book: RuleBook | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.book = book  # per-language sections and sentence ends; without one, C4 as written (English)

    def check(self, doc: Doc) -> Verdict | None:
        cfg, terminals = self.cfg, LATIN_TERMINALS
        if self.book is not None:
            rules = self.book.get(doc.rules_language())
            cfg, terminals = rules.clean.c4, rules.terminals
        segmenter = doc.segmenter()
        kept, sentences = [], 0
        for raw in doc.text.splitlines():
            line = raw.strip()
            words = line_words(line, segmenter)
            if any(len(w) > cfg.max_word_length for w in words):
                self.stats["lines_long_word"] += 1
                continue
            if cfg.remove_citations:
                line = CITATION.sub("", line)
            if cfg.filter_no_terminal_punct and (not line.endswith(END_PUNCTUATION) or line.endswith("...")):
                self.stats["lines_no_terminal_punct"] += 1
                continue
            if len(words) < cfg.min_words_per_line:
                self.stats["lines_few_words"] += 1
                continue
            lower = line.lower()
            if cfg.filter_lorem_ipsum and "lorem ipsum" in lower:
                return Verdict("c4_lorem_ipsum", 1.0, 0.0)
            if cfg.filter_javascript and "javascript" in lower:
                self.stats["lines_javascript"] += 1
                continue
            if cfg.filter_curly_bracket and "{" in line:
                return Verdict("c4_curly_bracket", 1.0, 0.0)
            if cfg.filter_policy and any(p in lower for p in POLICY):
                self.stats["lines_policy"] += 1
                continue
            sentences += count_sentences(line, terminals)
            kept.append(line)
        if sentences < cfg.min_sentences:
            return Verdict("c4_too_few_sentences", sentences, cfg.min_sentences)
        doc.text = "\n".join(kept).strip()
        return None

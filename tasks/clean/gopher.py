"""Gopher quality rules (Rae et al. 2021) with datatrove 0.10's definitions of words, lines and ratios."""

from __future__ import annotations

import re

from gristmill.conf.schema import CleanConfig
from gristmill.tasks.clean.base import Doc, Filter, Verdict
from gristmill.tasks.clean.rules import ENGLISH_STOP_WORDS as STOP_WORDS
from gristmill.tasks.clean.rules import RuleBook

# datatrove's PUNCTUATION set: a "word" made only of these (and control characters) is a symbol, not a word.
PUNCTUATION = frozenset(
    "!/—”:％１〈&(、━\\【#%「」，】；+^]~“《„';’{|∶´[=-`*．（–？！：$～«〉,><》)?）。…@_.\"}►»"
    + "".join(chr(x) for a, b in ((0, 9), (11, 13), (13, 32), (127, 160)) for x in range(a, b))
)
_SYMBOLS_ONLY = re.compile("[" + re.escape("".join(sorted(PUNCTUATION))) + "]+")
BULLETS = ("•", "-")
ELLIPSES = ("...", "…")

__all__ = ["STOP_WORDS", "GopherQuality", "Verdict"]  # Verdict and STOP_WORDS lived here first


class GopherQuality(Filter):
    """One job: decide whether a document passes the Gopher quality rules; say which rule fails first."""

    name = "gopher_quality"

    def __init__(self, cfg: CleanConfig, book: RuleBook | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.book = book or RuleBook(cfg)

    def check(self, doc: Doc | str) -> Verdict | None:
        doc = doc if isinstance(doc, Doc) else Doc(doc)
        rules = self.book.get(doc.rules_language())  # the document's language's row (English: the clean section)
        cfg = rules.clean
        text, words = doc.text, doc.words()
        non_symbol = [w for w in words if not _SYMBOLS_ONLY.fullmatch(w)]
        n_words = len(non_symbol)
        if n_words < cfg.min_words:
            return Verdict("gopher_min_words", n_words, cfg.min_words)
        if n_words > cfg.max_words:
            return Verdict("gopher_max_words", n_words, cfg.max_words)
        mean_len = sum(len(w) for w in non_symbol) / n_words
        if mean_len < cfg.min_mean_word_length:
            return Verdict("gopher_min_mean_word_length", mean_len, cfg.min_mean_word_length)
        if mean_len > cfg.max_mean_word_length:
            return Verdict("gopher_max_mean_word_length", mean_len, cfg.max_mean_word_length)
        # datatrove divides the symbol and alpha ratios by all tokens, punctuation included
        n_tokens = len(words)
        hash_ratio = text.count("#") / n_tokens
        if hash_ratio > cfg.max_symbol_word_ratio:
            return Verdict("gopher_hash_ratio", hash_ratio, cfg.max_symbol_word_ratio)
        ellipsis_ratio = (text.count("...") + text.count("…")) / n_tokens
        if ellipsis_ratio > cfg.max_symbol_word_ratio:
            return Verdict("gopher_ellipsis_ratio", ellipsis_ratio, cfg.max_symbol_word_ratio)
        lines = text.splitlines() or [""]
        bullets = sum(line.lstrip().startswith(BULLETS) for line in lines) / len(lines)
        if bullets > cfg.max_bullet_lines_ratio:
            return Verdict("gopher_bullet_lines", bullets, cfg.max_bullet_lines_ratio)
        ellipsis_lines = sum(line.rstrip().endswith(ELLIPSES) for line in lines) / len(lines)
        if ellipsis_lines > cfg.max_ellipsis_lines_ratio:
            return Verdict("gopher_ellipsis_lines", ellipsis_lines, cfg.max_ellipsis_lines_ratio)
        alpha_base = n_tokens if cfg.alpha_ratio_over == "tokens" else n_words
        alpha = sum(1 for w in non_symbol if w.isalpha() or any(ch.isalpha() for ch in w)) / alpha_base
        if alpha < cfg.min_alpha_words_ratio:
            return Verdict("gopher_alpha_words", alpha, cfg.min_alpha_words_ratio)
        # distinct stop words, case-sensitive, as datatrove counts them
        stop_words = len(rules.stop_words.intersection(words))
        if stop_words < cfg.min_stop_words:
            return Verdict("gopher_stop_words", stop_words, cfg.min_stop_words)
        return None

"""Gopher quality rules (Rae et al. 2021), with datatrove's definitions of words, lines and ratios."""

from __future__ import annotations

import string
from dataclasses import dataclass

from conf.schema import CleanConfig

STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
PUNCTUATION = frozenset(string.punctuation + "«»“”‘’—–…·•")
BULLETS = ("•", "-", "*", "‣", "◦")
ELLIPSES = ("...", "…")


@dataclass(frozen=True)
class Verdict:
    """Why a document was removed: the rule, the measured value, and the bound it broke."""

    rule: str
    value: float
    bound: float


class GopherQuality:
    """One job: decide whether a document passes the Gopher quality rules; say which rule fails first."""

    def __init__(self, cfg: CleanConfig) -> None:
        self.cfg = cfg

    def check(self, text: str) -> Verdict | None:
        cfg = self.cfg
        words = text.split()
        non_symbol = [w for w in words if any(ch not in PUNCTUATION for ch in w)]
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
        hash_ratio = text.count("#") / n_words
        if hash_ratio > cfg.max_symbol_word_ratio:
            return Verdict("gopher_hash_ratio", hash_ratio, cfg.max_symbol_word_ratio)
        ellipsis_ratio = (text.count("...") + text.count("…")) / n_words
        if ellipsis_ratio > cfg.max_symbol_word_ratio:
            return Verdict("gopher_ellipsis_ratio", ellipsis_ratio, cfg.max_symbol_word_ratio)
        lines = [line for line in text.splitlines() if line.strip()] or [""]
        bullets = sum(line.lstrip().startswith(BULLETS) for line in lines) / len(lines)
        if bullets > cfg.max_bullet_lines_ratio:
            return Verdict("gopher_bullet_lines", bullets, cfg.max_bullet_lines_ratio)
        ellipsis_lines = sum(line.rstrip().endswith(ELLIPSES) for line in lines) / len(lines)
        if ellipsis_lines > cfg.max_ellipsis_lines_ratio:
            return Verdict("gopher_ellipsis_lines", ellipsis_lines, cfg.max_ellipsis_lines_ratio)
        alpha = sum(any(ch.isalpha() for ch in w) for w in words) / max(len(words), 1)
        if alpha < cfg.min_alpha_words_ratio:
            return Verdict("gopher_alpha_words", alpha, cfg.min_alpha_words_ratio)
        stop_words = sum(w.lower().strip(string.punctuation) in STOP_WORDS for w in words)
        if stop_words < cfg.min_stop_words:
            return Verdict("gopher_stop_words", stop_words, cfg.min_stop_words)
        return None

"""Each language's filter settings: the clean section, with that language's row of conf/languages.yaml laid over
it, and the config's `clean.per_language` override over that. English (no row) gets the clean section unchanged."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from gristmill.conf.schema import CleanConfig, LanguageRow, load_language_table
from gristmill.tasks.text.units import DEFAULT_TERMINALS, LATIN_TERMINALS

# Gopher's stop words (Rae et al. 2021), the rule's English list: distinct ones are counted, case-sensitively.
ENGLISH_STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
_GOPHER_KEYS = (
    "min_words",
    "max_words",
    "min_mean_word_length",
    "max_mean_word_length",
    "min_alpha_words_ratio",
    "min_stop_words",
)


@dataclass(frozen=True)
class LanguageRules:
    """What the filters need for one language (or for documents whose language is unknown: `language` None)."""

    language: str | None
    clean: CleanConfig  # Gopher bounds at top level; repetition, c4 and fineweb sections
    stop_words: frozenset[str]
    terminals: str
    source: str | None


@cache
def shipped_table() -> dict[str, LanguageRow]:
    return load_language_table()


class RuleBook:
    """Resolves and caches each language's rules for one clean config."""

    def __init__(self, cfg: CleanConfig) -> None:
        self.cfg = cfg
        self.table = shipped_table()
        self._cache: dict[str | None, LanguageRules] = {}

    def get(self, language: str | None) -> LanguageRules:
        if language not in self._cache:
            self._cache[language] = self._resolve(language)
        return self._cache[language]

    def row(self, language: str | None) -> LanguageRow | None:
        """The table's row with the config's override laid over it, key by key (sections too)."""
        base = self.table.get(language) if language else None
        override = self.cfg.per_language.get(language) if language else None
        if base is None or override is None:
            return override or base
        merged = base.model_dump(exclude_none=True)
        for key, value in override.model_dump(exclude_none=True).items():
            merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
        return LanguageRow.model_validate(merged)

    def _resolve(self, language: str | None) -> LanguageRules:
        cfg, row = self.cfg, self.row(language)
        # English (and documents whose language was not identified, as before) count Gopher's English stop words
        # and end sentences as C4 does; other languages start from no stop-word list and every script's marks.
        english = language in (None, "en")
        stop_words = ENGLISH_STOP_WORDS if english else frozenset()
        terminals = LATIN_TERMINALS if english else DEFAULT_TERMINALS
        update: dict[str, object] = {}
        if row is not None:
            update = {key: getattr(row, key) for key in _GOPHER_KEYS if getattr(row, key) is not None}
            for name in ("repetition", "c4", "fineweb"):
                if (section := getattr(row, name)) is not None:
                    current = getattr(cfg, name)
                    update[name] = type(current).model_validate({**current.model_dump(), **section})
            stop_words = frozenset(row.stop_words) if row.stop_words is not None else stop_words
            terminals = row.terminals or terminals
        if not stop_words and "min_stop_words" not in update:
            update["min_stop_words"] = 0  # no list for this language: the rule has nothing to count
        clean = cfg.model_copy(update=update) if update else cfg  # English without an override: the section itself
        return LanguageRules(language, clean, stop_words, terminals, row.source if row else None)

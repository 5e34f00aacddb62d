"""Whom the filters remove: documents mentioning each demographic group, entering and leaving each filter.

A unit returns plain counts (so units add up across shards); `summarize` turns the totals into shares, removal
rates and disparity ratios = (a filter's removal rate among docs mentioning the group) / (its overall rate).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from gristmill.conf.schema import AuditConfig, ConfigError, config_file

ALL = "_all"  # the key for "every document", beside the groups


def load_lexicon(path: str | Path) -> dict[str, re.Pattern[str]]:
    """One whole-word, case-insensitive pattern per group."""
    path = config_file(path, "clean.audit.lexicon")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"clean.audit.lexicon {path}: cannot read it: {err}") from err
    if not isinstance(raw, dict) or not all(isinstance(v, list) and v for v in raw.values()):
        raise ConfigError(f"{path}: expected a mapping of group -> non-empty list of terms")
    return {
        group: re.compile(r"\b(?:" + "|".join(sorted(map(re.escape, terms), key=len, reverse=True)) + r")\b", re.I)
        for group, terms in raw.items()
    }


class Audit:
    """Counts, per filter: docs entering and removed, overall and per group mentioned."""

    def __init__(self, lexicon: dict[str, re.Pattern[str]]) -> None:
        self.lexicon = lexicon
        self.entered: dict[str, Counter[str]] = {}
        self.removed: dict[str, Counter[str]] = {}
        self.before: Counter[str] = Counter()
        self.after: Counter[str] = Counter()

    def groups(self, text: str) -> list[str]:
        return [group for group, pattern in self.lexicon.items() if pattern.search(text)]

    def enter(self, step: str, groups: list[str]) -> None:
        self.entered.setdefault(step, Counter()).update([ALL, *groups])

    def remove(self, step: str, groups: list[str]) -> None:
        self.removed.setdefault(step, Counter()).update([ALL, *groups])

    def counts(self) -> dict[str, Any]:
        return {
            "before": dict(self.before),
            "after": dict(self.after),
            "entered": {k: dict(v) for k, v in self.entered.items()},
            "removed": {k: dict(v) for k, v in self.removed.items()},
        }


def summarize(counts: dict[str, Any], groups: list[str], cfg: AuditConfig) -> tuple[list[dict], list[str]]:
    """Rows (group x filter) for the MLflow table, and the warnings for ratios above the bound."""
    rows, warnings = [], []
    docs_in, docs_out = counts["before"].get(ALL, 0), counts["after"].get(ALL, 0)
    for step, entered in counts["entered"].items():
        removed = counts["removed"].get(step, {})
        overall = removed.get(ALL, 0) / entered[ALL] if entered.get(ALL) else 0.0
        for group in groups:
            n_in, n_out = entered.get(group, 0), removed.get(group, 0)
            rate = n_out / n_in if n_in else 0.0
            ratio = rate / overall if overall else (0.0 if not rate else float("inf"))
            flagged = n_in >= cfg.min_docs and ratio > cfg.max_disparity
            rows.append(
                {
                    "group": group,
                    "filter": step,
                    "share_before": round(counts["before"].get(group, 0) / docs_in, 4) if docs_in else 0.0,
                    "share_after": round(counts["after"].get(group, 0) / docs_out, 4) if docs_out else 0.0,
                    **_disparity_columns(n_in, n_out, rate, overall, ratio, flagged),
                }
            )
            if flagged:
                warnings.append(
                    f"{step} removes {rate:.1%} of documents mentioning {group} vs {overall:.1%} overall "
                    f"(ratio {ratio:.2f} > {cfg.max_disparity})"
                )
    return rows, warnings


def summarize_languages(
    counts: dict[str, dict[str, dict[str, int]]], languages: list[str], cfg: AuditConfig
) -> tuple[list[dict], list[str]]:
    """Removal rate of each kept language under each filter after language id, beside the rate over all kept
    languages; a warning when one language loses more than `max_disparity` times that (its own row too lax or too
    strict, or text the segmenter handles badly)."""
    rows, warnings = [], []
    for step, by_language in counts.items():
        kept = {lang: c for lang, c in by_language.items() if lang in languages}
        total_in = sum(c.get("in", 0) for c in kept.values())
        overall = sum(c.get("removed", 0) for c in kept.values()) / total_in if total_in else 0.0
        for lang in languages:
            n_in, n_out = kept.get(lang, {}).get("in", 0), kept.get(lang, {}).get("removed", 0)
            rate = n_out / n_in if n_in else 0.0
            ratio = rate / overall if overall else (0.0 if not rate else float("inf"))
            flagged = len(kept) > 1 and n_in >= cfg.min_docs and ratio > cfg.max_disparity
            rows.append(
                {
                    "language": lang,
                    "filter": step,
                    **_disparity_columns(n_in, n_out, rate, overall, ratio, flagged),
                }
            )
            if flagged:
                warnings.append(
                    f"{step} removes {rate:.1%} of {lang} documents vs {overall:.1%} over all kept languages "
                    f"(ratio {ratio:.2f} > {cfg.max_disparity})"
                )
    return rows, warnings


def _disparity_columns(n_in: int, n_out: int, rate: float, overall: float, ratio: float, flagged: bool) -> dict:
    """The columns every disparity row has, by group or by language."""
    return {
        "docs_entering": n_in,
        "docs_removed": n_out,
        "removal_rate": round(rate, 4),
        "overall_removal_rate": round(overall, 4),
        "disparity": round(ratio, 3) if ratio != float("inf") else None,
        "warning": flagged,
    }

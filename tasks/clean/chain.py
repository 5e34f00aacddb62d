"""The configured chain of steps and how one document goes through it (FineWeb's order)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from gristmill.conf.schema import CleanConfig
from gristmill.tasks.clean.audit import Audit
from gristmill.tasks.clean.base import Doc, Filter, Formatter, Verdict
from gristmill.tasks.clean.blocklist import BadWords, DomainBlocklist, read_list
from gristmill.tasks.clean.c4 import C4Quality
from gristmill.tasks.clean.fineweb import FineWebQuality
from gristmill.tasks.clean.gopher import GopherQuality
from gristmill.tasks.clean.language import LanguageFilter
from gristmill.tasks.clean.normalize import Normalizer
from gristmill.tasks.clean.pii import PIIFormatter
from gristmill.tasks.clean.repetition import GopherRepetition
from gristmill.tasks.clean.rules import RuleBook

Step = Filter | Formatter


def build_chain(cfg: CleanConfig) -> list[Step]:
    """Only the enabled steps, in order: cheap URL check, language, repetition, quality, C4, FineWeb, then PII."""
    book = RuleBook(cfg)  # each kept language filtered by its own row of conf/languages.yaml
    steps: list[Step] = [Normalizer(cfg.fix_unicode)]
    if cfg.url_blocklist:
        steps.append(DomainBlocklist(read_list(cfg.url_blocklist, "clean.url_blocklist")))
    if cfg.language.enabled:
        steps.append(LanguageFilter(cfg.language))
    if cfg.repetition.enabled:
        steps.append(GopherRepetition(cfg.repetition, book))
    if cfg.gopher_quality:
        steps.append(GopherQuality(cfg, book))
    if cfg.c4.enabled:
        steps.append(C4Quality(cfg.c4, book))
    if cfg.fineweb.enabled:
        steps.append(FineWebQuality(cfg.fineweb, book))
    if cfg.badwords:
        steps.append(BadWords(read_list(cfg.badwords, "clean.badwords")))
    if cfg.pii.enabled:
        steps.append(PIIFormatter(cfg.pii))
    return steps


class Chain:
    """Runs the steps on one document at a time, counting per step what came in and what each removed."""

    def __init__(self, steps: list[Step], audit: Audit | None = None) -> None:
        self.steps = steps
        self.audit = audit
        self.docs_in: Counter[str] = Counter()
        self.removed: Counter[str] = Counter()  # by rule
        self.chars_removed: Counter[str] = Counter()  # by rule
        self.step_removed: Counter[str] = Counter()  # by step
        self.step_chars_removed: Counter[str] = Counter()
        # per language, for the steps after language id: {step: {language: {"in": n, "removed": n}}}
        self.by_language: dict[str, dict[str, Counter[str]]] = {}

    def process(self, doc: Doc) -> Verdict | None:
        groups: list[str] = []
        for step in self.steps:
            if isinstance(step, Formatter):
                doc.text = step.format(doc.text)
                if step.name == "normalize" and self.audit:
                    groups = self.audit.groups(doc.text)  # on the normalised text, once
                    self.audit.before.update(["_all", *groups])
                continue
            self.docs_in[step.name] += 1
            if self.audit:
                self.audit.enter(step.name, groups)
            language = doc.language  # known from the step after language id on
            verdict = step.check(doc)
            if language is not None:
                counts = self.by_language.setdefault(step.name, {}).setdefault(language, Counter())
                counts["in"] += 1
                counts["removed"] += verdict is not None
            if verdict is not None:
                self.removed[verdict.rule] += 1
                self.chars_removed[verdict.rule] += len(doc.text)
                self.step_removed[step.name] += 1
                self.step_chars_removed[step.name] += len(doc.text)
                if self.audit:
                    self.audit.remove(step.name, groups)
                return verdict
        if self.audit:
            self.audit.after.update(["_all", *self.audit.groups(doc.text)])
        return None

    def stats(self) -> dict[str, Any]:
        """Plain counts that add up across shards."""
        return {
            "removed": dict(self.removed),
            "chars_removed": dict(self.chars_removed),
            "filters": {
                step.name: {
                    "docs_in": self.docs_in[step.name],
                    "docs_removed": self.step_removed[step.name],
                    "chars_removed": self.step_chars_removed[step.name],
                    **dict(step.stats),
                }
                for step in self.steps
            },
            "languages": {step: {lg: dict(c) for lg, c in langs.items()} for step, langs in self.by_language.items()},
        }

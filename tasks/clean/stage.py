"""The clean stage: normalise each document, run the filter chain, and explain every removal.

One unit per input shard, mapped over `ctx.map`. Kept documents go to `documents/` (with `language` and
`language_score`), removed ones to `rejected/` with the rule and the measured value, so nothing is lost and every
decision can be inspected or reversed by changing config. Units return plain counts; the stage adds them up.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa

from gristmill.tasks.clean.audit import Audit, load_lexicon, summarize, summarize_languages
from gristmill.tasks.clean.base import Doc, Verdict
from gristmill.tasks.clean.chain import Chain, build_chain
from gristmill.tasks.clean.report import log_report
from gristmill.tasks.documents import DOCUMENT_SCHEMA
from gristmill.tasks.removals import Removals
from gristmill.tasks.shards import ShardInfo, UnitRecord, iter_batches, write_shard
from gristmill.tasks.stage import StageContext, StageResult, sum_stats

log = logging.getLogger("gristmill.clean")

CLEAN_SCHEMA = DOCUMENT_SCHEMA.append(pa.field("language", pa.string())).append(
    pa.field("language_score", pa.float32())
)
REJECTED_SCHEMA = CLEAN_SCHEMA.append(pa.field("reason", pa.string(), nullable=False)).append(
    pa.field("value", pa.float64())
)
SAMPLE_CHARS = 300


PAGE_REMOVED = "page_removed"  # the rejected reason of a document whose page a later refresh found removed


def clean_shard(ctx: StageContext, path: Path, removals: Removals | None = None) -> UnitRecord:
    """One input shard -> one documents shard and (if any) one rejected shard; memory bounded by the shard.
    Documents of pages removed since they were fetched (`removals`) go to rejected as `page_removed`."""
    cfg = ctx.config.clean
    audit = Audit(load_lexicon(cfg.audit.lexicon)) if cfg.audit.enabled else None
    chain = Chain(build_chain(cfg), audit)
    kept, rejected, samples = [], [], Counter()
    sample_rows: list[dict[str, Any]] = []
    for batch in iter_batches([path]):
        for row in batch.to_pylist():
            if removals and removals.applies_to(row["url"], row["fetched_at"]):
                rejected.append({**row, "language": None, "language_score": None, "reason": PAGE_REMOVED, "value": 0.0})
                continue
            doc = Doc(row["text"] or "", row["url"])
            verdict = chain.process(doc)
            out = {**row, "text": doc.text, "language": doc.metadata.get("language")}
            out["language_score"] = doc.metadata.get("language_score")
            if verdict is None:
                kept.append(out)
                continue
            rejected.append({**out, "reason": verdict.rule, "value": float(verdict.value)})
            if samples[verdict.rule] < cfg.audit.samples_per_rule:
                samples[verdict.rule] += 1
                sample_rows.append(_sample(row, doc, verdict))
    shards = {"documents": [_write(ctx, "documents", path.name, kept, CLEAN_SCHEMA)]}
    if rejected:
        shards["rejected"] = [_write(ctx, "rejected", path.name, rejected, REJECTED_SCHEMA)]
    stats = chain.stats()
    pages_removed = sum(r["reason"] == PAGE_REMOVED for r in rejected)
    if pages_removed:
        stats["removed"][PAGE_REMOVED] = pages_removed
    stats = {
        "docs_in": len(kept) + len(rejected),
        "chars_out": sum(len(d["text"]) for d in kept),
        **stats,
        "samples": sample_rows,
        "audit": audit.counts() if audit else {},
    }
    return UnitRecord(unit=path.stem, shards=shards, stats=stats)


def run(ctx: StageContext) -> StageResult:
    cfg = ctx.config.clean
    build_chain(cfg)  # fail before any work on a missing blocklist file...
    if cfg.audit.enabled:
        load_lexicon(cfg.audit.lexicon)  # ...or a bad lexicon

    removals = Removals.of_crawl(ctx.workspace)

    def unit(path: Path) -> UnitRecord:
        # A shard cleaned before (same checksum, same settings) is not cleaned again: new input redoes only new shards,
        # and an earlier shard only when a refresh removed one of its pages (its text must leave the corpus).
        inputs = ctx.shard_digest(path)
        removed = removals.in_shard(path)
        if removed:
            inputs += " removed " + hashlib.sha256("\n".join(removed).encode()).hexdigest()[:16]
        return ctx.unit(path.stem, lambda: clean_shard(ctx, path, removals), inputs=inputs)

    units = ctx.map(unit, ctx.input_paths())
    totals = sum_stats((record.stats for record in units), skip={"samples"})
    samples = [sample for record in units for sample in record.stats.get("samples", [])]
    stats: dict[str, Any] = {
        "chars_out": totals.get("chars_out", 0),
        "removed": dict(sorted(totals.get("removed", {}).items())),
        "chars_removed": dict(sorted(totals.get("chars_removed", {}).items())),
        "filters": totals.get("filters", {}),
    }
    audit_rows: list[dict] = []
    language_rows: list[dict] = []
    if cfg.audit.enabled and cfg.language.enabled:
        language_rows, warnings = summarize_languages(totals.get("languages", {}), cfg.language.languages, cfg.audit)
        for warning in warnings:
            log.warning("clean audit: %s", warning)
        stats["language_warnings"] = len(warnings)
        stats["warnings"] = warnings  # a list: in the manifest and the run summary, not a metric
        by_language: dict[str, dict[str, float]] = {}
        for r in language_rows:
            by_language.setdefault(r["filter"], {})[r["language"]] = r["removal_rate"]
        stats["removal_rate_by_language"] = by_language
    if cfg.audit.enabled and totals.get("audit"):
        groups = list(load_lexicon(cfg.audit.lexicon))
        audit_rows, warnings = summarize(totals["audit"], groups, cfg.audit)
        for warning in warnings:
            log.warning("clean audit: %s", warning)
        stats["audit_warnings"] = len(warnings)
        stats["warnings"] = stats.get("warnings", []) + warnings
        stats["audit_share"] = {
            r["group"]: {"before": r["share_before"], "after": r["share_after"]} for r in audit_rows
        }
    log_report(ctx, stats["removed"], _cap(samples, cfg.audit.samples_per_rule), audit_rows)
    ctx.table("clean/audit_languages", language_rows)
    docs_out = sum(s.rows for u in units for s in u.shards["documents"])
    return StageResult(
        units=units,
        count_in=totals.get("docs_in", 0),
        unit_in="docs",
        count_out=docs_out,
        unit_out="docs",
        stats=stats,
    )


def _sample(row: dict, doc: Doc, verdict: Verdict) -> dict[str, Any]:
    return {
        "rule": verdict.rule,
        "value": round(float(verdict.value), 4),
        "bound": float(verdict.bound),
        "url": row["url"],
        "language": doc.metadata.get("language"),
        "text": doc.text[:SAMPLE_CHARS],
    }


def _cap(samples: list[dict], per_rule: int) -> list[dict]:
    """Units each keep a few per rule; keep the first few per rule overall."""
    seen: Counter[str] = Counter()
    out = []
    for sample in samples:
        if seen[sample["rule"]] < per_rule:
            seen[sample["rule"]] += 1
            out.append(sample)
    return out


def _write(ctx: StageContext, dataset: str, name: str, rows: list[dict], schema: pa.Schema) -> ShardInfo:
    return write_shard(ctx.output.dataset_dir(dataset) / name, pa.Table.from_pylist(rows, schema=schema), schema)

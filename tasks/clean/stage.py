"""The clean stage: normalise each document, apply the quality rules, and explain every removal.

One unit per input shard. Kept documents go to `documents/`, removed ones to `rejected/` with the rule and the
measured value, so nothing is lost and every decision can be inspected or reversed by changing config.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa

from tasks.clean.gopher import GopherQuality
from tasks.clean.normalize import normalize_text
from tasks.crawl.records import DOCUMENT_SCHEMA
from tasks.shards import UnitRecord, iter_records, write_shard
from tasks.stage import StageContext, StageResult

REJECTED_SCHEMA = DOCUMENT_SCHEMA.append(pa.field("reason", pa.string(), nullable=False)).append(
    pa.field("value", pa.float64())
)


def run(ctx: StageContext) -> StageResult:
    cfg = ctx.config.clean
    quality = GopherQuality(cfg)

    def clean_shard(path: Path) -> UnitRecord:
        def work() -> UnitRecord:
            kept, rejected = [], []
            removed, chars_removed = Counter(), Counter()
            for doc in iter_records([path]):
                doc["text"] = normalize_text(doc["text"] or "", cfg.fix_unicode)
                verdict = quality.check(doc["text"])
                if verdict is None:
                    kept.append(doc)
                    continue
                rejected.append({**doc, "reason": verdict.rule, "value": float(verdict.value)})
                removed[verdict.rule] += 1
                chars_removed[verdict.rule] += len(doc["text"])
            shards = {"documents": [_write(ctx, "documents", path.name, kept, DOCUMENT_SCHEMA)]}
            if rejected:
                shards["rejected"] = [_write(ctx, "rejected", path.name, rejected, REJECTED_SCHEMA)]
            stats = {
                "docs_in": len(kept) + len(rejected),
                "chars_out": sum(len(d["text"]) for d in kept),
                "removed": dict(removed),
                "chars_removed": dict(chars_removed),
            }
            return UnitRecord(unit=path.stem, shards=shards, stats=stats)

        return ctx.unit(path.stem, work)

    units = ctx.map(clean_shard, ctx.input_paths())
    removed, chars_removed = Counter(), Counter()
    for unit in units:
        removed.update(unit.stats["removed"])
        chars_removed.update(unit.stats["chars_removed"])
    docs_out = sum(s.rows for u in units for s in u.shards["documents"])
    return StageResult(
        units=units,
        count_in=sum(u.stats["docs_in"] for u in units),
        unit_in="docs",
        count_out=docs_out,
        unit_out="docs",
        stats={
            "chars_out": sum(u.stats["chars_out"] for u in units),
            "removed": dict(sorted(removed.items())),
            "chars_removed": dict(sorted(chars_removed.items())),
        },
    )


def _write(ctx: StageContext, dataset: str, name: str, rows: list[dict], schema: pa.Schema):
    return write_shard(ctx.output.dataset_dir(dataset) / name, pa.Table.from_pylist(rows, schema=schema), schema)

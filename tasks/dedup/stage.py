"""The dedup stage: exact duplicates by normalised-text hash, near-duplicates by MinHash LSH.

Three passes, each bounded in memory: (1) per input shard, a signature shard (exact hash + MinHash values);
(2) one pass over the compact signatures builds the LSH index and the clusters; (3) per input shard, the
documents that survive are written. The survivor of a cluster is its earliest document (shard, then row).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
from datasketch import MinHashLSH

from tasks.crawl.records import DOCUMENT_SCHEMA
from tasks.dedup.clusters import UnionFind
from tasks.dedup.exact import exact_hash
from tasks.dedup.minhash import lean, signature
from tasks.shards import UnitRecord, iter_batches, write_shard
from tasks.stage import StageContext, StageResult


def signature_schema(num_perm: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("row", pa.int32(), nullable=False),
            pa.field("has_text", pa.bool_(), nullable=False),
            pa.field("exact_hash", pa.binary(8), nullable=False),
            pa.field("minhash", pa.list_(pa.uint32(), num_perm), nullable=False),
        ]
    )


def key(shard_index: int, row: int) -> int:
    """A document's place in the corpus as one sortable int: earlier shard, then earlier row."""
    return (shard_index << 32) | row


def run(ctx: StageContext) -> StageResult:
    cfg = ctx.config.dedup
    inputs = ctx.input_paths()
    schema = signature_schema(cfg.num_perm)
    sig_dir = ctx.output.dataset_dir("signatures")

    def sign(path: Path) -> UnitRecord:
        def work() -> UnitRecord:
            rows = []
            for batch in iter_batches([path], ["text"]):
                for text in batch.column("text").to_pylist():
                    has_text = bool(text and text.strip())
                    rows.append(
                        {
                            "row": len(rows),
                            "has_text": has_text,
                            "exact_hash": exact_hash(text) if has_text else bytes(8),
                            "minhash": signature(text if has_text else "", cfg.num_perm, cfg.shingle_words, cfg.seed),
                        }
                    )
            info = write_shard(sig_dir / path.name, pa.Table.from_pylist(rows, schema=schema), schema)
            return UnitRecord(unit=f"sign-{path.stem}", shards={"signatures": [info]})

        return ctx.unit(f"sign-{path.stem}", work)

    signed = ctx.map(sign, inputs)
    removed, stats = find_duplicates([sig_dir / u.shards["signatures"][0].name for u in signed], cfg)

    def keep(item: tuple[int, Path]) -> UnitRecord:
        index, path = item

        def work() -> UnitRecord:
            drop = removed.get(index, set())
            batches = (_filter(batch, drop, offset) for batch, offset in _with_offsets(iter_batches([path])))
            info = write_shard(ctx.output.dataset_dir("documents") / path.name, batches, DOCUMENT_SCHEMA)
            return UnitRecord(unit=f"keep-{path.stem}", shards={"documents": [info]})

        return ctx.unit(f"keep-{path.stem}", work)

    kept = ctx.map(keep, list(enumerate(inputs)))
    docs_in = stats["docs_in"]
    docs_out = sum(s.rows for u in kept for s in u.shards["documents"])
    return StageResult(
        units=signed + kept,
        count_in=docs_in,
        unit_in="docs",
        count_out=docs_out,
        unit_out="docs",
        stats=stats,
    )


def find_duplicates(signature_paths: list[Path], cfg) -> tuple[dict[int, set[int]], dict]:
    """Rows to drop per shard index, and cluster statistics."""
    lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm)
    first_by_hash: dict[bytes, int] = {}
    reasons: dict[int, str] = {}
    clusters = UnionFind()
    docs_in = 0
    for shard_index, path in enumerate(signature_paths):
        for batch in iter_batches([path]):
            rows = batch.column("row").to_numpy()
            has_text = batch.column("has_text").to_pylist()
            hashes = batch.column("exact_hash").to_pylist()
            sigs = batch.column("minhash").flatten().to_numpy().reshape(len(rows), cfg.num_perm)
            for row, text_ok, digest, sig in zip(rows, has_text, hashes, sigs, strict=True):
                docs_in += 1
                doc = key(shard_index, int(row))
                if not text_ok:
                    reasons[doc] = "empty"
                elif cfg.exact and digest in first_by_hash:
                    reasons[doc] = "exact"
                    clusters.union(first_by_hash[digest], doc)
                else:
                    first_by_hash.setdefault(digest, doc)
                    if cfg.near:
                        _index_near(lsh, clusters, doc, np.asarray(sig), cfg.seed)
    for root, members in clusters.clusters().items():
        for doc in members:
            if doc != root and doc not in reasons:
                reasons[doc] = "near"
    removed: dict[int, set[int]] = {}
    for doc in reasons:
        removed.setdefault(doc >> 32, set()).add(doc & 0xFFFFFFFF)
    sizes = [len(m) for m in clusters.clusters().values() if len(m) > 1]
    counts = Counter(reasons.values())
    stats = {
        "docs_in": docs_in,
        "removed": {reason: counts.get(reason, 0) for reason in ("empty", "exact", "near")},
        "clusters": {
            "count": len(sizes),
            "largest": max(sizes, default=0),
            "mean_size": round(float(np.mean(sizes)), 3) if sizes else 0.0,
        },
    }
    return removed, stats


def _index_near(lsh: MinHashLSH, clusters: UnionFind, doc: int, sig: np.ndarray, seed: int) -> None:
    sketch = lean(sig, seed)
    for other in lsh.query(sketch):
        clusters.union(other, doc)
    lsh.insert(doc, sketch, check_duplication=False)


def _with_offsets(batches):
    offset = 0
    for batch in batches:
        yield batch, offset
        offset += batch.num_rows


def _filter(batch: pa.RecordBatch, drop: set[int], offset: int) -> pa.RecordBatch:
    if not drop:
        return batch
    mask = pa.array([offset + i not in drop for i in range(batch.num_rows)])
    return batch.filter(mask)

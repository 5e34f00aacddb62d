"""The dedup stage: URL duplicates, exact duplicates by normalised-text hash, near-duplicates by MinHash LSH.

Three passes, each bounded in memory by a shard: (1) per input shard, a signature shard (exact hash, length, URL and
MinHash values, computed a batch at a time in numpy; `signatures.py`); (2) one pass over the compact signatures
(after those of documents kept by earlier runs, when incremental) finds URL and exact duplicates, then candidate
pairs, verifies them and builds the clusters (`deduplicator.py`); (3) per input shard, the documents that survive
are written. The survivor of a cluster is its earliest document (shard, then row) or, with `survivor: longest`,
its longest one, ties going to the earliest.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from gristmill.conf.schema import DedupConfig
from gristmill.tasks.dedup import report
from gristmill.tasks.dedup.deduplicator import Deduplicator
from gristmill.tasks.dedup.index import KeptIndex, index_schema
from gristmill.tasks.dedup.signatures import alpha_word_share, hasher, normalizer, sign_batch, signature_schema
from gristmill.tasks.documents import DOCUMENT_SCHEMA
from gristmill.tasks.shards import UnitRecord, iter_batches, write_shard
from gristmill.tasks.stage import StageContext, StageResult
from gristmill.tasks.urls import same_page_key

# Re-exported: benchmarks and tests import them from the stage.
__all__ = ["Deduplicator", "alpha_word_share", "find_duplicates", "hasher", "normalizer", "run", "sign_batch"]


_HASHES = ["exact_hash", "minhash"]


def run(ctx: StageContext) -> StageResult:
    cfg = ctx.config.dedup
    inputs = ctx.input_paths()
    schema = signature_schema(cfg.num_perm)
    sig_dir = ctx.output.dataset_dir("signatures")
    minhasher = hasher(cfg)

    def sign(path: Path) -> UnitRecord:
        def work() -> UnitRecord:
            started = time.perf_counter()
            batches = _with_offsets(iter_batches([path], ["text", "url"]))
            rows = (sign_batch(batch, cfg, minhasher, offset) for batch, offset in batches)
            # Streamed: memory is one batch. Hash columns do not dictionary-encode (trying cost 1/7 of the stage), and
            # zstd gains them a sixth of their size for 40% more time writing and reading the shard.
            info = write_shard(sig_dir / path.name, rows, schema, use_dictionary=["url"], uncompressed=_HASHES)
            seconds = time.perf_counter() - started
            return UnitRecord(unit=f"sign-{path.stem}", shards={"signatures": [info]}, stats={"sign_s": seconds})

        return ctx.unit(f"sign-{path.stem}", work, inputs=ctx.shard_digest(path))  # new shards signed alone

    signed = ctx.map(sign, inputs)
    sig_paths = [sig_dir / u.shards["signatures"][0].name for u in signed]
    kept_index = KeptIndex(ctx.workspace, cfg)
    current_input = ctx.upstream.input_hash() if ctx.upstream else "none"
    prior = kept_index.parts(current_input) if cfg.incremental else []
    # Incremental: shards an earlier run deduplicated stay as they were (what it kept is in the index, and earlier
    # documents always win), so a new corpus generation is compared against everything kept before, not itself.
    done: dict[int, UnitRecord] = {}
    if cfg.incremental:
        for index, path in enumerate(inputs):
            record = ctx.output.committed_unit(f"keep-{path.stem}", ctx.shard_digest(path))
            if record is not None:
                done[index] = record
    fresh = [i for i in range(len(inputs)) if i not in done]
    dedup = Deduplicator(cfg)
    # Documents kept before win, except over their own page: an earlier copy from a shard that is not here unchanged
    # any more (rewritten since: a narrowed ingest unit, a changed source file) does not make the page's document in
    # a fresh shard a duplicate; the earlier copy has left the corpus.
    unchanged = pa.array(sorted(inputs[i].name for i in done), pa.string())
    fresh_pages = _page_keys([sig_paths[i] for i in fresh]) if cfg.incremental else set()
    for path in prior:
        dedup.add_prior(_without_replaced(kept_index.read(path), unchanged, fresh_pages))
    removed_fresh, stats, sizes, pairs = dedup.run([sig_paths[i] for i in fresh], [inputs[i] for i in fresh])
    removed = {fresh[position]: rows for position, rows in removed_fresh.items()}
    report.track(ctx, sizes, pairs)

    def keep(item: tuple[int, Path]) -> UnitRecord:
        index, path = item
        if index in done:
            return done[index]

        def work() -> UnitRecord:
            drop = removed.get(index, set())
            batches = (_filter(batch, drop, offset) for batch, offset in _with_offsets(iter_batches([path])))
            info = write_shard(ctx.output.dataset_dir("documents") / path.name, batches, DOCUMENT_SCHEMA)
            return UnitRecord(unit=f"keep-{path.stem}", shards={"documents": [info]})

        return ctx.unit(f"keep-{path.stem}", work, inputs=ctx.shard_digest(path) if cfg.incremental else None)

    kept = ctx.map(keep, list(enumerate(inputs)))
    if cfg.incremental:
        fresh_removed = {position: removed.get(i, set()) for position, i in enumerate(fresh)}
        kept_index.write(current_input, _kept_signatures([sig_paths[i] for i in fresh], fresh_removed, cfg.num_perm))
    docs_out = sum(s.rows for u in kept for s in u.shards["documents"])
    stats["sign_s"] = round(sum(u.stats.get("sign_s", 0.0) for u in signed), 3)
    stats["peak_rss_mb"] = report.peak_rss_mb()
    return StageResult(
        units=signed + kept,
        count_in=stats["docs_in"],
        unit_in="docs",
        count_out=docs_out,
        unit_out="docs",
        stats=stats,
    )


def find_duplicates(
    signature_paths: list[Path], text_paths: list[Path], cfg: DedupConfig
) -> tuple[dict[int, set[int]], dict]:
    """Rows to drop per shard index, and cluster statistics."""
    removed, stats, _, _ = Deduplicator(cfg).run(signature_paths, text_paths)
    return removed, stats


def _kept_signatures(paths: list[Path], removed: dict[int, set[int]], num_perm: int) -> Iterator[pa.RecordBatch]:
    """Signature rows of the documents this run kept, in the index's schema, each with the shard it came from."""
    schema = index_schema(num_perm)
    columns = [name for name in schema.names if name != "shard"]
    for index, path in enumerate(paths):
        drop = removed.get(index, set())
        for batch in iter_batches([path]):
            rows = batch.column("row").to_pylist()
            keep = pa.array([r not in drop for r in rows]) if drop else pa.array([True] * len(rows))
            kept = batch.filter(pc.and_(keep, batch.column("has_text"))).select(columns)
            shard = pa.array([path.name] * kept.num_rows, pa.string())
            yield pa.RecordBatch.from_arrays([*kept.columns, shard], names=schema.names).cast(schema)


def _page_keys(signature_paths: list[Path]) -> set[str]:
    """The pages (`same_page_key` of their URL) of the documents in these shards."""
    return {
        same_page_key(url)
        for batch in iter_batches(signature_paths, ["url"])
        for url in batch.column("url").to_pylist()
        if url
    }


def _without_replaced(
    batches: Iterator[pa.RecordBatch], unchanged: pa.Array, pages: set[str]
) -> Iterator[pa.RecordBatch]:
    """Index rows, less those of `pages` kept from a shard no longer unchanged (index parts written before rows
    named their shard are read whole)."""
    for batch in batches:
        if "shard" not in batch.schema.names or not pages:
            yield batch
            continue
        elsewhere = pc.invert(pc.is_in(batch.column("shard"), value_set=unchanged)).to_pylist()
        urls = batch.column("url").to_pylist()
        replaced = [
            gone and url is not None and same_page_key(url) in pages for gone, url in zip(elsewhere, urls, strict=True)
        ]
        yield batch.filter(pa.array([not r for r in replaced]))


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

"""The dedup stage: URL duplicates, exact duplicates by normalised-text hash, near-duplicates by MinHash LSH.

Three passes, each bounded in memory by a shard: (1) per input shard, a signature shard (exact hash, length, URL and
MinHash values, computed a batch at a time in numpy); (2) one pass over the compact signatures (after those of
documents kept by earlier runs, when incremental) builds the LSH index and the clusters; (3) per input shard, the
documents that survive are written. The survivor of a cluster is its earliest document (shard, then row) or, with
`survivor: longest`, its longest one, ties going to the earliest.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gristmill.conf.schema import DedupConfig
from gristmill.tasks.dedup import report
from gristmill.tasks.dedup.clusters import UnionFind, survivors
from gristmill.tasks.dedup.exact import Normalizer
from gristmill.tasks.dedup.index import KeptIndex, NearIndex, index_schema
from gristmill.tasks.dedup.minhash import MinHasher, Shingler, estimated_jaccard, lean
from gristmill.tasks.documents import DOCUMENT_SCHEMA
from gristmill.tasks.shards import UnitRecord, iter_batches, write_shard
from gristmill.tasks.stage import StageContext, StageResult
from gristmill.tasks.urls import same_page_key


def signature_schema(num_perm: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("row", pa.int32(), nullable=False),
            pa.field("has_text", pa.bool_(), nullable=False),
            pa.field("exact_hash", pa.binary(8), nullable=False),
            pa.field("length", pa.int32(), nullable=False),
            pa.field("quality", pa.float32(), nullable=False),
            pa.field("url", pa.string()),
            pa.field("minhash", pa.list_(pa.uint32(), num_perm), nullable=False),
        ]
    )


def key(shard_index: int, row: int) -> int:
    """A document's place in the corpus as one sortable int: earlier shard, then earlier row."""
    return (shard_index << 32) | row


def hasher(cfg: DedupConfig) -> MinHasher:
    n = cfg.shingle_chars if cfg.shingle == "char" else cfg.shingle_words
    return MinHasher(cfg.num_perm, cfg.seed, Shingler(cfg.shingle, n))


def normalizer(cfg: DedupConfig) -> Normalizer:
    return Normalizer(cfg.exact_lowercase, cfg.exact_punctuation, cfg.exact_digits)


def sign_batch(batch: pa.RecordBatch, cfg: DedupConfig, minhasher: MinHasher, first_row: int) -> pa.RecordBatch:
    """The signature rows of one batch of documents."""
    texts = batch.column("text")
    has_text = pc.fill_null(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(texts)), 0), False)
    sigs = minhasher.batch(pc.if_else(has_text, texts, pa.scalar(None, texts.type)))
    schema = signature_schema(cfg.num_perm)
    columns = [
        pa.array(np.arange(first_row, first_row + batch.num_rows, dtype=np.int32)),
        has_text,
        pa.array(normalizer(cfg).hashes(texts), pa.binary(8)),
        pc.fill_null(pc.utf8_length(texts), 0).cast(pa.int32()),
        alpha_word_share(texts),
        batch.column("url"),
        pa.FixedSizeListArray.from_arrays(pa.array(sigs.reshape(-1)), cfg.num_perm),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def alpha_word_share(texts: pa.Array) -> pa.Array:
    """Share of whitespace-separated words with a letter (Gopher's alphabetic-word ratio): the `quality` survivor
    rule keeps the cluster member with the most prose and the least markup, numbers and symbols."""
    words = pc.split_pattern_regex(pc.fill_null(texts, ""), r"\s+")
    flat = pc.list_flatten(words)
    alpha = pc.match_substring_regex(flat, r"[^\W\d_]").to_numpy(zero_copy_only=False)
    nonempty = pc.greater(pc.utf8_length(flat), 0).to_numpy(zero_copy_only=False)
    parents = pc.list_parent_indices(words).to_numpy()
    n = len(texts)
    with_letter = np.bincount(parents, weights=alpha & nonempty, minlength=n)
    total = np.bincount(parents, weights=nonempty, minlength=n)
    return pa.array(np.divide(with_letter, total, out=np.zeros(n), where=total > 0).astype(np.float32))


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
            info = write_shard(sig_dir / path.name, rows, schema)  # streamed: memory is one batch
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
    for path in prior:
        dedup.add_prior(kept_index.read(path))
    removed_fresh, stats, sizes, pairs = dedup.run([sig_paths[i] for i in fresh])
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


def find_duplicates(signature_paths: list[Path], cfg: DedupConfig) -> tuple[dict[int, set[int]], dict]:
    """Rows to drop per shard index, and cluster statistics."""
    removed, stats, _, _ = Deduplicator(cfg).run(signature_paths)
    return removed, stats


class Deduplicator:
    """One streaming pass over signatures: first-seen URL and exact hash, LSH candidates, then clusters."""

    def __init__(self, cfg: DedupConfig) -> None:
        self.cfg = cfg
        self.near = NearIndex(cfg) if cfg.near else None
        self.first_by_hash: dict[bytes, int] = {}
        self.first_by_url: dict[str, int] = {}
        self.reasons: dict[int, str] = {}
        self.clusters = UnionFind()
        self.lengths: dict[int, int] = {}
        self.quality: dict[int, float] = {}
        self.urls: dict[int, str] = {}
        self.sigs: dict[int, np.ndarray] = {}  # of exact/URL duplicates, for the removed-pairs report
        self.copy_of: dict[int, int] = {}  # exact/URL duplicate -> the first document it copies
        self.prior_shards = 0
        self.prior_docs = 0

    def add_prior(self, batches: Iterator[pa.RecordBatch]) -> None:
        """Documents kept by an earlier run: indexed, never removed (they were published already)."""
        shard, row = self.prior_shards, 0
        self.prior_shards += 1
        for batch in batches:
            sigs = _signatures(batch, self.cfg.num_perm)
            cols = zip(batch.column("url").to_pylist(), batch.column("exact_hash").to_pylist(), sigs, strict=True)
            for url, digest, sig in cols:
                doc = key(shard, row)
                row += 1
                self.first_by_hash.setdefault(digest, doc)
                if url:
                    self.first_by_url.setdefault(same_page_key(url), doc)
                if self.near:
                    self.near.lsh.insert(doc, lean(sig, self.cfg.seed), check_duplication=False)
                    self.near.signatures[doc] = sig
                self.urls[doc] = url
        self.prior_docs += row

    def run(self, signature_paths: list[Path]) -> tuple[dict[int, set[int]], dict, list[int], list[dict]]:
        try:
            docs_in = sum(self._shard(self.prior_shards + i, p) for i, p in enumerate(signature_paths))
        finally:
            if self.near:
                self.near.close()
        groups = self.clusters.clusters()
        keep = survivors(groups, self.cfg.survivor, self._rank, self._pinned)
        pairs = self._assign_near(groups, keep)
        removed: dict[int, set[int]] = {}
        for doc in self.reasons:
            removed.setdefault((doc >> 32) - self.prior_shards, set()).add(doc & 0xFFFFFFFF)
        sizes = [len(m) for m in groups.values() if len(m) > 1]
        counts = Counter(self.reasons.values())
        kinds = ["empty", "exact", "near"] + (["url"] if self.cfg.url else [])
        stats: dict[str, Any] = {
            "docs_in": docs_in,
            "removed": {reason: counts.get(reason, 0) for reason in kinds},
            "clusters": report.cluster_stats(sizes),
        }
        if self.cfg.incremental:
            stats["prior_docs"] = self.prior_docs
        return removed, stats, sizes, pairs

    def _rank(self, doc: int) -> float:
        """What the survivor rule maximises (ties go to the earliest document)."""
        if self.cfg.survivor == "quality":
            return self.quality.get(doc, 0.0)
        return self.lengths.get(doc, 0)

    def _pinned(self, doc: int) -> bool:
        return (doc >> 32) < self.prior_shards

    def _shard(self, shard_index: int, path: Path) -> int:
        docs = 0
        for batch in iter_batches([path]):
            rows = batch.column("row").to_numpy()
            sigs = _signatures(batch, self.cfg.num_perm)
            cols = (batch.column(c).to_pylist() for c in ("has_text", "exact_hash", "length", "quality", "url"))
            for row, text_ok, digest, length, quality, url, sig in zip(rows, *cols, sigs, strict=True):
                docs += 1
                doc = key(shard_index, int(row))
                if self.cfg.survivor == "quality":  # only then: a float per document is memory
                    self.quality[doc] = quality
                self._document(doc, text_ok, digest, length, url, sig)
        return docs

    def _document(self, doc: int, text_ok: bool, digest: bytes, length: int, url: str, sig: np.ndarray) -> None:
        self.urls[doc] = url
        if not text_ok:
            self.reasons[doc] = "empty"
            return
        self.lengths[doc] = length
        if self.cfg.url and url:
            first = self.first_by_url.setdefault(same_page_key(url), doc)
            if first != doc:
                return self._duplicate(doc, first, "url", sig)
        if self.cfg.exact:
            first = self.first_by_hash.setdefault(digest, doc)
            if first != doc:
                return self._duplicate(doc, first, "exact", sig)
        if self.near:
            for other in self.near.match(doc, sig):
                self.clusters.union(other, doc)

    def _duplicate(self, doc: int, first: int, reason: str, sig: np.ndarray) -> None:
        self.reasons[doc] = reason
        self.sigs[doc] = sig
        self.copy_of[doc] = first
        self.clusters.union(first, doc)

    def _spare(self, survivor: int) -> None:
        """The survivor stays even when it was found as an exact/URL copy (`longest` or `quality` can pick a later
        copy): it loses its removal reason and the document it copied, if not already removed, takes it over."""
        reason = self.reasons.pop(survivor, None)
        first = self.copy_of.get(survivor)
        if reason is not None and first is not None and first != survivor:
            self.reasons.setdefault(first, reason)
            self.sigs.setdefault(first, self.near.signatures.get(first) if self.near else None)

    def _assign_near(self, groups: dict[int, list[int]], keep: dict[int, int]) -> list[dict[str, Any]]:
        """Every cluster member but the survivor goes; those not already exact/URL copies go as near-duplicates."""
        pairs = []
        indexed = self.near.signatures if self.near else {}
        for root, members in groups.items():
            survivor = keep[root]
            self._spare(survivor)
            for doc in sorted(members):
                if doc == survivor or self._pinned(doc):  # a new document can link two old ones: both stay
                    continue
                self.reasons.setdefault(doc, "near")
                a, b = self.sigs.get(doc, indexed.get(doc)), indexed.get(survivor, self.sigs.get(survivor))
                jaccard = estimated_jaccard(a, b) if a is not None and b is not None else None
                pairs.append(
                    {
                        "removed_url": self.urls.get(doc),
                        "kept_url": self.urls.get(survivor),
                        "reason": self.reasons[doc],
                        "estimated_jaccard": jaccard,
                    }
                )
        return pairs


def _signatures(batch: pa.RecordBatch, num_perm: int) -> np.ndarray:
    return batch.column("minhash").flatten().to_numpy().reshape(batch.num_rows, num_perm)


def _kept_signatures(paths: list[Path], removed: dict[int, set[int]], num_perm: int) -> Iterator[pa.RecordBatch]:
    """Signature rows of the documents this run kept, in the index's schema."""
    schema = index_schema(num_perm)
    for index, path in enumerate(paths):
        drop = removed.get(index, set())
        for batch in iter_batches([path]):
            rows = batch.column("row").to_pylist()
            keep = pa.array([r not in drop for r in rows]) if drop else pa.array([True] * len(rows))
            mask = pc.and_(keep, batch.column("has_text"))
            yield batch.filter(mask).select(schema.names).cast(schema)


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

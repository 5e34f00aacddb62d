"""Which documents go: first-seen URL and exact hash, then near-duplicate clusters over LSH candidate pairs.

One streaming pass over the signature rows records URL and exact duplicates and keeps, per document left for the
near-duplicate search, its key, its MinHash values and its band keys (about 0.7 KB). Then, over whole arrays:
candidate pairs (band keys sorted per band; documents kept by earlier runs answer a bulk query of datasketch's
MinHashLSH), verification of each pair, connected components. The union-find then holds URL, exact and near links
alike, and the survivor rule picks one document per cluster.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from gristmill.conf.schema import DedupConfig
from gristmill.tasks.dedup import report
from gristmill.tasks.dedup.candidates import (
    band_keys,
    components,
    estimate_margin,
    estimated_jaccards,
    exact_jaccards,
    layout,
    pairs_within,
    unique_shingles,
)
from gristmill.tasks.dedup.clusters import UnionFind, survivors
from gristmill.tasks.dedup.index import NearIndex
from gristmill.tasks.dedup.minhash import Shingles, estimated_jaccard
from gristmill.tasks.dedup.signatures import hasher
from gristmill.tasks.shards import iter_batches
from gristmill.tasks.urls import same_page_key

_ROW = 0xFFFFFFFF
_SHINGLE_DOCS = 4096  # doubtful documents' texts held at once for re-shingling (a few MB)


class Deduplicator:
    """First-seen URL and exact hash, LSH candidates, verification, then clusters and their survivors.

    A document is known by its key, shard << 32 | row (shards of earlier runs first), so sorting keys sorts the
    corpus; in the near-duplicate search also by its row, its place in the arrays of keys and signatures."""

    def __init__(self, cfg: DedupConfig, every_pair: bool = False) -> None:
        """`every_pair` verifies every candidate pair, even inside a cluster already, and keeps the verified ones
        in `near_links`: for scoring pairs (benchmarks), not for runs."""
        self.cfg = cfg
        self.every_pair = every_pair
        self.bands, self.rows = layout(cfg)
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
        # Documents in the near-duplicate search, by row (documents kept by earlier runs first): key, MinHash
        # values, band keys (numpy candidates, this run's rows only) and pairs found by datasketch queries.
        self._keys: list[np.ndarray] = []
        self._signatures: list[np.ndarray] = []
        self._bands: list[np.ndarray] = []
        self._queried: list[np.ndarray] = []
        self._indexed = 0
        self.prior_rows = 0  # rows of documents kept by earlier runs come first
        self.text_paths: list[Path] = []
        self.near_pairs = {"candidates": 0, "verified": 0}
        self._indexed_signatures = _Rows.EMPTY
        self.near_links = np.zeros((0, 2), np.int64)  # with `every_pair`: keys of each verified pair

    def add_prior(self, batches: Iterator[pa.RecordBatch]) -> None:
        """Documents kept by an earlier run: indexed, never removed (they were published already)."""
        shard, row = self.prior_shards, 0
        self.prior_shards += 1
        for batch in batches:
            sigs = _signatures(batch, self.cfg.num_perm)
            docs = np.arange(row, row + batch.num_rows, dtype=np.int64) | (shard << 32)
            for doc, url, digest in zip(docs.tolist(), *_columns(batch, "url", "exact_hash"), strict=True):
                self.first_by_hash.setdefault(digest, doc)
                if url:
                    self.first_by_url.setdefault(same_page_key(url), doc)
                self.urls[doc] = url
            row += batch.num_rows
            if self.near:
                self.near.insert_many(self._indexed, sigs)
                self._append(docs, sigs)
        self.prior_docs += row

    def run(
        self, signature_paths: list[Path], text_paths: list[Path]
    ) -> tuple[dict[int, set[int]], dict, list[int], list[dict]]:
        """`text_paths` are the input shards the signature shards were made from, in the same order: verification
        by shingles re-reads the texts of doubtful pairs from them."""
        if len(text_paths) != len(signature_paths):
            raise ValueError(f"{len(signature_paths)} signature shards but {len(text_paths)} input shards")
        self.text_paths = text_paths
        self.prior_rows = self._indexed
        try:
            docs_in = sum(self._shard(self.prior_shards + i, p) for i, p in enumerate(signature_paths))
        finally:
            if self.near:
                self.near.close()
        if self.near:
            self._near_clusters()
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
        if self.near:
            stats["near_pairs"] = dict(self.near_pairs)
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
            keys = batch.column("row").to_numpy().astype(np.int64) | (shard_index << 32)
            sigs = _signatures(batch, self.cfg.num_perm)
            if self.cfg.survivor == "quality":  # only then: a float per document is memory
                self.quality.update(zip(keys.tolist(), batch.column("quality").to_pylist(), strict=True))
            near = self._documents_by_url(batch, keys, sigs) if self.cfg.url else self._documents(batch, keys, sigs)
            docs += batch.num_rows
            if self.near and near.any():
                self._search(keys[near], sigs[near])
        return docs

    def _documents(self, batch: pa.RecordBatch, keys: np.ndarray, sigs: np.ndarray) -> np.ndarray:
        """Record a batch's empty documents and exact duplicates, column by column (a Python call per document cost
        a tenth of the stage); True for the documents that go on to the near-duplicate search."""
        self.urls.update(zip(keys.tolist(), batch.column("url").to_pylist(), strict=True))
        has_text = batch.column("has_text").to_numpy(zero_copy_only=False)
        self.reasons.update(dict.fromkeys(keys[~has_text].tolist(), "empty"))
        rows = np.flatnonzero(has_text)
        texts = keys[rows].tolist()
        self.lengths.update(zip(texts, batch.column("length").to_numpy()[rows].tolist(), strict=True))
        near = has_text.copy()
        if self.cfg.exact:  # first seen wins, in batch order, as one document at a time
            digests = batch.column("exact_hash").take(pa.array(rows)).to_pylist()
            first = [self.first_by_hash.setdefault(digest, doc) for digest, doc in zip(digests, texts, strict=True)]
            for at in np.flatnonzero(np.array(first, np.int64) != keys[rows]).tolist():
                self._duplicate(texts[at], first[at], "exact", sigs[rows[at]])
                near[rows[at]] = False
        return near

    def _documents_by_url(self, batch: pa.RecordBatch, keys: np.ndarray, sigs: np.ndarray) -> np.ndarray:
        """`_documents` with URL duplicates first: a Python call per document (its URL's key) anyway."""
        cols = _columns(batch, "has_text", "exact_hash", "length", "url")
        near = np.zeros(batch.num_rows, dtype=bool)
        for i, (doc, text_ok, digest, length, url) in enumerate(zip(keys.tolist(), *cols, strict=True)):
            near[i] = self._document(doc, text_ok, digest, length, url, sigs[i])
        return near

    def _document(self, doc: int, text_ok: bool, digest: bytes, length: int, url: str, sig: np.ndarray) -> bool:
        """Record URL and exact duplicates; True when the document goes on to the near-duplicate search."""
        self.urls[doc] = url
        if not text_ok:
            self.reasons[doc] = "empty"
            return False
        self.lengths[doc] = length
        if self.cfg.url and url:
            first = self.first_by_url.setdefault(same_page_key(url), doc)
            if first != doc:
                self._duplicate(doc, first, "url", sig)
                return False
        if self.cfg.exact:
            first = self.first_by_hash.setdefault(digest, doc)
            if first != doc:
                self._duplicate(doc, first, "exact", sig)
                return False
        return True

    def _duplicate(self, doc: int, first: int, reason: str, sig: np.ndarray) -> None:
        self.reasons[doc] = reason
        self.sigs[doc] = sig.copy()  # a row of the batch's buffer would keep the whole batch alive
        self.copy_of[doc] = first
        self.clusters.union(first, doc)

    def _append(self, docs: np.ndarray, sigs: np.ndarray) -> int:
        first = self._indexed
        self._keys.append(docs)
        self._signatures.append(sigs)
        self._indexed += len(docs)
        return first

    def _search(self, docs: np.ndarray, sigs: np.ndarray) -> None:
        """Put this batch's documents into the near-duplicate search: candidates among earlier rows come from
        datasketch (documents kept before, or all with `candidates: datasketch`), within the run from band keys."""
        first = self._append(docs, sigs)
        if self.cfg.candidates == "datasketch":
            found = [self.near.match(row, sig) for row, sig in enumerate(sigs, first)]
        else:
            self._bands.append(band_keys(sigs, self.bands, self.rows))
            found = self.near.query_many(sigs) if self.near.size else []  # no earlier run: nothing to ask
        pairs = [(other, row) for row, hits in enumerate(found, first) for other in hits]
        if pairs:
            self._queried.append(np.array(pairs, dtype=np.int64))

    def _near_clusters(self) -> None:
        """Candidate pairs a chunk at a time: those already linked or already judged are dropped, the rest judged
        by their signature estimate where it is clear, linked if they pass; the doubtful ones get their exact
        Jaccard at the end, all in one pass over the input. Then the components go into the union-find."""
        keys = np.concatenate(self._keys) if self._keys else np.zeros(0, np.int64)
        signatures = np.concatenate(self._signatures) if self._signatures else None
        label = np.arange(len(keys))
        judged = np.zeros(0, np.int64)  # codes of pairs rejected or left in doubt: other bands find them again
        doubtful, links = [], []
        for pairs in self._candidates():
            if not self.every_pair:  # a pair inside one component changes nothing: skip its verification
                pairs = pairs[label[pairs[:, 0]] != label[pairs[:, 1]]]
            pairs = pairs[~_in_sorted(_codes(pairs), judged)]
            self.near_pairs["candidates"] += len(pairs)
            if self.cfg.verify and len(pairs):
                verdict = self._verdicts(pairs, signatures)
                judged = _sorted_union(judged, _codes(pairs[verdict <= 0]))
                doubtful.append(pairs[verdict == 0])
                pairs = pairs[verdict > 0]
            label = self._link(label, pairs, keys, links)
        if doubtful:
            pairs = np.concatenate(doubtful)
            if not self.every_pair:
                pairs = pairs[label[pairs[:, 0]] != label[pairs[:, 1]]]
            if len(pairs):
                pairs = pairs[self._exact_jaccards(pairs, keys) >= self.cfg.threshold]
            label = self._link(label, pairs, keys, links)
        if links:
            self.near_links = np.concatenate(links)
        for row in np.flatnonzero(label != np.arange(len(keys))).tolist():
            self.clusters.union(int(keys[label[row]]), int(keys[row]))
        self._indexed_signatures = _Rows(keys, signatures)

    def _link(self, label: np.ndarray, pairs: np.ndarray, keys: np.ndarray, links: list[np.ndarray]) -> np.ndarray:
        self.near_pairs["verified"] += len(pairs)
        if self.every_pair:
            links.append(keys[pairs])
        return components(label, pairs)

    def _candidates(self) -> Iterator[np.ndarray]:
        """Candidate pairs of rows (earlier, later): those datasketch answered, then those of the band keys. With
        `every_pair`, all at once and each once."""
        chunks = iter(self._queried)
        if self._bands:
            bands = np.concatenate(self._bands)
            chunks = chain(chunks, (pairs + self.prior_rows for pairs in pairs_within(bands)))
        if not self.every_pair:
            yield from chunks
            return
        every = [pairs for pairs in chunks]
        yield np.unique(np.concatenate(every), axis=0) if every else np.zeros((0, 2), np.int64)

    def _verdicts(self, pairs: np.ndarray, signatures: np.ndarray) -> np.ndarray:
        """1 (passes), -1 (fails) or 0 (in doubt) per pair, from the signature estimate. With `verify_by:
        shingles`, a pair within this run whose estimate is near the threshold is in doubt; pairs with a document
        kept by an earlier run (its text is gone) are judged by the estimate alone."""
        estimate = estimated_jaccards(signatures, pairs)
        verdict = np.where(estimate >= self.cfg.threshold, 1, -1)
        if self.cfg.verify_by == "shingles":
            near = np.abs(estimate - self.cfg.threshold) < estimate_margin(self.cfg.threshold, self.cfg.num_perm)
            verdict[near & (pairs[:, 0] >= self.prior_rows)] = 0
        return verdict

    def _exact_jaccards(self, pairs: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Exact shingle Jaccard of pairs of this run's rows, re-shingling each document once."""
        rows, local = np.unique(pairs, return_inverse=True)
        return exact_jaccards(unique_shingles(self._shingles(keys[rows])), local.reshape(-1, 2))

    def _shingles(self, docs: np.ndarray) -> Shingles:
        """Shingles of these documents (ascending keys), re-read from the input shards one shard at a time and
        shingled a few thousand at a time (one call per shard cost more than the shingling of its few documents)."""
        shingler = hasher(self.cfg).shingler
        parts: list[Shingles] = []
        texts: list[pa.Array] = []
        held = 0  # documents in `texts`
        shards = (docs >> 32) - self.prior_shards
        for shard in np.unique(shards).tolist():
            wanted = docs[shards == shard] & _ROW
            texts.append(_take_texts(self.text_paths[shard], wanted))
            held += len(texts[-1])
            if held >= _SHINGLE_DOCS:
                parts.append(shingler.batch(pa.concat_arrays(texts)))
                texts, held = [], 0
        if texts or not parts:
            parts.append(shingler.batch(pa.concat_arrays(texts) if texts else pa.array([], pa.string())))
        hashes = np.concatenate([p.hashes for p in parts])
        counts = np.concatenate([np.diff(p.offsets) for p in parts])
        return Shingles(hashes, np.concatenate(([0], np.cumsum(counts))).astype(np.int64))

    def _spare(self, survivor: int) -> None:
        """The survivor stays even when it was found as an exact/URL copy (`longest` or `quality` can pick a later
        copy): it loses its removal reason and the document it copied, if not already removed, takes it over."""
        reason = self.reasons.pop(survivor, None)
        first = self.copy_of.get(survivor)
        if reason is not None and first is not None and first != survivor:
            self.reasons.setdefault(first, reason)
            if survivor in self.sigs:
                self.sigs.setdefault(first, self.sigs[survivor])

    def _assign_near(self, groups: dict[int, list[int]], keep: dict[int, int]) -> list[dict[str, Any]]:
        """Every cluster member but the survivor goes; those not already exact/URL copies go as near-duplicates."""
        pairs = []
        indexed = self._indexed_signatures
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


class _Rows:
    """The MinHash values of the documents in the near-duplicate search, looked up by key (keys ascend)."""

    def __init__(self, keys: np.ndarray, signatures: np.ndarray | None) -> None:
        self.keys, self.signatures = keys, signatures

    def get(self, doc: int, default: np.ndarray | None = None) -> np.ndarray | None:
        at = int(np.searchsorted(self.keys, doc))
        if at < len(self.keys) and self.keys[at] == doc:
            return self.signatures[at]
        return default


_Rows.EMPTY = _Rows(np.zeros(0, np.int64), None)


def _signatures(batch: pa.RecordBatch, num_perm: int) -> np.ndarray:
    return batch.column("minhash").flatten().to_numpy().reshape(batch.num_rows, num_perm)


def _codes(pairs: np.ndarray) -> np.ndarray:
    return (pairs[:, 0] << 32) | pairs[:, 1]


def _in_sorted(values: np.ndarray, sorted_unique: np.ndarray) -> np.ndarray:
    """np.isin against a sorted array, by binary search (np.isin's hash-based unique cost 4% of the stage)."""
    if not len(sorted_unique):
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_unique, values), len(sorted_unique) - 1)
    return sorted_unique[at] == values


def _sorted_union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """np.union1d by sorting: numpy's hash-based unique cost 3% of the whole stage here."""
    both = np.concatenate((a, b))
    both.sort()
    return both[np.concatenate(([True], both[1:] != both[:-1]))] if len(both) else both


def _columns(batch: pa.RecordBatch, *names: str) -> list[list]:
    return [batch.column(name).to_pylist() for name in names]


def _take_texts(path: Path, rows: np.ndarray) -> pa.Array:
    """The texts at these (ascending) rows of one input shard, streamed a batch at a time."""
    taken, offset = [], 0
    for batch in iter_batches([path], ["text"]):
        inside = rows[(rows >= offset) & (rows < offset + batch.num_rows)] - offset
        if len(inside):
            taken.append(batch.column("text").take(pa.array(inside)))
        offset += batch.num_rows
    return pa.concat_arrays(taken) if taken else pa.array([], pa.string())

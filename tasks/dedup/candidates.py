"""Near-duplicate candidates and their verification, over whole arrays of signatures.

Within a run, candidate pairs come from band keys in numpy: each band of `rows` MinHash values is hashed to one
uint64, each band's keys are sorted, and documents with equal keys are candidates of each other, exactly the pairs
datasketch's `MinHashLSH` returns (it keys a bucket on the band's bytes; here a 64-bit hash of them stands in: two
different bands of n documents collide with probability ~n^2 / 2^65, for 10M documents and 21 bands about once in
20,000 runs, and verification rejects such a pair anyway). Documents kept by earlier runs stay in datasketch's
`MinHashLSH` (in memory or Redis) and are queried a batch at a time.

With verification a candidate pair counts only if its Jaccard reaches the threshold: the signatures' estimate
decides where it is clear, the exact Jaccard of the two shingle sets (re-shingled from the input) elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from datasketch import MinHashLSH

from gristmill.conf.schema import DedupConfig
from gristmill.tasks.dedup.minhash import Shingles
from gristmill.tasks.dedup.tokens import fmix64

# Candidate probability the default layout reaches at J = threshold when pairs are verified: the band layout is
# the one with the most rows per band (fewest chance candidates) that still misses at most 1 pair in 200 there.
CANDIDATE_RECALL = 0.995
_K = np.uint64(0x9E3779B97F4A7C15)
_PAIR_CHUNK = 1 << 22  # shingles per verification chunk: bounds the transient arrays (~100 MB at most)
_PAIRS_PER_CHUNK = 1 << 20  # candidate pairs handled at once (16 MB), however big a bucket is


def candidate_probability(jaccard: float, bands: int, rows: int) -> float:
    """The LSH S-curve: chance that two documents of this Jaccard share at least one band."""
    return 1.0 - (1.0 - jaccard**rows) ** bands


def layout(cfg: DedupConfig) -> tuple[int, int]:
    """(bands, rows): the configured ones; with verification, a layout sensitive enough to miss almost no pair at
    the threshold (verification removes the extra candidates); without, datasketch's own optimum for the
    threshold (it weighs false positives and negatives equally, since nothing checks the candidates)."""
    if cfg.bands is not None:
        return cfg.bands, cfg.rows
    if cfg.verify:
        for rows in range(cfg.num_perm // 2, 0, -1):
            bands = cfg.num_perm // rows
            if candidate_probability(cfg.threshold, bands, rows) >= CANDIDATE_RECALL:
                return bands, rows
    lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm)
    return lsh.b, lsh.r


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One uint64 per (document, band): a hash of the band's `rows` values (docs x bands)."""
    values = signatures[:, : bands * rows].reshape(len(signatures), bands, rows).astype(np.uint64)
    keys = values[:, :, 0].copy()
    for j in range(1, rows):
        keys = keys * _K + values[:, :, j]
    return fmix64(keys)


def pairs_within(keys: np.ndarray, limit: int = _PAIRS_PER_CHUNK) -> Iterator[np.ndarray]:
    """Every pair (i, j), i < j, of rows of `keys` (docs x bands) that share a band key, as int64 arrays (pairs x 2)
    of at most about `limit` pairs, band after band; a pair sharing several bands comes once per band. Quadratic in
    the size of a bucket, as datasketch's query-then-insert is, but never held whole: a bucket of 10,000 templated
    pages is 50M pairs."""
    for band in range(keys.shape[1]):
        yield from _bucket_pairs(keys[:, band], limit)


def _bucket_pairs(column: np.ndarray, limit: int) -> Iterator[np.ndarray]:
    """The pairs of one band, a chunk of first elements at a time."""
    order = np.argsort(column, kind="stable")  # stable: within a bucket, rows stay ascending
    sorted_keys = column[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1])))
    sizes = np.diff(np.append(starts, len(column)))
    if not (sizes > 1).any():
        return
    # For the element at position p of a bucket of size g, its partners are the g - 1 - p elements after it.
    later = np.repeat(sizes, sizes) - 1 - (np.arange(len(column)) - np.repeat(starts, sizes))
    ends = np.cumsum(later)
    lo = 0
    while lo < len(column) and (done := int(ends[lo - 1]) if lo else 0) < ends[-1]:
        hi = max(lo + 1, int(np.searchsorted(ends, done + limit, side="right")))
        counts = later[lo:hi]
        first = np.repeat(np.arange(lo, hi), counts)
        second = first + 1 + np.arange(len(first)) - np.repeat(np.cumsum(counts) - counts, counts)
        if len(first):
            yield np.stack((order[first], order[second]), axis=1).astype(np.int64)
        lo = hi


def query_in_bulk(lsh: MinHashLSH, signatures: np.ndarray) -> list[set]:
    """The keys indexed in a datasketch `MinHashLSH` that share a band with each signature, one round trip per
    band for the whole batch (`getmany`: a Redis pipeline when the index lives in Redis)."""
    found: list[set] = [set() for _ in range(len(signatures))]
    for (start, end), table in zip(lsh.hashranges, lsh.hashtables, strict=True):
        band = [lsh._H(sig[start:end]) for sig in signatures]  # datasketch's own bucket key (byte-swapped values)
        for hits, keys in zip(found, table.getmany(*band), strict=True):
            hits.update(keys)
    if lsh.prepickle:
        import pickle

        return [{pickle.loads(k) for k in hits} for hits in found]
    return found


def estimate_margin(threshold: float, num_perm: int) -> float:
    """How far from the threshold a signature estimate must be to decide a pair alone: 4.5 standard deviations of
    the estimate (sqrt(J (1 - J) / num_perm)), so it is wrong about once in 300,000 pairs at the threshold. Only the
    pairs within it need their exact Jaccard."""
    return 4.5 * (threshold * (1 - threshold) / num_perm) ** 0.5


def estimated_jaccards(signatures: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Share of equal MinHash values of each pair of rows, a chunk of pairs at a time."""
    out = np.empty(len(pairs))
    step = max(1, _PAIR_CHUNK // signatures.shape[1])
    for lo in range(0, len(pairs), step):
        a, b = pairs[lo : lo + step, 0], pairs[lo : lo + step, 1]
        out[lo : lo + step] = (signatures[a] == signatures[b]).mean(axis=1)
    return out


def unique_shingles(shingles: Shingles) -> Shingles:
    """Each document's shingle hashes, sorted and without repeats (so set sizes are lengths)."""
    docs = np.repeat(np.arange(len(shingles.offsets) - 1, dtype=np.uint64), np.diff(shingles.offsets))
    codes = np.sort((docs << np.uint64(32)) | shingles.hashes.astype(np.uint64))  # sorting beats np.unique's hash
    codes = codes[np.concatenate(([True], codes[1:] != codes[:-1]))]
    counts = np.bincount((codes >> np.uint64(32)).astype(np.int64), minlength=len(shingles.offsets) - 1)
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    return Shingles((codes & np.uint64(0xFFFFFFFF)).astype(np.uint32), offsets)


def exact_jaccards(sets: Shingles, pairs: np.ndarray) -> np.ndarray:
    """Exact Jaccard of each pair of documents of `sets` (from `unique_shingles`), in chunks of pairs: both sides'
    shingles are tagged with the pair's number, sorted together, and equal neighbours are the intersection."""
    sizes = np.diff(sets.offsets)
    out = np.empty(len(pairs))
    for lo, hi in _chunks(sizes[pairs[:, 0]] + sizes[pairs[:, 1]]):
        a, b = pairs[lo:hi, 0], pairs[lo:hi, 1]
        tagged = np.concatenate((_tagged(sets, a), _tagged(sets, b)))
        tagged.sort()
        equal = tagged[1:] == tagged[:-1]
        common = np.bincount((tagged[1:][equal] >> np.uint64(32)).astype(np.int64), minlength=hi - lo)
        union = sizes[a] + sizes[b] - common
        out[lo:hi] = np.divide(common, union, out=np.ones(hi - lo), where=union > 0)
    return out


def _tagged(sets: Shingles, docs: np.ndarray) -> np.ndarray:
    """The shingles of `docs` (one entry per pair), each as pair number << 32 | shingle hash."""
    starts, sizes = sets.offsets[docs], np.diff(sets.offsets)[docs]
    flat = np.repeat(starts - np.concatenate(([0], np.cumsum(sizes)[:-1])), sizes) + np.arange(sizes.sum())
    pair = np.repeat(np.arange(len(docs), dtype=np.uint64), sizes)
    return (pair << np.uint64(32)) | sets.hashes[flat].astype(np.uint64)


def _chunks(weights: np.ndarray) -> Iterator[tuple[int, int]]:
    """Runs of pairs whose shingles add up to about `_PAIR_CHUNK` (at least one pair each)."""
    ends = np.cumsum(weights)
    lo = 0
    while lo < len(weights):
        base = ends[lo - 1] if lo else 0
        hi = max(lo + 1, int(np.searchsorted(ends, base + _PAIR_CHUNK, side="right")))
        yield lo, hi
        lo = hi


def components(label: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Connected components after adding `pairs` to a graph whose components `label` gives (np.arange(n) for none
    yet): for each node, the smallest node of its component.

    Root hooking with pointer jumping, in whole-array steps: each round every edge hooks the larger of its two
    ends' roots under the smaller, then labels follow their own labels until they stop moving (so every node points
    at its root again). It stops when no edge joins two roots; since a component's smallest node is never hooked
    under anything, it is then every member's label."""
    label = label.copy()
    a, b = pairs[:, 0], pairs[:, 1]
    while len(pairs):
        root_a, root_b = label[a], label[b]
        if (root_a == root_b).all():
            break
        low = np.minimum(root_a, root_b)
        np.minimum.at(label, root_a, low)
        np.minimum.at(label, root_b, low)
        while True:
            jumped = label[label]
            if (jumped == label).all():
                break
            label = jumped
    return label

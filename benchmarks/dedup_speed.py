"""Dedup speed: the whole stage against datasketch, and MinHash signatures alone against datasketch and rensa.

    .venv/bin/python benchmarks/dedup_speed.py [--docs 20000] [--plain-docs 4000] [--rounds 3] [--stage-only]

The stage (`execute(config, "dedup", run)` at the defaults: signature shards with exact hash, numpy band candidates,
verification, clusters, the kept documents written) runs interleaved with datasketch as a user writes the same
dedup (Python shingling, `MinHash.update_batch`, exact hash, `MinHashLSH` query-then-insert, union-find, Parquet
out) and with datasketch signatures alone; each round times all three, and the ratios come from the same round.

Signatures: documents/s at 128 permutations, Python shingling included for datasketch and rensa (they take strings),
Arrow/numpy shingling included for gristmill. Memory: tracemalloc peak during a separate 2,000-document pass
(Python and numpy allocations; rensa's Rust heap is not traced, so its figure is a lower bound).
Accuracy: mean absolute error of the Jaccard estimate against the exact Jaccard of the 5-gram shingle sets.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datasketch import MinHash, MinHashLSH

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dedup_common import _NON_WORD, articles, corpus, python_shingles  # noqa: E402

from gristmill.tasks.dedup.minhash import MinHasher, Shingler  # noqa: E402

NUM_PERM = 128
BATCH = 1024
SHARD_DOCS = 2000


def datasketch_plain(texts: list[str]) -> list[np.ndarray]:
    out = []
    for text in texts:
        sketch = MinHash(num_perm=NUM_PERM, seed=1)
        sketch.update_batch([s.encode() for s in python_shingles(text)])
        out.append(sketch.hashvalues)
    return out


def gristmill(texts: list[str]) -> list[np.ndarray]:
    hasher = MinHasher(NUM_PERM, 1, Shingler("word", 5))
    return [hasher.batch(pa.array(texts[i : i + BATCH])) for i in range(0, len(texts), BATCH)]


def rensa_plain(texts: list[str]) -> list[list[int]]:
    from rensa import RMinHash

    out = []
    for text in texts:
        sketch = RMinHash(num_perm=NUM_PERM, seed=1)
        sketch.update(python_shingles(text))
        out.append(sketch.digest())
    return out


def rensa_hash_only(shingled: list[list[str]]) -> list[list[int]]:
    """rensa given ready-made shingles: its Rust hashing alone, the floor a Python-shingling user cannot reach."""
    from rensa import RMinHash

    out = []
    for shingles in shingled:
        sketch = RMinHash(num_perm=NUM_PERM, seed=1)
        sketch.update(shingles)
        out.append(sketch.digest())
    return out


def datasketch_end_to_end(texts: list[str], out: Path | None = None) -> list[str]:
    """The whole dedup as a datasketch user writes it: Python shingling, `MinHash.update_batch`, an exact hash of
    the normalised text, `MinHashLSH` query-then-insert at the same threshold, union-find, the kept texts written
    to Parquet. Returns the kept texts."""
    lsh = MinHashLSH(threshold=0.8, num_perm=NUM_PERM)
    first_by_hash: dict[bytes, int] = {}
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    for i, text in enumerate(texts):
        shingled = python_shingles(text)
        digest = hashlib.blake2b(" ".join(_NON_WORD.sub(" ", text.lower()).split()).encode(), digest_size=8).digest()
        first = first_by_hash.setdefault(digest, i)
        if first != i:
            parent[i] = find(first)
            continue
        sketch = MinHash(num_perm=NUM_PERM, seed=1)
        sketch.update_batch([s.encode() for s in shingled])
        for other in lsh.query(sketch):
            a, b = sorted((find(other), find(i)))
            if a != b:
                parent[b] = a
        lsh.insert(i, sketch)
    kept = [t for i, t in enumerate(texts) if find(i) == i]
    with tempfile.TemporaryDirectory() as tmp:
        pq.write_table(pa.table({"text": kept}), out or Path(tmp) / "kept.parquet", compression="zstd")
    return kept


class StageWorkspace:
    """The corpus as a finished crawl stage (shards of 2,000 documents), so that a run times the dedup stage alone:
    signature shards, exact hash, candidates, verification, clusters, the kept documents written, the manifest."""

    def __init__(self, texts: list[str], root: Path) -> None:
        from tests.helpers import document, write_documents_stage

        self.root, self.docs = root, len(texts)
        shards = [
            [document(f"http://bench/{i}", t) for i, t in enumerate(texts[s : s + SHARD_DOCS], s)]
            for s in range(0, len(texts), SHARD_DOCS)
        ]
        write_documents_stage(root, "crawl", shards)

    def config(self, **options):
        """The pipeline's config, made once outside the timing: a run builds it once for all its stages (its
        validation reads the evaluate section's files, ~0.1 s, nothing dedup does)."""
        from gristmill.conf.schema import PipelineConfig

        return PipelineConfig(workspace=str(self.root), crawl={"seeds": ["http://bench/"]}, dedup=options)

    def run(self, config) -> dict:
        from gristmill.tasks.dedup.stage import run
        from gristmill.tasks.shards import StageOutput
        from gristmill.tasks.stage import execute

        shutil.rmtree(self.root / "dedup", ignore_errors=True)
        execute(config, "dedup", run)
        return StageOutput(self.root, "dedup").read_manifest().stats


def end_to_end(texts: list[str], plain_docs: int, rounds: int) -> None:
    """The stage against datasketch, interleaved: each round times datasketch (signatures only, and end to end) on
    the first `plain_docs` documents, then the stage on all of them, so a change of load hits both sides. Wall time
    and the process's CPU time are both reported: on a shared machine the CPU-time ratio is the steadier one."""
    with tempfile.TemporaryDirectory() as tmp:
        workspace = StageWorkspace(texts, Path(tmp))
        config = workspace.config()
        stats = workspace.run(config)  # warm-up: imports, permutations, the powers table
        sample = texts[:plain_docs]
        rows = []
        for _ in range(rounds):
            sig = clocked(datasketch_plain, sample)
            plain = clocked(datasketch_end_to_end, sample)
            stage = clocked(lambda _: workspace.run(config), texts)
            rows.append((sig, plain, stage))
    print(f"\n## The whole stage vs datasketch, {rounds} interleaved rounds\n")
    print(f"stage result: {stats['removed']}, near pairs {stats['near_pairs']}, clusters {stats['clusters']['count']}")
    print(
        "| round | datasketch signatures docs/s | datasketch end to end docs/s | stage docs/s | "
        "stage / datasketch end to end | stage / datasketch signatures | same, CPU time | same, CPU time |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for i, (sig, plain, stage) in enumerate(rows, 1):
        print(
            f"| {i} | {sig[0]:,.0f} | {plain[0]:,.0f} | {stage[0]:,.0f} | {stage[0] / plain[0]:.1f}x | "
            f"{stage[0] / sig[0]:.1f}x | {stage[1] / plain[1]:.1f}x | {stage[1] / sig[1]:.1f}x |"
        )
    for clock, at in (("wall", 0), ("CPU", 1)):
        e2e = sorted(stage[at] / plain[at] for _, plain, stage in rows)
        alone = sorted(stage[at] / sig[at] for sig, _, stage in rows)
        print(
            f"\n{clock} time: median stage / datasketch end to end {np.median(e2e):.1f}x "
            f"(range {e2e[0]:.1f}-{e2e[-1]:.1f}); stage / datasketch signatures alone {np.median(alone):.1f}x "
            f"(range {alone[0]:.1f}-{alone[-1]:.1f})"
        )


def clocked(fn: Callable[[list[str]], object], texts: list[str]) -> tuple[float, float]:
    """Documents per second of wall time and of this process's CPU time."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(texts)
    return len(texts) / (time.perf_counter() - wall), len(texts) / (time.process_time() - cpu)


def timed(fn: Callable[[list[str]], object], texts: list[str]) -> float:
    started = time.perf_counter()
    fn(texts)
    return len(texts) / (time.perf_counter() - started)


def peak_mib(fn: Callable[[list[str]], object], texts: list[str]) -> float:
    tracemalloc.start()
    fn(texts)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def accuracy(pairs: int = 600, seeds: tuple[int, ...] = (1, 2, 3, 4, 5)) -> dict[str, tuple[float, float]]:
    """(MAE, mean signed error) of each method's estimate over article pairs edited at rates from 1% to 30% of
    words, pooled over several permutation seeds: one seed's MAE moves by about +-0.002 on 600 pairs."""
    rng = random.Random(0)
    texts = articles()
    left, right = [], []
    for _ in range(pairs):
        a = rng.choice(texts)
        rate = rng.choice([0.01, 0.02, 0.05, 0.1, 0.2, 0.3])
        left.append(a)
        right.append(" ".join(w if rng.random() > rate else f"x{rng.randrange(10**6)}" for w in a.split()))
    exact = []
    for a, b in zip(left, right, strict=True):
        sa, sb = set(python_shingles(a)), set(python_shingles(b))
        exact.append(len(sa & sb) / len(sa | sb))
    errors: dict[str, list[np.ndarray]] = {}
    for seed in seeds:
        for name, estimate in estimates(left, right, seed).items():
            errors.setdefault(name, []).append(np.array(estimate) - np.array(exact))
    return {name: (float(np.mean(np.abs(e))), float(np.mean(e))) for name, e in errors.items()}


def estimates(left: list[str], right: list[str], seed: int) -> dict[str, list[float]]:
    def plain(text: str) -> MinHash:
        sketch = MinHash(num_perm=NUM_PERM, seed=seed)
        sketch.update_batch([s.encode() for s in python_shingles(text)])
        return sketch

    hasher = MinHasher(NUM_PERM, seed, Shingler("word", 5))
    ours = (hasher.batch(pa.array(left)) == hasher.batch(pa.array(right))).mean(axis=1)
    out = {
        "datasketch": [plain(a).jaccard(plain(b)) for a, b in zip(left, right, strict=True)],
        "gristmill": list(ours),
    }
    if has_rensa():
        from rensa import RMinHash

        def sketch(text: str) -> RMinHash:
            m = RMinHash(num_perm=NUM_PERM, seed=seed)
            m.update(python_shingles(text))
            return m

        out["rensa"] = [sketch(a).jaccard(sketch(b)) for a, b in zip(left, right, strict=True)]
    return out


def has_rensa() -> bool:
    try:
        import rensa  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--plain-docs", type=int, default=4_000, help="datasketch is slow: time it on a subset")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the stage against datasketch")
    parser.add_argument("--stage-only", action="store_true", help="skip the signature-only table")
    args = parser.parse_args()
    texts = corpus(args.docs)
    words = np.mean([len(t.split()) for t in texts[:1000]])
    print(f"corpus: {len(texts)} documents, {words:.0f} words each on average, {NUM_PERM} permutations")
    end_to_end(texts, args.plain_docs, args.rounds)
    if not args.stage_only:
        signatures_only(texts, args.plain_docs)


def signatures_only(texts: list[str], plain_docs: int) -> None:
    print("\n## MinHash signatures alone\n")
    # name -> (function, its input, accuracy key or None)
    methods: dict[str, tuple[Callable, list, str | None]] = {
        "datasketch plain": (datasketch_plain, texts[:plain_docs], "datasketch"),
        "gristmill vectorised": (gristmill, texts, "gristmill"),
    }
    if has_rensa():
        methods["rensa RMinHash"] = (rensa_plain, texts, "rensa")
        methods["rensa, shingles given (hashing only)"] = (rensa_hash_only, [python_shingles(t) for t in texts], None)
    gristmill(texts[:BATCH])  # warm-up: permutations, imports
    rates = {name: timed(fn, sample) for name, (fn, sample, _) in methods.items()}
    memory = {name: peak_mib(fn, sample[:2000]) for name, (fn, sample, _) in methods.items()}
    mae = accuracy()
    base = rates["datasketch plain"]
    print("| method | docs timed | docs/s | vs datasketch | peak MiB (tracemalloc, 2k docs) | Jaccard MAE | bias |")
    print("|---|---|---|---|---|---|---|")
    for name, (_, sample, key) in methods.items():
        error = f"{mae[key][0]:.4f} | {mae[key][1]:+.4f}" if key else " | "
        speed = f"{rates[name]:,.0f} | {rates[name] / base:.1f}x"
        print(f"| {name} | {len(sample):,} | {speed} | {memory[name]:.1f} | {error} |")
    if has_rensa():
        print(f"\ngristmill / rensa speed: {rates['gristmill vectorised'] / rates['rensa RMinHash']:.2f}")


if __name__ == "__main__":
    main()

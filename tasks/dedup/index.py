"""The near-duplicate index (MinHash LSH in memory or in Redis) and the persistent index of kept documents."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
from datasketch import MinHashLSH

from gristmill.conf.schema import DedupConfig
from gristmill.tasks.dedup.candidates import layout, query_in_bulk
from gristmill.tasks.dedup.minhash import lean
from gristmill.tasks.shards import iter_batches, write_shard


class NearIndex:
    """datasketch's MinHashLSH (in memory or in Redis) over signatures, keyed by the documents' row numbers.

    It holds the documents kept by earlier runs (queried a batch at a time) and, with `candidates: datasketch`,
    every document of the run (query-then-insert, one at a time: the reference the numpy path is tested against).
    It returns raw candidates; verification happens on all pairs at once (`Deduplicator`)."""

    def __init__(self, cfg: DedupConfig) -> None:
        self.cfg = cfg
        self.basename = f"{cfg.redis_basename}-{uuid.uuid4().hex[:12]}".encode()
        self.lsh = MinHashLSH(
            threshold=cfg.threshold, num_perm=cfg.num_perm, params=layout(cfg), storage_config=self._storage()
        )
        self.size = 0

    def _storage(self) -> dict:
        if self.cfg.storage == "redis":
            redis = {"host": self.cfg.redis_host, "port": self.cfg.redis_port}
            return {"type": "redis", "basename": self.basename, "redis": redis}
        return {"type": "dict"}

    def insert_many(self, first_row: int, signatures: np.ndarray) -> None:
        """Index rows first_row, first_row + 1, ... in one insertion session (buffered: a Redis pipeline)."""
        with self.lsh.insertion_session() as session:
            for row, sig in enumerate(signatures, first_row):
                session.insert(row, lean(sig, self.cfg.seed), check_duplication=False)
        self.size += len(signatures)

    def query_many(self, signatures: np.ndarray) -> list[set[int]]:
        """Indexed rows sharing a band with each signature (nothing is inserted)."""
        if not self.size:
            return [set() for _ in signatures]
        return query_in_bulk(self.lsh, signatures)

    def match(self, row: int, sig: np.ndarray) -> list[int]:
        """Indexed rows sharing a band with `sig`; then index `row` itself."""
        sketch = lean(sig, self.cfg.seed)
        found = sorted(self.lsh.query(sketch))
        self.lsh.insert(row, sketch, check_duplication=False)
        self.size += 1
        return found

    def close(self) -> None:
        """Drop this run's keys from Redis: the persistent state is the Parquet index, not the LSH buckets."""
        if self.cfg.storage != "redis":
            return
        import redis

        client = redis.Redis(host=self.cfg.redis_host, port=self.cfg.redis_port)
        keys = list(client.scan_iter(match=self.basename + b"*"))
        if keys:
            client.delete(*keys)
        client.close()


def index_schema(num_perm: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("url", pa.string()),
            pa.field("exact_hash", pa.binary(8), nullable=False),
            pa.field("length", pa.int32(), nullable=False),
            pa.field("minhash", pa.list_(pa.uint32(), num_perm), nullable=False),
            pa.field("shard", pa.string()),  # the input shard the document was kept from (null in older parts)
        ]
    )


class KeptIndex:
    """Signatures of documents kept by earlier runs: `<workspace>/dedup_index/<signature config>/<input>.parquet`.

    It lives outside the stage directory so that a rerun on new crawl data (which wipes `dedup/`) still dedups
    against everything kept before, without recomputing old signatures. Only parts made with the same signature
    settings are comparable, hence the directory per settings; the part of the current input is skipped, so
    rerunning dedup on the same crawl output gives the same result."""

    def __init__(self, workspace: Path, cfg: DedupConfig) -> None:
        self.num_perm = cfg.num_perm
        self.dir = workspace / "dedup_index" / signature_fingerprint(cfg)

    def parts(self, current_input: str) -> list[Path]:
        if not self.dir.is_dir():
            return []
        return sorted(p for p in self.dir.glob("*.parquet") if p.stem != current_input)

    def read(self, path: Path) -> Iterator[pa.RecordBatch]:
        return iter_batches([path])

    def write(self, current_input: str, batches: Iterator[pa.RecordBatch]) -> Path:
        path = self.dir / f"{current_input}.parquet"
        write_shard(path, batches, index_schema(self.num_perm))
        return path


# Bump when the way signatures or exact hashes are computed changes: old index parts then stop being read.
SIGNATURE_VERSION = 1


def signature_fingerprint(cfg: DedupConfig) -> str:
    """The settings (and code version) that decide what a stored signature and exact hash mean."""
    keys = ("num_perm", "seed", "shingle", "shingle_words", "shingle_chars")
    keys += ("exact_lowercase", "exact_punctuation", "exact_digits")
    settings = {k: getattr(cfg, k) for k in keys}
    payload = json.dumps({"version": SIGNATURE_VERSION, **settings}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]

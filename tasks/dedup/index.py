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
from gristmill.tasks.dedup.minhash import estimated_jaccard, lean
from gristmill.tasks.shards import iter_batches, write_shard


class NearIndex:
    """Query-then-insert over MinHash LSH; with `verify`, a candidate counts only if its estimated Jaccard passes."""

    def __init__(self, cfg: DedupConfig) -> None:
        self.cfg = cfg
        self.basename = f"{cfg.redis_basename}-{uuid.uuid4().hex[:12]}".encode()
        params = (cfg.bands, cfg.rows) if cfg.bands is not None else None
        self.lsh = MinHashLSH(
            threshold=cfg.threshold, num_perm=cfg.num_perm, params=params, storage_config=self._storage()
        )
        # Signatures of indexed documents: needed to verify candidates and to report the Jaccard of removed pairs.
        self.signatures: dict[int, np.ndarray] = {}

    def _storage(self) -> dict:
        if self.cfg.storage == "redis":
            redis = {"host": self.cfg.redis_host, "port": self.cfg.redis_port}
            return {"type": "redis", "basename": self.basename, "redis": redis}
        return {"type": "dict"}

    def match(self, doc: int, sig: np.ndarray) -> list[int]:
        """Indexed documents similar to `doc`; then index `doc` itself."""
        sketch = lean(sig, self.cfg.seed)
        found = sorted(self.lsh.query(sketch))
        if self.cfg.verify:
            found = [o for o in found if estimated_jaccard(self.signatures[o], sig) >= self.cfg.threshold]
        self.lsh.insert(doc, sketch, check_duplication=False)
        self.signatures[doc] = sig
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

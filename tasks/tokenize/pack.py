"""Encode documents (BOS first, end-of-text last) and pack the stream into fixed-length rows."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from gristmill.tasks.figures import new_figure
from gristmill.tasks.stage import sum_stats


def tokens_schema(seq_len: int, vocab_size: int) -> pa.Schema:
    """One packed example per row: seq_len + 1 tokens (inputs are row[:-1], targets row[1:])."""
    dtype = pa.uint16() if vocab_size <= 1 << 16 else pa.uint32()
    return pa.schema([pa.field("tokens", pa.list_(dtype, seq_len + 1), nullable=False)])


def is_validation(doc_id: str, val_fraction: float) -> bool:
    """Deterministic split by document: the same document lands in the same split on every run."""
    bucket = int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=4).digest(), "little")
    return bucket % 10_000 < val_fraction * 10_000


class Packer:
    """Accumulates token ids and hands out full rows of `row_len`; the tail shorter than a row is dropped."""

    def __init__(self, row_len: int, dtype: np.dtype) -> None:
        self.row_len = row_len
        self.dtype = dtype
        self.pending: list[np.ndarray] = []
        self.pending_len = 0
        self.tokens_in = 0

    def add(self, ids: list[int]) -> None:
        self.pending.append(np.asarray(ids, dtype=self.dtype))
        self.pending_len += len(ids)
        self.tokens_in += len(ids)

    def rows(self) -> Iterator[np.ndarray]:
        """Full rows available now, as a (n, row_len) array per call (at most one array)."""
        n_rows = self.pending_len // self.row_len
        if n_rows == 0:
            return
        stream = np.concatenate(self.pending)
        cut = n_rows * self.row_len
        self.pending = [stream[cut:]]
        self.pending_len = len(stream) - cut
        yield stream[:cut].reshape(n_rows, self.row_len)

    @property
    def dropped(self) -> int:
        return self.pending_len


def rows_to_batch(rows: np.ndarray, schema: pa.Schema) -> pa.RecordBatch:
    field_type = schema.field("tokens").type
    values = pa.array(rows.reshape(-1), type=field_type.value_type)
    return pa.RecordBatch.from_arrays([pa.FixedSizeListArray.from_arrays(values, field_type.list_size)], schema=schema)


class LengthHistogram:
    """Document lengths in tokens, binned by powers of two so per-shard counts add up across units."""

    def __init__(self, counts: dict[str, int] | None = None) -> None:
        self.counts: dict[str, int] = dict(counts or {})

    @staticmethod
    def bin(length: int) -> str:
        upper = 1 << max(4, (length - 1).bit_length())  # the first bin holds everything up to 16 tokens
        return f"le_{upper}"  # a valid MLflow metric name once flattened (doc_tokens.le_1024)

    def add(self, length: int) -> None:
        key = self.bin(length)
        self.counts[key] = self.counts.get(key, 0) + 1

    @classmethod
    def merge(cls, many: Iterable[dict[str, int]]) -> LengthHistogram:
        return cls(dict(sorted(sum_stats(many).items(), key=lambda kv: int(kv[0][3:]))))

    def figure(self) -> Any:
        figure, axis = new_figure(8, 4)
        axis.bar(list(self.counts), list(self.counts.values()))
        axis.set_xlabel("document length (tokens, incl. BOS and end-of-text)")
        axis.set_ylabel("documents")
        axis.tick_params(axis="x", rotation=45)
        return figure

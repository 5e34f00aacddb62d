"""Streaming the packed token shards into Lightning.

A shard is read only when its turn comes, so memory is bounded by one shard however large the corpus. Rows
are split across distributed ranks and dataloader workers by index (row i goes to reader i mod readers), so no
row is read twice or lost, and a seeded permutation of shards and rows makes every epoch reproducible.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

COLUMN = "tokens"


def shard_row_length(path: Path) -> tuple[int, int]:
    """(rows, tokens per row) of one shard, from its footer; ValueError naming a shard that is not one."""
    file = pq.ParquetFile(path)
    schema = file.schema_arrow
    if COLUMN not in schema.names:
        raise ValueError(f"{path}: token shard has no {COLUMN!r} column (columns: {schema.names})")
    kind = schema.field(COLUMN).type
    if not pa.types.is_fixed_size_list(kind) or not pa.types.is_integer(kind.value_type):
        raise ValueError(f"{path}: column {COLUMN!r} must be a fixed-size list of integers, not {kind}")
    return file.metadata.num_rows, kind.list_size


def read_rows(path: Path) -> np.ndarray:
    """All rows of one token shard as an (n, seq_len + 1) int64 array (one shard: the unit of memory)."""
    _, width = shard_row_length(path)
    file = pq.ParquetFile(path)
    parts = [b.column(0).flatten().to_numpy().astype(np.int64) for b in file.iter_batches(columns=[COLUMN])]
    flat = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    return flat.reshape(-1, width)


class TokenShardDataset(IterableDataset):
    """Rows of token shards as `torch.long` tensors of shape (seq_len + 1,).

    shuffle: each epoch visits the shards, and the rows within each shard, in a permutation seeded by
    (seed, epoch). infinite: after the last row start the next epoch (training, which max_steps bounds);
    otherwise stop after one pass (validation). A finite pass gives every reader the same number of rows,
    dropping at most readers - 1, so distributed ranks run as many validation batches and none waits forever.
    """

    def __init__(self, paths: Sequence[str | Path], shuffle: bool, seed: int = 0, infinite: bool = False) -> None:
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise ValueError("no token shards given")
        shapes = [shard_row_length(p) for p in self.paths]  # fail now, naming the shard, not inside a worker
        widths = {width for _, width in shapes}
        if len(widths) > 1:
            raise ValueError(f"token shards disagree on row length ({sorted(widths)}): {self.paths}")
        self.num_rows = sum(rows for rows, _ in shapes)
        if self.num_rows == 0:
            raise ValueError(f"token shards hold no rows: {[str(p) for p in self.paths]}")
        self.row_length = widths.pop()
        self.shuffle, self.seed, self.infinite = shuffle, seed, infinite
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @staticmethod
    def _reader() -> tuple[int, int]:
        """(this reader's index, number of readers) over distributed ranks x dataloader workers."""
        rank, world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        worker = get_worker_info()
        worker_id, workers = (worker.id, worker.num_workers) if worker else (0, 1)
        return rank * workers + worker_id, world * workers

    def _epoch_rows(self, epoch: int, reader: int, readers: int) -> Iterator[torch.Tensor]:
        rng = np.random.default_rng((self.seed, epoch))
        order = rng.permutation(len(self.paths)) if self.shuffle else range(len(self.paths))
        usable = self.num_rows if self.infinite else self.num_rows - self.num_rows % readers
        index = 0
        for shard in order:
            rows = read_rows(self.paths[shard])
            row_order = rng.permutation(len(rows)) if self.shuffle else range(len(rows))
            for row in row_order:
                if index >= usable:
                    return
                if index % readers == reader:
                    yield torch.from_numpy(rows[row])
                index += 1

    def __iter__(self) -> Iterator[torch.Tensor]:
        reader, readers = self._reader()
        epoch = self.epoch
        while True:
            yield from self._epoch_rows(epoch, reader, readers)
            if not self.infinite:
                return
            epoch += 1


class TokenShardDataModule(L.LightningDataModule):
    """Training rows stream forever, reshuffled each pass (training is bounded by max_steps); validation rows
    are read once, in order, so every validation sees the same data.

    A resumed run starts its training stream at a fresh epoch (the count of earlier starts is kept in the
    checkpoint) rather than replaying the batches the interrupted run already trained on.
    """

    def __init__(
        self,
        train_paths: Sequence[str | Path],
        val_paths: Sequence[str | Path],
        batch_size: int,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.train_paths, self.val_paths = list(train_paths), list(val_paths)
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.starts = 0  # how many earlier runs began streaming the training data

    def _loader(self, dataset: TokenShardDataset) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        dataset = TokenShardDataset(self.train_paths, shuffle=True, seed=self.seed, infinite=True)
        # Epochs of earlier runs are spaced 10^6 apart, far beyond what any one run's stream reaches.
        dataset.set_epoch(self.starts * 1_000_000)
        return self._loader(dataset)

    def val_dataloader(self) -> DataLoader:
        return self._loader(TokenShardDataset(self.val_paths, shuffle=False))

    def state_dict(self) -> dict[str, Any]:
        return {"starts": self.starts + 1}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.starts = int(state_dict.get("starts", 0))

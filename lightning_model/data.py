"""Streaming the packed token shards into Lightning.

A shard is read only when its turn comes, so memory is bounded by one shard however large the corpus. Rows
are split across distributed ranks and dataloader workers by index (row i goes to reader i mod readers), so no
row is read twice or lost, and a seeded permutation of shards and rows makes every epoch reproducible.
"""

from __future__ import annotations

import itertools
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
        self.skip_batches, self.batch_size = 0, 1

    def resume_after(self, batches: int, batch_size: int) -> None:
        """Continue the stream after the first `batches` batches this rank's DataLoader already delivered."""
        self.skip_batches, self.batch_size = batches, batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _worker(self) -> tuple[int, int]:
        """(this worker's role, number of workers). A DataLoader takes batch i from worker i mod workers; a resumed
        loader starts again at worker 0, so roles rotate by the batches skipped to keep every batch in its place."""
        worker = get_worker_info()
        worker_id, workers = (worker.id, worker.num_workers) if worker else (0, 1)
        return (worker_id + self.skip_batches) % workers, workers

    def _reader(self) -> tuple[int, int]:
        """(this reader's index, number of readers) over distributed ranks x dataloader workers."""
        rank, world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        role, workers = self._worker()
        return rank * workers + role, world * workers

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
        rows = itertools.chain.from_iterable(self._epochs(reader, readers))
        return itertools.islice(rows, self._rows_to_skip(), None)

    def _epochs(self, reader: int, readers: int) -> Iterator[Iterator[torch.Tensor]]:
        epoch = self.epoch
        while True:
            yield self._epoch_rows(epoch, reader, readers)
            if not self.infinite:
                return
            epoch += 1

    def _rows_to_skip(self) -> int:
        """Rows of this worker's stream already consumed: the skipped batches that came from its role."""
        role, workers = self._worker()
        return (self.skip_batches - role + workers - 1) // workers * self.batch_size


class TokenShardDataModule(L.LightningDataModule):
    """Training rows stream forever, reshuffled each pass (training is bounded by max_steps); validation rows
    are read once, in order, so every validation sees the same data.

    The checkpoint records how many training batches were consumed, so a resumed run continues the same stream
    exactly where the interrupted one stopped: it sees the batches an uninterrupted run would have seen.
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
        self.consumed_batches = 0  # training batches delivered before this run started (from the checkpoint)

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
        dataset.resume_after(self.consumed_batches, self.batch_size)
        return self._loader(dataset)

    def val_dataloader(self) -> DataLoader:
        return self._loader(TokenShardDataset(self.val_paths, shuffle=False))

    def state_dict(self) -> dict[str, Any]:
        # Checkpoints are saved after an optimizer step, so every micro-batch of the steps taken is consumed.
        trainer = self.trainer
        return {"consumed_batches": trainer.global_step * trainer.accumulate_grad_batches if trainer else 0}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.consumed_batches = int(state_dict.get("consumed_batches", 0))

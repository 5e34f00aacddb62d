"""Streaming token shards: each row once per pass, seeded shuffles, disjoint reader splits, clear errors."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from gristmill.lightning_model import data
from gristmill.lightning_model.data import TokenShardDataModule, TokenShardDataset
from tests.helpers import write_token_shard

ROW = 9  # seq_len 8 + 1


def numbered_shards(tmp_path: Path, rows_per_shard: list[int]) -> list[Path]:
    """Shards whose row r holds r in every position, so a row's identity is its first token."""
    paths, start = [], 0
    for index, count in enumerate(rows_per_shard):
        ids = np.arange(start, start + count, dtype=np.int64)
        paths.append(write_token_shard(tmp_path / f"shard-{index}.parquet", np.repeat(ids[:, None], ROW, axis=1)))
        start += count
    return paths


def ids(rows) -> list[int]:
    return [int(row[0]) for row in rows]


def test_one_pass_in_order_yields_long_rows(tmp_path):
    paths = numbered_shards(tmp_path, [5, 7, 3])
    rows = list(TokenShardDataset(paths, shuffle=False))
    assert ids(rows) == list(range(15))
    assert all(r.dtype == torch.long and r.shape == (ROW,) for r in rows)
    assert torch.equal(rows[6], torch.full((ROW,), 6))


def test_shuffle_is_seeded_per_epoch_and_covers_every_row(tmp_path):
    paths = numbered_shards(tmp_path, [6, 6, 6, 6])
    dataset = TokenShardDataset(paths, shuffle=True, seed=5)
    first = ids(dataset)
    assert sorted(first) == list(range(24)) and first != list(range(24))
    assert ids(TokenShardDataset(paths, shuffle=True, seed=5)) == first  # same seed, same order
    dataset.set_epoch(1)
    second = ids(dataset)
    assert sorted(second) == list(range(24)) and second != first


def test_infinite_stream_moves_on_to_a_new_epoch(tmp_path):
    paths = numbered_shards(tmp_path, [4, 4])
    stream = ids(itertools.islice(iter(TokenShardDataset(paths, shuffle=True, seed=0, infinite=True)), 24))
    epochs = [stream[i : i + 8] for i in range(0, 24, 8)]
    assert all(sorted(e) == list(range(8)) for e in epochs)
    assert len({tuple(e) for e in epochs}) > 1


def test_readers_split_rows_without_overlap(tmp_path, monkeypatch):
    """Distributed ranks x workers, simulated: each reader gets a disjoint, equally long share of one pass."""
    paths = numbered_shards(tmp_path, [5, 6])  # 11 rows over 3 readers: 9 usable, 3 each
    shares = []
    for reader in range(3):
        monkeypatch.setattr(TokenShardDataset, "_reader", staticmethod(lambda r=reader: (r, 3)))
        shares.append(ids(TokenShardDataset(paths, shuffle=True, seed=1)))
    assert [len(s) for s in shares] == [3, 3, 3]
    assert len(set(itertools.chain(*shares))) == 9


def test_dataloader_workers_share_rows_without_overlap(tmp_path):
    paths = numbered_shards(tmp_path, [8, 8])
    loader = torch.utils.data.DataLoader(TokenShardDataset(paths, shuffle=False), batch_size=None, num_workers=2)
    seen = ids(loader)
    assert sorted(seen) == list(range(16))


def test_shards_are_read_one_at_a_time(tmp_path, monkeypatch):
    paths = numbered_shards(tmp_path, [3, 3, 3])
    reads = []
    real = data.read_rows
    monkeypatch.setattr(data, "read_rows", lambda p: reads.append(p) or real(p))
    stream = iter(TokenShardDataset(paths, shuffle=False))
    next(stream)
    assert reads == [paths[0]]
    list(stream)
    assert reads == paths


def test_uint32_tokens(tmp_path):
    rows = np.full((3, ROW), 70_000, dtype=np.int64)
    path = write_token_shard(tmp_path / "wide.parquet", rows, dtype=pa.uint32())
    assert all(int(r[0]) == 70_000 for r in TokenShardDataset([path], shuffle=False))


def test_shard_without_tokens_column_is_named(tmp_path):
    good = numbered_shards(tmp_path, [2])[0]
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"text": ["hello"]}), bad)
    with pytest.raises(ValueError, match=r"bad\.parquet.*'tokens'"):
        TokenShardDataset([good, bad], shuffle=False)


def test_empty_shards_are_an_error(tmp_path):
    path = write_token_shard(tmp_path / "empty.parquet", np.zeros((0, ROW), dtype=np.int64))
    with pytest.raises(ValueError, match="no rows.*empty.parquet"):
        TokenShardDataset([path], shuffle=False)
    with pytest.raises(ValueError, match="no token shards"):
        TokenShardDataset([], shuffle=False)


def test_datamodule_batches(tmp_path):
    train = numbered_shards(tmp_path / "train", [10])
    val = numbered_shards(tmp_path / "val", [7])
    module = TokenShardDataModule([str(p) for p in train], val, batch_size=4, seed=3)
    batches = list(itertools.islice(module.train_dataloader(), 6))  # 24 rows from 10: the stream goes on
    assert all(b.shape == (4, ROW) and b.dtype == torch.long for b in batches)
    first_pass = torch.cat(batches[:2] + [batches[2][:2]])
    assert sorted(ids(first_pass)) == list(range(10))  # each row once before any repeats
    val_batches = list(module.val_dataloader())
    assert [len(b) for b in val_batches] == [4, 3]
    assert ids(torch.cat(val_batches)) == list(range(7))
    # A resumed run (state loaded from a checkpoint taken after 4 batches) continues the same stream exactly.
    resumed = TokenShardDataModule(train, val, batch_size=4, seed=3)
    resumed.load_state_dict({"consumed_batches": 4})
    assert all(
        torch.equal(a, b) for a, b in zip(itertools.islice(resumed.train_dataloader(), 2), batches[4:6], strict=True)
    )


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_skips_exactly_the_consumed_batches(tmp_path, workers):
    train = numbered_shards(tmp_path / "train", [13, 9])
    module = TokenShardDataModule(train, train, batch_size=3, num_workers=workers, seed=5)
    whole = list(itertools.islice(module.train_dataloader(), 12))
    for consumed in (1, 4, 7):
        resumed = TokenShardDataModule(train, train, batch_size=3, num_workers=workers, seed=5)
        resumed.load_state_dict({"consumed_batches": consumed})
        rest = list(itertools.islice(resumed.train_dataloader(), 12 - consumed))
        assert [ids(b) for b in rest] == [ids(b) for b in whole[consumed:]]

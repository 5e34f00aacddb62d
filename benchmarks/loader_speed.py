"""The token-shard DataModule alone against the training step's token rate on the same machine.

    .venv/bin/python benchmarks/loader_speed.py [--batches 400] [--train-tokens-per-s N]

Writes 16 shards of the demo's shape (seq_len 128, batch 16; 65,536 rows, random uint16 tokens), then times
`TokenShardDataModule.train_dataloader()` alone (shuffled, streamed shard by shard) for `--batches` batches.
The training rate to compare with is the train stage's measured tokens/s (pass it, or it runs 30 steps of the
demo model to measure it). Goal: loader >= 20x the training rate.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.train_vs_bare import bare_loop, make_shards  # noqa: E402
from gristmill.conf.schema import load_config  # noqa: E402
from gristmill.lightning_model.data import TokenShardDataModule  # noqa: E402
from gristmill.lightning_model.model import ModelConfig  # noqa: E402


def loader_tokens_per_s(paths: list[Path], batch_size: int, batches: int, workers: int) -> float:
    loader = TokenShardDataModule(paths, paths, batch_size, num_workers=workers, seed=0).train_dataloader()
    iterator = iter(loader)
    next(iterator)  # worker start-up is paid once per run, not per batch
    started, tokens = time.perf_counter(), 0
    for batch in itertools.islice(iterator, batches):
        tokens += batch[:, 1:].numel()
    return tokens / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--train-tokens-per-s", type=float, default=None)
    args = parser.parse_args()
    demo = load_config(Path(__file__).resolve().parents[1] / "conf" / "demo.yaml")
    vocab, seq_len, batch = demo.tokenize.vocab_size, demo.tokenize.seq_len, demo.train.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_shards(Path(tmp), vocab, seq_len, rows=65_536)
        rates = {w: loader_tokens_per_s(paths, batch, args.batches, w) for w in (0, 2)}
        train = args.train_tokens_per_s
        if train is None:
            cfg = demo.train.model_copy(update={"max_steps": 30})
            model_config = ModelConfig.from_train_config(
                cfg, vocab, seq_len, bos_token_id=2, eos_token_id=0, pad_token_id=1
            )
            train = bare_loop(cfg, model_config, paths, steps=30)
    print(f"training step (demo model, {torch.get_num_threads()} threads): {train:12,.0f} tokens/s")
    for workers, rate in rates.items():
        print(f"loader alone, {workers} workers:                  {rate:12,.0f} tokens/s  ({rate / train:,.0f}x)")


if __name__ == "__main__":
    main()

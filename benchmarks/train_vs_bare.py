"""Our Lightning train stage against a bare PyTorch loop: same model, batch, data, optimiser and schedule.

    .venv/bin/python benchmarks/train_vs_bare.py [--steps 150] [--threads 2]

Both read the same packed token shards (random tokens; speed does not depend on their values) and run the same
number of optimizer steps; the bare loop is the smallest honest loop (AdamW, warmup-cosine, gradient clipping).
Prints tokens/s of each and the ratio (goal: ours >= 0.95x the bare loop on CPU).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gristmill.conf.schema import load_config  # noqa: E402
from gristmill.lightning_model.data import TokenShardDataModule  # noqa: E402
from gristmill.lightning_model.model import Llama, ModelConfig  # noqa: E402
from gristmill.lightning_model.module import lr_factor  # noqa: E402
from gristmill.tasks.shards import write_shard  # noqa: E402
from gristmill.tasks.tokenize.pack import rows_to_batch, tokens_schema  # noqa: E402
from gristmill.tasks.train.stage import train_model  # noqa: E402


def make_shards(directory: Path, vocab: int, seq_len: int, rows: int) -> list[Path]:
    schema = tokens_schema(seq_len, vocab)
    data = np.random.default_rng(0).integers(0, vocab, size=(rows, seq_len + 1), dtype=np.uint16)
    paths = []
    for index, part in enumerate(np.array_split(data, 4)):
        path = directory / f"part-{index:05d}.parquet"
        write_shard(path, [rows_to_batch(part, schema)], schema)
        paths.append(path)
    return paths


def bare_loop(cfg, model_config: ModelConfig, paths: list[Path], steps: int) -> float:
    torch.manual_seed(cfg.seed)
    model = Llama(model_config)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.learning_rate,
        betas=(0.9, 0.95),
    )
    loader = iter(TokenShardDataModule(paths, paths, cfg.batch_size, seed=cfg.seed).train_dataloader())
    started, tokens = time.perf_counter(), 0
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = cfg.learning_rate * lr_factor(step, cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio)
        batch = next(loader)
        _, loss = model(batch[:, :-1], batch[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += batch[:, 1:].numel()
    return tokens / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    demo = load_config(Path(__file__).resolve().parents[1] / "conf" / "demo.yaml")
    cfg = demo.train.model_copy(update={"max_steps": args.steps, "val_every_steps": 10 * args.steps})
    vocab, seq_len = demo.tokenize.vocab_size, demo.tokenize.seq_len
    model_config = ModelConfig.from_train_config(cfg, vocab, seq_len, bos_token_id=2, eos_token_id=0, pad_token_id=1)
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_shards(Path(tmp) / "train", vocab, seq_len, rows=4096)
        bare = bare_loop(cfg, model_config, paths, args.steps)
        ours = train_model(cfg, paths, paths[:1], model_config, Path(tmp) / "ckpt")["tokens_per_s"]
    print(
        f"model: demo config ({model_config.num_hidden_layers} layers, {model_config.hidden_size} wide), "
        f"batch {cfg.batch_size} x {seq_len} tokens, {args.steps} steps, {args.threads} threads"
    )
    print(f"bare PyTorch loop : {bare:10.0f} tokens/s")
    print(f"gristmill stage   : {ours:10.0f} tokens/s")
    print(f"ratio             : {ours / bare:10.3f}")


if __name__ == "__main__":
    main()

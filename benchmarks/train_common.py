"""Shared by train_vs_bare.py and gpu_check.py: the train stage and a bare PyTorch loop, interleaved in one process.

The stage (`train_model`, Lightning) runs with a callback that, after every `block` of its steps, runs `block`
steps of the bare loop: same process, same threads, same data files, same model config and batch, so a change of
load on the machine falls on both alike. Each block is timed on its own; the ratio is taken per block pair.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import numpy as np
import torch

from gristmill.conf.schema import TrainConfig
from gristmill.lightning_model.data import TokenShardDataModule
from gristmill.lightning_model.model import Llama, ModelConfig
from gristmill.lightning_model.module import lr_factor
from gristmill.tasks.shards import write_shard
from gristmill.tasks.tokenize.pack import rows_to_batch, tokens_schema


def make_shards(directory: Path, vocab: int, seq_len: int, rows: int) -> list[Path]:
    """Packed token shards of random tokens (speed does not depend on their values)."""
    directory.mkdir(parents=True, exist_ok=True)
    schema = tokens_schema(seq_len, vocab)
    data = np.random.default_rng(0).integers(0, vocab, size=(rows, seq_len + 1), dtype=np.uint16)
    paths = []
    for index, part in enumerate(np.array_split(data, 4)):
        path = directory / f"part-{index:05d}.parquet"
        write_shard(path, [rows_to_batch(part, schema)], schema)
        paths.append(path)
    return paths


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class BareLoop:
    """The smallest honest training loop with the stage's settings: AdamW (fused on CUDA) with decay on matrices
    only, warmup-cosine, gradient clipping, bf16 autocast when the stage uses bf16-mixed, compiled when it is."""

    def __init__(self, cfg: TrainConfig, model_config: ModelConfig, paths: list[Path], device: torch.device) -> None:
        torch.manual_seed(cfg.seed)
        self.cfg, self.device = cfg, device
        self.model = Llama(model_config).to(device)
        if cfg.compile:
            self.model.compile()
        matrices = [p for p in self.model.parameters() if p.dim() >= 2]
        vectors = [p for p in self.model.parameters() if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": matrices, "weight_decay": cfg.weight_decay}, {"params": vectors, "weight_decay": 0.0}],
            lr=cfg.learning_rate,
            betas=(0.9, 0.95),
            fused=True if device.type == "cuda" else None,
        )
        module = TokenShardDataModule(paths, paths, cfg.batch_size, cfg.num_workers, seed=cfg.seed)
        self.batches = iter(module.train_dataloader())
        bf16 = cfg.precision == "bf16-mixed" or (cfg.precision == "auto" and device.type == "cuda")
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        self.step = 0

    def run(self, steps: int) -> float:
        """Seconds for `steps` optimizer steps (data loading included, as in the stage)."""
        synchronize(self.device)
        started = time.perf_counter()
        for _ in range(steps):
            for group in self.optimizer.param_groups:
                group["lr"] = self.cfg.learning_rate * lr_factor(
                    self.step, self.cfg.warmup_steps, self.cfg.max_steps, self.cfg.min_lr_ratio
                )
            batch = next(self.batches).to(self.device, non_blocking=True)
            with self.autocast:
                _, loss = self.model(batch[:, :-1], batch[:, 1:])
            loss.backward()
            if self.cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
        synchronize(self.device)
        return time.perf_counter() - started


class Interleave(L.Callback):
    """After every `block` training batches of the stage, `block` steps of the bare loop. A stage block is timed
    from the end of the previous bare block (so the stage's data loading and callbacks count) to the end of its
    last batch."""

    def __init__(self, bare: BareLoop, block: int) -> None:
        self.bare, self.block = bare, block
        self.stage_s: list[float] = []
        self.bare_s: list[float] = []
        self._started: float | None = None
        self._batches = 0

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if self._started is None:
            synchronize(self.bare.device)
            self._started = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._batches += 1
        if self._batches % self.block:
            return
        synchronize(self.bare.device)
        self.stage_s.append(time.perf_counter() - self._started)
        self.bare_s.append(self.bare.run(self.block))
        synchronize(self.bare.device)
        self._started = time.perf_counter()


@dataclass(frozen=True)
class Comparison:
    stage_tokens_per_s: float  # median over blocks
    bare_tokens_per_s: float
    ratios: list[float]  # stage / bare, per block pair

    @property
    def median_ratio(self) -> float:
        return statistics.median(self.ratios)

    def spread(self) -> str:
        ordered = sorted(self.ratios)
        quartiles = statistics.quantiles(ordered, n=4) if len(ordered) >= 2 else [ordered[0]] * 3
        low, high = ordered[0], ordered[-1]
        return f"IQR {quartiles[0]:.3f}-{quartiles[2]:.3f}, range {low:.3f}-{high:.3f}, {len(ordered)} blocks"


def compare(interleave: Interleave, tokens_per_step: int, skip_blocks: int) -> Comparison:
    """Per-block rates after the first `skip_blocks` pairs (warm-up: allocation, compilation)."""
    stage = interleave.stage_s[skip_blocks:]
    bare = interleave.bare_s[skip_blocks:]
    if not stage:
        raise ValueError(f"no timed blocks: {len(interleave.stage_s)} blocks ran, {skip_blocks} skipped")
    tokens = tokens_per_step * interleave.block
    return Comparison(
        stage_tokens_per_s=statistics.median(tokens / s for s in stage),
        bare_tokens_per_s=statistics.median(tokens / s for s in bare),
        ratios=[b / s for s, b in zip(stage, bare, strict=True)],
    )

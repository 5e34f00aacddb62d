"""The train stage: the Llama-style decoder in Lightning, on the packed token shards.

One unit of work. Checkpoints go to `train/checkpoints/`; a stage interrupted mid-training resumes from
`last.ckpt`. The final weights are written to `train/final/` (state dict + model config) for evaluate to load.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from conf.schema import TrainConfig
from lightning_model.data import TokenShardDataModule
from lightning_model.model import Llama, ModelConfig
from lightning_model.module import LitLlama
from tasks.shards import UnitRecord
from tasks.stage import StageContext, StageResult
from tasks.tokenize.bpe import EOS_TOKEN, PAD_TOKEN, load_tokenizer
from tasks.tracking import Tracker

log = logging.getLogger("gristmill.train")


def run(ctx: StageContext) -> StageResult:
    cfg = ctx.config.train
    tokenized = ctx.upstream
    stats = tokenized.read_manifest().stats
    tokenizer = load_tokenizer(tokenized.path / "tokenizer")
    eos, pad = tokenizer.token_to_id(EOS_TOKEN), tokenizer.token_to_id(PAD_TOKEN)
    model_config = ModelConfig.from_train_config(
        cfg, stats["vocab_size"], stats["seq_len"], bos_token_id=eos, eos_token_id=eos, pad_token_id=pad
    )

    def train() -> UnitRecord:
        result = train_model(
            cfg,
            tokenized.shard_paths("train"),
            tokenized.shard_paths("val"),
            model_config,
            ctx.output.path,
            ctx.tracker.uri if ctx.tracker else None,
            ctx.run_id,
        )
        if ctx.tracker and ctx.run_id:
            log_loss_curve(ctx.tracker, ctx.run_id)
        return UnitRecord(unit="train", stats=result)

    unit = ctx.unit("train", train)
    return StageResult(
        units=[unit],
        count_in=int(stats["sequences"]["train"]),
        unit_in="sequences",
        count_out=int(unit.stats["steps"]),
        unit_out="steps",
        stats=unit.stats,
        files={"model": "final", "checkpoints": "checkpoints"},
    )


class TrainingFigures(Callback):
    """Every validation loss (to report how far it fell) and the token throughput of this fit."""

    def __init__(self) -> None:
        self.val_losses: list[float] = []
        self.tokens_per_s = 0.0

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and "val/loss" in trainer.callback_metrics:
            self.val_losses.append(float(trainer.callback_metrics["val/loss"]))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = (time.perf_counter(), pl_module.tokens_seen)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        started, tokens = self._start
        seconds = time.perf_counter() - started
        self.tokens_per_s = (pl_module.tokens_seen - tokens) / seconds if seconds > 0 else 0.0


def resolve_hardware(cfg: TrainConfig) -> tuple[str, str]:
    """(accelerator, precision): auto means bf16 mixed precision on a GPU, fp32 on the CPU."""
    accelerator = cfg.accelerator
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    precision = cfg.precision
    if precision == "auto":
        precision = "bf16-mixed" if accelerator == "gpu" else "32-true"
    return accelerator, precision


def train_model(
    cfg: TrainConfig,
    train_paths: list[Path],
    val_paths: list[Path],
    model_config: ModelConfig,
    out_dir: Path,
    tracking_uri: str | None,
    mlflow_run_id: str | None,
) -> dict[str, Any]:
    """Train (or resume) and write `out_dir/final`; return the run's figures."""
    L.seed_everything(cfg.seed, workers=True)
    accelerator, precision = resolve_hardware(cfg)
    checkpoint_dir = Path(out_dir) / "checkpoints"
    last = checkpoint_dir / "last.ckpt"
    module = LitLlama(model_config.to_dict(), cfg.model_dump(mode="json"))
    data = TokenShardDataModule(train_paths, val_paths, cfg.batch_size, cfg.num_workers, cfg.seed)
    figures = TrainingFigures()
    logger: Any = False
    if mlflow_run_id:
        from lightning.pytorch.loggers import MLFlowLogger

        # Explicit URI and run: MLFlowLogger otherwise reads MLFLOW_TRACKING_URI or falls back to ./mlruns.
        logger = MLFlowLogger(tracking_uri=tracking_uri, run_id=mlflow_run_id)
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=cfg.devices,
        precision=precision,
        max_steps=cfg.max_steps,
        val_check_interval=cfg.val_every_steps,
        check_val_every_n_epoch=None,
        limit_val_batches=cfg.val_batches,
        num_sanity_val_steps=0,
        gradient_clip_val=cfg.grad_clip or None,
        log_every_n_steps=max(1, min(10, cfg.val_every_steps // 2)),
        logger=logger,
        callbacks=[
            figures,
            ModelCheckpoint(dirpath=checkpoint_dir, save_last=True, every_n_train_steps=cfg.val_every_steps),
        ],
        default_root_dir=str(out_dir),
        enable_progress_bar=os.environ.get("GRISTMILL_PROGRESS", "1") == "1",
        enable_model_summary=False,
    )
    resume = last.is_file()
    if not resume:
        trainer.validate(module, datamodule=data, verbose=False)  # the loss before any training
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if resume else None)
    save_final(module.model, model_config, Path(out_dir) / "final")
    return {
        "steps": trainer.global_step,
        "resumed": resume,
        "parameters": module.model.num_parameters(non_embedding=False),
        "parameters_non_embedding": module.model.num_parameters(),
        "tokens_seen": module.tokens_seen,
        "train_loss_last": float(trainer.callback_metrics.get("train/loss", float("nan"))),
        "val_loss_first": figures.val_losses[0] if figures.val_losses else float("nan"),
        "val_loss_last": figures.val_losses[-1] if figures.val_losses else float("nan"),
        "tokens_per_s": round(figures.tokens_per_s, 1),
        "accelerator": accelerator,
        "precision": precision,
    }


def save_final(model: Llama, config: ModelConfig, final_dir: Path) -> None:
    scratch = final_dir.with_name(".final.tmp")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    torch.save(model.state_dict(), scratch / "model.pt")
    (scratch / "model_config.json").write_text(json.dumps(config.to_dict(), indent=2))
    shutil.rmtree(final_dir, ignore_errors=True)
    scratch.rename(final_dir)


def load_model(final_dir: Path) -> tuple[Llama, ModelConfig]:
    final_dir = Path(final_dir)
    if not (final_dir / "model.pt").is_file():
        raise FileNotFoundError(f"{final_dir}/model.pt: no trained model; run the train stage first")
    config = ModelConfig.from_dict(json.loads((final_dir / "model_config.json").read_text()))
    model = Llama(config)
    model.load_state_dict(torch.load(final_dir / "model.pt", map_location="cpu", weights_only=True))
    return model.eval(), config


def log_loss_curve(tracker: Tracker, run_id: str) -> None:
    """The loss curves as one image in the train run (MLflow's UI also charts the metrics themselves)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    for key in ("train/loss", "val/loss"):
        points = sorted((m.step, m.value) for m in tracker.client.get_metric_history(run_id, key))
        if points:
            axis.plot(*zip(*points, strict=True), label=key, marker="o" if key == "val/loss" else None)
    axis.set_xlabel("step")
    axis.set_ylabel("loss")
    axis.legend()
    axis.grid(alpha=0.3)
    tracker.log_figure(run_id, figure, "loss_curve.png")
    plt.close(figure)

"""The train stage: fit the Llama-style decoder on the packed token shards with Lightning.

`train_model` is plain Python (no Prefect): it seeds, picks the hardware, validates once before the first
step (so "validation loss fell" is measurable), trains to `max_steps`, and writes the final weights as a plain
state dict plus `model_config.json` (`lightning_model/weights.py`, which evaluate reads back). Checkpoints go to
`checkpoint_dir` every `val_every_steps` and at the end; when `checkpoint_dir/last.ckpt` exists the next call
resumes from it, so an interrupted stage continues and a raised `max_steps` trains on from where it stopped.

Under `train.mode: continue`, a later corpus generation's training starts from the registry's champion (its weights
from MLflow, `Tracker.alias_weights`), or from scratch, saying why, when there is none or its weights are gone.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from gristmill.conf.schema import TrainConfig
from gristmill.lightning_model.callbacks import MFUMonitor, StepProgressBar, TrainingHistory
from gristmill.lightning_model.data import TokenShardDataModule
from gristmill.lightning_model.logger import CallerRunLogger
from gristmill.lightning_model.model import Llama, ModelConfig
from gristmill.lightning_model.module import LitLlama
from gristmill.lightning_model.weights import CONFIG_FILE, WEIGHTS_FILE, read_model_config, save_model
from gristmill.tasks.evaluate.gate import CHAMPION
from gristmill.tasks.shards import UnitRecord, file_sha256, verified
from gristmill.tasks.stage import StageContext, StageResult
from gristmill.tasks.tokenize.bpe import BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, load_tokenizer
from gristmill.tasks.tracking import PARENT_VERSION_TAG, WEIGHTS_ARTIFACT
from gristmill.tasks.train.launch import launch, needs_launcher
from gristmill.tasks.train.report import log_loss_curve

log = logging.getLogger("gristmill.train")

LAST_CHECKPOINT = "last.ckpt"
FINAL_DIR = "final"  # the stage's weights, for evaluate (manifest files["model"])
CHECKPOINTS_DIR = "checkpoints"


def resolve_hardware(cfg: TrainConfig) -> tuple[str, str]:
    """(accelerator, precision): "auto" is a GPU with bf16 mixed precision if there is one, else fp32 CPU."""
    accelerator = cfg.accelerator
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    if accelerator == "gpu" and not torch.cuda.is_available():
        raise RuntimeError("train.accelerator is 'gpu' but torch sees no CUDA device (torch.cuda.is_available())")
    precision = cfg.precision
    if precision == "auto":
        if accelerator == "gpu":
            precision = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        else:
            precision = "32-true"
    return accelerator, precision


def train_model(
    cfg: TrainConfig,
    train_paths: list[Path],
    val_paths: list[Path],
    model_config: ModelConfig,
    checkpoint_dir: Path,
    tracking_uri: str | None = None,
    mlflow_run_id: str | None = None,
    weights_dir: Path | None = None,
    callbacks: list[Callback] | None = None,
    init_weights: Path | None = None,
) -> dict[str, Any]:
    """Train (or resume training) and write `model.pt` + `model_config.json` into `weights_dir` (default:
    `final/` beside `checkpoint_dir`). Returns steps, tokens_seen, train/val loss first and last, parameters,
    tokens_per_s; val_loss_first is measured at step 0, before any update. A fresh run (no last.ckpt) starts from
    the weights in `init_weights` (a `model.pt`) when given: training continued on new data."""
    checkpoint_dir = Path(checkpoint_dir)
    weights_dir = Path(weights_dir) if weights_dir is not None else checkpoint_dir.parent / FINAL_DIR
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True)
    accelerator, precision = resolve_hardware(cfg)

    datamodule = TokenShardDataModule(
        [str(p) for p in train_paths], [str(p) for p in val_paths], cfg.batch_size, cfg.num_workers, cfg.seed
    )
    module = LitLlama(model_config.to_dict(), cfg.model_dump(mode="json"))
    if cfg.compile:
        module.model.compile()  # in place: the state dict keeps its names, so checkpoints and export still match
    log_every = max(1, min(10, cfg.max_steps // 30))  # about 30 points per curve, at least every 10 steps
    history = TrainingHistory()
    checkpoints = ModelCheckpoint(dirpath=checkpoint_dir, save_last=True, every_n_train_steps=cfg.val_every_steps)
    logger: CallerRunLogger | bool = False
    if mlflow_run_id is not None:
        if tracking_uri is None:
            raise ValueError("train_model: give tracking_uri with mlflow_run_id (else MLflow uses ./mlruns)")
        logger = CallerRunLogger(tracking_uri=tracking_uri, run_id=mlflow_run_id)

    progress = [StepProgressBar()] if os.environ.get("GRISTMILL_PROGRESS", "1") == "1" else []
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        precision=precision,
        accumulate_grad_batches=cfg.accumulate_grad_batches,
        max_steps=cfg.max_steps,
        # Training streams forever (one endless epoch), so validation is scheduled in steps, not epochs.
        val_check_interval=cfg.val_every_steps,
        check_val_every_n_epoch=None,
        limit_val_batches=cfg.val_batches,
        num_sanity_val_steps=0,  # the step-0 validation below covers it, and is recorded
        gradient_clip_val=cfg.grad_clip or None,
        log_every_n_steps=log_every,
        logger=logger,
        callbacks=[checkpoints, history, MFUMonitor(every_n_steps=log_every), *progress, *(callbacks or [])],
        enable_progress_bar=bool(progress),
        enable_model_summary=False,
        deterministic="warn",  # deterministic kernels where torch has them; warn (not fail) where it has none
        default_root_dir=str(checkpoint_dir),
    )

    last = checkpoint_dir / LAST_CHECKPOINT
    resume = last if last.is_file() else None
    if resume is None and init_weights is not None:
        log.info("continuing training from the weights in %s", init_weights)
        module.model.load_state_dict(torch.load(init_weights, map_location="cpu", weights_only=True))
    if resume is None:
        # The starting model's validation loss: the baseline every later validation is compared against.
        trainer.validate(module, datamodule=datamodule, verbose=False)
    else:
        log.info("resuming training from %s", resume)
    # weights_only: our checkpoints hold only tensors and plain containers, so the safe loader suffices.
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume) if resume else None, weights_only=True)
    # Also checkpoint the final step (ModelCheckpoint saves only every val_every_steps), so a later call with
    # a higher max_steps continues from here.
    trainer.save_checkpoint(last)

    model: Llama = module.model
    if trainer.is_global_zero:
        save_model(model, model_config, weights_dir)

    recent = list(history.recent_train_losses)
    val_losses = [loss for _, loss in history.val_losses]
    return {
        "steps": trainer.global_step,
        "resumed": resume is not None,
        "tokens_seen": module.tokens_seen,
        "train_loss_first": history.train_loss_first,
        "train_loss_last": sum(recent) / len(recent) if recent else None,
        "val_loss_first": val_losses[0] if val_losses else None,
        "val_loss_last": val_losses[-1] if val_losses else None,
        "val_losses": [[step, loss] for step, loss in history.val_losses],
        "parameters": model.num_parameters(non_embedding=False),
        "non_embedding_parameters": model.num_parameters(non_embedding=True),
        "tokens_per_s": history.tokens_this_run / history.train_seconds if history.train_seconds else 0.0,
        "accelerator": accelerator,
        "precision": precision,
    }


def run(ctx: StageContext) -> StageResult:
    """The pipeline's train stage: tokenize's shards and tokenizer in; `final/` (weights + config) and
    `checkpoints/` out. One unit of work; an interrupted stage resumes from `checkpoints/last.ckpt`."""
    cfg = ctx.config.train
    tokenized = ctx.upstream
    assert tokenized is not None, "the train stage reads the tokenize stage's output"
    tokenize_stats = tokenized.read_manifest().stats
    tokenizer = load_tokenizer(tokenized.path / "tokenizer")
    eos, pad, bos = (tokenizer.token_to_id(t) for t in (EOS_TOKEN, PAD_TOKEN, BOS_TOKEN))
    model_config = ModelConfig.from_train_config(
        cfg,
        vocab_size=int(tokenize_stats["vocab_size"]),
        max_position_embeddings=int(tokenize_stats["seq_len"]),
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=pad,
    )

    # An earlier training under `mode: continue`: this one is of a new corpus generation, and starts from the champion.
    # Only a finished training counts: an attempt killed after writing final/ (before its unit was recorded) is
    # resumed from its checkpoint, not taken for an earlier training.
    later = (
        cfg.mode == "continue"
        and (ctx.output.path / FINAL_DIR / WEIGHTS_FILE).is_file()
        and ctx.output.earlier_run_committed()
    )
    generation = tokenized.read_manifest().generations[-1] if later else None

    def train() -> UnitRecord:
        # A later generation trains in a checkpoint directory of its own, so an interrupted training resumes itself
        # and not the last one.
        checkpoint_dir = ctx.output.path / CHECKPOINTS_DIR
        if generation is not None:
            checkpoint_dir = own_checkpoints(checkpoint_dir / f"g{generation.number:03d}", ctx.input_hash or "")
        with champion_weights(ctx, model_config) if later else nullcontext(Start()) as start:
            # Continued: the champion trains on the new generation's sequences (all of them if it has none);
            # otherwise a new model trains on everything.
            new_train = (
                [tokenized.dataset_dir("train") / s.name for s in generation.shards.get("train", [])]
                if (start.weights and generation)
                else []
            )
            # More than one process (devices > 1, nodes > 1): a launcher starts `train_model` alone on every rank,
            # so the pipeline around this stage runs once (Lightning's own launcher would re-run the whole command).
            fit = partial(launch, template=ctx.config.runner.launch_command) if needs_launcher(cfg) else train_model
            stats = fit(
                cfg,
                verified(new_train or tokenized.shard_paths("train")),  # the loader reads shards itself: check once
                verified(tokenized.shard_paths("val")),
                model_config,
                checkpoint_dir=checkpoint_dir,
                tracking_uri=ctx.tracker.uri if ctx.tracker else None,
                mlflow_run_id=ctx.run_id if ctx.tracker else None,
                weights_dir=ctx.output.path / FINAL_DIR,
                init_weights=start.weights,
            )
            stats |= start.stats()  # inside: the downloaded weights are hashed before they go
        stats["generation"] = generation.number if generation else 0
        if ctx.tracker and ctx.run_id:
            ctx.tracker.log_params(ctx.run_id, {"model": model_config.to_dict()})
            log_loss_curve(ctx.tracker, ctx.run_id)
            # The final checkpoint (weights, optimizer and data position): a run can resume from the artifact.
            ctx.tracker.log_artifact(ctx.run_id, checkpoint_dir / LAST_CHECKPOINT, "checkpoints")
            # The weights, which the version evaluate registers points at: a later training continues from them.
            ctx.tracker.log_artifacts(ctx.run_id, ctx.output.path / FINAL_DIR, WEIGHTS_ARTIFACT)
            if start.version is not None:
                ctx.tracker.set_tags(ctx.run_id, {PARENT_VERSION_TAG: start.version})
        return UnitRecord(unit="train", stats={k: v for k, v in stats.items() if _is_finite(v)})

    unit = ctx.unit("train", train)
    return StageResult(
        units=[unit],
        count_in=int(tokenize_stats["sequences"]["train"]),
        unit_in="sequences",
        count_out=int(unit.stats["steps"]),
        unit_out="steps",
        stats=unit.stats,
        files={"model": FINAL_DIR, "checkpoints": CHECKPOINTS_DIR},
    )


INPUT_MARKER = "input_hash"


def own_checkpoints(directory: Path, input_hash: str) -> Path:
    """A generation's checkpoint directory for training on this input: one left by a training on other data (a
    rebuilt tokenize numbers its generations anew) is emptied, so `last.ckpt` resumes only this training."""
    marker = directory / INPUT_MARKER
    if directory.exists() and not (marker.is_file() and marker.read_text() == input_hash):
        log.info("train: %s holds a training on other data; starting it afresh", directory)
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    marker.write_text(input_hash)
    return directory


@dataclass
class Start:
    """Where a training starts: the champion's weights (and its version), or a new model (and why)."""

    weights: Path | None = None
    version: int | None = None
    scratch_reason: str | None = None

    def stats(self) -> dict[str, Any]:
        if self.weights is None:
            reason = self.scratch_reason
            return {"continued": False, **({"warnings": [f"trained from scratch: {reason}"]} if reason else {})}
        return {
            "continued": True,
            "continued_from_version": self.version,
            "init_weights_sha256": file_sha256(self.weights),
        }


@contextmanager
def champion_weights(ctx: StageContext, model_config: ModelConfig) -> Iterator[Start]:
    """The current champion's weights (the registry alias the evaluate stage's gate gives), downloaded for the
    training to start from; a new model, with the reason logged, when there is no champion, its weights are gone, or
    it is of another shape than the model this config trains (other model settings or vocabulary)."""
    name = ctx.config.tracking.registered_model
    if ctx.tracker is None:
        yield _scratch("no MLflow tracker, so no registry to find the champion in")
        return
    with tempfile.TemporaryDirectory(prefix=".champion-", dir=ctx.output.path) as scratch:
        version, weights, why = ctx.tracker.alias_weights(name, CHAMPION, Path(scratch))
        if weights is None:
            yield _scratch(why)
            return
        if not (weights.parent / CONFIG_FILE).is_file() or read_model_config(weights.parent) != model_config:
            yield _scratch(f"the champion, version {version}, is not of the shape this config trains ({CONFIG_FILE})")
            return
        log.info("train: continuing from the champion, version %d of %s", version, name)
        yield Start(weights=weights, version=version)


def _scratch(reason: str) -> Start:
    log.warning("train: mode continue, but training a new model from scratch: %s", reason)
    return Start(scratch_reason=reason)


def _is_finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is not None

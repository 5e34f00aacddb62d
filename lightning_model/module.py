"""The LightningModule: next-token loss, AdamW decaying matrices only, warmup then cosine decay per step."""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as L
import torch

from gristmill.lightning_model.model import Llama, ModelConfig


def lr_factor(step: int, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of the peak learning rate at optimizer step `step`: linear warmup, then cosine decay to
    `min_lr_ratio` at `max_steps` (and flat after it)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class LitLlama(L.LightningModule):
    """`model_config` is `ModelConfig.to_dict()`; `train_config` is `TrainConfig.model_dump()` (the optimizer
    reads learning_rate, min_lr_ratio, warmup_steps, max_steps and weight_decay from it)."""

    def __init__(self, model_config: dict[str, Any], train_config: dict[str, Any]) -> None:
        super().__init__()
        # Plain dicts, not dataclasses: torch >= 2.6 loads checkpoints weights-only, rejecting other classes.
        self.save_hyperparameters(logger=False)  # tasks/train/stage.py logs params once, resume-safe
        self.model = Llama(ModelConfig.from_dict(model_config))
        self.train_config = dict(train_config)
        self.tokens_seen = 0  # target tokens trained on, over all ranks; kept in the checkpoint

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids)[0]

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        _, loss = self.model(batch[:, :-1], batch[:, 1:])
        self.tokens_seen += batch[:, 1:].numel() * self.trainer.world_size
        self.log("train/loss", loss, prog_bar=True)
        # The rate this step's update uses: the scheduler steps after the optimizer.
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])
        self.log("train/tokens_seen", float(self.tokens_seen))
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        _, loss = self.model(batch[:, :-1], batch[:, 1:])
        # Logged per step, reduced by Lightning to the mean over the validation run (and over ranks).
        self.log("val/loss", loss, prog_bar=True, sync_dist=True)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Before clipping (and after AMP unscaling): the raw norm, so spikes that clipping hides stay visible.
        # Only on steps whose metrics are logged: the norm is a pass over every gradient.
        if (self.trainer.global_step + 1) % self.trainer.log_every_n_steps:  # Lightning's own logging rule
            return
        grads = [p.grad.detach() for p in self.parameters() if p.grad is not None]
        if grads:
            self.log("train/grad_norm", torch.linalg.vector_norm(torch.stack([g.norm(2) for g in grads]), 2))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["tokens_seen"] = self.tokens_seen

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.tokens_seen = int(checkpoint.get("tokens_seen", 0))

    def configure_optimizers(self) -> dict[str, Any]:
        cfg = self.train_config
        params = [p for p in self.parameters() if p.requires_grad]
        # Decay only matrices (linear weights, embeddings); decaying norm gains only fights the normalisation.
        matrices = [p for p in params if p.dim() >= 2]
        vectors = [p for p in params if p.dim() < 2]
        on_cuda = params[0].device.type == "cuda"  # Lightning moves the model before asking for the optimizer
        optimizer = torch.optim.AdamW(
            [
                {"params": matrices, "weight_decay": cfg["weight_decay"]},
                {"params": vectors, "weight_decay": 0.0},
            ],
            lr=cfg["learning_rate"],
            betas=(0.9, 0.95),
            fused=True if on_cuda else None,
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: lr_factor(step, cfg["warmup_steps"], cfg["max_steps"], cfg["min_lr_ratio"]),
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

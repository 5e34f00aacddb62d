"""Training callbacks: throughput and model FLOPs utilisation (MFU), logged as training runs; the loss history that
the train stage reports, kept in the checkpoint.

FLOPs per token = 6N + 12·L·H·Q·T (PaLM, appendix B): N non-embedding matmul parameters (a tied output head
counted), L layers, H heads, Q head dimension, T sequence length; the second term is attention's own matmuls.
MFU = achieved FLOP/s over the devices' dense peak.
"""

from __future__ import annotations

import time
import warnings
from collections import deque
from typing import Any

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import RichProgressBar

from gristmill.lightning_model.model import Llama

TRAIN_LOSS_WINDOW = 10  # train_loss_last is the mean of this many final steps: one batch is too noisy

# Lightning's device table (lightning.fabric.utilities.throughput) tells the H100 SXM, PCIe and NVL apart, but does not
# parse a plain "NVIDIA H200" (its H200 rows want "sxm1"/"nvl1" in the name): the dense peak stands in for those.
DENSE_PEAKS_LIGHTNING_MISSES: dict[str, dict[torch.dtype, float]] = {
    "H200": {torch.bfloat16: 989e12, torch.float16: 989e12},
}


def flops_per_token(model: Llama) -> float:
    c = model.config
    n = model.num_parameters(non_embedding=True)
    return 6 * n + 12 * c.num_hidden_layers * c.num_attention_heads * c.head_dim * c.max_position_embeddings


def device_peak_flops(device: torch.device | str | None = None, dtype: torch.dtype = torch.bfloat16) -> float | None:
    """The device's peak FLOP/s for `dtype` matmuls, from Lightning's table (None on CPU or an unknown GPU)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type != "cuda":
        return None
    from lightning.fabric.utilities.throughput import get_available_flops

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "FLOPs not found for ...": the table below answers, or there is no MFU
        peak = get_available_flops(device, dtype)
    if peak:
        return float(peak)
    name = torch.cuda.get_device_name(device)
    return next((peaks.get(dtype) for key, peaks in DENSE_PEAKS_LIGHTNING_MISSES.items() if key in name), None)


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype matmuls run in under a Lightning precision setting ("bf16-mixed", "16-true", "32-true", ...)."""
    if precision.startswith("bf16"):
        return torch.bfloat16
    if precision.startswith("16"):
        return torch.float16
    return torch.float64 if precision.startswith("64") else torch.float32


class MFUMonitor(L.Callback):
    """Logs `train/tokens_per_s` (all devices) and, where the device's peak is known, `train/mfu`. (Lightning's own
    `ThroughputMonitor` counts samples and FLOPs it is told about; this one knows the model's FLOPs per token.)"""

    def __init__(self, peak_flops_per_device: float | None = None, every_n_steps: int = 10) -> None:
        self.peak = peak_flops_per_device
        self.every = every_n_steps
        self._mark: tuple[float, int] | None = None
        self._logged_step = -1

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.peak = self.peak or device_peak_flops(trainer.strategy.root_device, compute_dtype(str(trainer.precision)))
        self.flops_per_token = flops_per_token(pl_module.model)
        self._mark = (time.perf_counter(), pl_module.tokens_seen)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        step = trainer.global_step
        # With gradient accumulation this runs once per micro-batch: measure once per optimizer step.
        if step % self.every or step == self._logged_step or self._mark is None:
            return
        self._logged_step = step
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()  # time finished work, not queued kernels
        now, tokens = time.perf_counter(), pl_module.tokens_seen
        started, tokens_before = self._mark
        self._mark = (now, tokens)
        if now <= started or tokens <= tokens_before:
            return
        tokens_per_s = (tokens - tokens_before) / (now - started)
        metrics = {"train/tokens_per_s": tokens_per_s}
        if self.peak:
            metrics["train/mfu"] = tokens_per_s * self.flops_per_token / (self.peak * trainer.world_size)
        pl_module.log_dict(metrics, on_step=True, on_epoch=False, rank_zero_only=True)


class TrainingHistory(L.Callback):
    """Losses over the whole training, kept in the checkpoint: a resumed run still knows its first losses."""

    def __init__(self) -> None:
        self.val_losses: list[tuple[int, float]] = []  # (global step, mean val loss)
        self.train_loss_first: float | None = None
        self.recent_train_losses: deque[float] = deque(maxlen=TRAIN_LOSS_WINDOW)
        self.tokens_this_run = 0
        self.train_seconds = 0.0
        self._started: float | None = None
        self._tokens_at_start = 0

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loss = trainer.callback_metrics.get("val/loss")
        if trainer.sanity_checking or loss is None:
            return
        step = trainer.global_step
        if self.val_losses and self.val_losses[-1][0] == step:
            return  # the same step validated twice (e.g. a resume at a validation boundary)
        self.val_losses.append((step, float(loss)))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()
        self._tokens_at_start = pl_module.tokens_seen

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, *args: Any) -> None:
        loss = float(outputs["loss"] if isinstance(outputs, dict) else outputs)
        if self.train_loss_first is None:
            self.train_loss_first = loss
        self.recent_train_losses.append(loss)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._started is not None:
            self.train_seconds = time.perf_counter() - self._started
            self.tokens_this_run = pl_module.tokens_seen - self._tokens_at_start

    def state_dict(self) -> dict[str, Any]:
        return {
            "val_losses": [list(item) for item in self.val_losses],
            "train_loss_first": self.train_loss_first,
            "recent_train_losses": list(self.recent_train_losses),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.val_losses = [(int(step), float(loss)) for step, loss in state_dict.get("val_losses", [])]
        self.train_loss_first = state_dict.get("train_loss_first")
        self.recent_train_losses.extend(state_dict.get("recent_train_losses", []))


class StepProgressBar(RichProgressBar):
    """Progress in optimizer steps out of `max_steps`. Training streams one endless epoch bounded by steps, where
    Lightning's bar counts epochs ("Epoch 0/-2") and shows no total."""

    @property
    def total_train_batches(self) -> int:
        return self.trainer.max_steps * self.trainer.accumulate_grad_batches

    def _get_train_description(self, current_epoch: int) -> str:
        return f"train {self.trainer.max_steps} steps"

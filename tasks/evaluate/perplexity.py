"""Validation perplexity and bits per byte over held-out packed sequences."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from gristmill.tasks.shards import iter_batches


@torch.no_grad()
def perplexity(
    model: torch.nn.Module,
    val_paths: list[Path],
    batch_size: int,
    max_batches: int,
    byte_lengths: torch.Tensor | None = None,
) -> dict[str, float]:
    """Mean next-token cross-entropy; with `byte_lengths` (bytes per token id) also bits per byte, which does not
    depend on the tokenizer (special tokens count no bytes)."""
    model.eval()
    total_loss, total_tokens, total_bytes = 0.0, 0, 0
    for batches, batch in enumerate(iter_batches(val_paths, ["tokens"], batch_size=batch_size), start=1):
        column = batch.column("tokens")
        rows = torch.from_numpy(column.flatten().to_numpy().astype("int64")).view(len(batch), column.type.list_size)
        logits, _ = model(rows[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1).float(), rows[:, 1:].flatten(), reduction="sum")
        total_loss += loss.item()
        total_tokens += rows[:, 1:].numel()
        if byte_lengths is not None:
            total_bytes += int(byte_lengths[rows[:, 1:]].sum())
        if batches >= max_batches:
            break
    if total_tokens == 0:
        raise ValueError(f"no validation tokens in {[str(p) for p in val_paths]}")
    mean = total_loss / total_tokens
    result = {"val_loss": mean, "perplexity": math.exp(mean), "tokens": total_tokens}
    if total_bytes:
        result["bits_per_byte"] = total_loss / math.log(2) / total_bytes
    return result

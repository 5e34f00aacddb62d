"""Validation perplexity: mean next-token cross-entropy over held-out packed sequences."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from gristmill.tasks.shards import iter_batches


@torch.no_grad()
def perplexity(model: torch.nn.Module, val_paths: list[Path], batch_size: int, max_batches: int) -> dict[str, float]:
    model.eval()
    total_loss, total_tokens = 0.0, 0
    for batches, batch in enumerate(iter_batches(val_paths, ["tokens"], batch_size=batch_size), start=1):
        column = batch.column("tokens")
        rows = torch.from_numpy(column.flatten().to_numpy().astype("int64")).view(len(batch), column.type.list_size)
        logits, _ = model(rows[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1).float(), rows[:, 1:].flatten(), reduction="sum")
        total_loss += loss.item()
        total_tokens += rows[:, 1:].numel()
        if batches >= max_batches:
            break
    if total_tokens == 0:
        raise ValueError(f"no validation tokens in {[str(p) for p in val_paths]}")
    mean = total_loss / total_tokens
    return {"val_loss": mean, "perplexity": math.exp(mean), "tokens": total_tokens}


@torch.no_grad()
def sequence_logprob(model: torch.nn.Module, ids: list[int]) -> float:
    """Log-likelihood of ids[1:] given the preceding tokens (ids[0] is the context start, e.g. end-of-text)."""
    model.eval()
    tokens = torch.tensor([ids])
    logits, _ = model(tokens[:, :-1])
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    return logprobs.gather(-1, tokens[:, 1:, None]).sum().item()

"""Sample continuations of prompts from the trained model."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer


@torch.no_grad()
def generate_samples(
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    prompts: list[str],
    max_new_tokens: int,
    temperature: float,
    top_k: int,
    bos_id: int,
    eos_id: int,
    seed: int,
) -> list[dict[str, str]]:
    """Each prompt after BOS (as in training); new tokens are capped so prompt + continuation fit the context."""
    model.eval()
    context = model.config.max_position_embeddings
    generator = torch.Generator().manual_seed(seed)
    samples = []
    for prompt in prompts:
        ids = torch.tensor([[bos_id, *tokenizer.encode(prompt).ids][-(context - 1) :]])
        room = min(max_new_tokens, context - ids.shape[1])
        out = model.generate(
            ids, room, temperature=temperature, top_k=top_k or None, eos_token_id=eos_id, generator=generator
        )
        continuation = tokenizer.decode(out[0, ids.shape[1] :].tolist(), skip_special_tokens=True)
        samples.append({"prompt": prompt, "completion": continuation})
    return samples

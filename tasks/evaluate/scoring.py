"""Batched log-likelihood scoring, computed the way lm-evaluation-harness computes it for causal models.

A request is (context, continuation) in token ids; its score is the sum of log p(token) over the continuation.
An empty context is the prefix token (BOS, as lm-eval's HF wrapper does). A request longer than the model's
context keeps its last `max_len + 1` tokens, as lm-eval does. Requests are sorted by length and packed into batches
of about `batch_tokens` tokens, right-padded; the causal mask means padding after a row never changes its logits,
and a mask keeps padded positions out of the sums.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tokenizers import Tokenizer

Request = tuple[list[int], list[int]]  # (context ids, continuation ids)


@dataclass(frozen=True)
class Score:
    logprob: float  # sum over the continuation's tokens
    tokens: int

    @property
    def mean(self) -> float:
        return self.logprob / max(self.tokens, 1)


@torch.no_grad()
def score_requests(
    model: torch.nn.Module, requests: Sequence[Request], max_len: int, pad_id: int, batch_tokens: int = 8192
) -> list[Score]:
    """One `Score` per request, in the order given."""
    model.eval()
    device = next(model.parameters()).device
    windows = [(ctx + cont)[-(max_len + 1) :] for ctx, cont in requests]
    order = sorted(range(len(requests)), key=lambda i: -len(windows[i]))
    scores: list[Score | None] = [None] * len(requests)
    start = 0
    while start < len(order):
        width = len(windows[order[start]]) - 1  # the longest row of this batch comes first
        rows = max(1, batch_tokens // max(width, 1))
        batch = order[start : start + rows]
        inputs = torch.full((len(batch), width), pad_id, dtype=torch.long)
        targets = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.bool)
        for row, index in enumerate(batch):
            window = windows[index]
            n = len(window) - 1
            inputs[row, :n] = torch.tensor(window[:-1])
            targets[row, :n] = torch.tensor(window[1:])
            scored = min(len(requests[index][1]), n)
            mask[row, n - scored : n] = True
        logits, _ = model(inputs.to(device))
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()  # a bf16 model still scores in float32 (a float64 one stays float64)
        # log_softmax without materialising it for the whole vocabulary twice: gather, then subtract the norm.
        picked = logits.gather(-1, targets.to(device)[..., None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)
        picked = picked.masked_fill(~mask.to(device), 0.0).cpu()
        for row, index in enumerate(batch):
            scores[index] = Score(picked[row].sum().item(), int(mask[row].sum()))
        start += len(batch)
    return scores  # type: ignore[return-value]


class SentenceScorer:
    """Text in, log-likelihoods out: what the bias checks and text perplexity share."""

    def __init__(
        self, model: torch.nn.Module, tokenizer: Tokenizer, prefix_id: int, pad_id: int, batch_tokens: int = 8192
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.prefix_id = prefix_id
        self.pad_id = pad_id
        self.batch_tokens = batch_tokens
        self.max_len = model.config.max_position_embeddings

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch_fast(list(texts))] if texts else []

    def sentences(self, texts: Sequence[str]) -> list[Score]:
        """Each text scored whole after the prefix token (lm-eval's loglikelihood with an empty context)."""
        return self.continuations([""] * len(texts), texts)

    def continuations(self, contexts: Sequence[str], continuations: Sequence[str]) -> list[Score]:
        encoded_contexts = self.encode([c for c in contexts if c])
        contexts_ids = iter(encoded_contexts)
        requests = [
            ((next(contexts_ids) if ctx else [self.prefix_id]), cont)
            for ctx, cont in zip(contexts, self.encode(continuations), strict=True)
        ]
        return score_requests(self.model, requests, self.max_len, self.pad_id, self.batch_tokens)

    def text(self, text: str) -> dict[str, float]:
        """Perplexity and bits per byte of a whole text, in disjoint windows of the model's context, each
        conditioned on the token before it (lm-eval's rolling log-likelihood)."""
        ids = self.encode([text])[0]
        if not ids:
            raise ValueError("empty text")
        requests = []
        for start in range(0, len(ids), self.max_len):
            previous = [ids[start - 1]] if start else [self.prefix_id]
            requests.append((previous, ids[start : start + self.max_len]))
        scores = score_requests(self.model, requests, self.max_len, self.pad_id, self.batch_tokens)
        nats = -sum(s.logprob for s in scores)
        return {
            "tokens": len(ids),
            "bytes": len(text.encode("utf-8")),
            "perplexity": math.exp(nats / len(ids)),
            "bits_per_byte": nats / math.log(2) / len(text.encode("utf-8")),
        }


def token_byte_lengths(tokenizer: Tokenizer) -> torch.Tensor:
    """Bytes of text each token stands for (byte-level BPE: one vocabulary character per byte; special tokens
    stand for none). Bits per byte divides by these, which makes it comparable across tokenizers."""
    lengths = torch.zeros(tokenizer.get_vocab_size(), dtype=torch.long)
    special = {token.content for token in tokenizer.get_added_tokens_decoder().values() if token.special}
    for token, index in tokenizer.get_vocab().items():
        lengths[index] = 0 if token in special else len(token)
    return lengths

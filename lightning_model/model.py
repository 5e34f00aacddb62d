"""A Llama-style decoder, readable in one sitting (after nanoGPT's model.py).

RMSNorm (Zhang & Sennrich 2019), rotary position embeddings (Su et al. 2021), SwiGLU (Shazeer 2020),
grouped-query attention (Ainslie et al. 2023) through `F.scaled_dot_product_attention`. Module names are those
of Hugging Face's `LlamaForCausalLM`, so our state dict loads into it unchanged (see export.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
import torch.nn.functional as F

if TYPE_CHECKING:
    from gristmill.conf.schema import TrainConfig


@dataclass
class ModelConfig:
    """Architecture hyperparameters, named as in Hugging Face's `LlamaConfig`: export copies them one by one.

    Token-id defaults follow tasks/tokenize/bpe.py, whose special tokens come first: end-of-text (0, also used
    as beginning-of-text, as in GPT-2) and padding (1).
    """

    vocab_size: int
    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    intermediate_size: int = 344
    max_position_embeddings: int = 256
    rope_theta: float = 10_000.0
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = True
    bos_token_id: int = 0
    eos_token_id: int = 0
    pad_token_id: int = 1

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_train_config(
        cls,
        cfg: TrainConfig,
        vocab_size: int,
        max_position_embeddings: int,
        bos_token_id: int,
        eos_token_id: int,
        pad_token_id: int,
    ) -> ModelConfig:
        """The architecture part of the `train` config section, plus what only the tokenizer knows."""
        return cls(
            vocab_size=vocab_size,
            hidden_size=cfg.hidden_size,
            num_hidden_layers=cfg.num_hidden_layers,
            num_attention_heads=cfg.num_attention_heads,
            num_key_value_heads=cfg.num_key_value_heads,
            intermediate_size=cfg.intermediate_size,
            max_position_embeddings=max_position_embeddings,
            rope_theta=cfg.rope_theta,
            tie_word_embeddings=cfg.tie_word_embeddings,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return cls(**data)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in float32 as Llama does: bf16 sums of squares lose too much precision.
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class RotaryEmbedding(nn.Module):
    """cos/sin tables for rotary embeddings, in the `rotate_half` layout Hugging Face's Llama uses.

    Computed once for every position up to `max_positions` (in float32) and sliced per forward pass. They are
    buffers, so they follow the model to its device, but not persistent ones: the state dict holds weights only.
    """

    def __init__(self, head_dim: int, theta: float, max_positions: int) -> None:
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        freqs = torch.outer(torch.arange(max_positions, dtype=torch.float32), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)

    def forward(self, start: int, end: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The tables for positions start..end-1."""
        return self.cos[start:end].to(dtype), self.sin[start:end].to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + rotate_half(x) * sin


class LayerCache:
    """One layer's keys and values of the tokens generated so far: a new token attends to them instead of the
    whole prefix being recomputed. Allocated for max_position_embeddings on first use, in the keys' dtype."""

    def __init__(self, max_positions: int) -> None:
        self.max_positions = max_positions
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None

    def store(self, k: torch.Tensor, v: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new tokens' k, v at `start`; return every key and value up to them."""
        if self.keys is None or self.values is None:
            B, H, _, D = k.shape
            self.keys = k.new_empty(B, H, self.max_positions, D)
            self.values = v.new_empty(B, H, self.max_positions, D)
        end = start + k.shape[2]
        self.keys[:, :, start:end] = k
        self.values[:, :, start:end] = v
        return self.keys[:, :, :end], self.values[:, :, :end]


class KVCache:
    """Every layer's cache and how many positions they hold (`length`)."""

    def __init__(self, config: ModelConfig) -> None:
        self.layers = [LayerCache(config.max_position_embeddings) for _ in range(config.num_hidden_layers)]
        self.length = 0


class Attention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_head = config.num_attention_heads
        self.n_kv_head = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.q_proj = nn.Linear(config.hidden_size, self.n_head * self.head_dim, bias=False)
        self.k_proj = nn.Linear(config.hidden_size, self.n_kv_head * self.head_dim, bias=False)
        self.v_proj = nn.Linear(config.hidden_size, self.n_kv_head * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_head * self.head_dim, config.hidden_size, bias=False)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: LayerCache | None = None, start: int = 0
    ) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None:
            k, v = cache.store(k, v, start)
        # Query i (at position start + i) sees keys 0..start + i. SDPA's is_causal aligns the mask top-left, which
        # is that only when there is no earlier key; one query sees every key; otherwise spell the mask out.
        mask = None if start == 0 or T == 1 else torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(start)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=start == 0 and T > 1, enable_gqa=self.n_kv_head != self.n_head
        )
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: LayerCache | None = None, start: int = 0
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, start)
        return x + self.mlp(self.post_attention_layernorm(x))


class Backbone(nn.Module):
    """Named `model` inside Llama, as `LlamaModel` is inside `LlamaForCausalLM`."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config.head_dim, config.rope_theta, config.max_position_embeddings)

    def forward(self, input_ids: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """With a cache, `input_ids` are the tokens after the `cache.length` it already holds."""
        x = self.embed_tokens(input_ids)
        start = cache.length if cache is not None else 0
        cos, sin = self.rotary_emb(start, start + input_ids.shape[1], x.dtype)
        layer_caches = cache.layers if cache is not None else [None] * len(self.layers)
        for layer, layer_cache in zip(self.layers, layer_caches, strict=True):
            x = layer(x, cos, sin, layer_cache, start)
        if cache is not None:
            cache.length += input_ids.shape[1]
        return self.norm(x)


class Llama(nn.Module):
    """Decoder-only transformer; `forward` returns (logits, mean next-token loss or None)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.model = Backbone(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.apply(self._init_weights)
        # GPT-2's scaled init: residual projections shrink with depth so the residual stream stays O(1).
        for name, param in self.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.num_hidden_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(
        self, input_ids: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        length = input_ids.shape[1] + (cache.length if cache is not None else 0)
        if length > self.config.max_position_embeddings:
            raise ValueError(
                f"sequence of {length} tokens exceeds max_position_embeddings {self.config.max_position_embeddings}"
            )
        logits = self.lm_head(self.model(input_ids, cache))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        return logits, loss

    def num_parameters(self, non_embedding: bool = True) -> int:
        """With non_embedding, those in matrix multiplies (N in 6N FLOPs/token): the embedding lookup table
        is excluded, the output head (tied or not) counted."""
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            total -= self.model.embed_tokens.weight.numel()
            if self.config.tie_word_embeddings:
                total += self.lm_head.weight.numel()
        return total

    @torch.no_grad()
    def sequence_logprobs(self, input_ids: torch.Tensor) -> torch.Tensor:
        """log p(input_ids[:, t] | input_ids[:, :t]) for t >= 1: shape (batch, seq_len - 1), in float32.

        Summed over a span it is the log-likelihood evaluation and bias probes compare; the first token has no
        prediction, so callers put a context token (e.g. end-of-text) in front.
        """
        logits, _ = self(input_ids[:, :-1])
        logprobs = F.log_softmax(logits.float(), dim=-1)
        return logprobs.gather(-1, input_ids[:, 1:, None]).squeeze(-1)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        eos_token_id: int | None = None,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Sample (temperature > 0) or decode greedily (temperature 0); stops early when every row hit EOS.

        With `use_cache`, each step runs the model on the new token only, against the cached keys and values of
        the ones before. Past max_position_embeddings the context window slides, every position moves, and each
        step recomputes its window as without the cache (the results are the same either way)."""
        max_positions = self.config.max_position_embeddings
        cache = KVCache(self.config) if use_cache else None
        finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for _ in range(max_new_tokens):
            if cache is not None and input_ids.shape[1] <= max_positions:
                logits = self(input_ids[:, cache.length :], cache=cache)[0][:, -1, :].float()
            else:
                logits = self(input_ids[:, -max_positions:])[0][:, -1, :].float()
            if temperature == 0:
                next_id = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k:
                    kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                next_id = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)
            input_ids = torch.cat((input_ids, next_id), dim=1)
            if eos_token_id is not None:
                finished |= next_id.squeeze(1) == eos_token_id
                if finished.all():
                    break
        return input_ids

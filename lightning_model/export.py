"""Export to Hugging Face format: `LlamaForCausalLM` weights plus our tokenizer, loadable offline by
`transformers.pipeline("text-generation", model=dir)`. Module names already match: export is a plain copy."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from gristmill.lightning_model.model import Llama, ModelConfig

if TYPE_CHECKING:
    from transformers import LlamaConfig

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def hf_config(model_config: ModelConfig) -> LlamaConfig:
    """The same architecture as a `transformers.LlamaConfig` (v5 keeps RoPE settings in `rope_parameters`)."""
    from transformers import LlamaConfig

    c = model_config
    return LlamaConfig(
        vocab_size=c.vocab_size,
        hidden_size=c.hidden_size,
        intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_hidden_layers,
        num_attention_heads=c.num_attention_heads,
        num_key_value_heads=c.num_key_value_heads,
        max_position_embeddings=c.max_position_embeddings,
        rms_norm_eps=c.rms_norm_eps,
        tie_word_embeddings=c.tie_word_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": c.rope_theta},
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=c.bos_token_id,
        eos_token_id=c.eos_token_id,
        pad_token_id=c.pad_token_id,
    )


def export_hf(model: Llama, model_config: ModelConfig, tokenizer_dir: Path, out_dir: Path) -> Path:
    """Write model (safetensors), config, generation config and tokenizer files into `out_dir`; return it."""
    from transformers import GenerationConfig, LlamaForCausalLM

    tokenizer_dir, out_dir = Path(tokenizer_dir), Path(out_dir)
    if not (tokenizer_dir / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{tokenizer_dir}: no tokenizer.json to export with the model")
    hf_model = LlamaForCausalLM(hf_config(model_config)).float()
    # Strict: every tensor has the same name on both sides (a tied head appears under both names in both), and
    # the rotary tables are non-persistent buffers on both sides.
    hf_model.load_state_dict(model.state_dict(), strict=True)
    # max_length = the context: a caller who names no length generates only what fits (prompt + new tokens),
    # instead of transformers' default 20 tokens and a warning, or running past the positions the model knows.
    hf_model.generation_config = GenerationConfig(
        max_length=model_config.max_position_embeddings,
        bos_token_id=model_config.bos_token_id,
        eos_token_id=model_config.eos_token_id,
        pad_token_id=model_config.pad_token_id,
    )
    # transformers 5 always writes safetensors (it dropped the `safe_serialization` switch), and writes
    # generation_config.json beside config.json.
    hf_model.save_pretrained(str(out_dir))
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():
            shutil.copy2(tokenizer_dir / name, out_dir / name)
    return out_dir


@torch.no_grad()
def max_logit_difference(model: Llama, export_dir: Path, input_ids: torch.Tensor) -> float:
    """Largest absolute difference between our logits and the exported model's on the same input (on CPU)."""
    from transformers import LlamaForCausalLM

    hf_model = LlamaForCausalLM.from_pretrained(str(export_dir), dtype=torch.float32).eval()
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ours, _ = model(input_ids.to(device))
    model.train(was_training)
    theirs = hf_model(input_ids.cpu()).logits
    return (ours.float().cpu() - theirs.float()).abs().max().item()

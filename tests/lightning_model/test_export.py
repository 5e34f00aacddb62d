"""Export to Hugging Face: strict weight copy, identical logits, and `transformers.pipeline` generates."""

from __future__ import annotations

import json
import os

import pytest
import torch

from gristmill.lightning_model.export import export_hf, max_logit_difference
from gristmill.lightning_model.model import Llama, ModelConfig
from tests.helpers import tiny_model_config

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A library provides functions for parsing text.",
    "Licensed under the Apache License, version 2.0.",
    "The Python package installs a command line tool.",
] * 5


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<|endoftext|>", "<|pad|>", "<|bos|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(SENTENCES, trainer=trainer)
    directory = tmp_path_factory.mktemp("tokenizer")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<|bos|>", eos_token="<|endoftext|>", pad_token="<|pad|>"
    )
    fast.save_pretrained(str(directory))
    return directory


def trained_like(config: ModelConfig) -> Llama:
    """Random weights far from init, so any mismatch in layout would move the logits visibly."""
    torch.manual_seed(0)
    model = Llama(config)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.2)
    return model.eval()


@pytest.mark.parametrize("tied, kv_heads", [(True, 4), (False, 2)])
def test_export_matches_logits_and_generates_with_pipeline(tokenizer_dir, tmp_path, tied, kv_heads):
    from transformers import AutoTokenizer, pipeline

    vocab = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    config = tiny_model_config(
        vocab_size=len(vocab),
        num_key_value_heads=kv_heads,
        max_position_embeddings=64,
        rope_theta=500.0,
        tie_word_embeddings=tied,
        bos_token_id=vocab.bos_token_id,
        eos_token_id=vocab.eos_token_id,
        pad_token_id=vocab.pad_token_id,
    )
    model = trained_like(config)
    out = export_hf(model, config, tokenizer_dir, tmp_path / "export")

    assert out == tmp_path / "export"
    expected = {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json"}
    assert expected <= set(os.listdir(out))
    hf = json.loads((out / "config.json").read_text())
    assert hf["model_type"] == "llama" and hf["num_key_value_heads"] == kv_heads
    assert hf["tie_word_embeddings"] is tied
    assert hf["rope_parameters"]["rope_theta"] == 500.0
    generation = json.loads((out / "generation_config.json").read_text())
    assert (generation["bos_token_id"], generation["eos_token_id"], generation["pad_token_id"]) == (2, 0, 1)

    ids = torch.tensor([vocab.encode(SENTENCES[0])])
    ids = torch.cat([ids, torch.randint(0, config.vocab_size, (1, 30))], dim=1)
    assert max_logit_difference(model, out, ids) < 1e-4

    generator = pipeline("text-generation", model=str(out), device="cpu")
    text = generator("The quick brown", max_new_tokens=8, do_sample=False)[0]["generated_text"]
    assert text.startswith("The quick brown") and len(text) > len("The quick brown")
    # Greedy generation through transformers continues exactly as our own greedy decoding does.
    prompt = torch.tensor([vocab.encode("The quick brown")])
    ours = model.generate(prompt, 8, temperature=0)[0, prompt.shape[1] :].tolist()
    theirs = generator.model.generate(prompt, max_new_tokens=8, do_sample=False, eos_token_id=None)
    assert theirs[0, prompt.shape[1] :].tolist() == ours


def test_export_without_tokenizer_fails_clearly(tmp_path):
    config = tiny_model_config(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2)
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        export_hf(Llama(config), config, tmp_path, tmp_path / "export")

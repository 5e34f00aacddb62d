"""The Llama decoder: HF-compatible names and logits, causality, losses, init, generation; the Lightning
module's optimizer groups and learning-rate schedule."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gristmill.conf.schema import TrainConfig
from gristmill.lightning_model.export import hf_config
from gristmill.lightning_model.model import Llama, ModelConfig
from gristmill.lightning_model.module import LitLlama, lr_factor
from tests.helpers import tiny_model_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def randomized(model: Llama, seed: int = 0) -> Llama:
    """Large random weights, so a wrong rotary layout or head grouping shows up as big logit differences."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    return model.eval()


def test_config_from_train_config_round_trips():
    train = TrainConfig(
        hidden_size=64,
        num_hidden_layers=3,
        num_attention_heads=8,
        num_key_value_heads=2,
        intermediate_size=128,
        rope_theta=500.0,
        tie_word_embeddings=False,
    )
    config = ModelConfig.from_train_config(
        train, vocab_size=300, max_position_embeddings=64, bos_token_id=0, eos_token_id=0, pad_token_id=1
    )
    assert (config.hidden_size, config.num_key_value_heads, config.rope_theta) == (64, 2, 500.0)
    assert config.tie_word_embeddings is False and config.head_dim == 8
    assert ModelConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("tied", [True, False])
def test_state_dict_and_logits_match_hugging_face_llama(tied):
    from transformers import LlamaForCausalLM

    config = tiny_model_config(tie_word_embeddings=tied)
    ours = randomized(Llama(config))
    assert not any("rotary" in key for key in ours.state_dict())  # cached tables are buffers, not weights
    theirs = LlamaForCausalLM(hf_config(config)).float().eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)  # raises on any missing or unexpected key
    assert set(theirs.state_dict()) == set(ours.state_dict())
    ids = torch.randint(0, config.vocab_size, (3, config.max_position_embeddings))
    with torch.no_grad():
        diff = (ours(ids)[0] - theirs(ids).logits).abs().max().item()
    assert diff < 1e-4


def test_tied_and_untied_heads():
    tied, untied = Llama(tiny_model_config()), Llama(tiny_model_config(tie_word_embeddings=False))
    assert tied.lm_head.weight is tied.model.embed_tokens.weight
    assert untied.lm_head.weight is not untied.model.embed_tokens.weight
    embedding = 97 * 32
    assert untied.num_parameters(non_embedding=False) - tied.num_parameters(non_embedding=False) == embedding
    assert tied.num_parameters(non_embedding=False) - tied.num_parameters(non_embedding=True) == 0
    assert untied.num_parameters(non_embedding=False) - untied.num_parameters(non_embedding=True) == embedding


def test_init_gives_uniform_predictions_and_scaled_residual_projections():
    torch.manual_seed(0)
    config = tiny_model_config(
        hidden_size=256,
        num_hidden_layers=8,
        num_attention_heads=4,
        num_key_value_heads=4,
        intermediate_size=512,
        vocab_size=1000,
    )
    model = Llama(config)
    ids = torch.randint(0, config.vocab_size, (4, 16))
    _, loss = model(ids[:, :-1], ids[:, 1:])
    assert abs(loss.item() - math.log(config.vocab_size)) < 0.1  # small init: near-uniform next-token guesses
    std_q = model.model.layers[0].self_attn.q_proj.weight.std().item()
    std_o = model.model.layers[0].self_attn.o_proj.weight.std().item()
    std_down = model.model.layers[0].mlp.down_proj.weight.std().item()
    assert std_q == pytest.approx(0.02, rel=0.05)
    assert std_o == pytest.approx(0.02 / math.sqrt(2 * 8), rel=0.05)
    assert std_down == pytest.approx(0.02 / math.sqrt(2 * 8), rel=0.05)
    assert torch.all(model.model.norm.weight == 1)


def test_attention_is_causal():
    model = randomized(Llama(tiny_model_config()))
    ids = torch.randint(2, 97, (1, 12))
    changed = ids.clone()
    changed[0, 8] = (ids[0, 8] + 1) % 97
    with torch.no_grad():
        a, b = model(ids)[0], model(changed)[0]
    assert torch.allclose(a[:, :8], b[:, :8], atol=1e-6)
    assert not torch.allclose(a[:, 8:], b[:, 8:], atol=1e-3)


def test_loss_and_sequence_logprobs_agree():
    model = randomized(Llama(tiny_model_config()))
    ids = torch.randint(0, 97, (2, 10))
    with torch.no_grad():
        logits, loss = model(ids[:, :-1], ids[:, 1:])
    expected = F.cross_entropy(logits.reshape(-1, 97), ids[:, 1:].reshape(-1))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    logprobs = model.sequence_logprobs(ids)
    assert logprobs.shape == (2, 9) and logprobs.dtype == torch.float32
    assert bool((logprobs <= 0).all())
    assert -logprobs.mean().item() == pytest.approx(loss.item(), rel=1e-5)
    assert model(ids[:, :-1])[1] is None


def test_forward_rejects_sequences_longer_than_the_context():
    model = Llama(tiny_model_config())
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_generate_greedy_sampling_and_context_crop():
    model = randomized(Llama(tiny_model_config()))
    prompt = torch.randint(2, 97, (2, 5))
    greedy = model.generate(prompt, 6, temperature=0)
    assert greedy.shape == (2, 11) and torch.equal(greedy[:, :5], prompt)
    # Greedy means each new token is the argmax given everything before it.
    with torch.no_grad():
        logits = model(greedy[:, :-1])[0]
    assert torch.equal(logits[:, 4:].argmax(-1), greedy[:, 5:])
    # top_k=1 sampling is greedy whatever the temperature.
    assert torch.equal(model.generate(prompt, 6, temperature=1.5, top_k=1), greedy)
    # Seeded sampling is reproducible.
    a = model.generate(prompt, 6, temperature=1.0, generator=torch.Generator().manual_seed(3))
    b = model.generate(prompt, 6, temperature=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    # Running past max_position_embeddings crops the context instead of failing.
    long = model.generate(prompt, 20, temperature=0)
    assert long.shape == (2, 25)


def test_cached_and_uncached_greedy_generation_are_equal():
    # 40 tokens from a 5-token prompt run past max_position_embeddings (16): the cached steps, then the sliding
    # window, must both decode exactly as recomputing the whole context at every step does.
    model = randomized(Llama(tiny_model_config()))
    prompt = torch.randint(2, 97, (2, 5))
    cached = model.generate(prompt, 40, temperature=0)
    assert torch.equal(cached, model.generate(prompt, 40, temperature=0, use_cache=False))
    assert cached.shape == (2, 45)


def test_cached_forward_gives_the_logits_of_a_full_forward():
    from gristmill.lightning_model.model import KVCache

    model = randomized(Llama(tiny_model_config()))
    ids = torch.randint(2, 97, (2, 12))
    cache = KVCache(model.config)
    with torch.no_grad():
        full = model(ids)[0]
        parts = [model(ids[:, :5], cache=cache)[0], model(ids[:, 5:9], cache=cache)[0]]  # a prefix, then several
        parts += [model(ids[:, t : t + 1], cache=cache)[0] for t in range(9, 12)]  # then one token at a time
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(torch.zeros(2, 5, dtype=torch.long), cache=cache)  # 12 cached + 5 > 16


def test_generate_stops_when_every_row_emitted_eos():
    model = randomized(Llama(tiny_model_config()))
    prompt = torch.randint(2, 97, (1, 4))
    first = model.generate(prompt, 1, temperature=0)[0, -1].item()
    out = model.generate(prompt, 10, temperature=0, eos_token_id=first)
    assert out.shape == (1, 5) and out[0, -1].item() == first
    # With two rows, generation continues until the other row emits EOS too (or the budget runs out).
    both = model.generate(torch.cat([prompt, torch.randint(2, 97, (1, 4))]), 10, temperature=0, eos_token_id=first)
    assert both.shape[1] > 5 or both[1, -1].item() == first


def test_optimizer_decays_matrices_only_and_schedule_warms_up_then_decays():
    train = TrainConfig(learning_rate=1e-2, warmup_steps=4, max_steps=20, min_lr_ratio=0.1, weight_decay=0.1)
    module = LitLlama(tiny_model_config().to_dict(), train.model_dump())
    assert module.hparams["model_config"]["vocab_size"] == 97  # plain dicts saved for the checkpoint
    setup = module.configure_optimizers()
    optimizer, scheduler = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
    assert setup["lr_scheduler"]["interval"] == "step"
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decayed["params"]) and all(p.dim() == 1 for p in plain["params"])
    assert len(decayed["params"]) + len(plain["params"]) == len(list(module.parameters()))
    assert optimizer.defaults["betas"] == (0.9, 0.95)
    lrs = []
    for _ in range(25):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:4] == pytest.approx([2.5e-3, 5e-3, 7.5e-3, 1e-2])
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:], strict=False))  # monotone decay after warmup
    assert lrs[20] == pytest.approx(1e-3) and lrs[24] == pytest.approx(1e-3)  # floor at min_lr_ratio * lr
    assert lr_factor(12, 4, 20, 0.1) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway through the cosine

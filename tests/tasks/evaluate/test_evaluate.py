import math

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers

from gristmill.lightning_model.model import Llama
from gristmill.tasks.evaluate.bias import (
    hurtful_word,
    score_bold,
    score_honest,
    score_pairs,
    stereoset_scores,
    summarise_pairs,
)
from gristmill.tasks.evaluate.gate import CANDIDATE, CHAMPION, Check, decide
from gristmill.tasks.evaluate.loaders import GroupPrompt, HonestSet, SentencePair
from gristmill.tasks.evaluate.perplexity import perplexity
from gristmill.tasks.evaluate.scoring import SentenceScorer, score_requests, token_byte_lengths
from tests.helpers import tiny_model_config, write_token_shard

WORDS = ["<bos>", "<pad>", "the", "nurse", "doctor", "said", "she", "he", "was", "late", "."]


def tiny_model(vocab_size: int = len(WORDS), context: int = 16, seed: int = 0) -> Llama:
    torch.manual_seed(seed)
    config = tiny_model_config(
        vocab_size=vocab_size, num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=context
    )
    return Llama(config).eval()


def word_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<pad>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tokenizer


def by_hand(model: Llama, ids: list[int]) -> float:
    """Sum of log p(ids[t] | ids[:t]) for t >= 1, one sentence per forward pass, no padding."""
    logits, _ = model(torch.tensor([ids[:-1]]))
    logprobs = torch.log_softmax(logits[0].double(), -1)
    return sum(logprobs[t - 1, ids[t]].item() for t in range(1, len(ids)))


def test_batched_padded_scores_equal_one_sentence_at_a_time():
    model = tiny_model()
    requests = [([0], [2, 3, 5, 6, 8, 9, 10]), ([0], [2, 4, 7]), ([0, 2, 3], [5, 6]), ([0], [9])]
    batched = score_requests(model, requests, max_len=16, pad_id=1, batch_tokens=20)  # several batches
    for (context, continuation), score in zip(requests, batched, strict=True):
        whole = by_hand(model, context + continuation)
        before = by_hand(model, context) if len(context) > 1 else 0.0
        assert score.logprob == pytest.approx(whole - before, abs=1e-5)
        assert score.tokens == len(continuation)


def test_requests_longer_than_the_context_keep_their_last_tokens_as_lm_eval_does():
    model = tiny_model(context=4)
    [score] = score_requests(model, [([0], [2, 3, 5, 6, 8, 9])], max_len=4, pad_id=1)
    # lm-eval: (context + continuation)[-(max_len + 1):], inputs all but the last, score the continuation's part
    assert score.tokens == 4 and score.logprob == pytest.approx(by_hand(model, [3, 5, 6, 8, 9]), abs=1e-5)


def test_crows_pairs_figures_match_a_hand_computed_case():
    model = tiny_model()
    scorer = SentenceScorer(model, word_tokenizer(), prefix_id=0, pad_id=1, batch_tokens=64)
    pairs = [
        SentencePair("gender", "the nurse said she was late .", "the nurse said he was late ."),
        SentencePair("gender", "the doctor said he was late .", "the doctor said she was late ."),
        SentencePair("age", "the doctor was late .", "the nurse was late ."),
    ]
    summary, rows = score_pairs(pairs, scorer)
    ids = {w: i for i, w in enumerate(WORDS)}
    hand = [
        (by_hand(model, [0, *(ids[w] for w in p.more.split())]), by_hand(model, [0, *(ids[w] for w in p.less.split())]))
        for p in pairs
    ]
    flat = [ll for r in rows for ll in (r["ll_more"], r["ll_less"])]
    assert flat == pytest.approx([ll for pair in hand for ll in pair], abs=1e-5)
    pct = sum(m > n for m, n in hand) / 3
    diff = sum(abs(m - n) for m, n in hand) / 3
    assert summary["overall"]["pct_stereotype"] == pytest.approx(pct)
    assert summary["overall"]["likelihood_diff"] == pytest.approx(diff, abs=1e-5)
    assert summary["age"]["pairs"] == 1 and summary["gender"]["pairs"] == 2


def test_pair_summary_counts_preferences_per_type():
    pairs = [SentencePair("gender", "a", "b"), SentencePair("gender", "c", "d"), SentencePair("age", "e", "f")]
    summary, _ = summarise_pairs(pairs, [(-1.0, -3.0), (-2.0, -1.0), (-1.0, -1.0)])
    assert summary["gender"] == {"pairs": 2, "pct_stereotype": 0.5, "likelihood_diff": 1.5, "gap": 0.5}
    assert summary["age"]["pct_stereotype"] == 0.0  # a tie is not a preference (lm-eval: ll1 > ll2)


def test_stereoset_scores_follow_the_papers_definitions():
    rows = [  # target "a": 2 items, both prefer the stereotype; one unrelated beats the anti-stereotype
        {"target": "a", "stereotype": -1.0, "anti_stereotype": -2.0, "unrelated": -3.0},
        {"target": "a", "stereotype": -1.0, "anti_stereotype": -2.0, "unrelated": -1.5},
        {"target": "b", "stereotype": -2.0, "anti_stereotype": -1.0, "unrelated": -5.0},
    ]
    scores = stereoset_scores(rows)
    # per target: a: SS 100, LMS 3/4*100; b: SS 0, LMS 100 -> means SS 50, LMS 87.5; ICAT = 87.5 * 50/50
    assert scores == {"items": 3, "ss": 50.0, "lms": 87.5, "icat": 87.5}


def test_bold_sentiment_per_group_and_gap():
    prompts = [GroupPrompt("a", "p1"), GroupPrompt("a", "p2"), GroupPrompt("b", "p3")]
    summary, rows = score_bold(prompts, ["a wonderful happy day", "terrible awful", "the table"])
    assert rows[0]["compound"] > 0.5 and rows[1]["compound"] < -0.5 and rows[2]["compound"] == 0.0
    assert summary["a"]["share_negative"] == 0.5 and summary["b"]["share_negative"] == 0.0
    gap = abs(summary["a"]["mean_sentiment"] - summary["b"]["mean_sentiment"])
    assert summary["overall"]["sentiment_gap"] == pytest.approx(gap)


def test_honest_counts_completions_with_a_lexicon_word_per_group():
    honest = HonestSet([GroupPrompt("female", "she is a"), GroupPrompt("male", "he is a")], frozenset({"idiot"}))
    summary, _ = score_honest(honest, [["n idiot.", "doctor"], ["Idiot!", "idiot, idiot"]])
    assert summary["female"]["honest_score"] == 0.5 and summary["male"]["honest_score"] == 1.0
    assert summary["overall"] == {"completions": 4, "honest_score": 0.75}
    assert hurtful_word("a, idiot", frozenset({"idiot"})) == "idiot"


def test_gate_champion_when_all_pass_candidate_with_reasons_otherwise():
    checks = [Check("perplexity", 20.0, 30.0), Check("crows_pairs.pct_stereotype_deviation", 0.04, 0.1)]
    assert decide(checks, champion_perplexity=None, tolerance=0.02) == decide(checks, 19.8, 0.02)
    assert decide(checks, None, 0.02).alias == CHAMPION
    worse = decide(checks, champion_perplexity=15.0, tolerance=0.02)
    assert worse.alias == CANDIDATE and "worse than the champion's 15" in worse.reasons[0]
    failing = decide([checks[0], Check("stereoset.icat", 40.0, 50.0, higher_is_better=True)], None, 0.02)
    assert failing.alias == CANDIDATE and failing.reasons == ["stereoset.icat = 40 (fail: needs >= 50)"]


def test_perplexity_and_bits_per_byte_of_an_untrained_model(tmp_path):
    model = tiny_model(vocab_size=256)
    path = tmp_path / "val.parquet"
    write_token_shard(path, torch.randint(0, 256, (40, 17)).numpy())
    byte_lengths = torch.full((256,), 2)
    result = perplexity(model, [path], batch_size=8, max_batches=3, byte_lengths=byte_lengths)
    assert result["tokens"] == 3 * 8 * 16
    assert 200 < result["perplexity"] < 320  # ln(256) nats per token at initialisation
    assert result["val_loss"] == pytest.approx(math.log(result["perplexity"]))
    assert result["bits_per_byte"] == pytest.approx(result["val_loss"] / math.log(2) / 2)


def test_token_byte_lengths_of_a_byte_level_tokenizer():
    from gristmill.tasks.tokenize.bpe import train_bpe

    tokenizer = train_bpe(["héllo wörld, hello world"] * 20, vocab_size=300, min_frequency=1)
    lengths = token_byte_lengths(tokenizer)
    text = "héllo wörld"
    assert sum(lengths[i].item() for i in tokenizer.encode(text).ids) == len(text.encode())
    assert lengths[tokenizer.token_to_id("<|endoftext|>")] == 0


def test_text_perplexity_uses_disjoint_context_windows_as_lm_eval_rolling_does():
    model = tiny_model(context=8)
    scorer = SentenceScorer(model, word_tokenizer(), prefix_id=0, pad_id=1, batch_tokens=64)
    text = " ".join(["the nurse said she was late ."] * 3)  # 21 tokens: windows of 8, 8 and 5
    ids = [WORDS.index(w) for w in text.split()]
    nats = -(by_hand(model, [0, *ids[:8]]) + by_hand(model, ids[7:16]) + by_hand(model, ids[15:]))
    result = scorer.text(text)
    assert result["tokens"] == 21 and result["bytes"] == len(text)
    assert result["perplexity"] == pytest.approx(math.exp(nats / 21), rel=1e-5)
    assert result["bits_per_byte"] == pytest.approx(nats / math.log(2) / len(text), rel=1e-5)

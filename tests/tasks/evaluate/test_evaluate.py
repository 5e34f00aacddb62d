import math

import pytest
import torch

from gristmill.conf.schema import CONF_DIR
from gristmill.lightning_model.model import Llama
from gristmill.tasks.evaluate.bias import BiasPair, load_pairs, score_pairs
from gristmill.tasks.evaluate.perplexity import perplexity, sequence_logprob
from tests.helpers import tiny_model_config, write_token_shard


def test_shipped_pairs_load_and_cover_several_bias_types():
    pairs = load_pairs(CONF_DIR / "bias_pairs.yaml")
    assert len(pairs) >= 30
    assert {"gender", "religion", "age", "disability", "nationality"} <= {p.bias_type for p in pairs}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("pairs: []", "non-empty list under 'pairs'"),
        ("pairs: [{bias_type: gender, stereotype: 'A.'}]", r"pairs\[0\] needs .*'anti_stereotype'"),
        ("pairs: [{bias_type: gender, stereotype: 'A.', anti_stereotype: 'B.'}, 7]", r"pairs\[1\]"),
        ("pairs: [unclosed", "cannot read bias pairs"),
    ],
)
def test_malformed_pairs_name_the_file_entry_and_field(tmp_path, content, message):
    path = tmp_path / "pairs.yaml"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as err:
        load_pairs(path)
    assert str(path) in str(err.value)


def test_score_pairs_counts_preferences_per_type():
    pairs = [
        BiasPair("gender", "she a", "he a"),
        BiasPair("gender", "she b", "he b"),
        BiasPair("age", "old c", "young c"),
    ]
    # A "model" that prefers any sentence mentioning "she" or "young".
    summary, rows = score_pairs(pairs, lambda text: -1.0 if ("she" in text or "young" in text) else -3.0)
    assert summary["gender"] == {"pairs": 2, "pct_stereotype": 1.0, "likelihood_diff": 2.0}
    assert summary["age"]["pct_stereotype"] == 0.0
    assert summary["overall"]["pct_stereotype"] == pytest.approx(2 / 3, abs=1e-4)
    assert [r["prefers_stereotype"] for r in rows] == [True, True, False]


def test_perplexity_of_an_untrained_model_is_near_the_vocabulary_size(tmp_path):
    torch.manual_seed(0)
    config = tiny_model_config(vocab_size=256, num_hidden_layers=1, num_attention_heads=2)
    model = Llama(config)
    path = tmp_path / "val.parquet"
    write_token_shard(path, torch.randint(0, 256, (40, 17)).numpy())
    result = perplexity(model, [path], batch_size=8, max_batches=3)
    assert result["tokens"] == 3 * 8 * 16
    assert 200 < result["perplexity"] < 320  # ln(256) nats per token at initialisation
    assert result["val_loss"] == pytest.approx(math.log(result["perplexity"]))
    ids = [1, 5, 9, 3]
    logits, _ = model(torch.tensor([ids[:-1]]))
    expected = torch.log_softmax(logits, -1)[0, torch.arange(3), torch.tensor(ids[1:])].sum().item()
    assert sequence_logprob(model, ids) == pytest.approx(expected, abs=1e-5)

"""lm-evaluation-harness evaluates the export as it is (`lm_eval --model hf --model_args pretrained=DIR`), offline,
on a CrowS-Pairs task over a local JSONL file, and its figures equal gristmill's own for the same pairs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gristmill.conf.schema import CONF_DIR
from gristmill.lightning_model.export import export_hf
from gristmill.lightning_model.weights import load_model
from gristmill.tasks.evaluate.bias import score_pairs
from gristmill.tasks.evaluate.loaders import load_crows_pairs, load_pairs
from gristmill.tasks.evaluate.scoring import SentenceScorer
from gristmill.tasks.shards import StageOutput
from gristmill.tasks.tokenize.bpe import load_tokenizer
from tests.tasks.evaluate.bias_files import write_crows_pairs

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is in the dev extra")


def crows_pairs_task(directory: Path, data: Path) -> Path:
    """lm-eval's own CrowS-Pairs task (its doc_to_choice and process_results), pointed at a local JSONL file."""
    published = Path(lm_eval.__file__).parent / "tasks" / "crows_pairs" / "crows_pairs_english.yaml"
    task = directory / "gristmill_crows_pairs.yaml"
    task.write_text(
        f"include: {published}\n"
        "task: gristmill_crows_pairs\n"
        "tag: []\n"
        "dataset_path: json\n"
        "dataset_name: null\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\n"
    )
    return task


def test_lm_eval_scores_the_export_as_gristmill_does(trained, tmp_path):
    train_out = StageOutput(trained, "train")
    model, model_config = load_model(train_out.path / train_out.read_manifest().files["model"])
    tokenizer_dir = Path(trained) / "tokenize" / "tokenizer"
    export = export_hf(model, model_config, tokenizer_dir, tmp_path / "export")
    tokenizer = load_tokenizer(tokenizer_dir)
    pairs = load_crows_pairs(write_crows_pairs(tmp_path / "crows.csv")) + load_pairs(CONF_DIR / "bias_pairs.yaml")
    # Whole sentences within this tiny model's 32-token context (lm-eval fails on a longer continuation).
    fits = [
        p
        for p in pairs
        if max(len(tokenizer.encode(s).ids) for s in (p.more, p.less)) < model_config.max_position_embeddings
    ]
    assert len(fits) >= 20
    pairs = fits
    data = tmp_path / "pairs.jsonl"
    data.write_text(
        "".join(
            json.dumps(
                {"sent_more": p.more, "sent_less": p.less, "stereo_antistereo": "stereo", "bias_type": p.bias_type}
            )
            + "\n"
            for p in pairs
        )
    )
    crows_pairs_task(tmp_path, data)
    offline = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "true"}
    command = [
        str(Path(sys.executable).with_name("lm_eval")),
        "--model", "hf",
        "--model_args", f"pretrained={export},dtype=float64",
        "--tasks", "gristmill_crows_pairs",
        "--include_path", str(tmp_path),
        "--device", "cpu",
        "--batch_size", "8",
        "--output_path", str(tmp_path / "out"),
    ]  # fmt: skip
    done = subprocess.run(command, env={**os.environ, **offline}, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    [results_file] = (tmp_path / "out").rglob("results_*.json")
    theirs = json.loads(results_file.read_text())["results"]["gristmill_crows_pairs"]

    # Both sides in float64, so the comparison is of the computation, not of float32 rounding (in float32 the two
    # differ by about 3e-7 relative: docs/benchmarks.md).
    scorer = SentenceScorer(model.double(), tokenizer, model_config.bos_token_id, model_config.pad_token_id)
    ours, _ = score_pairs(pairs, scorer)

    assert theirs["pct_stereotype,none"] == ours["overall"]["pct_stereotype"]
    assert theirs["likelihood_diff,none"] == pytest.approx(ours["overall"]["likelihood_diff"], abs=1e-6)

"""CrowS-Pairs-sized likelihood scoring: gristmill's batched scorer against one sentence per forward pass.

    .venv/bin/python benchmarks/bias_scoring_speed.py [--pairs 1508] [--peer-pairs 150] [--workspace workspace/demo]

The model is the demo's: `<workspace>/train/final` and its tokenizer when that workspace exists, otherwise a model of
the demo's shape (conf/demo.yaml: 4 layers, hidden 128, context 128, vocabulary 4096; speed does not depend on the
weights) with a tokenizer trained on the text below. The sentences are real prose of CrowS-Pairs' length (8-30 words,
from the article bodies of ../shared/data/html_extraction), each paired with a copy that swaps one word, so 1,508
pairs are 3,016 sentences as in CrowS-Pairs (whose files do not ship here). The peer, one sentence per forward pass
(the evaluate stage before batching), is timed on `--peer-pairs` pairs in the same process and scaled to `--pairs`.
Both score the same requests, checked equal. Goal: <= 30 s for 1,508 pairs on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gristmill.conf.schema import load_config  # noqa: E402
from gristmill.lightning_model.model import Llama, ModelConfig  # noqa: E402
from gristmill.lightning_model.weights import load_model  # noqa: E402
from gristmill.tasks.evaluate.loaders import SentencePair  # noqa: E402
from gristmill.tasks.evaluate.scoring import SentenceScorer, score_requests  # noqa: E402
from gristmill.tasks.tokenize.bpe import BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, load_tokenizer, train_bpe  # noqa: E402

DATA = Path(os.environ.get("GRISTMILL_SHARED_DATA", ROOT.parent / "shared" / "data"))


def sentences() -> list[str]:
    truth = json.loads((DATA / "html_extraction" / "ground-truth.json").read_text())
    text = " ".join(item["articleBody"] for item in truth.values() if item.get("articleBody"))
    found = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text)]
    return [s for s in found if 8 <= len(s.split()) <= 30]


def demo_pairs(count: int) -> list[SentencePair]:
    found = sentences()
    pairs = []
    for index in range(count):
        words = found[index % len(found)].split()
        swapped = [*words[:-2], words[-2] if words[-2] != "the" else "a", words[-1]]
        swapped[len(words) // 2] = "they" if words[len(words) // 2] != "they" else "we"
        pairs.append(SentencePair("demo", " ".join(words), " ".join(swapped)))
    return pairs


def demo_model(workspace: Path):
    final = workspace / "train" / "final"
    if final.is_dir():
        model, config = load_model(final)
        return model, config, load_tokenizer(workspace / "tokenize" / "tokenizer"), f"trained ({final})"
    demo = load_config(ROOT / "conf" / "demo.yaml")
    tokenizer = train_bpe(sentences(), demo.tokenize.vocab_size, demo.tokenize.min_frequency)
    ids = {t: tokenizer.token_to_id(t) for t in (BOS_TOKEN, EOS_TOKEN, PAD_TOKEN)}
    config = ModelConfig.from_train_config(
        demo.train,
        vocab_size=tokenizer.get_vocab_size(),
        max_position_embeddings=demo.tokenize.seq_len,
        bos_token_id=ids[BOS_TOKEN],
        eos_token_id=ids[EOS_TOKEN],
        pad_token_id=ids[PAD_TOKEN],
    )
    torch.manual_seed(0)
    return Llama(config).eval(), config, tokenizer, "demo-shaped, untrained (no demo workspace here)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=1508)
    parser.add_argument("--peer-pairs", type=int, default=100)
    parser.add_argument("--workspace", type=Path, default=ROOT / "workspace" / "demo")
    args = parser.parse_args()

    model, config, tokenizer, source = demo_model(args.workspace)
    scorer = SentenceScorer(model, tokenizer, config.bos_token_id, config.pad_token_id)
    pairs = demo_pairs(args.pairs)
    texts = [s for p in pairs for s in (p.more, p.less)]
    tokens = sum(len(ids) + 1 for ids in scorer.encode(texts))
    print(f"model: {source}; {model.num_parameters():,} parameters; torch threads {torch.get_num_threads()}")
    print(f"{len(pairs)} pairs = {len(texts)} sentences, {tokens:,} tokens with BOS")

    started, cpu = time.perf_counter(), time.process_time()
    batched = scorer.sentences(texts)
    batched_s, batched_cpu = time.perf_counter() - started, time.process_time() - cpu

    sample = texts[: 2 * args.peer_pairs]
    started, cpu = time.perf_counter(), time.process_time()
    one_by_one = [
        score_requests(model, [([config.bos_token_id], ids)], config.max_position_embeddings, config.pad_token_id)[0]
        for ids in scorer.encode(sample)
    ]
    scale = len(texts) / len(sample)
    peer_s, peer_cpu = (time.perf_counter() - started) * scale, (time.process_time() - cpu) * scale
    worst = max(abs(a.logprob - b.logprob) for a, b in zip(batched, one_by_one, strict=False))

    print(f"load average (1 min): {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"batched (gristmill):      {batched_s:7.1f} s wall, {batched_cpu:7.1f} s CPU for {len(pairs)} pairs")
    print(
        f"one sentence per forward: {peer_s:7.1f} s wall, {peer_cpu:7.1f} s CPU for {len(pairs)} pairs "
        f"(timed on {len(sample) // 2}, scaled)"
    )
    print(f"speed-up: {peer_s / batched_s:.1f}x wall, {peer_cpu / batched_cpu:.1f}x CPU")
    print(f"largest |Δ log-likelihood| batched vs one by one (float32): {worst:.1e}")


if __name__ == "__main__":
    main()

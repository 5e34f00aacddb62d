"""Our Lightning train stage against a bare PyTorch loop, interleaved: same model, batch, data, optimiser, schedule.

    GRISTMILL_PROGRESS=0 .venv/bin/python benchmarks/train_vs_bare.py [--steps 150] [--block 10] [--threads 2]

The stage (`train_model`, checkpoints and MFU callback included) runs `--steps` steps of the demo model on
packed token shards of random tokens; after every `--block` of its steps a callback runs `--block` steps of the bare
loop (AdamW, warmup-cosine, gradient clipping) in the same process and threads (benchmarks/train_common.py). Each
block is timed on its own, so load from elsewhere on the machine falls on both alike; the first block pair is
warm-up and left out. Prints the median tokens/s of each, and the median of the per-block ratios with its spread
(goal: the stage >= 0.95x the bare loop).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_common import BareLoop, Interleave, compare, make_shards  # noqa: E402

from gristmill.conf.schema import load_config  # noqa: E402
from gristmill.lightning_model.model import ModelConfig  # noqa: E402
from gristmill.tasks.train.stage import train_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150, help="stage steps (the bare loop runs as many)")
    parser.add_argument("--block", type=int, default=10, help="steps per block before switching loops")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    demo = load_config(Path(__file__).resolve().parents[1] / "conf" / "demo.yaml")
    cfg = demo.train.model_copy(update={"max_steps": args.steps, "val_every_steps": 10 * args.steps})
    vocab, seq_len = demo.tokenize.vocab_size, demo.tokenize.seq_len
    model_config = ModelConfig.from_train_config(cfg, vocab, seq_len, bos_token_id=2, eos_token_id=0, pad_token_id=1)
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_shards(Path(tmp) / "train", vocab, seq_len, rows=4096)
        interleave = Interleave(BareLoop(cfg, model_config, paths, torch.device("cpu")), args.block)
        # (Its own tokens_per_s would count the bare blocks run inside it: the blocks are timed instead.)
        train_model(cfg, paths, paths[:1], model_config, Path(tmp) / "ckpt", callbacks=[interleave])
    result = compare(interleave, cfg.batch_size * seq_len, skip_blocks=1)
    print(
        f"model: demo config ({model_config.num_hidden_layers} layers, {model_config.hidden_size} wide), "
        f"batch {cfg.batch_size} x {seq_len} tokens, {args.steps} steps each in blocks of {args.block}, "
        f"{args.threads} threads, interleaved in one process"
    )
    print(f"bare PyTorch loop : {result.bare_tokens_per_s:10.0f} tokens/s (median block)")
    print(f"gristmill stage   : {result.stage_tokens_per_s:10.0f} tokens/s (median block)")
    print(f"ratio stage/bare  : {result.median_ratio:10.3f} median over block pairs ({result.spread()})")


if __name__ == "__main__":
    main()

"""GPU check: the train stage beside a bare PyTorch loop, bf16 and compiled; tokens/s and MFU of both, and the ratio.

    .venv/bin/python benchmarks/gpu_check.py                   # on a GPU: conf/gpt2-124m.yaml's model and batch
    .venv/bin/python benchmarks/gpu_check.py --tiny --steps 4 --block 2   # anywhere: a tiny model on the CPU

The stage (`train_model`: Lightning, bf16-mixed, `torch.compile`, fused AdamW, checkpoints, MFU callback)
and the bare loop (the same model, batch, optimiser, schedule, clipping, bf16 autocast, compiled) run interleaved
in one process: after every `--block` stage steps, `--block` bare steps (benchmarks/train_common.py), so the
first GPU run gives the ratio, not just a figure. The first block pair (compilation) is not timed. One micro-batch
per optimizer step here (no gradient accumulation), random tokens (speed does not depend on their values).
MFU = tokens/s x (6N + 12·L·H·Q·T) / peak, with the bf16 peak from Lightning's device table
(see lightning_model/callbacks.py).
Goals on an H100/H200-class GPU: the stage >= 0.95x the bare loop, and >= 45% MFU.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from train_common import BareLoop, Interleave, compare, make_shards  # noqa: E402

from gristmill.conf.schema import TrainConfig, load_config  # noqa: E402
from gristmill.lightning_model.callbacks import device_peak_flops, flops_per_token  # noqa: E402
from gristmill.lightning_model.model import ModelConfig  # noqa: E402
from gristmill.tasks.train.stage import train_model  # noqa: E402

TINY = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "intermediate_size": 128,
    "batch_size": 2,
    "accelerator": "cpu",
    "precision": "32-true",
    "compile": False,
    "num_workers": 0,
}


def settings(args: argparse.Namespace) -> tuple[TrainConfig, ModelConfig]:
    cfg = load_config(ROOT / "conf" / "gpt2-124m.yaml")
    steps = args.block * (args.steps // args.block + 1)  # the untimed first block, then the timed ones
    update = {
        "max_steps": steps,
        "val_every_steps": 10 * steps,  # no validation or checkpoint inside the timed blocks
        "val_batches": 1,
        "accumulate_grad_batches": 1,
        **(TINY if args.tiny else {}),
        **({"batch_size": args.batch_size} if args.batch_size else {}),
        **({"compile": False} if args.no_compile else {}),
    }
    train = cfg.train.model_copy(update=update)
    seq_len = 64 if args.tiny else cfg.tokenize.seq_len
    vocab = 512 if args.tiny else cfg.tokenize.vocab_size
    config = ModelConfig.from_train_config(train, vocab, seq_len, bos_token_id=2, eos_token_id=0, pad_token_id=1)
    return train, config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny model on the CPU, to test the script")
    parser.add_argument("--steps", type=int, default=60, help="timed steps of each loop")
    parser.add_argument("--block", type=int, default=10, help="steps per block before switching loops")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    if not args.tiny and not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --tiny to check the script on a CPU")

    cfg, config = settings(args)
    device = torch.device("cpu" if args.tiny else "cuda")
    with tempfile.TemporaryDirectory() as tmp:
        rows = max(256, 4 * cfg.batch_size)
        paths = make_shards(Path(tmp) / "train", config.vocab_size, config.max_position_embeddings, rows=rows)
        bare = BareLoop(cfg, config, paths, device)
        interleave = Interleave(bare, args.block)
        train_model(cfg, paths, paths[:1], config, Path(tmp) / "ckpt", callbacks=[interleave])
    result = compare(interleave, cfg.batch_size * config.max_position_embeddings, skip_blocks=1)

    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(
        f"device: {name}; model: {bare.model.num_parameters(non_embedding=False) / 1e6:.1f}M parameters, "
        f"{config.num_hidden_layers} layers x {config.hidden_size}; batch {cfg.batch_size} x "
        f"{config.max_position_embeddings} tokens; precision {cfg.precision}; compiled: {cfg.compile}; "
        f"{len(result.ratios)} timed blocks of {args.block} steps each"
    )
    peak = device_peak_flops()
    flops = flops_per_token(bare.model)
    tokens_per_step = cfg.batch_size * config.max_position_embeddings
    for label, rate in (
        ("bare PyTorch loop", result.bare_tokens_per_s),
        ("gristmill stage", result.stage_tokens_per_s),
    ):
        mfu = (
            f"MFU {rate * flops / peak:.1%} of {peak / 1e12:.0f} TFLOP/s (bf16)" if peak else "MFU: no bf16 peak known"
        )
        step_ms = 1000 * tokens_per_step / rate
        print(f"{label:18s}: tokens/s: {rate:12,.0f}   step: {step_ms:8.1f} ms   {mfu}")
    print(f"ratio stage/bare  : {result.median_ratio:.3f} median over block pairs ({result.spread()})")
    if device.type == "cuda":
        print(f"peak GPU memory (both models): {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()

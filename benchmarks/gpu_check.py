"""GPU check: the GPT-2-small-sized config, bf16, compiled; prints tokens/s and MFU.

    .venv/bin/python benchmarks/gpu_check.py                  # on a GPU: conf/gpt2-124m.yaml's model and batch
    .venv/bin/python benchmarks/gpu_check.py --tiny --steps 3  # anywhere: a tiny model, to check the script runs

Random tokens (speed does not depend on their values), our `Llama`, fused AdamW, bf16 autocast and
`torch.compile`, as the train stage runs them on a GPU. Warm-up steps (compilation) are not timed.
MFU = tokens/s x (6N + 12·L·H·Q·T) / peak, with the bf16 peak from Lightning's device table (see
lightning_model/callbacks.py).
Goal on an H100/H200-class GPU: >= 45% MFU.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gristmill.conf.schema import load_config  # noqa: E402
from gristmill.lightning_model.callbacks import device_peak_flops, flops_per_token  # noqa: E402
from gristmill.lightning_model.model import Llama, ModelConfig  # noqa: E402


def model_config(tiny: bool) -> tuple[ModelConfig, int]:
    cfg = load_config(ROOT / "conf" / "gpt2-124m.yaml")
    train = cfg.train
    if tiny:
        train = train.model_copy(
            update={
                "hidden_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 4,
                "intermediate_size": 128,
                "batch_size": 2,
            }
        )
    seq_len = 64 if tiny else cfg.tokenize.seq_len
    vocab = 512 if tiny else cfg.tokenize.vocab_size
    config = ModelConfig.from_train_config(train, vocab, seq_len, bos_token_id=2, eos_token_id=0, pad_token_id=1)
    return config, train.batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny model, to test the script on a CPU")
    parser.add_argument("--steps", type=int, default=30, help="timed steps")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps (compilation)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    config, batch_size = model_config(args.tiny)
    batch_size = args.batch_size or batch_size
    torch.manual_seed(0)
    model = Llama(config).to(device)
    if not args.no_compile and device == "cuda":
        model.compile()
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), fused=device == "cuda")
    tokens = torch.randint(0, config.vocab_size, (batch_size, config.max_position_embeddings + 1), device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else contextlib.nullcontext()

    def step() -> float:
        with autocast:
            _, loss = model(tokens[:, :-1], tokens[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    for _ in range(args.warmup):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    tokens_per_s = args.steps * batch_size * config.max_position_embeddings / seconds
    peak = device_peak_flops()
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(
        f"device: {name}; model: {model.num_parameters(non_embedding=False) / 1e6:.1f}M parameters, "
        f"{config.num_hidden_layers} layers x {config.hidden_size}; batch {batch_size} x "
        f"{config.max_position_embeddings} tokens; compiled: {device == 'cuda' and not args.no_compile}"
    )
    print(f"tokens/s: {tokens_per_s:,.0f}   step: {1000 * seconds / args.steps:.1f} ms   final loss: {loss:.3f}")
    if peak:
        print(f"MFU: {tokens_per_s * flops_per_token(model) / peak:.1%} of {peak / 1e12:.0f} TFLOP/s (bf16)")
    else:
        print("MFU: no bf16 peak known for this device")
    if device == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()

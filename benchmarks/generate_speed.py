"""Generation with the KV cache against recomputing the whole context at every step, on the same model and prompt.

    .venv/bin/python benchmarks/generate_speed.py [--config conf/demo.yaml] [--tokens 40] [--rounds 5] [--device cpu]

The model has the shape the config's train section gives it (random weights: speed does not depend on them), the
context length is tokenize.seq_len, the prompt 8 tokens, decoding greedy with batch 1, as the evaluate stage
generates. The two modes alternate round by round, so a change in the machine's load hits both; each figure is
the median round. Both modes must produce the same tokens (checked).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gristmill.conf.schema import load_config  # noqa: E402
from gristmill.lightning_model.model import Llama, ModelConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def timed_generation(model: Llama, prompt: torch.Tensor, tokens: int, use_cache: bool) -> tuple[float, torch.Tensor]:
    if prompt.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    out = model.generate(prompt, tokens, temperature=0, use_cache=use_cache)
    if prompt.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "conf" / "demo.yaml"))
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    cfg = load_config(args.config)
    config = ModelConfig.from_train_config(
        cfg.train,
        vocab_size=cfg.tokenize.vocab_size,
        max_position_embeddings=cfg.tokenize.seq_len,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=1,
    )
    torch.manual_seed(0)
    model = Llama(config).to(args.device).eval()
    prompt = torch.randint(2, config.vocab_size, (1, 8), device=args.device)
    timed_generation(model, prompt, args.tokens, use_cache=True)  # warm-up: allocator, kernels, caches
    timed_generation(model, prompt, args.tokens, use_cache=False)

    seconds: dict[bool, list[float]] = {True: [], False: []}
    outputs: dict[bool, torch.Tensor] = {}
    for _ in range(args.rounds):
        for use_cache in (True, False):  # interleaved: load changes hit both modes alike
            elapsed, outputs[use_cache] = timed_generation(model, prompt, args.tokens, use_cache)
            seconds[use_cache].append(elapsed)
    assert torch.equal(outputs[True], outputs[False]), "cached and uncached generation differ"

    cached, uncached = statistics.median(seconds[True]), statistics.median(seconds[False])
    print(
        f"model: {model.num_parameters(non_embedding=False) / 1e6:.1f}M parameters, {config.num_hidden_layers} layers "
        f"x {config.hidden_size}, context {config.max_position_embeddings}; device {args.device}, "
        f"{torch.get_num_threads()} CPU threads; {args.tokens} tokens from an 8-token prompt, greedy, batch 1; "
        f"median of {args.rounds} interleaved rounds"
    )
    print(f"with KV cache:    {cached * 1000:8.1f} ms  ({args.tokens / cached:,.0f} tokens/s)")
    print(f"without KV cache: {uncached * 1000:8.1f} ms  ({args.tokens / uncached:,.0f} tokens/s)")
    print(f"speed-up: {uncached / cached:.2f}x (same tokens: yes)")


if __name__ == "__main__":
    main()

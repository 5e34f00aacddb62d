"""What the multilingual shingling (NFKC, CJK segmentation) costs on English text: word 5-gram shingles of the clean
benchmark's documents (mostly English, many with curly quotes or no-break spaces), by this checkout's code and by a
peer checkout's (its own interpreter, e.g. the code before issue 13), interleaved so that load hits both alike.

    .venv/bin/python benchmarks/clean_corpus.py --out /tmp/bench/clean_docs.jsonl --docs 300
    .venv/bin/python benchmarks/shingle_scripts_cost.py /tmp/bench/clean_docs.unique.jsonl \
        --peer /work/main/.venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CHILD = "--child"


def measure(path: str, copies: int = 10, repeats: int = 5) -> float:
    """Best seconds to shingle the documents (the ones less than 5% non-ASCII: English), `copies` times over."""
    import pyarrow as pa

    from gristmill.tasks.dedup.minhash import Shingler

    with open(path) as lines:
        docs = [json.loads(line)["text"] for line in lines]
    english = [d for d in docs if sum(not c.isascii() for c in d) < 0.05 * len(d)]
    texts = pa.array(english * copies)
    shingler = Shingler("word", 5)
    shingler.batch(texts[:10])  # imports and first-call caches outside the timing
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        shingler.batch(texts)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    if sys.argv[1:2] == [CHILD]:
        print(measure(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("docs", help="the unique documents written by clean_corpus.py (*.unique.jsonl)")
    parser.add_argument("--peer", required=True, help="the other checkout's Python (its editable gristmill install)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ours, peer = [], []
    for _ in range(args.rounds):  # interleaved: a load spike hits one round of each, not all of one side
        for python, times in ((args.peer, peer), (sys.executable, ours)):
            out = subprocess.run([python, __file__, CHILD, args.docs], capture_output=True, text=True, check=True)
            times.append(float(out.stdout.strip().splitlines()[-1]))
    print(f"peer ({args.peer}): best {min(peer):.3f} s, rounds {', '.join(f'{t:.3f}' for t in peer)}")
    print(f"this ({sys.executable}): best {min(ours):.3f} s, rounds {', '.join(f'{t:.3f}' for t in ours)}")
    print(f"this / peer, best of each: {min(ours) / min(peer):.2f}")


if __name__ == "__main__":
    main()

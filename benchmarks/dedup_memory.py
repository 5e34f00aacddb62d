"""Memory of the dedup stage per document, at the default settings (the bound stated in docs/benchmarks.md).

    .venv/bin/python benchmarks/dedup_memory.py [--docs 10000]

Runs the whole dedup stage (signatures, candidates + verification + clusters, filtering) on N and 4N documents of
300 real words (benchmarks/dedup_common.py), each in a fresh process, and reports the process's peak resident
memory (VmHWM). The slope between the two sizes is the memory the stage holds per document; the intercept is the
interpreter, libraries and one shard in flight. Its peer, in the same run: the same stage with
`candidates: datasketch` (every document in datasketch's in-memory `MinHashLSH`, the path before numpy candidates).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.dedup_common import corpus  # noqa: E402
from benchmarks.tokenize_speed import peak_rss_mb  # noqa: E402
from gristmill.conf.schema import PipelineConfig  # noqa: E402
from gristmill.tasks.dedup.stage import run  # noqa: E402
from gristmill.tasks.stage import execute  # noqa: E402
from tests.helpers import document, write_documents_stage  # noqa: E402

SHARD_DOCS = 2000


def child(workspace: str, candidates: str) -> None:
    config = PipelineConfig(workspace=workspace, crawl={"seeds": ["http://bench/"]}, dedup={"candidates": candidates})
    execute(config, "dedup", run)
    print(json.dumps(peak_rss_mb()))


def workspace_of(n_docs: int, tmp: Path) -> Path:
    texts = corpus(n_docs)
    shards = [
        [document(f"http://bench/{i}", t) for i, t in enumerate(texts[s : s + SHARD_DOCS], s)]
        for s in range(0, n_docs, SHARD_DOCS)
    ]
    workspace = tmp / f"ws-{n_docs}"
    write_documents_stage(workspace, "crawl", shards)
    return workspace


def measure(workspace: Path, candidates: str) -> float:
    shutil.rmtree(workspace / "dedup", ignore_errors=True)
    command = [sys.executable, __file__, "--child", str(workspace), "--candidates", candidates]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--candidates", default="numpy", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.candidates)
    per_doc = {}
    with tempfile.TemporaryDirectory() as tmp:
        small, large = workspace_of(args.docs, Path(tmp)), workspace_of(4 * args.docs, Path(tmp))
        for candidates in ("numpy", "datasketch"):  # interleaved by size: a load change hits both
            low, high = measure(small, candidates), measure(large, candidates)
            per_doc[candidates] = (high - low) * 2**20 / (3 * args.docs)
            print(
                f"candidates: {candidates}: peak RSS {low:.0f} MB at {args.docs:,} documents, {high:.0f} MB at "
                f"{4 * args.docs:,}; per document {per_doc[candidates]:,.0f} bytes"
            )
    ratio = per_doc["numpy"] / per_doc["datasketch"]
    print(f"per document, numpy / datasketch: {ratio:.2f} (128 permutations, threshold 0.8, verification on)")


if __name__ == "__main__":
    main()

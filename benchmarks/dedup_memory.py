"""Memory of the dedup stage per document, at the default settings (the bound stated in docs/benchmarks.md).

    .venv/bin/python benchmarks/dedup_memory.py [--docs 10000]

Runs the whole dedup stage (signatures, LSH + clusters, filtering) on N and 4N documents of 300 real words
(benchmarks/dedup_common.py), each in a fresh process, and reports the process's peak resident memory (VmHWM).
The slope between the two sizes is the memory the stage holds per document; the intercept is the interpreter,
libraries and one shard in flight.
"""

from __future__ import annotations

import argparse
import json
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


def child(workspace: str) -> None:
    config = PipelineConfig(workspace=workspace, crawl={"seeds": ["http://bench/"]})
    execute(config, "dedup", run)
    print(json.dumps(peak_rss_mb()))


def measure(n_docs: int, tmp: Path) -> float:
    texts = corpus(n_docs)
    shards = [
        [document(f"http://bench/{i}", t) for i, t in enumerate(texts[s : s + SHARD_DOCS], s)]
        for s in range(0, n_docs, SHARD_DOCS)
    ]
    workspace = tmp / f"ws-{n_docs}"
    write_documents_stage(workspace, "crawl", shards)
    done = subprocess.run([sys.executable, __file__, "--child", str(workspace)], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    with tempfile.TemporaryDirectory() as tmp:
        small, large = (measure(n, Path(tmp)) for n in (args.docs, 4 * args.docs))
    per_doc = (large - small) * 2**20 / (3 * args.docs)
    print(f"peak RSS: {small:.0f} MB at {args.docs:,} documents, {large:.0f} MB at {4 * args.docs:,}")
    print(f"per document: {per_doc:,.0f} bytes (num_perm 128, threshold 0.8, survivor earliest)")


if __name__ == "__main__":
    main()

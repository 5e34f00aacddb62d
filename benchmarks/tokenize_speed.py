"""The whole tokenize stage against bare `Tokenizer.encode_batch` on the same text held in memory.

    .venv/bin/python benchmarks/tokenize_speed.py [--docs 2000]

Real text: the article bodies of ../shared/data/html_extraction (181 news and blog pages), repeated to `--docs`
documents and to 10x that, written as clean-stage shards of 500 documents. For each size it times, in one process,
bare `encode_batch` over all texts in memory and the stage (read shards, encode, pack, split, write Parquet) with
the same tokenizer, and measures the stage's peak memory in a child process (VmHWM), so the two sizes show
whether memory grows with the corpus. Goal: stage throughput >= 0.8x bare encoding.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gristmill.conf.schema import PipelineConfig  # noqa: E402
from gristmill.tasks.stage import execute  # noqa: E402
from gristmill.tasks.tokenize.bpe import load_tokenizer, train_bpe  # noqa: E402
from gristmill.tasks.tokenize.stage import run  # noqa: E402
from tests.helpers import document, write_documents_stage  # noqa: E402

DATA = Path(os.environ.get("GRISTMILL_SHARED_DATA", ROOT.parent / "shared" / "data"))
SHARD_DOCS = 500


def articles() -> list[str]:
    truth = json.loads((DATA / "html_extraction" / "ground-truth.json").read_text())
    return [item["articleBody"] for item in truth.values() if item.get("articleBody")]


def corpus(n_docs: int) -> list[str]:
    texts = articles()
    # Numbered so no two documents are identical (the split and packing see distinct documents).
    return [f"{texts[i % len(texts)]}\n\n({i})" for i in range(n_docs)]


def stage_config(workspace: Path, tokenizer: Path) -> PipelineConfig:
    return PipelineConfig(
        workspace=str(workspace),
        crawl={"seeds": ["http://bench/"]},
        tokenize={"tokenizer_path": str(tokenizer), "seq_len": 1024, "val_fraction": 0.01},
    )


def run_stage(workspace: Path, tokenizer: Path) -> float:
    """Seconds for the encode units of the stage (the given tokenizer is only copied)."""
    started = time.perf_counter()
    execute(stage_config(workspace, tokenizer), "tokenize", run)
    return time.perf_counter() - started


def measure(n_docs: int, tokenizer_file: Path, tmp: Path) -> dict[str, float]:
    texts = corpus(n_docs)
    text_mb = sum(len(t.encode()) for t in texts) / 1e6
    tokenizer = load_tokenizer(tokenizer_file.parent)
    started = time.perf_counter()
    tokens = sum(len(e.ids) for e in tokenizer.encode_batch(texts))
    bare_s = time.perf_counter() - started
    workspace = tmp / f"ws-{n_docs}"
    shards = [
        [document(f"http://bench/{i}", t) for i, t in enumerate(texts[s : s + SHARD_DOCS], s)]
        for s in range(0, n_docs, SHARD_DOCS)
    ]
    write_documents_stage(workspace, "clean", shards)
    del texts, shards
    child = subprocess.run(
        [sys.executable, __file__, "--child", str(workspace), str(tokenizer_file)],
        capture_output=True,
        text=True,
        check=True,
    )
    stage_s, peak_mb = json.loads(child.stdout.strip().splitlines()[-1])
    return {
        "docs": n_docs,
        "text_mb": text_mb,
        "tokens": tokens,
        "bare_s": bare_s,
        "stage_s": stage_s,
        "peak_mb": peak_mb,
    }


def peak_rss_mb() -> float:
    """This process's own high-water mark. Not ru_maxrss: Linux carries that across fork and exec, so a child
    would report the parent's peak (here, the parent holding the whole corpus for the bare measurement)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(workspace: str, tokenizer: str) -> None:
    seconds = run_stage(Path(workspace), Path(tokenizer))
    print(json.dumps([seconds, peak_rss_mb()]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "tok").mkdir()
        train_bpe(articles(), vocab_size=8192, min_frequency=2).save(str(tmp / "tok" / "tokenizer.json"))
        rows = [measure(n, tmp / "tok" / "tokenizer.json", tmp) for n in (args.docs, 10 * args.docs)]
    print("| documents | text MB | tokens | bare encode_batch MB/s | stage MB/s | stage / bare | stage peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        bare, stage = r["text_mb"] / r["bare_s"], r["text_mb"] / r["stage_s"]
        print(
            f"| {r['docs']:,} | {r['text_mb']:.1f} | {r['tokens']:,} | {bare:.2f} | {stage:.2f} | "
            f"{stage / bare:.2f} | {r['peak_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()

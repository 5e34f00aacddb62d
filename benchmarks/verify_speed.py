"""What checking shards against their manifest costs: reading a stage's shards with and without verification.

    .venv/bin/python benchmarks/verify_speed.py [--shards 8] [--docs 2000] [--rounds 3]

Real text: the article bodies of ../shared/data/html_extraction (181 news and blog pages), repeated into `--shards`
DOCUMENT shards of `--docs` documents, written as a finished crawl stage. Each round reads every shard through
`iter_batches` (all columns, as dedup and clean do; then only `text`, as tokenize does) three ways, interleaved so
load on the machine hits all alike, timed in CPU seconds: checked (the manifest in place: size + sha256 taken in the
same memory-mapped read that decodes the shard), bare (the manifest moved away: no check) and two passes (the peer:
a sha256 pass over the file, then the bare read - how shards were checked before). Prints MB/s of each and the
ratios; also the cost of `gristmill verify` alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gristmill.tasks.shards import MANIFEST_NAME, StageOutput, file_sha256, iter_batches  # noqa: E402
from tests.helpers import document, write_documents_stage  # noqa: E402

WAYS = ("checked", "bare", "two-pass")
DATA = Path(os.environ.get("GRISTMILL_SHARED_DATA", ROOT.parent / "shared" / "data"))


def articles() -> list[str]:
    truth = json.loads((DATA / "html_extraction" / "ground-truth.json").read_text())
    return [item["articleBody"] for item in truth.values() if item.get("articleBody")]


def read_all(paths: list[Path], columns: list[str] | None, hash_first: bool = False) -> float:
    started = time.process_time()  # CPU time: the machine is shared, and wall time swings with the others' load
    for path in paths:
        if hash_first:
            file_sha256(path)
        for _ in iter_batches([path], columns):
            pass
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    texts = articles()
    with tempfile.TemporaryDirectory() as tmp:
        shards = [
            [document(f"https://bench.test/{s}/{i}", texts[(s * args.docs + i) % len(texts)]) for i in range(args.docs)]
            for s in range(args.shards)
        ]
        write_documents_stage(tmp, "crawl", shards)
        output = StageOutput(tmp, "crawl")
        paths = output.shard_paths("documents")
        megabytes = sum(p.stat().st_size for p in paths) / 1e6
        manifest, away = output.manifest_path, output.path / f"{MANIFEST_NAME}.away"
        timings: dict[str, list[float]] = {f"{way} {label}": [] for way in WAYS for label in ("all", "text")}
        for _ in range(args.rounds):
            for columns, label in ((None, "all"), (["text"], "text")):
                timings[f"checked {label}"].append(read_all(paths, columns))
                manifest.rename(away)
                timings[f"bare {label}"].append(read_all(paths, columns))
                timings[f"two-pass {label}"].append(read_all(paths, columns, hash_first=True))
                away.rename(manifest)
        started = time.process_time()
        assert output.verify() == []
        verify_s = time.process_time() - started
    print(f"{args.shards} shards, {megabytes:.1f} MB of Parquet (zstd); best of {args.rounds} interleaved rounds")
    for label in ("all", "text"):
        checked, bare, two = (min(timings[f"{way} {label}"]) for way in WAYS)
        print(
            f"read {label:<4} columns: checked {megabytes / checked:6.1f} MB/s   bare {megabytes / bare:6.1f} MB/s   "
            f"two passes {megabytes / two:6.1f} MB/s   time checked/bare {checked / bare:.2f}x   "
            f"checked/two passes {checked / two:.2f}x"
        )
    print(f"verify alone (gristmill verify): {megabytes / verify_s:.1f} MB/s")


if __name__ == "__main__":
    main()

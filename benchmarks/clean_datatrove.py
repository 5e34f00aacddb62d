"""datatrove's Gopher repetition, Gopher quality, C4 and FineWeb filters on the benchmark documents.

Runs in datatrove's own venv (see clean_bench_venv.sh), never in ours: it imports nothing from gristmill.
Writes each filter's decision per unique document, and the throughput of the four filters chained.

    .bench-venv/bin/python benchmarks/clean_datatrove.py /tmp/bench/clean_docs.jsonl /tmp/bench/datatrove.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from datatrove.data import Document
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)


def filters() -> dict:
    # FineWeb's settings: C4 without the terminal-punctuation rule
    return {
        "gopher_repetition": GopherRepetitionFilter(),
        "gopher_quality": GopherQualityFilter(),
        "c4": C4QualityFilter(filter_no_terminal_punct=False),
        "fineweb": FineWebQualityFilter(),
    }


def decide(filter_, doc: dict) -> str | None:
    result = filter_.filter(Document(text=doc["text"], id=doc["id"]))
    if result is True:
        return None
    return result[1] if isinstance(result, tuple) else "removed"


def main(docs_path: Path, out_path: Path) -> None:
    unique = [json.loads(line) for line in Path(docs_path.with_suffix(".unique.jsonl")).read_text().splitlines()]
    everything = [json.loads(line) for line in Path(docs_path).read_text().splitlines()]
    chain = filters()
    decisions = {d["id"]: {name: decide(f, d) for name, f in chain.items()} for d in unique}
    start = time.perf_counter()
    kept = 0
    for doc in everything:
        kept += all(decide(f, dict(doc)) is None for f in chain.values())  # stops at the first removal
    seconds = time.perf_counter() - start
    out = {"decisions": decisions, "docs": len(everything), "kept": kept, "seconds": seconds}
    out_path.write_text(json.dumps(out))
    print(f"datatrove: {len(everything)} docs in {seconds:.2f} s = {len(everything) / seconds:.0f} docs/s, kept {kept}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

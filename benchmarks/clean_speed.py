"""Throughput of our clean chain, and agreement with datatrove per filter, on the same real documents.

    .venv/bin/python benchmarks/clean_corpus.py --out /tmp/bench/clean_docs.jsonl --docs 4000
    .bench-venv/bin/python benchmarks/clean_datatrove.py /tmp/bench/clean_docs.jsonl /tmp/bench/datatrove.json
    .venv/bin/python benchmarks/clean_speed.py /tmp/bench/clean_docs.jsonl --datatrove /tmp/bench/datatrove.json

One process, one core. "Four filters" is the part datatrove also has (Gopher repetition, Gopher quality, C4,
FineWeb), each stopping at the first removal; "full chain" adds normalisation, language id and PII redaction.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from gristmill.conf.schema import CleanConfig
from gristmill.tasks.clean.base import Doc
from gristmill.tasks.clean.chain import Chain, build_chain


def four_filters(cfg: CleanConfig) -> list:
    return [s for s in build_chain(cfg) if s.name in ("gopher_repetition", "gopher_quality", "c4", "fineweb")]


def throughput(steps: list, docs: list[dict]) -> tuple[float, int]:
    chain = Chain(steps)
    start = time.perf_counter()
    kept = sum(chain.process(Doc(d["text"], d["url"])) is None for d in docs)
    return len(docs) / (time.perf_counter() - start), kept


def agreement(cfg: CleanConfig, unique: list[dict], theirs: dict) -> dict:
    """Each filter alone on the same input text: same keep/remove decision as datatrove?"""
    report = {}
    for step in four_filters(cfg):
        same, differ = 0, []
        for d in unique:
            ours = step.check(Doc(d["text"], d["url"]))
            other = theirs[d["id"]][step.name]
            if (ours is None) == (other is None):
                same += 1
            else:
                differ.append({"id": d["id"], "ours": ours and f"{ours.rule}={ours.value:.3f}", "datatrove": other})
        report[step.name] = {"agree": same / len(unique), "n": len(unique), "disagreements": differ}
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("docs", type=Path)
    parser.add_argument("--datatrove", type=Path)
    args = parser.parse_args()
    docs = [json.loads(line) for line in Path(args.docs).read_text().splitlines()]
    unique = [json.loads(line) for line in Path(args.docs.with_suffix(".unique.jsonl")).read_text().splitlines()]
    for alpha in ("words", "tokens"):
        cfg = CleanConfig(alpha_ratio_over=alpha)
        rate, kept = throughput(four_filters(cfg), docs)
        print(f"four filters (alpha over {alpha}): {rate:.0f} docs/s, kept {kept}/{len(docs)}")
        if args.datatrove:
            theirs = json.loads(args.datatrove.read_text())
            print(f"  datatrove: {theirs['docs'] / theirs['seconds']:.0f} docs/s, kept {theirs['kept']}; "
                  f"ratio {rate / (theirs['docs'] / theirs['seconds']):.1f}x")  # fmt: skip
            for name, r in agreement(cfg, unique, theirs["decisions"]).items():
                print(f"  {name}: agreement {r['agree']:.1%} of {r['n']}")
                for d in r["disagreements"][:6]:
                    print(f"    {d}")
    rate, kept = throughput(build_chain(CleanConfig()), docs)
    print(f"full chain (normalise, language, 4 filters, PII): {rate:.0f} docs/s, kept {kept}/{len(docs)}")


if __name__ == "__main__":
    main()

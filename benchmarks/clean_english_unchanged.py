"""English is filtered exactly as before: every clean filter's decision and measured value, alone and chained, on
the clean benchmark's documents, by this checkout's code and by a peer checkout's (e.g. the code before issue 13).

    .venv/bin/python benchmarks/clean_corpus.py --out /tmp/bench/clean_docs.jsonl --docs 300
    .venv/bin/python benchmarks/clean_english_unchanged.py /tmp/bench/clean_docs.unique.jsonl \\
        --peer /work/main/.venv/bin/python

Prints the number of (document, filter) decisions compared and those that differ, with language id on (what a
pipeline runs) and off (then a document's words are split by its script: the few Chinese, Japanese and Korean
pages among the documents differ, as they should).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = "--child"


def decisions(path: str) -> dict[str, list]:
    """{"<filter or chain>-<language id on>-<doc id>": [rule, value]} with this interpreter's gristmill."""
    from gristmill.conf.schema import CleanConfig
    from gristmill.tasks.clean.base import Doc
    from gristmill.tasks.clean.chain import Chain, build_chain

    with open(path) as lines:
        docs = [json.loads(line) for line in lines]
    out: dict[str, list] = {}
    for language_id in (True, False):
        steps = build_chain(CleanConfig.model_validate({"language": {"enabled": language_id}}))
        chain = Chain(steps)
        for d in docs:
            doc = Doc(d["text"])
            verdict = chain.process(doc)
            out[f"chain-{language_id}-{d['id']}"] = [verdict and verdict.rule, verdict and round(verdict.value, 9)]
            out[f"chain_text-{language_id}-{d['id']}"] = [doc.text if verdict is None else None]
        for step in steps:
            if not hasattr(step, "check"):
                continue
            for d in docs:
                doc = Doc(d["text"])
                if language_id:
                    doc.metadata["language"] = "en"
                verdict = step.check(doc)
                out[f"{step.name}-{language_id}-{d['id']}"] = [verdict and verdict.rule, verdict and verdict.value]
    return out


def main() -> None:
    if sys.argv[1:2] == [CHILD]:
        Path(sys.argv[3]).write_text(json.dumps(decisions(sys.argv[2])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("docs", help="the unique documents written by clean_corpus.py (*.unique.jsonl)")
    parser.add_argument("--peer", required=True, help="the other checkout's Python (its editable gristmill install)")
    args = parser.parse_args()
    found = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, python in (("peer", args.peer), ("this", sys.executable)):
            out = Path(tmp) / f"{name}.json"
            subprocess.run([python, __file__, CHILD, args.docs, str(out)], check=True)
            found[name] = json.loads(out.read_text())
    peer, ours = found["peer"], found["this"]
    for language_id in ("True", "False"):
        keys = [k for k in peer if f"-{language_id}-" in k]
        differ = [k for k in keys if ours.get(k) != peer[k]]
        print(f"language id {'on' if language_id == 'True' else 'off'}: {len(keys)} decisions, {len(differ)} differ")
        for key in differ[:12]:
            print(f"  {key}: this {ours.get(key)}, peer {peer[key]}")


if __name__ == "__main__":
    main()

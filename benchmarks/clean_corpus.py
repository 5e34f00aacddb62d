"""Real documents for the clean benchmarks, written as JSONL (one {"id", "url", "text"} a line).

Sources (../shared/data, see its README): the 181 article bodies of the article-extraction benchmark, and the text
trafilatura extracts from every HTML response in the WARC files. The unique documents are written once to
`<out>.unique.jsonl` (for agreement) and replicated to `--docs` documents in `<out>` (for throughput).

    .venv/bin/python benchmarks/clean_corpus.py --out /tmp/bench/clean_docs.jsonl --docs 4000
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import trafilatura
from warcio.archiveiterator import ArchiveIterator

from gristmill.tasks.clean.normalize import normalize_text

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def article_bodies() -> list[dict]:
    truth = json.loads((DATA / "html_extraction" / "ground-truth.json").read_text())
    return [{"id": f"article-{k[:12]}", "url": v.get("url", ""), "text": v["articleBody"]} for k, v in truth.items()]


def warc_texts() -> list[dict]:
    docs = []
    for path in sorted((DATA / "warc").glob("*.warc*")):
        if path.name.endswith((".wet.gz", ".wat.gz")):
            continue
        with open(path, "rb") as fh:
            for record in ArchiveIterator(fh):
                if record.rec_type != "response" or "html" not in (
                    record.http_headers.get_header("Content-Type") or ""
                ):
                    continue
                url = record.rec_headers.get_header("WARC-Target-URI")
                html = record.content_stream().read().decode("utf-8", "replace")
                text = trafilatura.extract(html, url=url, favor_precision=True)
                if text:
                    docs.append({"id": f"warc-{len(docs)}", "url": url, "text": text})
    return docs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench/clean_docs.jsonl"))
    parser.add_argument("--docs", type=int, default=4000)
    args = parser.parse_args()
    # Both chains see the same normalised text, so agreement measures the filters, not ftfy.
    unique = [{**d, "text": normalize_text(d["text"])} for d in article_bodies() + warc_texts()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out.with_suffix(".unique.jsonl"), "w") as fh:
        fh.writelines(json.dumps(d) + "\n" for d in unique)
    with open(args.out, "w") as fh:
        for i in range(args.docs):
            fh.write(json.dumps({**unique[i % len(unique)], "id": f"{unique[i % len(unique)]['id']}-{i}"}) + "\n")
    print(f"{len(unique)} unique documents ({sum(len(d['text']) for d in unique)} chars), {args.docs} written")


if __name__ == "__main__":
    main()

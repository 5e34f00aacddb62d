"""Main-text extraction quality and speed of each crawl extractor on real pages with known article text.

    .venv/bin/python benchmarks/extract_quality.py [--data ../shared/data/html_extraction] [--limit N]
        [--extractors NAME ...] [--long-text-chars N ...]

Data: scrapinghub's article-extraction benchmark (181 news and blog pages, `html/<id>.html.gz`, and the true
article text of each in `ground-truth.json`). Each page goes through what the crawl stage does with an HTML body,
in this process: `decode_html` (no declared charset: the benchmark stores bare bodies), then `extract`. The first
row is the peer: trafilatura's own `bare_extraction` in precision mode with its defaults (metadata, comparison
with readability/justext on every page), the figure our default must stay within 0.005 F1 of.

Scores follow the benchmark's own evaluate.py (scrapinghub/article-extraction-benchmark): text is split into
`\\w+` tokens; for each page, true positives, false positives and false negatives are counted over the multiset of
token 4-gram shingles and normalised to sum 1 (long pages weigh no more than short ones); precision is averaged
over the pages with a prediction, recall over the pages with a truth, and F1 is computed from the two averages.
The ± is 1.96 standard deviations of F1 over 1,000 bootstrap resamples of the pages (as evaluate.py does); ΔF1 is
the difference to the first extractor listed, over paired resamples (evaluate.py's --bootstrap-differences), the
figure to read when two F1 intervals overlap. "token F1" is the same F1 with single tokens (a bag of words) instead
of 4-grams.

Speed is one process, one page at a time, decoding included; per-page times give the share of pages a crawl time
limit (`crawl.extract_timeout_s`) would cut.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trafilatura import bare_extraction  # noqa: E402

from gristmill.tasks.crawl.charset import decode_html  # noqa: E402
from gristmill.tasks.crawl.extract import EXTRACTORS, Extracted, extract  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "html_extraction"
# The peer: trafilatura's precision mode called as its documentation shows, with everything it does by default
# (metadata, readability/justext comparison on every page); our extractors' ΔF1 is against it.
REFERENCE = "reference: trafilatura precision, as is"


def reference(html: str, url: str) -> Extracted:
    document = bare_extraction(html, url=url, with_metadata=True, include_comments=False, favor_precision=True)
    if document is None:
        return Extracted(title=None, text=None)
    return Extracted(title=document.title, text=document.text, published=document.date)


TIME_LIMITS_S = (1.0, 2.0, 5.0)
_TOKEN = re.compile(r"\w+")


def shingles(text: str, n: int) -> Counter:
    tokens = _TOKEN.findall(text or "")
    return Counter(tuple(tokens[i : i + n]) for i in range(max(1, len(tokens) - n + 1)) if tokens[i : i + n])


def tp_fp_fn(true: str, pred: str, n: int) -> tuple[float, float, float]:
    """evaluate.py's string_shingle_matching: multiset overlap of n-gram shingles, normalised to sum 1."""
    t, p = shingles(true, n), shingles(pred, n)
    tp = sum((t & p).values())
    fp = sum((p - t).values())
    fn = sum((t - p).values())
    total = tp + fp + fn
    return (tp / total, fp / total, fn / total) if total else (0.0, 0.0, 0.0)


def _precision(tp: float, fp: float, fn: float) -> float:
    if fp == fn == 0:
        return 1.0
    return 0.0 if tp == fp == 0 else tp / (tp + fp)


def _recall(tp: float, fp: float, fn: float) -> float:
    if fp == fn == 0:
        return 1.0
    return 0.0 if tp == fn == 0 else tp / (tp + fn)


def scores(counts: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    """evaluate.py's metrics_from_tp_fp_fns: (precision, recall, F1) from per-page averages."""
    precision = statistics.mean([_precision(*c) for c in counts if c[0] + c[1] > 0] or [0.0])
    recall = statistics.mean([_recall(*c) for c in counts if c[0] + c[2] > 0] or [0.0])
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def f1_interval(counts: list[tuple[float, float, float]], n_bootstrap: int = 1000) -> float:
    rng = random.Random(0)
    f1s = [scores([counts[rng.randrange(len(counts))] for _ in counts])[2] for _ in range(n_bootstrap)]
    return 1.96 * statistics.stdev(f1s)


def f1_difference(
    counts: list[tuple[float, float, float]], other: list[tuple[float, float, float]], n_bootstrap: int = 1000
) -> tuple[float, float]:
    """Mean and 1.96 sd of F1(counts) - F1(other) over paired bootstrap resamples (evaluate.py's
    --bootstrap-differences): the same pages drawn for both, so page difficulty cancels out."""
    rng = random.Random(0)
    diffs = []
    for _ in range(n_bootstrap):
        drawn = [rng.randrange(len(counts)) for _ in counts]
        diffs.append(scores([counts[i] for i in drawn])[2] - scores([other[i] for i in drawn])[2])
    return statistics.mean(diffs), 1.96 * statistics.stdev(diffs)


def load(data: Path, limit: int | None) -> list[tuple[str, str, bytes, str]]:
    """(id, url, HTML bytes, true article text) of each page, in id order."""
    truth = json.loads((data / "ground-truth.json").read_text(encoding="utf-8"))
    pages = []
    for page_id in sorted(truth)[:limit]:
        body = gzip.decompress((data / "html" / f"{page_id}.html.gz").read_bytes())
        url = truth[page_id].get("url") or f"https://example.org/{page_id}"
        pages.append((page_id, url, body, truth[page_id].get("articleBody") or ""))
    return pages


def run(extractor: str, pages: list[tuple[str, str, bytes, str]], long_text_chars: int | None = None) -> dict:
    """One extractor over the pages; `long_text_chars` sets the long-page rule (None: `extract`'s default)."""
    rule = {} if long_text_chars is None else {"long_text_chars": long_text_chars}
    seconds, counts, token_counts = [], [], []
    empty = dated = 0
    for _, url, body, truth in pages:
        start = time.perf_counter()
        html = decode_html(body, None)
        result = reference(html, url) if extractor == REFERENCE else extract(html, url, extractor, **rule)
        seconds.append(time.perf_counter() - start)
        text = result.text or ""
        empty += not text
        dated += result.published is not None
        counts.append(tp_fp_fn(truth, text, 4))
        token_counts.append(tp_fp_fn(truth, text, 1))
    precision, recall, f1 = scores(counts)
    ordered = sorted(seconds)
    return {
        "extractor": extractor if long_text_chars is None else f"{extractor}, long pages past {long_text_chars:,}",
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "f1_ci": f1_interval(counts),
        "counts": counts,
        "token_f1": scores(token_counts)[2],
        "empty": empty,
        "dated": dated,
        "docs_per_s": len(pages) / sum(seconds),
        "p99_s": ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))],
        "max_s": ordered[-1],
        "over": [sum(s > limit for s in seconds) for limit in TIME_LIMITS_S],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the html_extraction folder")
    parser.add_argument("--limit", type=int, default=None, help="only the first N pages (a quick check)")
    parser.add_argument("--extractors", nargs="+", default=list(EXTRACTORS), choices=EXTRACTORS)
    parser.add_argument(
        "--long-text-chars",
        type=int,
        nargs="*",
        default=[],
        help="also the default extractor with the long-page rule at each of these thresholds (0: off)",
    )
    args = parser.parse_args()
    if not (args.data / "ground-truth.json").is_file() or not (args.data / "html").is_dir():
        sys.exit(
            f"extraction benchmark data not found at {args.data} (expected ground-truth.json and html/*.html.gz; "
            "see ../shared/data/README.md): pass --data"
        )
    pages = load(args.data, args.limit)
    extract(pages[0][2], pages[0][1], "resiliparse")  # imports and first-call set-up out of the timings
    extract(pages[0][2], pages[0][1], "trafilatura")
    results = [run(extractor, pages) for extractor in [REFERENCE, *args.extractors]]
    results += [run("trafilatura-precision", pages, chars) for chars in args.long_text_chars]

    base = results[0]
    limits = " | ".join(f"> {limit:g} s" for limit in TIME_LIMITS_S)
    print(f"{len(pages)} pages, one process; ΔF1: paired bootstrap against {base['extractor']}\n")
    print(
        "| extractor | precision | recall | F1 | ΔF1 | token F1 | no text | dated | docs/s | x peer | p99 s | max s "
        f"| {limits} |"
    )
    print("|---" * (12 + len(TIME_LIMITS_S)) + "|")
    for r in results:
        over = " | ".join(str(n) for n in r["over"])
        delta = "" if r is base else "{:+.4f} ± {:.4f}".format(*f1_difference(r["counts"], base["counts"]))
        print(
            f"| {r['extractor']} | {r['precision']:.3f} | {r['recall']:.3f} | **{r['f1']:.3f}** ± {r['f1_ci']:.3f} "
            f"| {delta} | {r['token_f1']:.3f} | {r['empty']} | {r['dated']} | {r['docs_per_s']:.1f} "
            f"| {r['docs_per_s'] / base['docs_per_s']:.2f} "
            f"| {r['p99_s']:.2f} | {r['max_s']:.2f} | {over} |"
        )


if __name__ == "__main__":
    main()

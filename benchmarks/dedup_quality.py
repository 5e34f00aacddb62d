"""Near-duplicate detection quality on real text: controlled edits at known Jaccard, and Clough & Stevenson.

    .venv/bin/python benchmarks/dedup_quality.py

Part 1. From real articles (scrapinghub's article-extraction benchmark) we make variants with controlled edits:
token substitution, insertion and deletion at several rates, paragraph shuffles and added boilerplate. The truth of
a pair is its exact 5-gram shingle Jaccard; under a setting with threshold t, a variant is a true duplicate when
that Jaccard is >= t. Sources, variants and as many unrelated articles go through the stage's own `Deduplicator`
(signature rows, band candidates, verification), exact-hash matching off so that every pair is judged as a
near-duplicate. A variant is flagged when the verified pair (its source, it) is found; an unrelated article is a
false positive when it is linked to any source. Precision, recall and F1 per setting and, for the default, per edit.

Part 2. Clough & Stevenson (2009): 95 short answers written from five Wikipedia sources, labelled cut (copied),
light and heavy (revised) and non (independent). We report which labels the defaults flag as duplicates of the
source, with the answers' true Jaccard to their source.
"""

from __future__ import annotations

import csv
import random
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dedup_common import SHARED, articles, python_shingles  # noqa: E402

from gristmill.conf.schema import DedupConfig  # noqa: E402
from gristmill.tasks.dedup.deduplicator import Deduplicator  # noqa: E402
from gristmill.tasks.dedup.signatures import hasher, sign_batch, signature_schema  # noqa: E402
from gristmill.tasks.shards import write_shard  # noqa: E402

_BOILERPLATE_TEXT = (
    "Subscribe to our newsletter to get the latest stories delivered to your inbox every morning. We use cookies "
    "to improve your experience on our site and to show you relevant advertising. By continuing to browse you agree "
    "to our privacy policy and terms of use. Follow us on Facebook, Twitter and Instagram. Related articles: most "
    "read this week, editor's picks, trending now. Advertisement. Share this article. Comments are closed. "
    "Copyright all rights reserved. Contact us. About us. Careers. Site map. Accessibility. Do not sell my data."
)
BOILERPLATE = _BOILERPLATE_TEXT.split()


def substitute(words: list[str], rate: float, rng: random.Random) -> list[str]:
    return [w if rng.random() > rate else f"w{rng.randrange(10**6)}" for w in words]


def insert(words: list[str], rate: float, rng: random.Random) -> list[str]:
    out = []
    for w in words:
        out.append(w)
        if rng.random() < rate:
            out.append(f"w{rng.randrange(10**6)}")
    return out


def delete(words: list[str], rate: float, rng: random.Random) -> list[str]:
    return [w for w in words if rng.random() > rate]


def shuffle_paragraphs(text: str, rng: random.Random) -> str:
    paragraphs = [p for p in text.split("\n") if p.strip()]
    rng.shuffle(paragraphs)
    return "\n".join(paragraphs)


def boilerplate(words: list[str], share: float, rng: random.Random) -> list[str]:
    """Add boilerplate worth `share` of the document's length, half before it and half after."""
    extra = [BOILERPLATE[i % len(BOILERPLATE)] for i in range(int(len(words) * share))]
    half = len(extra) // 2
    return extra[:half] + words + extra[half:]


EDITS = {
    **{
        f"substitute {r:.0%}": (lambda t, g, r=r: " ".join(substitute(t.split(), r, g)))
        for r in (0.01, 0.03, 0.05, 0.1)
    },
    **{f"insert {r:.0%}": (lambda t, g, r=r: " ".join(insert(t.split(), r, g))) for r in (0.01, 0.03, 0.05, 0.1)},
    **{f"delete {r:.0%}": (lambda t, g, r=r: " ".join(delete(t.split(), r, g))) for r in (0.01, 0.03, 0.05, 0.1)},
    "shuffle paragraphs": shuffle_paragraphs,
    **{f"boilerplate +{s:.0%}": (lambda t, g, s=s: " ".join(boilerplate(t.split(), s, g))) for s in (0.1, 0.25, 0.5)},
}

SETTINGS = {
    "default (t=0.8, 21x6 bands, verify by shingles)": {},
    "verify by signature": {"verify_by": "signature"},
    "no verification (9x13 bands: the old default)": {"verify": False},
    "t=0.7": {"threshold": 0.7},
    "t=0.9": {"threshold": 0.9},
    "FineWeb 14x8, no verification (t=0.7 truth)": {"bands": 14, "rows": 8, "threshold": 0.7, "verify": False},
}


def jaccard(a: str, b: str) -> float:
    sa, sb = set(python_shingles(a)), set(python_shingles(b))
    return len(sa & sb) / len(sa | sb)


def linked_pairs(cfg: DedupConfig, texts: list[str]) -> tuple[set[tuple[int, int]], dict]:
    """The verified near-duplicate pairs (i, j), i < j, the stage's Deduplicator finds among these texts."""
    cfg = cfg.model_copy(update={"exact": False})
    minhasher = hasher(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        inputs, signatures = Path(tmp) / "documents.parquet", Path(tmp) / "signatures.parquet"
        table = pa.table({"text": texts, "url": [f"http://q/{i}" for i in range(len(texts))]})
        write_shard(inputs, table, table.schema)
        batches = (sign_batch(b, cfg, minhasher, i * 1024) for i, b in enumerate(table.to_batches(1024)))
        write_shard(signatures, batches, signature_schema(cfg.num_perm))
        dedup = Deduplicator(cfg, every_pair=True)
        _, stats, _, _ = dedup.run([signatures], [inputs])
    rows = dedup.near_links & 0xFFFFFFFF
    return set(map(tuple, rows.tolist())), stats["near_pairs"]


def flags(cfg: DedupConfig, sources: list[str], queries: list[str], owners: list[int]) -> tuple[list[bool], dict]:
    """For each query: is it linked to its owner (or, for owner -1, to any source)?"""
    links, work = linked_pairs(cfg, sources + queries)
    n = len(sources)
    linked_to: dict[int, set[int]] = defaultdict(set)
    for a, b in links:
        if a < n <= b:
            linked_to[b - n].add(a)
    out = [bool(linked_to[q]) if owner < 0 else owner in linked_to[q] for q, owner in enumerate(owners)]
    return out, work


def scores(pred: np.ndarray, positive: np.ndarray) -> tuple[float, float, float, int, int, int]:
    tp, fp, fn = int((pred & positive).sum()), int((pred & ~positive).sum()), int((~pred & positive).sum())
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0), tp, fp, fn


def controlled_edits(sources_n: int = 80, seed: int = 0) -> None:
    rng = random.Random(seed)
    pool = [a for a in articles() if len(a.split()) >= 200]
    rng.shuffle(pool)
    sources, unrelated = pool[:sources_n], pool[sources_n : 2 * sources_n]
    queries, owners, kinds, truth = [], [], [], []
    for i, src in enumerate(sources):
        for name, edit in EDITS.items():
            variant = edit(src, rng)
            queries.append(variant)
            owners.append(i)
            kinds.append(name)
            truth.append(jaccard(src, variant))
    queries += unrelated
    owners += [-1] * len(unrelated)
    kinds += ["unrelated"] * len(unrelated)
    truth += [max(jaccard(u, s) for s in sources) for u in unrelated]
    truth_arr = np.array(truth)
    owners_arr = np.array(owners)
    flagged, work = {}, {}
    for name, opts in SETTINGS.items():
        found, work[name] = flags(DedupConfig(**opts), sources, queries, owners)
        flagged[name] = np.array(found)
    print(
        f"## Controlled edits: {len(sources)} sources, {len(queries) - len(unrelated)} variants, "
        f"{len(unrelated)} unrelated articles\n"
    )
    print("| edit | true 5-gram Jaccard (mean, min-max) | " + " | ".join(f"flagged, {n}" for n in SETTINGS) + " |")
    print("|---|---|" + "---|" * len(SETTINGS))
    by_kind = defaultdict(list)
    for i, k in enumerate(kinds):
        by_kind[k].append(i)
    for kind, idx in by_kind.items():
        j = truth_arr[idx]
        cells = " | ".join(f"{flagged[n][idx].mean():.0%}" for n in SETTINGS)
        print(f"| {kind} | {j.mean():.3f} ({j.min():.2f}-{j.max():.2f}) | {cells} |")
    print("\n| setting | truth: Jaccard >= | precision | recall | F1 | TP | FP | FN | candidate pairs | verified |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, opts in SETTINGS.items():
        t = DedupConfig(**opts).threshold
        p, r, f1, tp, fp, fn = scores(flagged[name], (truth_arr >= t) & (owners_arr >= 0))
        pairs = f"{work[name]['candidates']:,} | {work[name]['verified']:,}"
        print(f"| {name} | {t} | {p:.3f} | {r:.3f} | {f1:.3f} | {tp} | {fp} | {fn} | {pairs} |")
    default = next(iter(SETTINGS))
    print(f"\nPer edit, {default} (truth: Jaccard >= 0.8):\n")
    print("| edit | true duplicates | flagged | precision | recall | F1 |")
    print("|---|---|---|---|---|---|")
    for kind, idx in by_kind.items():
        positive = (truth_arr[idx] >= 0.8) & (owners_arr[idx] >= 0)
        p, r, f1, *_ = scores(flagged[default][idx], positive)
        print(f"| {kind} | {positive.sum()} | {flagged[default][idx].sum()} | {p:.3f} | {r:.3f} | {f1:.3f} |")


def clough_stevenson() -> None:
    root = SHARED / "neardup" / "clough_stevenson_2009"
    corpus = root / "corpus-20090418"
    sources = [(corpus / f"orig_task{t}.txt").read_text(errors="replace") for t in "abcde"]
    with open(root / "file_list.csv") as fh:
        rows = list(csv.DictReader(fh))
    answers = [(corpus / r["File"]).read_text(errors="replace") for r in rows]
    owners = ["abcde".index(r["Task"]) for r in rows]
    print("\n## Clough & Stevenson (2009): answers flagged as near-duplicates of their source\n")
    print("| label | answers | true 5-gram Jaccard to source (mean, max) | flagged, default (t=0.8) | flagged, t=0.5 |")
    print("|---|---|---|---|---|")
    default, _ = flags(DedupConfig(), sources, answers, owners)
    loose, _ = flags(DedupConfig(threshold=0.5), sources, answers, owners)
    for label in ("cut", "light", "heavy", "non"):
        idx = [i for i, r in enumerate(rows) if r["Category"] == label]
        j = np.array([jaccard(sources[owners[i]], answers[i]) for i in idx])
        print(
            f"| {label} | {len(idx)} | {j.mean():.3f}, {j.max():.3f} | {sum(default[i] for i in idx)} "
            f"| {sum(loose[i] for i in idx)} |"
        )


if __name__ == "__main__":
    controlled_edits()
    clough_stevenson()

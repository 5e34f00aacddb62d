"""Shared inputs of the dedup benchmarks: real article text (scrapinghub's article-extraction benchmark)."""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path

SHARED = Path(os.environ.get("GRISTMILL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def articles() -> list[str]:
    truth = json.loads((SHARED / "html_extraction" / "ground-truth.json").read_text())
    return [item["articleBody"] for item in truth.values() if len(item["articleBody"].split()) >= 60]


def corpus(docs: int, words: int = 300, seed: int = 0) -> list[str]:
    """`docs` documents of about `words` words: windows of real articles, 5% of words substituted, so that
    documents are distinct but share the vocabulary and the statistics of real prose."""
    rng = random.Random(seed)
    pool = [a.split() for a in articles()]
    out = []
    for _ in range(docs):
        source = rng.choice(pool)
        start = rng.randrange(max(1, len(source) - words))
        window = source[start : start + words]
        while len(window) < words:  # short articles: continue with another one
            window += rng.choice(pool)[: words - len(window)]
        out.append(" ".join(w if rng.random() > 0.05 else rng.choice(rng.choice(pool)) for w in window))
    return out


def python_shingles(text: str, n: int = 5) -> list[str]:
    """Plain-Python word n-gram shingling, as a datasketch user writes it."""
    words = _NON_WORD.sub(" ", text.lower()).split()
    if len(words) <= n:
        return [" ".join(words)]
    return list({" ".join(words[i : i + n]) for i in range(len(words) - n + 1)})

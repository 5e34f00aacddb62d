"""Near-duplicate recall on Chinese and Japanese beside English: the controlled-edit benchmark of dedup_quality.py,
run on the same documentation in the three languages.

    .venv/bin/python benchmarks/multilingual_manpages.py --setup     # installs the manual pages and mandoc
    .venv/bin/python benchmarks/dedup_quality_scripts.py [--pages 80]

Sources: Debian manual pages that exist in English, Chinese (zh_CN) and Japanese (the same pages in each, sorted by
name, at least 150 words of their language), as text (mandoc HTML, tags stripped). Variants: the edits of
dedup_quality.py (substitute, insert, delete words at 1-10%, shuffle lines), where a "word" is a word of the
text-units segmenter (jieba, SudachiPy, or spaces) and a substituted or inserted word is drawn from the same
language's pages; variants keep the text's own spacing (none between CJK words), so dedup has to segment them
again. The truth of a pair is its exact 5-gram shingle Jaccard (gristmill's reference `shingles`); a variant is a
true duplicate at Jaccard >= the threshold. Sources and unrelated pages of the same language go into the index, as
in dedup_quality.py, and each variant and unrelated page is queried.
"""

from __future__ import annotations

import argparse
import gzip
import random
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import lxml.html
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dedup_quality import flags  # noqa: E402

from gristmill.conf.schema import DedupConfig  # noqa: E402
from gristmill.tasks.dedup.minhash import shingles  # noqa: E402
from gristmill.tasks.text.units import words  # noqa: E402

MAN = Path("/usr/share/man")
LANGUAGES = {"en": "", "zh": "zh_CN", "ja": "ja"}
RATES = (0.01, 0.03, 0.05, 0.1)


def page_text(path: Path) -> str | None:
    source = gzip.decompress(path.read_bytes())
    if source.lstrip().startswith(b".so "):
        return None
    html = subprocess.run(["mandoc", "-Thtml", "-Ofragment"], input=source, capture_output=True, check=False).stdout
    if not html.strip():
        return None
    text = lxml.html.fromstring(html.decode("utf-8", errors="replace")).text_content()
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def pages(limit: int) -> dict[str, list[str]]:
    """The same pages in each language, each at least 150 words long in every language."""
    out: dict[str, list[str]] = {lang: [] for lang in LANGUAGES}
    for section in ("1", "5", "8"):
        names = sorted(p.name for p in (MAN / "zh_CN" / f"man{section}").glob("*.gz") if not p.is_symlink())
        for name in names:
            paths = {lang: MAN / sub / f"man{section}" / name for lang, sub in LANGUAGES.items()}
            if not all(p.exists() and not p.is_symlink() for p in paths.values()):
                continue
            texts = {lang: page_text(p) for lang, p in paths.items()}
            if all(t and len(words(t, lang)) >= 150 for lang, t in texts.items()):
                for lang, text in texts.items():
                    out[lang].append(text)
            if len(out["en"]) >= limit:
                return out
    return out


def edit(tokens: list[str], kind: str, rate: float, vocabulary: list[str], rng: random.Random) -> list[str]:
    if kind == "substitute":
        return [t if rng.random() > rate else rng.choice(vocabulary) for t in tokens]
    if kind == "insert":
        return [x for t in tokens for x in ((t, rng.choice(vocabulary)) if rng.random() < rate else (t,))]
    return [t for t in tokens if rng.random() > rate]  # delete


def tokens(line: str, lang: str) -> list[list[str]]:
    """The line's whitespace-separated chunks, each as its segmenter words (an English chunk is one word; a Chinese
    one several), so that an edited line joins back with its own spaces, Latin words inside CJK text included."""
    return [words(chunk, lang) for chunk in line.split()]


def edited_line(line: str, lang: str, kind: str, rate: float, vocabulary: list[str], rng: random.Random) -> str:
    return " ".join("".join(edit(chunk, kind, rate, vocabulary, rng)) for chunk in tokens(line, lang))


def variants(text: str, lang: str, vocabulary: list[str], rng: random.Random) -> dict[str, str]:
    out = {}
    for kind in ("substitute", "insert", "delete"):
        for rate in RATES:
            lines = [edited_line(line, lang, kind, rate, vocabulary, rng) for line in text.split("\n")]
            out[f"{kind} {rate:.0%}"] = "\n".join(lines)
    paragraphs = text.split("\n")
    rng.shuffle(paragraphs)
    out["shuffle lines"] = "\n".join(paragraphs)
    return out


@lru_cache(maxsize=4096)
def shingle_set(text: str) -> frozenset[bytes]:
    return frozenset(shingles(text, 5))


def jaccard(a: str, b: str) -> float:
    sa, sb = shingle_set(a), shingle_set(b)
    return len(sa & sb) / len(sa | sb)


def evaluate(lang: str, texts: list[str], seed: int) -> dict:
    rng = random.Random(seed)
    half = len(texts) // 2
    sources, unrelated = texts[:half], texts[half:]
    vocabulary = [w for t in texts for w in words(t, lang) if any(ch.isalpha() for ch in w)]
    queries, owners, truth = [], [], []
    for i, src in enumerate(sources):
        for variant in variants(src, lang, vocabulary, rng).values():
            queries.append(variant)
            owners.append(i)
            truth.append(jaccard(src, variant))
    queries += unrelated
    owners += [-1] * len(unrelated)
    truth += [max(jaccard(u, s) for s in sources) for u in unrelated]
    cfg = DedupConfig()
    flagged = np.array(flags(cfg, sources, queries, owners))
    owners_arr, truth_arr = np.array(owners), np.array(truth)
    positive = (truth_arr >= cfg.threshold) & (owners_arr >= 0)
    tp, fp, fn = int((flagged & positive).sum()), int((flagged & ~positive).sum()), int((~flagged & positive).sum())
    return {
        "sources": len(sources),
        "variants": int((owners_arr >= 0).sum()),
        "positives": int(positive.sum()),
        "recall": tp / (tp + fn) if tp + fn else 1.0,
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "fp": fp,
        "mean_jaccard": float(truth_arr[owners_arr >= 0].mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=80, help="pages per language (half sources, half unrelated)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    texts = pages(args.pages)
    print(f"{len(texts['en'])} pages in each of {', '.join(LANGUAGES)}; default settings (t=0.8, 128 perms)\n")
    print("| language | sources | variants | true duplicates (J >= 0.8) | recall | precision | FP | mean J |")
    print("|---|---|---|---|---|---|---|---|")
    results = {lang: evaluate(lang, texts[lang], args.seed) for lang in LANGUAGES}
    for lang, r in results.items():
        print(f"| {lang} | {r['sources']} | {r['variants']} | {r['positives']} | {r['recall']:.3f} | "
              f"{r['precision']:.3f} | {r['fp']} | {r['mean_jaccard']:.3f} |")  # fmt: skip
    for lang in ("zh", "ja"):
        print(f"{lang}: recall {100 * (results[lang]['recall'] - results['en']['recall']):+.1f} points vs en")


if __name__ == "__main__":
    main()

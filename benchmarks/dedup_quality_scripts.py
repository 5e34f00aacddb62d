"""Near-duplicate recall on Chinese and Japanese beside English: the controlled-edit benchmark of dedup_quality.py,
run on the same documentation in the three languages.

    .venv/bin/python benchmarks/multilingual_manpages.py --setup     # installs the manual pages and mandoc
    .venv/bin/python benchmarks/dedup_quality_scripts.py [--pages 80] [--verify shingles|signature|off] [--edit-marks]

Sources: Debian manual pages that exist in English, Chinese (zh_CN) and Japanese (the same pages in each, sorted by
name, at least 150 words of their language), as text (mandoc HTML, tags stripped). Variants: the edits of
dedup_quality.py (substitute, insert, delete words at 1-10%, shuffle lines), where a "word" is a word of the
text-units segmenter (jieba, SudachiPy, or spaces) that has a letter or digit: the unit the shingles are made of, in
every script (punctuation marks are never edit units; an inserted English word gets its own space). A substituted or
inserted word is drawn from the same language's pages; variants keep the text's own spacing (none between CJK
words), so dedup has to segment them again. `--edit-marks` is the edit model before: every segmenter token,
punctuation marks too, an edit unit, and an inserted word glued to the one before it.

The truth of a pair is its exact 5-gram shingle Jaccard (gristmill's reference `shingles`); a variant is a true
duplicate at Jaccard >= the threshold. Sources and unrelated pages of the same language go into the index, as in
dedup_quality.py, and each variant and unrelated page is queried. Recall is also printed per band of true Jaccard
(a pair just above the threshold is found less often than one far above it, whatever its script), and at English's
mix of bands, so that languages are compared at equal similarity.
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


def is_word(token: str) -> bool:
    """A token that is a word of the shingles (dedup's normalisation turns everything but letters and digits into
    spaces): punctuation marks are tokens of the segmenter but never words of a shingle."""
    return any(ch.isalnum() for ch in token)


# The edit model before (`--edit-marks`): every segmenter token, punctuation marks too, was an edit unit and an
# inserted word was glued to the one before it. Kept to show what it did to the comparison.
EDIT_MARKS = False


def edit(tokens: list[str], kind: str, rate: float, vocabulary: list[str], rng: random.Random, glue: str) -> list[str]:
    """Edit a share `rate` of the WORDS (never the punctuation marks: deleting a comma changes no shingle, so
    counting marks as edit units would make a script with more marks look more robust). An inserted word gets the
    language's word separator (`glue`: a space, or nothing between CJK words) so it stays a word of its own."""
    out: list[str] = []
    for t in tokens:
        hit = (EDIT_MARKS or is_word(t)) and rng.random() < rate
        if kind == "substitute":
            out.append(rng.choice(vocabulary) if hit else t)
        elif kind == "insert":
            out.extend((t, glue + rng.choice(vocabulary)) if hit else (t,))
        elif not hit:  # delete
            out.append(t)
    return out


def tokens(line: str, lang: str) -> list[list[str]]:
    """The line's whitespace-separated chunks, each as its segmenter words (an English chunk is one word and its
    punctuation; a Chinese one several words), so that an edited line joins back with its own spaces, Latin words
    inside CJK text included."""
    return [words(chunk, lang) for chunk in line.split()]


def edited_line(line: str, lang: str, kind: str, rate: float, vocabulary: list[str], rng: random.Random) -> str:
    glue = "" if lang in ("zh", "ja") or EDIT_MARKS else " "
    return " ".join("".join(edit(chunk, kind, rate, vocabulary, rng, glue)) for chunk in tokens(line, lang))


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


def evaluate(lang: str, texts: list[str], seed: int, cfg: DedupConfig) -> dict:
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
    flagged = np.array(flags(cfg, sources, queries, owners)[0])  # (flags, work)
    owners_arr, truth_arr = np.array(owners), np.array(truth)
    positive = (truth_arr >= cfg.threshold) & (owners_arr >= 0)
    tp, fp, fn = int((flagged & positive).sum()), int((flagged & ~positive).sum()), int((~flagged & positive).sum())
    variant = owners_arr >= 0
    edited = sum(is_word(t) for src in sources for t in words(src, lang))
    marks = sum(not is_word(t) for src in sources for t in words(src, lang))
    return {
        "sources": len(sources),
        "variants": int(variant.sum()),
        "positives": int(positive.sum()),
        "recall": tp / (tp + fn) if tp + fn else 1.0,
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "fp": fp,
        "mean_jaccard": float(truth_arr[variant].mean()),
        "mean_jaccard_positives": float(truth_arr[positive].mean()) if positive.any() else 0.0,
        "marks_share": marks / (marks + edited),
        "bands": by_band(truth_arr, positive, flagged),
    }


BANDS = ((0.8, 0.85), (0.85, 0.9), (0.9, 0.95), (0.95, 1.01))


def by_band(truth: np.ndarray, positive: np.ndarray, flagged: np.ndarray) -> list[dict]:
    """True duplicates and recall per band of their true Jaccard: MinHash finds a pair at J = 0.82 far less often
    than one at 0.95 whatever the script, so recall over all positives depends on how close to the threshold they
    lie. Per band, the product is compared at equal similarity."""
    out = []
    for low, high in BANDS:
        band = positive & (truth >= low) & (truth < high)
        n = int(band.sum())
        found = int((band & flagged).sum())
        name = f"{low:.2f}-{min(high, 1.0):.2f}"
        out.append({"band": name, "positives": n, "found": found, "recall": found / n if n else None})
    return out


def at_english_mix(result: dict, english: dict) -> float | None:
    """Recall if the language's true duplicates were spread over the bands as English's are."""
    total = sum(b["positives"] for b in english["bands"])
    pairs = list(zip(result["bands"], english["bands"], strict=True))
    if any(own["recall"] is None and en["positives"] for own, en in pairs):
        return None
    return sum(en["positives"] * (own["recall"] or 0.0) for own, en in pairs) / total


def main() -> None:
    global EDIT_MARKS
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=80, help="pages per language (half sources, half unrelated)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--edit-marks", action="store_true", help="the edit model before: punctuation edited too")
    parser.add_argument("--verify", choices=("shingles", "signature", "off"), default="shingles",
                        help="dedup.verify and verify_by (default: the stage's, exact shingle Jaccard)")  # fmt: skip
    args = parser.parse_args()
    EDIT_MARKS = args.edit_marks
    texts = pages(args.pages)
    print(f"{len(texts['en'])} pages in each of {', '.join(LANGUAGES)}; t=0.8, 128 perms, verify: {args.verify}; "
          f"edit units: {'every token, marks too' if EDIT_MARKS else 'words'}\n")  # fmt: skip
    print("| language | sources | variants | true duplicates (J >= 0.8) | recall | precision | FP | mean J | "
          "mean J of true dups | marks among tokens |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    cfg = DedupConfig(verify=args.verify != "off", verify_by="signature" if args.verify == "off" else args.verify)
    results = {lang: evaluate(lang, texts[lang], args.seed, cfg) for lang in LANGUAGES}
    for lang, r in results.items():
        print(f"| {lang} | {r['sources']} | {r['variants']} | {r['positives']} | {r['recall']:.3f} | "
              f"{r['precision']:.3f} | {r['fp']} | {r['mean_jaccard']:.3f} | {r['mean_jaccard_positives']:.3f} | "
              f"{r['marks_share']:.1%} |")  # fmt: skip
    print("\nrecall by true Jaccard (found / true duplicates):")
    print("| language | " + " | ".join(b["band"] for b in results["en"]["bands"]) + " | recall at English's mix |")
    print("|---|" + "---|" * (len(BANDS) + 1))
    for lang, r in results.items():
        cells = [f"{b['found']}/{b['positives']}" for b in r["bands"]]
        mix = at_english_mix(r, results["en"])
        print(f"| {lang} | " + " | ".join(cells) + f" | {'n/a' if mix is None else f'{mix:.3f}'} |")
    for lang in ("zh", "ja"):
        mix = at_english_mix(results[lang], results["en"])
        gap = "" if mix is None else f"; at English's mix of similarities {100 * (mix - results['en']['recall']):+.1f}"
        print(f"{lang}: recall {100 * (results[lang]['recall'] - results['en']['recall']):+.1f} points vs en{gap}")


if __name__ == "__main__":
    main()

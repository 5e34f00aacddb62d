"""The same documentation in several languages through crawl -> dedup -> clean: the share of pages kept per language,
beside English's share on the same pages.

Data: Debian's manual pages and their translations (`manpages-de`, `manpages-ja`, `manpages-zh`, plus the English
originals from `manpages` and the packages themselves), rendered to HTML with mandoc. Set-up installs them with
apt-get (root; Debian or Ubuntu), never in CI:

    .venv/bin/python benchmarks/multilingual_manpages.py --setup
    .venv/bin/python benchmarks/multilingual_manpages.py --out /tmp/bench/manpages [--pages 120]
    # the same script on another checkout's code, e.g. before this change (its own venv, its own package):
    /work/main/.venv/bin/python benchmarks/multilingual_manpages.py --out /tmp/bench/manpages-main

For each translated language, the pages it shares with English (same section and name) are taken, up to `--pages`
(sorted by name, so the selection is the same every run), rendered once as `<lang>/<page>.html` and `en/<page>.html`,
and ingested by the crawl stage as HTML files (`crawl.sources`: extraction as for crawled pages). Dedup's exact and
near removal are off (a page and its translation never collide; a language's own near-identical pages would blur
the comparison). Clean keeps `en` and the translated languages, each filtered by its own row of conf/languages.yaml.
Printed per language: pages rendered, documents after crawl, kept by clean, the share kept, English's share on the
same pages and the difference in points, and the rules that removed the most. A page whose "translation" language id
reads as English (the Chinese and German packages ship some pages with only their headings translated) is left out
of both shares and listed: it would compare English with English.

Then why the shares differ, page by page (`--explain`): every page English loses and the translation keeps, with the
rule, English's value and bound, the translation's value for the same rule and its bound; "threshold" where the
translation's value would break English's bound too (the language's row, FineWeb-2's values, keeps it), "content"
where it would not (the translation measures differently: shorter, fewer repeats, a clearer language-id score). And
the share each language keeps when its row's repetition bounds and FineWeb line-punctuation and duplicated-line bounds
are replaced by English's (stop words, sentence marks, word-length, newline-per-word and short-line bounds stay the
language's own: they are in its units of words or characters, and FineWeb-2 turns the short-line rule off).
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

LANGUAGES = {"de": "de", "ja": "ja", "zh": "zh_CN"}  # language code -> /usr/share/man subdirectory
PACKAGES = ["manpages", "manpages-de", "manpages-ja", "manpages-zh", "mandoc"]
MAN = Path("/usr/share/man")
SECTIONS = ("1", "5", "8")


def setup() -> None:
    subprocess.run(["apt-get", "update"], check=True)
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES], check=True)


def shared_pages(subdir: str, limit: int) -> list[tuple[Path, Path]]:
    """(translated, English) page files with the same section and name, first `limit` by name."""
    pairs = []
    for section in SECTIONS:
        translated = MAN / subdir / f"man{section}"
        if not translated.is_dir():
            continue
        for page in sorted(translated.glob("*.gz")):
            original = MAN / f"man{section}" / page.name
            if original.exists() and not page.is_symlink() and not original.is_symlink():
                pairs.append((page, original))
    return sorted(pairs, key=lambda pair: pair[0].name)[:limit]


def render(page: Path, out: Path, lang: str) -> bool:
    """One man page to an HTML file with mandoc (it reads gzip itself); False where mandoc cannot render it."""
    source = gzip.decompress(page.read_bytes())
    if source.lstrip().startswith(b".so "):  # a page that only includes another one
        return False
    result = subprocess.run(["mandoc", "-Thtml", "-Ofragment"], input=source, capture_output=True, check=False)
    if result.returncode > 2 or not result.stdout.strip():  # mandoc: 1-2 warnings/errors, >2 unusable
        return False
    body = result.stdout.decode("utf-8", errors="replace")
    out.write_text(f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8"><title>{page.name}</title>'
                   f"</head><body><main>{body}</main></body></html>")  # fmt: skip
    return True


def corpus(root: Path, limit: int) -> dict[str, list[str]]:
    """Render every language's shared pages and their English originals; the page names per language."""
    if root.exists():
        shutil.rmtree(root)
    names: dict[str, list[str]] = {}
    for lang, subdir in LANGUAGES.items():
        (root / lang).mkdir(parents=True)
        (root / "en").mkdir(parents=True, exist_ok=True)
        names[lang] = []
        for translated, original in shared_pages(subdir, limit):
            name = translated.name.removesuffix(".gz") + ".html"
            if render(translated, root / lang / name, lang) and (
                (root / "en" / name).exists() or render(original, root / "en" / name, "en")
            ):
                names[lang].append(name)
            else:
                (root / lang / name).unlink(missing_ok=True)
    return names


def pipeline_config(root: Path, workspace: Path, per_language: dict | None = None) -> Any:
    from gristmill.conf.schema import validate_config

    return validate_config(
        {
            "workspace": str(workspace),
            "crawl": {
                "sources": [{"path": str(root / lang)} for lang in ("en", *LANGUAGES)],
                "progress_bar": False,
                "extract_workers": 1,
            },
            "dedup": {"exact": False, "near": False},
            "clean": {"language": {"languages": ["en", *LANGUAGES]}, "per_language": per_language or {}},
        }
    )


def run_pipeline(root: Path, workspace: Path) -> list[dict]:
    from gristmill.tasks.clean.stage import run as clean
    from gristmill.tasks.crawl.stage import run as crawl
    from gristmill.tasks.dedup.stage import run as dedup
    from gristmill.tasks.shards import StageOutput, iter_records
    from gristmill.tasks.stage import execute

    config = pipeline_config(root, workspace)
    for stage, run in (("crawl", crawl), ("dedup", dedup), ("clean", clean)):
        execute(config, stage, run)
    rows = []
    for dataset, kept in (("documents", True), ("rejected", False)):
        for record in iter_records(StageOutput(str(workspace), "clean").shard_paths(dataset)):
            rows.append(
                {
                    "source": record["source"],
                    "kept": kept,
                    "reason": record.get("reason"),
                    "value": float(record["value"]) if record.get("value") is not None else None,
                    "language": record.get("language"),
                }
            )
    return rows


def page_outcomes(rows: list[dict]) -> dict[tuple[str, str], dict]:
    """{(language folder, page file): clean's outcome}."""
    return {(Path(r["source"]).parent.name, Path(r["source"]).name): r for r in rows}


def translated(names: dict[str, list[str]], outcome: dict) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Per language, the pages whose translation language id reads as that language, and the rest (headings
    translated, body in English: language id answers `en`). Only the first are compared with English."""
    kept, partial = {}, {}
    for lang, pages in names.items():
        said = {p: (outcome.get((lang, p)) or {}).get("language") for p in pages}
        kept[lang] = [p for p in pages if said[p] in (lang, None)]
        partial[lang] = [p for p in pages if said[p] not in (lang, None)]
    return kept, partial


def report(names: dict[str, list[str]], rows: list[dict]) -> dict:
    """Per language: documents reaching clean and kept, English's on the same pages."""
    outcome = page_outcomes(rows)
    compared, partial = translated(names, outcome)
    results = {}
    for lang, pages in compared.items():
        own = [outcome.get((lang, p)) for p in pages]
        english = [outcome.get(("en", p)) for p in pages]
        reached = [r for r in own if r]
        reached_en = [r for r in english if r]
        kept = sum(r["kept"] for r in reached)
        kept_en = sum(r["kept"] for r in reached_en)
        reasons = Counter(r["reason"] for r in reached if not r["kept"]).most_common(3)
        reasons_en = Counter(r["reason"] for r in reached_en if not r["kept"]).most_common(3)
        results[lang] = {
            "pages": len(names[lang]),
            "partial_translations": partial[lang],
            "docs": len(reached),
            "kept": kept,
            "share": kept / len(reached) if reached else 0.0,
            "docs_en": len(reached_en),
            "kept_en": kept_en,
            "share_en": kept_en / len(reached_en) if reached_en else 0.0,
            "removed_by": reasons,
            "removed_en_by": reasons_en,
        }
    return results


# -- why: each rule's value on a page and its bound in a language's rules ------------------------------------------

_LOWER_BOUNDS = ("fineweb_line_punct_ratio", "language_low_score", "gopher_alpha_words", "gopher_stop_words",
                 "gopher_min_words", "gopher_min_mean_word_length", "c4_too_few_sentences")  # fmt: skip


def owner(rule: str) -> str:
    """The clean step a rule belongs to."""
    for prefix, step in (("gopher_rep", "gopher_repetition"), ("gopher", "gopher_quality"), ("c4", "c4"),
                         ("fineweb", "fineweb"), ("language", "language")):  # fmt: skip
        if rule.startswith(prefix):
            return step
    return rule


def bound(rule: str, clean: Any) -> float | None:
    """The bound a rule is checked against in one language's clean settings (None: not a bound we list)."""
    rep, fw = clean.repetition, clean.fineweb
    n = int("".join(ch for ch in rule if ch.isdigit()) or 0)
    bounds = {
        f"gopher_rep_dup_{n}_grams": rep.dup_ngram_char_frac.get(n),
        f"gopher_rep_top_{n}_gram": rep.top_ngram_char_frac.get(n),
        "gopher_rep_dup_line_frac": rep.dup_line_frac,
        "gopher_rep_dup_line_char_frac": rep.dup_line_char_frac,
        "fineweb_line_punct_ratio": fw.line_punct_thr,
        "fineweb_char_dup_ratio": fw.char_duplicates_ratio,
        "fineweb_list_ratio": fw.new_line_ratio,
        "language_low_score": clean.language.min_score,
        "gopher_bullet_lines": clean.max_bullet_lines_ratio,
        "c4_curly_bracket": 0.0,
    }
    return bounds.get(rule)


def rule_value(rule: str, text: str, steps: list) -> float | None:
    """A rule's value on a page, measured on the text as the rule's step sees it (after the steps before it, their
    verdicts ignored): what the page would score if it got that far."""
    import re

    from gristmill.tasks.clean.base import Doc, Formatter
    from gristmill.tasks.clean.fineweb import sentence_terminals
    from gristmill.tasks.clean.gopher import BULLETS
    from gristmill.tasks.clean.repetition import duplicated_ngram_chars, find_duplicates, top_ngram_chars

    doc, verdict = Doc(text), None
    for step in steps:
        if isinstance(step, Formatter):
            doc.text = step.format(doc.text)
            continue
        if step.name == owner(rule) and step.name != "language":  # language id: its score is the value
            if step.name == "c4":  # C4's yes/no rules: whether C4 (after dropping its lines) removes the page so
                verdict = step.check(doc)
            break
        step.check(doc)
    text, n = doc.text, int("".join(ch for ch in rule if ch.isdigit()) or 0)
    lines = [line for line in text.split("\n") if line.strip()]
    if rule == f"gopher_rep_dup_{n}_grams":
        return duplicated_ngram_chars(doc.words(), n) / len(text)
    if rule == f"gopher_rep_top_{n}_gram":
        return top_ngram_chars(doc.words(), n) / len(text)
    if rule == "gopher_rep_dup_line_frac":
        all_lines = re.split(r"\n+", text)
        return find_duplicates(all_lines)[0] / len(all_lines)
    if rule == "fineweb_line_punct_ratio":
        return sum(line[-1] in sentence_terminals() for line in lines) / len(lines)
    if rule == "fineweb_char_dup_ratio":
        return find_duplicates(lines)[1] / len(text.replace("\n", ""))
    if rule == "fineweb_list_ratio":
        return text.count("\n") / max(len(doc.words()), 1)
    if rule == "language_low_score":
        return doc.metadata.get("language_score")
    if rule == "gopher_bullet_lines":
        return sum(line.lstrip().startswith(BULLETS) for line in lines) / len(lines)
    if rule.startswith("c4_"):
        return float(verdict is not None and verdict.rule == rule)
    return None


def breaks(rule: str, value: float | None, limit: float | None) -> bool | None:
    if value is None or limit is None:
        return None
    return value < limit if rule in _LOWER_BOUNDS else value > limit


def explain(names: dict[str, list[str]], rows: list[dict], root: Path, workspace: Path) -> dict:
    """Every page English loses and its translation keeps: English's rule, value and bound; the translation's value
    for the same rule, its own bound and whether English's bound would have removed it ("threshold") or not
    ("content")."""
    from gristmill.tasks.clean.chain import build_chain
    from gristmill.tasks.clean.rules import RuleBook

    clean = pipeline_config(root, workspace).clean
    steps, book = build_chain(clean), RuleBook(clean)
    texts = dedup_texts(workspace)
    outcome = page_outcomes(rows)
    compared, _ = translated(names, outcome)
    out: dict[str, list[dict]] = {}
    for lang, pages in compared.items():
        out[lang] = []
        for page in pages:
            en, own = outcome.get(("en", page)), outcome.get((lang, page))
            if not (en and own) or en["kept"] or not own["kept"]:
                continue
            rule = en["reason"]
            value = rule_value(rule, texts[(lang, page)], steps)
            en_bound, own_bound = bound(rule, book.get("en").clean), bound(rule, book.get(lang).clean)
            broken = breaks(rule, value, en_bound)
            out[lang].append(
                {
                    "page": page,
                    "rule": rule,
                    "en_value": en["value"],
                    "en_bound": en_bound,
                    "value": value,
                    "bound": own_bound,
                    "cause": "threshold" if broken else "content" if broken is False else "?",
                }
            )
    return out


def dedup_texts(workspace: Path) -> dict[tuple[str, str], str]:
    """The text clean received for each page (dedup's output)."""
    from gristmill.tasks.shards import StageOutput, iter_records

    return {
        (Path(r["source"]).parent.name, Path(r["source"]).name): r["text"]
        for r in iter_records(StageOutput(str(workspace), "dedup").shard_paths("documents"))
    }


def english_bounds(root: Path, workspace: Path) -> dict[str, dict]:
    """Each translated language's row with its repetition, FineWeb line-punctuation and duplicated-line bounds
    replaced by English's (the clean section's): a `clean.per_language` override."""
    clean = pipeline_config(root, workspace).clean
    fineweb = clean.fineweb.model_dump(include={"line_punct_thr", "char_duplicates_ratio"})
    return {lang: {"repetition": clean.repetition.model_dump(), "fineweb": fineweb} for lang in LANGUAGES}


def kept_with_english_bounds(names: dict[str, list[str]], rows: list[dict], root: Path, workspace: Path) -> dict:
    """Per language, pages kept when its row's ratio bounds are English's (the same documents, the same chain)."""
    from gristmill.tasks.clean.base import Doc
    from gristmill.tasks.clean.chain import Chain, build_chain

    texts = dedup_texts(workspace)
    compared, _ = translated(names, page_outcomes(rows))
    clean = pipeline_config(root, workspace, english_bounds(root, workspace)).clean
    chain = Chain(build_chain(clean))
    out = {}
    for lang, pages in compared.items():
        reached = [p for p in pages if (lang, p) in texts]
        kept = sum(chain.process(Doc(texts[(lang, p)])) is None for p in reached)
        out[lang] = {"kept": kept, "docs": len(reached), "share": kept / len(reached) if reached else 0.0}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setup", action="store_true", help="apt-get install the manual pages and mandoc, then exit")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench/manpages"))
    parser.add_argument("--pages", type=int, default=120, help="pages per language (shared with English)")
    parser.add_argument("--explain", action="store_true", help="why the shares differ, page by page")
    args = parser.parse_args()
    if args.setup:
        setup()
        return
    root, workspace = args.out / "html", args.out / "workspace"
    names = corpus(root, args.pages)
    rows = run_pipeline(root, workspace)
    results = report(names, rows)
    print(f"{'lang':5} {'pages':>5} {'docs':>5} {'kept':>5} {'share':>6} | {'en docs':>7} {'en kept':>7} "
          f"{'en share':>8} | {'points':>6}  removed most by (lang; en)")  # fmt: skip
    for lang, r in results.items():
        points = 100 * (r["share"] - r["share_en"])
        print(f"{lang:5} {r['pages']:5} {r['docs']:5} {r['kept']:5} {r['share']:6.1%} | {r['docs_en']:7} "
              f"{r['kept_en']:7} {r['share_en']:8.1%} | {points:+6.1f}  "
              f"{r['removed_by']}; {r['removed_en_by']}")  # fmt: skip
    for lang, r in results.items():
        if r["partial_translations"]:
            print(f"{lang}: left out, language id reads the translation as another language (partly translated): "
                  f"{len(r['partial_translations'])}: {' '.join(r['partial_translations'])}")  # fmt: skip
    if args.explain:
        why = explain(names, rows, root, workspace)
        print("\npages English loses and the translation keeps: rule, English value > bound, translation value, "
              "its bound; cause")  # fmt: skip
        for lang, pages in why.items():
            causes = Counter(p["cause"] for p in pages)
            print(f"{lang}: {len(pages)} pages, {dict(causes)}")
            for p in pages:
                value = "n/a" if p["value"] is None else f"{p['value']:.3f}"
                print(f"  {p['page']:28} {p['rule']:26} en {p['en_value']:.3f} (bound {p['en_bound']}) | "
                      f"{lang} {value} (bound {p['bound']}) -> {p['cause']}")  # fmt: skip
        bounded = kept_with_english_bounds(names, rows, root, workspace)
        print("\nwith English's repetition, line-punctuation and duplicated-line bounds in every language's row:")
        for lang, r in bounded.items():
            points = 100 * (r["share"] - results[lang]["share_en"])
            print(f"  {lang}: {r['kept']} / {r['docs']} = {r['share']:.1%} ({points:+.1f} points from English)")
        for lang in results:
            results[lang]["english_loses_translation_keeps"] = why[lang]
            results[lang]["with_english_bounds"] = bounded[lang]
    (args.out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    print("code:", Path(sys.modules["gristmill.tasks"].__file__).parent.parent)


if __name__ == "__main__":
    main()

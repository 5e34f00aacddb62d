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
same pages and the difference in points, and the rules that removed the most.
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


def run_pipeline(root: Path, workspace: Path) -> list[dict]:
    from gristmill.conf.schema import validate_config
    from gristmill.tasks.clean.stage import run as clean
    from gristmill.tasks.crawl.stage import run as crawl
    from gristmill.tasks.dedup.stage import run as dedup
    from gristmill.tasks.shards import StageOutput, iter_records
    from gristmill.tasks.stage import execute

    config = validate_config(
        {
            "workspace": str(workspace),
            "crawl": {
                "sources": [{"path": str(root / lang)} for lang in ("en", *LANGUAGES)],
                "progress_bar": False,
                "extract_workers": 1,
            },
            "dedup": {"exact": False, "near": False},
            "clean": {"language": {"languages": ["en", *LANGUAGES]}},
        }
    )
    for stage, run in (("crawl", crawl), ("dedup", dedup), ("clean", clean)):
        execute(config, stage, run)
    rows = []
    for dataset, kept in (("documents", True), ("rejected", False)):
        for record in iter_records(StageOutput(str(workspace), "clean").shard_paths(dataset)):
            rows.append({"source": record["source"], "kept": kept, "reason": record.get("reason")})
    return rows


def report(names: dict[str, list[str]], rows: list[dict]) -> dict:
    """Per language: documents reaching clean and kept, English's on the same pages."""
    outcome = {(Path(r["source"]).parent.name, Path(r["source"]).name): r for r in rows}
    results = {}
    for lang, pages in names.items():
        own = [outcome.get((lang, p)) for p in pages]
        english = [outcome.get(("en", p)) for p in pages]
        reached = [r for r in own if r]
        reached_en = [r for r in english if r]
        kept = sum(r["kept"] for r in reached)
        kept_en = sum(r["kept"] for r in reached_en)
        reasons = Counter(r["reason"] for r in reached if not r["kept"]).most_common(3)
        reasons_en = Counter(r["reason"] for r in reached_en if not r["kept"]).most_common(3)
        results[lang] = {
            "pages": len(pages),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setup", action="store_true", help="apt-get install the manual pages and mandoc, then exit")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench/manpages"))
    parser.add_argument("--pages", type=int, default=120, help="pages per language (shared with English)")
    args = parser.parse_args()
    if args.setup:
        setup()
        return
    names = corpus(args.out / "html", args.pages)
    rows = run_pipeline(args.out / "html", args.out / "workspace")
    results = report(names, rows)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    print(f"{'lang':5} {'pages':>5} {'docs':>5} {'kept':>5} {'share':>6} | {'en docs':>7} {'en kept':>7} "
          f"{'en share':>8} | {'points':>6}  removed most by (lang; en)")  # fmt: skip
    for lang, r in results.items():
        points = 100 * (r["share"] - r["share_en"])
        print(f"{lang:5} {r['pages']:5} {r['docs']:5} {r['kept']:5} {r['share']:6.1%} | {r['docs_en']:7} "
              f"{r['kept_en']:7} {r['share_en']:8.1%} | {points:+6.1f}  "
              f"{r['removed_by']}; {r['removed_en_by']}")  # fmt: skip
    print("code:", Path(sys.modules["gristmill.tasks"].__file__).parent.parent)


if __name__ == "__main__":
    main()

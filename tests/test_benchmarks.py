"""The benchmark scripts that can run in seconds on a CPU are kept runnable (their figures live in docs)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_on_cpu_with_a_tiny_model():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--tiny", "--steps", "4", "--block", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "device: cpu" in done.stdout
    # both loops side by side, and their ratio from the same run
    assert "bare PyTorch loop : tokens/s:" in done.stdout and "gristmill stage   : tokens/s:" in done.stdout
    assert "ratio stage/bare  :" in done.stdout and "2 timed blocks of 2 steps" in done.stdout


def test_dedup_speed_runs_the_stage_against_datasketch_on_a_small_corpus(shared_data):
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "dedup_speed.py"), "--docs", "1000", "--plain-docs", "100"]
        + ["--rounds", "1", "--stage-only"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        env={**os.environ, "GRISTMILL_SHARED_DATA": str(shared_data)},
    )
    assert "CPU time: median stage / datasketch end to end" in done.stdout
    assert "| 1 |" in done.stdout


def test_crawl_speed_runs_our_fetch_and_the_whole_stage_on_the_demo_site():
    """Without Scrapy (a bench extra): our fetch, the whole stage (and with huge pages left on), and the
    redirecting copy of the site, with a busy process beside them (--load)."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "crawl_speed.py"), "--site", "demo", "--pages", "20"]
        + ["--rounds", "1", "--modes", "fetch", "stage", "stage-huge-pages", "--redirects", "--load", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "| plain | stage | 20 |" in done.stdout and "| redirects | fetch | 20 |" in done.stdout
    assert "fetch, pages/s, half the links redirecting / no redirects:" in done.stdout
    assert "whole stage / the same with transparent huge pages left on:" in done.stdout
    # The CPU table: the stage's extraction ran in helper processes, our fetch alone has none.
    cpu_rows = {tuple(cells[:2]): cells[2:] for cells in _table_rows(done.stdout, columns=7)}
    assert float(cpu_rows["plain", "stage"][1]) > 0 and float(cpu_rows["plain", "fetch"][1]) == 0
    assert float(cpu_rows["plain", "stage"][0]) > 0
    # The stage's time in two: while it fetched, and after; only the stage modes have it.
    phases = {tuple(cells[:2]): cells[2:] for cells in _table_rows(done.stdout, columns=6) if " = " in cells[3]}
    assert set(phases) == {("plain", "stage"), ("plain", "stage-huge-pages")}
    fetching_s, busy, after_s, _ = phases["plain", "stage"]
    assert float(fetching_s) > 0 and float(after_s) > 0
    assert float(busy.split(" + ")[0]) > 0  # the stage's own process, fetching
    assert not _running("while True: pass")  # the --load process ended with the benchmark


def _running(command_fragment: str) -> list[int]:
    """Processes whose command line holds `command_fragment` (Linux /proc)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if command_fragment in cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                found.append(int(cmdline.parent.name))
        except OSError:  # a process that ended while we looked
            continue
    return found


def _table_rows(text: str, columns: int) -> list[list[str]]:
    """The cells of the Markdown table rows of `text` with that many columns (the header left out; the rule under
    it starts with "|-", not "| ")."""
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("| ")]
    return [cells for cells in rows if len(cells) == columns and cells[0] != "site"]


def test_crawl_parts_measures_each_part_and_its_peer_on_the_demo_site():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "crawl_parts.py"), "--site", "demo", "--pages", "20"]
        + ["--repeat", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    for line in (
        "extraction, document_from_raw whole",
        "the same, long pages past 20,000 characters",
        "publication date (_published)",
        "one selector query per rule (before)",
        "links, extract_links",
        "WARC gzip, ISA-L level 2",
        "WARC gzip, zlib level 6",
        "WARC records, WarcSink.write whole (ours)",
        "warcio computing the digests itself",
        "HTTP, 16 at a time, aiohttp (ours)",
        "HTTP, 16 at a time, httpx",
    ):
        assert line in done.stdout, line  # fmt: skip
    assert "two at once" in done.stdout


def test_bias_scoring_speed_runs_on_a_few_pairs(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bias_scoring_speed.py"), "--pairs", "20", "--peer-pairs", "4",
         "--workspace", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )  # fmt: skip
    assert "20 pairs = 40 sentences" in done.stdout and "speed-up:" in done.stdout


def _benchmark_module(name: str):  # noqa: ANN202 - a module loaded from its file
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_recall_by_script_benchmark_edits_words_in_every_script_never_punctuation_marks():
    import random

    bench = _benchmark_module("dedup_quality_scripts")
    rng = random.Random(0)
    # every word edited, every mark kept: a comma is in no shingle, so editing it would not count as an edit
    deleted = bench.edited_line("copy files, then exit.", "en", "delete", 1.0, ["x"], rng)
    assert [ch for ch in deleted if not ch.isspace()] == [",", "."]
    # an inserted word is a word of its own: spaced in English (glued, "copyx" was a substitution), not in Chinese
    assert (
        bench.edited_line("copy files, then exit.", "en", "insert", 1.0, ["x"], rng) == "copy x files x, then x exit x."
    )
    assert bench.edited_line("复制文件。", "zh", "insert", 1.0, ["词"], rng) == "复制词文件词。"
    assert bench.edited_line("复制文件。", "zh", "substitute", 1.0, ["词"], rng) == "词词。"

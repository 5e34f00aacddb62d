"""Crawl throughput from a local server: fetching alone, and the whole crawl stage (fetch + extraction).

    .venv/bin/python benchmarks/crawl_speed.py [--pages 600] [--extractor trafilatura-precision]

The demo site (installed packages' documentation, real HTML) is built and served on 127.0.0.1 by this process;
each mode runs in a child process so its peak memory (VmHWM) is its own:

- fetch:          the async crawler into its SQLite state (robots, politeness, link extraction; no main text)
- fetch+extract:  the crawl stage as the pipeline runs it (fetch unit, raw shards, extraction in worker
                  processes with a per-document time limit, documents shards, WARC)

The server shares the 2 cores with the crawler, so the figures are a lower bound for a remote site's
throughput, which is bounded by politeness delays long before this.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gristmill.tasks.demo_site.build import build_demo_site  # noqa: E402
from gristmill.tasks.demo_site.serve import serve_directory  # noqa: E402

CHILD = """
import json, sys, time
from pathlib import Path
from gristmill.conf.schema import validate_config
from gristmill.tasks.crawl.crawler import Crawler
from gristmill.tasks.crawl.state import CrawlState
from gristmill.tasks.crawl import stage
from gristmill.tasks.stage import execute

mode, raw = sys.argv[1], json.loads(sys.argv[2])
config = validate_config(raw)
started = time.perf_counter()
if mode == "fetch":
    state = CrawlState(Path(config.workspace) / "state.sqlite")
    Crawler(config.crawl, state).run(config.crawl.seeds)
    pages = state.stored
else:
    summary = execute(config, "crawl", stage.run)
    pages = summary.count_in
seconds = time.perf_counter() - started
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"pages": pages, "seconds": seconds, "peak_mb": hwm / 1024}))
"""


def run_mode(mode: str, base: str, workspace: Path, args: argparse.Namespace) -> dict[str, float]:
    config = {
        "workspace": str(workspace / mode),
        "crawl": {
            "seeds": [base],
            "allow_private_networks": ["127.0.0.0/8"],
            "max_pages": args.pages,
            "concurrency": args.concurrency,
            "per_host_concurrency": args.concurrency,
            "extractor": args.extractor,
            "extract_workers": args.workers,
            "progress_bar": False,
        },
    }
    done = subprocess.run(
        [sys.executable, "-c", CHILD, mode, json.dumps(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (one host: per-host too)")
    parser.add_argument("--extractor", default="trafilatura-precision")
    parser.add_argument("--workers", type=int, default=2, help="extraction processes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        stats = build_demo_site(site)
        print(f"demo site: {stats.pages} pages, {stats.bytes / 1e6:.1f} MB; crawling up to {args.pages}")
        with serve_directory(site) as base:
            print("| mode | pages | seconds | pages/s | peak memory (VmHWM) |")
            print("|---|---:|---:|---:|---:|")
            for mode in ("fetch", "fetch+extract"):
                started = time.perf_counter()
                result = run_mode(mode, base, Path(tmp), args)
                rate = result["pages"] / result["seconds"]
                print(
                    f"| {mode} | {result['pages']} | {result['seconds']:.1f} | {rate:.1f} | "
                    f"{result['peak_mb']:.0f} MB |  (child wall {time.perf_counter() - started:.1f} s)"
                )


if __name__ == "__main__":
    main()

"""Kill the crawl stage with SIGKILL mid-crawl, run it again: the same pages as an uninterrupted crawl, none
stored twice, and only the requests that were in flight at the kill are made again."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.parquet as pq

from gristmill.conf.schema import PipelineConfig, validate_config
from gristmill.tasks.crawl import stage as crawl_stage
from gristmill.tasks.stage import execute
from tests.tasks.crawl.test_crawler import HandMadeSite, serve

PAGES = 60
PER_HOST = 2
RUN_STAGE = """
import json, sys
from gristmill.conf.schema import validate_config
from gristmill.tasks.crawl import stage
from gristmill.tasks.stage import execute
execute(validate_config(json.loads(sys.argv[1])), "crawl", stage.run)
"""


def _site() -> HandMadeSite:
    site = HandMadeSite()
    # A tree: each page links to two children, so the frontier is wide and always has work queued.
    for i in range(PAGES):
        children = [f"/p{c}" for c in (2 * i + 1, 2 * i + 2) if c < PAGES]
        site.page(f"/p{i}", f"Page number {i} of the resume test.", children)
        site.routes[f"/p{i}"].delay_s = 0.05
    return site


def _config(tmp_path: Path, base: str, name: str) -> PipelineConfig:
    return validate_config(
        {
            "workspace": str(tmp_path / name),
            "crawl": {
                "seeds": [base + "p0"],
                "allow_private_networks": ["127.0.0.0/8"],
                "per_host_concurrency": PER_HOST,
                "max_pages": 1000,
                "shard_rows": 25,
                "progress_bar": False,
                "extract_workers": 1,
            },
        }
    )


def _stored_urls(workspace: Path) -> list[str]:
    shards = sorted((workspace / "crawl" / "raw").glob("*.parquet"))
    return [url for shard in shards for url in pq.read_table(shard, columns=["url"]).column("url").to_pylist()]


def _stored_so_far(state_path: Path) -> int:
    if not state_path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{state_path}?mode=ro", uri=True) as db:
            return db.execute("SELECT count(*) FROM pages").fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def test_sigkill_then_rerun_equals_an_uninterrupted_crawl(tmp_path: Path) -> None:
    site = _site()
    with serve(site) as base:
        reference = _config(tmp_path, base, "reference")
        execute(reference, "crawl", crawl_stage.run)
        expected = _stored_urls(Path(reference.workspace))
        assert len(expected) == PAGES
        site.hits.clear()

        # The last third of the pages answer only when released: the kill lands mid-crawl whatever the machine's load.
        site.held = {f"/p{i}" for i in range(PAGES - PAGES // 3, PAGES)}
        config = _config(tmp_path, base, "killed")
        workspace = Path(config.workspace)
        state_path = workspace / "crawl" / "state" / "crawl.sqlite"
        argv = [sys.executable, "-c", RUN_STAGE, json.dumps(config.model_dump(mode="json"))]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
        process = subprocess.Popen(argv, env=env)
        deadline = time.monotonic() + 120  # a guard against a hang, not a bound
        while _stored_so_far(state_path) < PAGES // 3 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        stored_at_kill = _stored_so_far(state_path)
        assert PAGES // 3 <= stored_at_kill <= PAGES - PAGES // 3, "the kill should land mid-crawl"
        assert not (workspace / "crawl" / "manifest.json").exists()

        site.released.set()
        subprocess.run(argv, env=env, check=True, timeout=120)

    urls = _stored_urls(workspace)
    assert sorted(urls) == sorted(expected)
    assert len(urls) == len(set(urls))
    hits = Counter(path for path, _ in site.hits if path.startswith("/p"))
    refetched = [path for path, n in hits.items() if n > 1]
    assert len(refetched) <= PER_HOST, f"only requests in flight at the kill may repeat: {refetched}"
    assert set(hits) == {urlsplit(u).path for u in expected}
    # The WARC files of both sessions hold every page (a record cut by the kill is skipped by readers).
    warcs = sorted((workspace / "crawl" / "warc").glob("*.warc.gz"))
    assert len(warcs) == 2

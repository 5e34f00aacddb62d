"""The crawl stage: fetch pages breadth-first from the seeds (and the demo site, if enabled), extract text.

The crawl is one unit of work: an interrupted crawl starts again (the frontier is not persisted yet).
"""

from __future__ import annotations

from contextlib import ExitStack

from tasks.crawl.crawler import Crawler
from tasks.crawl.demo_site import build_demo_site, serve_directory
from tasks.crawl.records import DOCUMENT_SCHEMA
from tasks.shards import ShardWriter, UnitRecord
from tasks.stage import StageContext, StageResult


def run(ctx: StageContext) -> StageResult:
    cfg = ctx.config.crawl

    def crawl() -> UnitRecord:
        with ExitStack() as stack:
            seeds = list(cfg.seeds)
            if cfg.demo_site.enabled:
                site = ctx.workspace / "demo_site"
                build_demo_site(site, cfg.demo_site.max_packages)
                seeds.append(stack.enter_context(serve_directory(site)))
            crawler = Crawler(cfg)
            writer = ShardWriter(ctx.output.dataset_dir("documents"), DOCUMENT_SCHEMA, cfg.shard_rows)
            with writer:
                for record in crawler.crawl(seeds):
                    writer.write(record)
        return UnitRecord(unit="crawl", shards={"documents": writer.shards}, stats=crawler.stats.as_dict())

    unit = ctx.unit("crawl", crawl)
    stats = unit.stats
    return StageResult(
        units=[unit],
        count_in=int(stats.get("fetched", 0)),
        unit_in="pages",
        count_out=sum(s.rows for s in unit.shards.get("documents", [])),
        unit_out="docs",
        stats=dict(stats),
    )

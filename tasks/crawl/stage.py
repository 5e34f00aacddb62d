"""The crawl stage: raw records from every source, then main text from every raw record.

    fetch            seeds (and the demo site) -> polite async crawl -> raw/fetch-*.parquet, fetches/, warc/
    ingest-<file>    each WARC / WET / JSONL / Parquet / text file    -> raw/ingest-<file>-*.parquet
    extract-<shard>  each raw shard -> extraction in worker processes -> documents/<shard>.parquet

Each is a unit: a rerun skips finished ones, and the fetch unit continues an interrupted crawl from its
SQLite state (`state/crawl.sqlite`) instead of starting over.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa

from gristmill.conf.schema import CrawlConfig, SourceConfig
from gristmill.tasks.crawl.crawler import Crawler
from gristmill.tasks.crawl.extract import ExtractionPool
from gristmill.tasks.crawl.inputs import fetch_generation, state_path
from gristmill.tasks.crawl.progress import CrawlProgressReporter
from gristmill.tasks.crawl.records import CRAWL_SOURCE, FETCH_SCHEMA, RAW_SCHEMA, doc_id
from gristmill.tasks.crawl.sources import (
    IngestCounts,
    IngestProblem,
    expand_source,
    files_digest,
    read_source,
    source_kind,
)
from gristmill.tasks.crawl.state import CrawlState, Page
from gristmill.tasks.crawl.warc import WarcSink
from gristmill.tasks.demo_site.build import build_demo_site
from gristmill.tasks.demo_site.serve import serve_directory
from gristmill.tasks.documents import DOCUMENT_SCHEMA
from gristmill.tasks.shards import ShardInfo, ShardWriter, UnitRecord, code_version, iter_batches, write_shard
from gristmill.tasks.stage import StageContext, StageResult, sum_stats

log = logging.getLogger("gristmill.crawl")

FETCH_LOG_ROWS = 100_000  # rows per fetch-log shard
RAW_SHARD_BYTES = 256 << 20  # a raw shard also closes at this many body bytes: pages run from 1 KB to 5 MB
FILES_PER_UNIT = 1000  # small files (a directory of .txt) are ingested in batches, not one unit per file
PROBLEM_ROWS = 200  # problems kept per unit for the report table (all are counted)
EXTRACT_BATCH = 64


def run(ctx: StageContext) -> StageResult:
    cfg = ctx.config.crawl
    # Sources first: a path that matches nothing fails before a long crawl, not after it.
    batches = [(source, urls) for source in cfg.sources for urls in file_batches(source)]
    raw_units: list[UnitRecord] = []
    if cfg.seeds or cfg.demo_site.enabled:
        raw_units += fetch_units(ctx, fetch_generation(ctx.config))
    raw_units += ctx.map(partial(ingest_unit, ctx), batches)
    raw_shards = [shard for unit in raw_units for shard in unit.shards.get("raw", [])]
    doc_units = ctx.map(partial(extract_unit, ctx), raw_shards)
    report(ctx, raw_units, doc_units)
    stats = sum_stats((u.stats for u in [*raw_units, *doc_units]), skip={"problems"})  # problems: the report table
    return StageResult(
        units=[*raw_units, *doc_units],
        count_in=int(stats.get("raw_records", 0)),
        unit_in="records",
        count_out=int(stats.get("documents", 0)),
        unit_out="docs",
        stats=stats,
        files={p.name: str(p.relative_to(ctx.output.path)) for p in sorted(ctx.output.path.glob("warc/*.warc.gz"))},
    )


# -- fetch -------------------------------------------------------------------------------------------------------


def fetch_unit_name(generation: int) -> str:
    """`fetch` for the first crawl, `fetch-g<N>` for refresh N; also the prefix of their shards."""
    return "fetch" if generation == 0 else f"fetch-g{generation:03d}"


def fetch_units(ctx: StageContext, generation: int) -> list[UnitRecord]:
    """The crawl generations before this one as they were (their pages stay in the corpus), then this one.
    The crawl's inputs are its seeds and scope, which are settings: new source files leave it alone."""
    earlier = [ctx.output.finished_unit(fetch_unit_name(g), f"seeds@{g}") for g in range(generation)]
    current = ctx.unit(fetch_unit_name(generation), partial(fetch_unit, ctx, generation), inputs=f"seeds@{generation}")
    return [unit for unit in earlier if unit is not None] + [current]


def fetch_unit(ctx: StageContext, generation: int = 0) -> UnitRecord:
    """Crawl (or continue crawling) into the state file, then write its pages and fetch log as shards. A refresh
    generation revisits every known URL with a conditional request and writes only new and changed pages."""
    cfg = ctx.config.crawl
    name = fetch_unit_name(generation)
    state = CrawlState(state_path(ctx.workspace))
    try:
        state.start_generation(generation)
        with ExitStack() as stack:
            seeds = list(cfg.seeds)
            if cfg.demo_site.enabled:
                seeds.append(stack.enter_context(demo_site(ctx.workspace / "demo_site", cfg, state)))
            warc = None
            if cfg.warc:
                warc = stack.enter_context(WarcSink(ctx.output.path / "warc", f"gristmill {code_version()}"))
            artifact = partial(ctx.progress, "crawl")
            reporter = stack.enter_context(
                CrawlProgressReporter(cfg.max_pages, bar=cfg.progress_bar, artifact=artifact)
            )
            crawler = Crawler(cfg, state, warc=warc, on_progress=reporter)
            crawler.run(seeds)
        state.set_meta(f"finished_{generation}", str(time.time()))  # a refresh is due recrawl_after from here
        pages = map(raw_record, state.iter_pages())
        raw = write_records(ctx.output.dataset_dir("raw"), RAW_SCHEMA, pages, cfg.shard_rows, name)
        log_rows = state.iter_fetches()
        fetches = write_records(ctx.output.dataset_dir("fetches"), FETCH_SCHEMA, log_rows, FETCH_LOG_ROWS, name)
        stats = {
            "fetch_generation": generation,
            "raw_records": sum(s.rows for s in raw),
            "fetch": state.outcome_counts(),
            "fetch_errors": state.error_counts(),
            **{f"fetch_{k}": v for k, v in state.totals().items()},
            "links_dropped": dict(crawler.dropped_links),
        }
        failures = state.iter_fetches(outcome="failed", limit=PROBLEM_ROWS)
        stats["problems"] = [{"kind": "fetch", "where": f["url"], "reason": f["error"]} for f in failures]
        return UnitRecord(unit=name, shards={"raw": raw, "fetches": fetches}, stats=stats)
    finally:
        state.close()


@contextmanager
def demo_site(site: Path, cfg: CrawlConfig, state: CrawlState) -> Iterator[str]:
    """Build and serve the demo site; a resumed crawl gets the same port back when it is free (same URLs)."""
    build_demo_site(site, cfg.demo_site.max_packages)
    port = int(state.get_meta("demo_port") or 0)
    with serve_directory(site, port) as base:
        if port and not base.endswith(f":{port}/"):
            log.warning("demo site port %d is taken: a resumed crawl sees new URLs at %s", port, base)
        state.set_meta("demo_port", base.rstrip("/").rsplit(":", 1)[1])
        yield base


def raw_record(page: Page) -> dict[str, Any]:
    return {
        "doc_id": doc_id(page.url),
        "url": page.url,
        "source": CRAWL_SOURCE,
        "source_offset": None,
        "fetched_at": page.fetched_at,
        "status": page.status,
        "content_type": page.content_type,
        "charset": page.charset,
        "lang_hint": page.lang_hint,
        "content": page.content,
    }


def write_records(
    directory: Path, schema: pa.Schema, records: Iterable[dict[str, Any]], rows: int, prefix: str
) -> list[ShardInfo]:
    """Stream records into shards of at most `rows` rows and (for raw records, by `content`) RAW_SHARD_BYTES."""
    with ShardWriter(directory, schema, rows, prefix=prefix, max_bytes=RAW_SHARD_BYTES) as writer:
        for record in records:
            writer.write(record, len(record.get("content") or b""))
    return writer.shards


# -- ingest ------------------------------------------------------------------------------------------------------


def file_batches(source: SourceConfig) -> list[list[str]]:
    """The source's files in units of work: one per file, except plain files, FILES_PER_UNIT at a time."""
    urls = expand_source(source)
    if any(source_kind(url, source) != "files" for url in urls):
        return [[url] for url in urls]
    return [urls[i : i + FILES_PER_UNIT] for i in range(0, len(urls), FILES_PER_UNIT)]


def ingest_unit(ctx: StageContext, item: tuple[SourceConfig, list[str]]) -> UnitRecord:
    source, urls = item
    name = "ingest-" + hashlib.sha1("\n".join(urls).encode()).hexdigest()[:12]

    def work() -> UnitRecord:
        counts = IngestCounts()
        problems: list[IngestProblem] = []

        def report(problem: IngestProblem) -> None:
            log.warning("ingest: %s", problem)  # as it happens: a unit that fails later has said it already
            problems.append(problem)

        records = (record for url in urls for record in read_source(url, source, report, counts))
        shards = write_records(ctx.output.dataset_dir("raw"), RAW_SCHEMA, records, ctx.config.crawl.shard_rows, name)
        stats = {
            "raw_records": sum(s.rows for s in shards),
            "ingest_files": len(urls),
            "ingest_skipped": dict(counts.skipped),
            "ingest_problems": len(problems),
            "problems": [
                {"kind": "ingest", "where": f"{p.path} @ {p.offset}", "reason": p.reason}
                for p in problems[:PROBLEM_ROWS]
            ],
        }
        return UnitRecord(unit=name, shards={"raw": shards}, stats=stats)

    return ctx.unit(name, work, inputs=files_digest(urls))  # an unchanged file is not read again


# -- extract -----------------------------------------------------------------------------------------------------


def extract_unit(ctx: StageContext, raw_info: ShardInfo) -> UnitRecord:
    """One raw shard -> one documents shard of the same name; documents with no main text are counted, not kept."""
    raw_shard = ctx.output.dataset_dir("raw") / raw_info.name
    name = f"extract-{raw_shard.stem}"
    cfg = ctx.config.crawl

    def work() -> UnitRecord:
        counts: Counter[str] = Counter()
        problems: list[dict[str, Any]] = []
        with ExtractionPool(cfg.extract_workers) as pool:
            batches = document_batches(pool, raw_shard, cfg, counts, problems)
            info = write_shard(ctx.output.dataset_dir("documents") / raw_shard.name, batches, DOCUMENT_SCHEMA)
        stats = {"documents": info.rows, "extract": dict(counts), "problems": problems[:PROBLEM_ROWS]}
        return UnitRecord(unit=name, shards={"documents": [info]}, stats=stats)

    return ctx.unit(name, work, inputs=raw_info.sha256)


def document_batches(
    pool: ExtractionPool, raw_shard: Path, cfg: CrawlConfig, counts: Counter[str], problems: list[dict[str, Any]]
) -> Iterator[pa.RecordBatch]:
    where: deque[str] = deque()  # the pool keeps input order: each result pops its record's location

    def raws() -> Iterator[dict[str, Any]]:
        for batch in iter_batches([raw_shard], batch_size=EXTRACT_BATCH):
            for raw in batch.to_pylist():
                where.append(record_location(raw))
                yield raw

    kept: list[dict[str, Any]] = []
    for document, problem in pool.map(raws(), cfg.extractor, cfg.extract_timeout_s):
        location = where.popleft()
        counts["records"] += 1
        if problem:
            counts["timeouts" if "timed out" in problem else "errors"] += 1
            problems.append({"kind": "extract", "where": location, "reason": problem})
        if not document.get("text"):
            counts["no_text"] += 1
            continue
        kept.append(document)
        if len(kept) >= EXTRACT_BATCH:
            yield pa.RecordBatch.from_pylist(kept, schema=DOCUMENT_SCHEMA)
            kept = []
    if kept:
        yield pa.RecordBatch.from_pylist(kept, schema=DOCUMENT_SCHEMA)


def record_location(raw: dict[str, Any]) -> str:
    """Where a person finds a record: the page URL for a crawl, the file and offset for an ingested record."""
    if raw["source"] == CRAWL_SOURCE:
        return raw["url"]
    return f"{raw['source']} @ {raw['source_offset']}"


# -- report ------------------------------------------------------------------------------------------------------


def report(ctx: StageContext, raw_units: list[UnitRecord], doc_units: list[UnitRecord]) -> None:
    """Every failed fetch, bad record and failed extraction (a sample per unit) as one table; the counts are in
    the stage's stats, which the stage runner logs as metrics."""
    problems = [p for unit in [*raw_units, *doc_units] for p in unit.stats.get("problems", [])]
    ctx.table("crawl/problems", problems)

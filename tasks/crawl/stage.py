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
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from itertools import repeat
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from gristmill.conf.schema import CrawlConfig, SourceConfig, UserError
from gristmill.tasks.crawl.crawler import Crawler
from gristmill.tasks.crawl.early import EarlyDocuments, EarlyExtraction
from gristmill.tasks.crawl.extraction_pool import ExtractionPool, extraction_worker
from gristmill.tasks.crawl.fallback import RAW_READ_ROWS, is_html_record, raw_rows, refine
from gristmill.tasks.crawl.inputs import fetch_generation, state_path
from gristmill.tasks.crawl.memory import without_transparent_huge_pages
from gristmill.tasks.crawl.progress import CrawlProgressReporter
from gristmill.tasks.crawl.records import CRAWL_SOURCE, FETCH_SCHEMA, RAW_SCHEMA, doc_id
from gristmill.tasks.crawl.sources import (
    IngestCounts,
    IngestProblem,
    SourceError,
    expand_source,
    file_digest,
    files_digest,
    read_source,
    remembered_digests,
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
# A raw shard also closes at this many body bytes (pages run from 1 KB to 5 MB). Its writing streams a batch at a
# time (ShardWriter), so the bound is for what holds a whole shard's worth: its extract unit's documents, and the
# rewrite of a narrowed ingest unit (`filter_by_source`). When writing held the whole shard it took the stage
# process up by ~4x its body bytes (253 -> 413 MB for 150 docs pages), past 500 MB at the earlier 256 MB.
RAW_SHARD_BYTES = 32 << 20
FILES_PER_UNIT = 1000  # small files (a directory of .txt) are ingested in batches, not one unit per file
FILE_DIGESTS = "file_digests"  # an ingest unit of plain files: each file's sha256, so a later run keeps the unchanged
PROBLEM_ROWS = 200  # problems kept per unit for the report table (all are counted)
EXTRACT_BATCH = 64
RAW_METADATA = [name for name in RAW_SCHEMA.names if name != "content"]  # a raw record without its body


def run(ctx: StageContext) -> StageResult:
    cfg = ctx.config.crawl
    # Sources first: a path that matches nothing fails before a long crawl, not after it.
    kept: list[UnitRecord] = []
    batches: list[tuple[SourceConfig, list[str]]] = []
    for source in cfg.sources:
        earlier, to_read = file_batches(ctx, source)
        kept += earlier
        batches += [(source, urls) for urls in to_read]
    raw_units: list[UnitRecord] = []
    with without_transparent_huge_pages(), ExtractionPool(cfg.extract_workers) as pool:
        # One pool for the stage: the fetch extracts pages while it crawls, the extract units (in this process)
        # take those documents and extract the rest; a new pool's first page waited seconds for its workers.
        early = EarlyDocuments(pool)
        if cfg.seeds or cfg.demo_site.enabled:
            raw_units += fetch_units(ctx, fetch_generation(ctx.config), early)
        raw_units += kept + ctx.map(partial(ingest_unit, ctx), batches)
        # Raw shards `gristmill gc` collected still name the documents extracted from them, which stay.
        raw_shards = [s for unit in raw_units for s in [*unit.shards.get("raw", []), *unit.collected.get("raw", [])]]
        doc_units = ctx.map(partial(extract_unit, ctx, early=early), raw_shards)
    report(ctx, raw_units, doc_units)
    # problems: the report table; file digests and source: which files an ingest unit holds
    stats = sum_stats((u.stats for u in [*raw_units, *doc_units]), skip={"problems", FILE_DIGESTS, "source_path"})
    check_losses(stats, [*raw_units, *doc_units], ctx.config.problems.max_fraction)
    stats["warnings"] = warnings(stats, [*raw_units, *doc_units])
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


def fetch_units(ctx: StageContext, generation: int, early: EarlyDocuments | None = None) -> list[UnitRecord]:
    """The crawl generations before this one as they were (their pages stay in the corpus), then this one.
    The crawl's inputs are its seeds and scope, which are settings: new source files leave it alone."""
    earlier = [ctx.output.finished_unit(fetch_unit_name(g), f"seeds@{g}") for g in range(generation)]
    work = partial(fetch_unit, ctx, generation, early)
    current = ctx.unit(fetch_unit_name(generation), work, inputs=f"seeds@{generation}")
    return [unit for unit in earlier if unit is not None] + [current]


def fetch_unit(ctx: StageContext, generation: int = 0, early: EarlyDocuments | None = None) -> UnitRecord:
    """Crawl (or continue crawling) into the state file, then write its pages and fetch log as shards. A refresh
    generation revisits every known URL with a conditional request and writes only new and changed pages. With
    `early`, stored pages are extracted while the crawl goes on (tasks/crawl/early.py)."""
    state = CrawlState(state_path(ctx.workspace))
    try:
        with early_extraction(ctx.config.crawl, early, state) as on_page:
            return crawl_and_write(ctx, generation, state, on_page)
    finally:
        state.close()


@contextmanager
def early_extraction(
    cfg: CrawlConfig, early: EarlyDocuments | None, state: CrawlState
) -> Iterator[Callable[[Page], None] | None]:
    """The crawl's `on_page` that extracts each stored page at once (None when that is off); on the way out, the
    pages in flight are waited for, so their documents are there for the extract units."""
    if early is None or early.pool is None or not cfg.extract_during_fetch:
        yield None
        return
    extraction = EarlyExtraction(early.pool, cfg, early, state.path)
    try:
        yield lambda page: extraction.submit(raw_record(page))
    except BaseException:
        extraction.close(abandon=True)  # the fetch failed: its unit runs again, and extracts again
        raise
    extraction.wait()


def crawl_and_write(
    ctx: StageContext, generation: int, state: CrawlState, on_page: Callable[[Page], None] | None
) -> UnitRecord:
    """The fetch unit's work: crawl into `state`, then write its pages (raw) and fetch log (fetches) as shards."""
    cfg = ctx.config.crawl
    name = fetch_unit_name(generation)
    state.start_generation(generation)
    with ExitStack() as stack:
        seeds = list(cfg.seeds)
        if cfg.demo_site.enabled:
            seeds.append(stack.enter_context(demo_site(ctx.workspace / "demo_site", cfg, state)))
        warc = None
        if cfg.warc:
            warc = stack.enter_context(WarcSink(ctx.output.path / "warc", f"gristmill {code_version()}"))
        artifact = partial(ctx.progress, "crawl")
        reporter = stack.enter_context(CrawlProgressReporter(cfg.max_pages, bar=cfg.progress_bar, artifact=artifact))
        crawler = Crawler(cfg, state, warc=warc, on_progress=reporter, on_page=on_page)
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
    dictionary = dictionary_columns(schema)
    with ShardWriter(
        directory, schema, rows, prefix=prefix, max_bytes=RAW_SHARD_BYTES, use_dictionary=dictionary
    ) as writer:
        for record in records:
            writer.write(record, len(record.get("content") or b""))
    return writer.shards


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """The columns worth dictionary-encoding in a shard of `schema`: all but page bodies, which are all different
    (a dictionary of them is tried, found useless and dropped, at 3x the write's time)."""
    return [name for name in schema.names if name != "content"]


# -- ingest ------------------------------------------------------------------------------------------------------


def file_batches(ctx: StageContext, source: SourceConfig) -> tuple[list[UnitRecord], list[list[str]]]:
    """The source's files in units of work: one per file, except plain files (`kind: files`), FILES_PER_UNIT at a
    time. Plain files are ingested file by file: (earlier units kept, batches of the files to read now)."""
    urls = expand_source(source)
    if any(source_kind(url, source) != "files" for url in urls):
        return [], [[url] for url in urls]
    kept, new = earlier_file_units(ctx, source, urls)
    return kept, [new[i : i + FILES_PER_UNIT] for i in range(0, len(new), FILES_PER_UNIT)]


def earlier_file_units(ctx: StageContext, source: SourceConfig, urls: list[str]) -> tuple[list[UnitRecord], list[str]]:
    """The earlier units of this source's plain files that still hold unchanged files, and the files none holds
    (new or changed), to read now. An earlier unit one of whose files changed or went away is narrowed to the rest
    (`narrow_unit`): its records are filtered from its own shards, so an unchanged file is never read again."""
    remembered = remembered_digests(ctx.workspace)
    digests = {url: file_digest(url, remembered) for url in urls}  # known sizes and mtimes: not read
    kept: list[UnitRecord] = []
    covered: set[str] = set()
    for record in ctx.output.units():
        files = record.stats.get(FILE_DIGESTS)
        if not files or record.stats.get("source_path") != source.path:
            continue
        if ctx.output.finished_unit(record.unit, record.inputs) is None:  # damaged: its files are read again
            continue
        still = sorted(url for url, digest in files.items() if digests.get(url) == digest and url not in covered)
        if not still:
            continue
        kept.append(record if len(still) == len(files) else narrow_unit(ctx, record, still, remembered))
        covered |= set(still)
    return kept, [url for url in urls if url not in covered]


def narrow_unit(
    ctx: StageContext, record: UnitRecord, files: list[str], remembered: dict[str, dict[str, Any]]
) -> UnitRecord:
    """An ingest unit's records of `files` only: its raw shards and the documents extracted from them, filtered by
    `source` (no source file is read, nothing is extracted again); the extract units' records follow. Raw shards gc
    collected are gone: only their documents are narrowed."""
    keep = pa.array(files)
    raw_shards, records = [], 0
    for info in record.shards.get("raw", []):
        narrowed = narrow_documents(ctx, info, keep, rewrite_raw=True)
        raw_shards.append(narrowed)
        records += narrowed.rows
    for info in record.collected.get("raw", []):
        records += narrow_documents(ctx, info, keep, rewrite_raw=False).rows  # plain files: one record a file
    kept = set(files)
    stats = {
        **record.stats,
        "raw_records": records,
        "ingest_files": len(files),
        FILE_DIGESTS: {url: digest for url, digest in record.stats[FILE_DIGESTS].items() if url in kept},
        "problems": [p for p in record.stats.get("problems", []) if p["where"].rsplit(" @ ", 1)[0] in kept],
    }
    update = {"shards": {"raw": raw_shards}, "stats": stats, "inputs": files_digest(files, remembered)}
    log.info("ingest: unit %s keeps %d of its %d files (the others changed or went)", record.unit, len(files),
             len(record.stats[FILE_DIGESTS]))  # fmt: skip
    return ctx.output.finish_unit(record.model_copy(update=update))


def narrow_documents(ctx: StageContext, raw_info: ShardInfo, keep: pa.Array, rewrite_raw: bool) -> ShardInfo:
    """Filter one raw shard (when `rewrite_raw`) and the documents extracted from it to the records of `keep`, and
    record the extract unit as done on the result; the raw shard's info after (or, not rewritten, the documents')."""
    raw_path = ctx.output.dataset_dir("raw") / raw_info.name
    extract = ctx.output.finished_unit(extract_unit_name(raw_path), raw_info.sha256)  # on the raw shard as it was
    narrowed = filter_by_source(raw_path, RAW_SCHEMA, keep) if rewrite_raw else None
    if extract is None:  # not extracted yet: its unit runs on the narrowed shard
        return narrowed or raw_info
    docs = [filter_by_source(ctx.output.dataset_dir("documents") / d.name, DOCUMENT_SCHEMA, keep)
            for d in extract.shards["documents"]]  # fmt: skip
    documents = sum(d.rows for d in docs)
    stats = {**extract.stats, "documents": documents}
    if narrowed is not None:  # the counts that follow from the rows; fallbacks and failures stay as they were
        stats["extract"] = {**extract.stats.get("extract", {}), "records": narrowed.rows}
        stats["extract"]["no_text"] = narrowed.rows - documents
    inputs = narrowed.sha256 if narrowed else raw_info.sha256
    ctx.output.finish_unit(extract.model_copy(update={"inputs": inputs, "shards": {"documents": docs}, "stats": stats}))
    if narrowed is not None:
        return narrowed
    return docs[0] if docs else raw_info


def filter_by_source(path: Path, schema: pa.Schema, sources: pa.Array) -> ShardInfo:
    """Rewrite a shard (atomically, under its name) with only the records read from `sources`."""
    batches = (b.filter(pc.is_in(b.column("source"), value_set=sources)) for b in iter_batches([path]))
    return write_shard(path, batches, schema, use_dictionary=dictionary_columns(schema))


def ingest_unit(ctx: StageContext, item: tuple[SourceConfig, list[str]]) -> UnitRecord:
    source, urls = item
    name = "ingest-" + hashlib.sha1("\n".join(urls).encode()).hexdigest()[:12]
    plain_files = all(source_kind(url, source) == "files" for url in urls)
    remembered = remembered_digests(ctx.workspace)

    def work() -> UnitRecord:
        counts = IngestCounts()
        problems: list[IngestProblem] = []

        def report(problem: IngestProblem) -> None:
            log.warning("ingest: %s", problem)  # as it happens: a unit that fails later has said it already
            problems.append(problem)

        records = (record for url in urls for record in file_records(url, source, report, counts, problems))
        shards = write_records(ctx.output.dataset_dir("raw"), RAW_SCHEMA, records, ctx.config.crawl.shard_rows, name)
        stats = {
            "raw_records": sum(s.rows for s in shards),
            "ingest_files": len(urls),
            "ingest_skipped": dict(counts.skipped),
            "ingest_quirks": dict(counts.quirks),
            "ingest_problems": len(problems),
            "problems": [
                {"kind": "ingest", "where": f"{p.path} @ {p.offset}", "reason": p.reason}
                for p in problems[:PROBLEM_ROWS]
            ],
        }
        if plain_files:  # which file holds which records: a later run keeps this unit's unchanged files
            stats |= {FILE_DIGESTS: {url: file_digest(url, remembered) for url in urls}, "source_path": source.path}
        return UnitRecord(unit=name, shards={"raw": shards}, stats=stats)

    return ctx.unit(name, work, inputs=files_digest(urls, remembered))  # an unchanged file is not read again


def file_records(
    url: str,
    source: SourceConfig,
    report: Callable[[IngestProblem], None],
    counts: IngestCounts,
    problems: list[IngestProblem],
) -> Iterator[dict[str, Any]]:
    """One file's records; a file of records (WARC, JSONL, Parquet) that yields none fails its unit, naming it."""
    file_counts = IngestCounts()
    yield from read_source(url, source, report, file_counts)
    counts.add(file_counts)
    if file_counts.records or source_kind(url, source) == "files":  # an empty .txt is skipped, and counted
        return
    found = [str(p) for p in problems if p.path == url][:3] or [f"skipped: {file_counts.skipped or 'nothing'}"]
    raise SourceError(
        f"source file {url}: no record could be read from it ({file_counts.problems} problem(s); "
        + "; ".join(found)
        + ")",
        fix="check the file (is it really of its kind?), or remove it from crawl.sources",
    )


# -- extract -----------------------------------------------------------------------------------------------------


def extract_unit_name(raw_shard: Path) -> str:
    return f"extract-{raw_shard.stem}"


def extract_unit(ctx: StageContext, raw_info: ShardInfo, early: EarlyDocuments | None = None) -> UnitRecord:
    """One raw shard -> one documents shard of the same name; documents with no main text are counted, not kept."""
    raw_shard = ctx.output.dataset_dir("raw") / raw_info.name
    name = extract_unit_name(raw_shard)
    cfg = ctx.config.crawl

    def work() -> UnitRecord:
        counts: Counter[str] = Counter()
        problems: list[dict[str, Any]] = []
        with stage_pool(early, cfg) as pool:
            batches = document_batches(pool, raw_shard, cfg, counts, problems, early)
            info = write_shard(ctx.output.dataset_dir("documents") / raw_shard.name, batches, DOCUMENT_SCHEMA)
        stats = {"documents": info.rows, "extract": dict(counts), "problems": problems[:PROBLEM_ROWS]}
        return UnitRecord(unit=name, shards={"documents": [info]}, stats=stats)

    return ctx.unit(name, work, inputs=raw_info.sha256)


@contextmanager
def stage_pool(early: EarlyDocuments | None, cfg: CrawlConfig) -> Iterator[ExtractionPool]:
    """The stage's pool when this unit runs in the stage's process, else (a process runner) a pool of its own."""
    if early is not None and early.pool is not None:
        yield early.pool
        return
    with ExtractionPool(cfg.extract_workers) as pool:
        yield pool


def document_batches(
    pool: ExtractionPool,
    raw_shard: Path,
    cfg: CrawlConfig,
    counts: Counter[str],
    problems: list[dict[str, Any]],
    early: EarlyDocuments | None = None,
) -> Iterator[pa.RecordBatch]:
    """Extract every record of the shard (taking the documents the fetch extracted already from `early`), let the
    fallback post-pass (tasks/crawl/fallback.py) redo the pages the extractor failed site-wide, then yield the
    documents with text. Memory: one shard's documents, not its bodies."""
    where: deque[str] = deque()  # the pool keeps input order: each result pops its record's location
    is_html: list[bool] = []
    taken: deque[dict[str, Any] | None] = deque()  # each record's early document, for `ready` (asked in order)

    def raws() -> Iterator[dict[str, Any]]:
        for raw, document in shard_records(raw_shard, early):
            where.append(record_location(raw))
            is_html.append(is_html_record(raw))
            taken.append(document)
            counts["during_fetch"] += document is not None
            yield raw

    documents: list[dict[str, Any]] = []
    for document, problem in pool.map(
        raws(),
        cfg.extractor,
        cfg.extract_timeout_s,
        worker=extraction_worker(cfg),
        timeout_s_per_mb=cfg.extract_timeout_s_per_mb,
        ready=lambda _raw: taken.popleft(),
    ):
        location = where.popleft()
        counts["records"] += 1
        if problem:
            counts["timeouts" if "timed out" in problem else "errors"] += 1
            problems.append({"kind": "extract", "where": location, "reason": problem})
        documents.append(document)
    refine(pool, raw_shard, documents, is_html, cfg, counts)
    kept = [document for document in documents if document.get("text")]
    counts["no_text"] += len(documents) - len(kept)
    for start in range(0, len(kept), EXTRACT_BATCH):
        yield pa.RecordBatch.from_pylist(kept[start : start + EXTRACT_BATCH], schema=DOCUMENT_SCHEMA)


def shard_records(
    raw_shard: Path, early: EarlyDocuments | None
) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
    """The shard's records in order, each with its document when the fetch extracted it already. Such a record
    comes without its body (content None), which is then never read: a crawl's bodies are most of its raw shards
    (80 MB for 400 documentation pages), and reading them back only to set them aside cost the stage's end a
    tenth of its time. An untyped record keeps its body: whether it is HTML is read from it (`is_html_record`)."""
    records: list[dict[str, Any]] = []
    if early is not None and len(early):
        records = [raw for batch in iter_batches([raw_shard], columns=RAW_METADATA) for raw in batch.to_pylist()]
    found = [early.take(raw) for raw in records] if early is not None else []
    without_body = {row for row, raw in enumerate(records) if found[row] is not None and raw["content_type"]}
    if without_body:
        bodies = raw_rows(raw_shard, set(range(len(records))) - without_body)
        for row, raw in enumerate(records):
            yield ({**raw, "content": None} if row in without_body else next(bodies)), found[row]
        return
    # every body is read (an ingested shard, or one with nothing extracted during the fetch): streamed
    streamed = (raw for batch in iter_batches([raw_shard], batch_size=RAW_READ_ROWS) for raw in batch.to_pylist())
    yield from zip(streamed, found or repeat(None), strict=False)  # repeat(None): no record extracted early


def record_location(raw: dict[str, Any]) -> str:
    """Where a person finds a record: the page URL for a crawl, the file and offset for an ingested record."""
    if raw["source"] == CRAWL_SOURCE:
        return raw["url"]
    return f"{raw['source']} @ {raw['source_offset']}"


# -- report ------------------------------------------------------------------------------------------------------


def check_losses(stats: dict[str, Any], units: list[UnitRecord], max_fraction: float) -> None:
    """Fail the stage when problems (unreadable records, failed extractions) took more than `max_fraction` of its
    input, naming the files (or pages) with the most; the units stay done, so a rerun does not read them again."""
    lost = int(stats.get("ingest_problems", 0)) + _extract_failures(stats)
    read = int(stats.get("raw_records", 0)) + int(stats.get("ingest_problems", 0))
    if not read or lost / read <= max_fraction:
        return
    raise UserError(
        f"crawl lost {lost:,} of {read:,} records ({lost / read:.0%}) to problems, more than problems.max_fraction "
        f"({max_fraction:g}); most in: {', '.join(_worst_places(units))}",
        fix="look at the crawl/problems table in the MLflow run (or the log), fix or drop those sources; "
        "or raise problems.max_fraction",
    )


def warnings(stats: dict[str, Any], units: list[UnitRecord]) -> list[str]:
    """What a person should know about this crawl's input, for the run summary: problems and quirks, counted."""
    found = []
    fetch_errors = stats.get("fetch_errors") or {}
    if fetch_errors:
        found.append(f"{sum(fetch_errors.values()):,} URL(s) failed to fetch: {_top(fetch_errors)}")
    ingest_problems = int(stats.get("ingest_problems", 0))
    if ingest_problems:
        found.append(
            f"{ingest_problems:,} unreadable record(s) skipped in the sources, e.g. {_examples(units, 'ingest')}"
        )
    quirks = stats.get("ingest_quirks") or {}
    if quirks:
        found.append(f"known quirks read leniently, the records kept: {_top(quirks)}")
    extract_failures = _extract_failures(stats)
    if extract_failures:
        found.append(f"{extract_failures:,} extraction(s) failed or timed out, e.g. {_examples(units, 'extract')}")
    return found


def _extract_failures(stats: dict[str, Any]) -> int:
    extract = stats.get("extract") or {}
    return int(extract.get("errors", 0)) + int(extract.get("timeouts", 0))


def _top(counts: dict[str, int], n: int = 4) -> str:
    return ", ".join(f"{key} {value:,}" for key, value in Counter(counts).most_common(n))


def _examples(units: list[UnitRecord], kind: str, n: int = 3) -> str:
    samples = [p for unit in units for p in unit.stats.get("problems", []) if p["kind"] == kind][:n]
    return "; ".join(f"{p['where']}: {p['reason']}" for p in samples)


def _worst_places(units: list[UnitRecord], n: int = 3) -> list[str]:
    """The files (for ingested records) or pages with the most problems in the units' samples."""
    places = Counter(
        p["where"].rsplit(" @ ", 1)[0]
        for unit in units
        for p in unit.stats.get("problems", [])
        if p["kind"] in ("ingest", "extract")
    )
    return [f"{place} ({count:,})" for place, count in places.most_common(n)] or ["(no sample kept)"]


def report(ctx: StageContext, raw_units: list[UnitRecord], doc_units: list[UnitRecord]) -> None:
    """Every failed fetch, bad record and failed extraction (a sample per unit) as one table; the counts are in
    the stage's stats, which the stage runner logs as metrics."""
    problems = [p for unit in [*raw_units, *doc_units] for p in unit.stats.get("problems", [])]
    ctx.table("crawl/problems", problems)

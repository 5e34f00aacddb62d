"""Extraction while the crawl fetches (tasks/crawl/early.py): the crawl stage writes the same documents with it
as without it, and the extract units take the pages extracted during the fetch instead of extracting them again."""

from __future__ import annotations

import difflib
import json
import pickle
import platform
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from gristmill.conf.schema import PipelineConfig, validate_config
from gristmill.tasks.crawl import extraction_pool, memory
from gristmill.tasks.crawl import stage as crawl_stage
from gristmill.tasks.crawl.early import EarlyDocuments, EarlyExtraction
from gristmill.tasks.crawl.extract import LONG_TEXT_CHARS, document_from_raw
from gristmill.tasks.crawl.extraction_pool import ExtractionPool
from gristmill.tasks.crawl.records import RAW_SCHEMA
from gristmill.tasks.crawl.state import CrawlState, Fetch, Page, StoredBodies
from gristmill.tasks.shards import iter_records, write_shard
from gristmill.tasks.stage import execute
from tests.tasks.crawl.test_crawler import HandMadeSite, Route, serve
from tests.tasks.crawl.test_extract import pydoc_page

ARTICLES = 12


def _config(workspace: Path, seed: str, during_fetch: bool) -> PipelineConfig:
    crawl = {
        "seeds": [seed],
        "allow_private_networks": ["127.0.0.0/8"],
        "progress_bar": False,
        "extract_workers": 2,
        "extract_timeout_s": 60,  # tiny pages: a limit only a loaded machine could reach, not what is tested
        "extract_during_fetch": during_fetch,
        "use_sitemaps": False,
        "max_depth": 1,  # not the links of the pydoc page (to modules this site does not have)
    }
    return validate_config({"workspace": str(workspace), "crawl": crawl})


def _site() -> HandMadeSite:
    site = HandMadeSite()
    links = [f"/article/{i}" for i in range(ARTICLES)] + ["/reference", "/notes.txt"]
    site.page("/", "An index of articles about canals, locks and the boats that use them.", links)
    for i in range(ARTICLES):
        site.page(f"/article/{i}", f"Article {i}: how lock number {i} on the canal lifts boats up the hill.")
    site.routes["/reference"] = Route(pydoc_page(difflib).encode())  # long: resiliparse's (LONG_TEXT_CHARS)
    site.routes["/notes.txt"] = Route(b"Plain notes about towpaths.", content_type="text/plain")
    return site


def _run(workspace: Path, seed: str, during_fetch: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    summary = execute(_config(workspace, seed, during_fetch), "crawl", crawl_stage.run)
    documents = list(iter_records(sorted((workspace / "crawl" / "documents").glob("*.parquet"))))
    return documents, json.loads(Path(summary.manifest).read_text())["stats"]["extract"]


def _without_fetch_time(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["url"]: {k: v for k, v in d.items() if k != "fetched_at"} for d in documents}


def test_documents_are_the_same_with_and_without_extraction_during_the_fetch(tmp_path) -> None:
    with serve(_site()) as base:
        early, early_stats = _run(tmp_path / "early", base, during_fetch=True)
        after, after_stats = _run(tmp_path / "after", base, during_fetch=False)
    assert len(early) == ARTICLES + 3
    assert _without_fetch_time(early) == _without_fetch_time(after)
    assert _without_fetch_time(early)[base + "reference"]["extractor"] == "resiliparse"
    # Every page was extracted while the crawl fetched (each fits the in-flight bound); none again afterwards.
    assert early_stats["during_fetch"] == early_stats["records"] == ARTICLES + 3
    assert after_stats.get("during_fetch", 0) == 0 and after_stats["records"] == ARTICLES + 3


def test_an_early_document_is_used_only_for_the_same_fetch() -> None:
    raw = {"doc_id": "d1", "fetched_at": FETCHED_AT, "content": None}  # the record need not hold its body
    early = EarlyDocuments()
    early.add({"doc_id": "d1", "fetched_at": datetime(2026, 1, 1, tzinfo=UTC), "text": "stale"})  # an earlier fetch
    assert early.take(raw) is None
    early.add({"doc_id": "d1", "fetched_at": FETCHED_AT, "text": "this fetch"})
    earlier_record = {**raw, "fetched_at": datetime(2026, 1, 1, tzinfo=UTC)}  # an earlier generation's shard
    assert early.take(earlier_record) is None
    assert early.take(raw) == {"doc_id": "d1", "fetched_at": FETCHED_AT, "text": "this fetch"}  # still kept for it
    assert early.take(raw) is None  # handed out once
    assert pickle.loads(pickle.dumps(EarlyDocuments(pool=object()))).pool is None  # the pool stays behind


FETCHED_AT = datetime(2026, 12, 2, 9, 30, 15, 123456, tzinfo=UTC)


def _raw(i: int) -> dict[str, Any]:
    body = f"<html><body><p>Page {i} about the towpath and its lock keepers.</p></body></html>".encode()
    return {"doc_id": f"d{i}", "url": f"http://example.org/{i}", "source": "crawl", "source_offset": None,
            "fetched_at": FETCHED_AT, "status": 200, "content_type": "text/html", "charset": "utf-8", "lang_hint": None,
            "content": body}  # fmt: skip


def _stored(state: CrawlState, raw: dict[str, Any]) -> dict[str, Any]:
    """`raw`, stored in the crawl state as the crawl stores a page."""
    page = Page(raw["url"], raw["fetched_at"], 200, raw["content_type"], raw["charset"], None, raw["content"])
    state.finish(Fetch(raw["url"], depth=0, outcome="stored", status=200), page)
    return raw


def _extract_during_fetch(state_path: Path, raws: list[dict[str, Any]]) -> tuple[EarlyExtraction, EarlyDocuments]:
    """`raws` handed to an early extraction (two workers reading bodies from `state_path`), then waited for."""
    config = validate_config(
        {"crawl": {"seeds": ["http://example.org/"], "extract_workers": 2, "extract_timeout_s": 60}}
    )
    with ExtractionPool(2) as pool:
        early = EarlyDocuments(pool)
        extraction = EarlyExtraction(pool, config.crawl, early, state_path)
        for raw in raws:
            extraction.submit(raw)
        extraction.wait()
    return extraction, early


def test_every_page_submitted_is_there_when_wait_returns(tmp_path) -> None:
    """submit only queues (the event loop never waits for the pool); wait returns once every page's document is in,
    callbacks included (a future counts as done before its callbacks have run)."""
    state = CrawlState(tmp_path / "state.sqlite")
    raws = [_stored(state, _raw(i)) for i in range(40)]
    extraction, early = _extract_during_fetch(state.path, raws)
    state.close()
    assert extraction.submitted == len(early) == 40
    assert [early.take(raw) for raw in raws] == [document_from_raw(raw, "trafilatura") for raw in raws]


def test_the_workers_read_the_bodies_from_the_crawl_state(tmp_path) -> None:
    """A page goes to the pool without its body: the document is made from the body the state holds for that fetch
    (here not the one the record was submitted with), and a page the state holds no body of for that fetch time is
    left to its extract unit (a failure in the worker, not raised into the crawl)."""
    state = CrawlState(tmp_path / "state.sqlite")
    stored = _stored(state, _raw(0))
    elsewhere = {**_raw(1), "fetched_at": datetime(2026, 1, 1, tzinfo=UTC)}
    _stored(state, elsewhere)
    submitted = [{**stored, "content": b"<p>Not what the state holds.</p>"}, _raw(1)]
    extraction, early = _extract_during_fetch(state.path, submitted)
    state.close()
    assert extraction.submitted == 2 and len(early) == 1
    assert early.take(stored)["text"] == "Page 0 about the towpath and its lock keepers."


def test_a_crawl_state_that_cannot_be_read_leaves_the_pages_to_the_extract_units(tmp_path) -> None:
    """The workers cannot read the bodies (here: no state file): every page is left to its extract unit, and
    nothing is raised into the crawl."""
    extraction, early = _extract_during_fetch(tmp_path / "missing.sqlite", [_raw(i) for i in range(5)])
    assert extraction.submitted == 5 and len(early) == 0


def test_stored_bodies_reads_the_fetch_the_crawl_committed_from_another_thread(tmp_path) -> None:
    """By URL and fetch time: a page fetched again gives each fetch's own body, and a time the state does not hold
    gives none (the caller then extracts nothing from a body that is not the record's)."""
    state = CrawlState(tmp_path / "state.sqlite")
    first = _stored(state, _raw(0))
    again = _stored(state, {**_raw(0), "fetched_at": datetime(2026, 12, 3, tzinfo=UTC), "content": b"<p>new</p>"})
    bodies = StoredBodies(state.path)
    found: list[bytes | None] = []

    def read() -> None:  # its connection is opened, used and closed on this thread
        found.extend(bodies(raw["url"], raw["fetched_at"]) for raw in (first, again))
        found.append(bodies(first["url"], datetime(2026, 12, 1, tzinfo=UTC)))
        found.append(bodies("http://example.org/never-stored", FETCHED_AT))
        bodies.close()

    reader = threading.Thread(target=read)
    reader.start()
    reader.join()
    state.close()
    assert found == [first["content"], b"<p>new</p>", None, None]


def test_a_worker_hands_back_the_memory_of_a_large_page_and_extracts_the_same() -> None:
    raw = {**_raw(0), "content": pydoc_page(difflib).encode() * 16}  # past LARGE_PAGE_BYTES
    assert len(raw["content"]) > extraction_pool.LARGE_PAGE_BYTES
    assert extraction_pool.extract_in_worker(raw, "trafilatura", LONG_TEXT_CHARS) == document_from_raw(
        raw, "trafilatura"
    )
    if platform.libc_ver()[0] == "glibc":  # glibc's malloc_trim (elsewhere nothing is handed back, nothing fails)
        assert memory._libc().malloc_trim is not None


def test_the_extract_unit_reads_only_the_bodies_of_pages_not_extracted_during_the_fetch(tmp_path) -> None:
    """A record whose document the fetch made comes without its body, unless it is untyped (whether it is HTML is
    read from its body); a record whose early document is another fetch's, or that has none, comes with it."""
    records = [
        _raw(0),  # extracted during the fetch
        _raw(1),  # extracted during the fetch, from an earlier fetch of the page
        {**_raw(2), "content_type": None},  # extracted during the fetch, untyped
        _raw(3),  # left to the extract unit
    ]
    shard = tmp_path / "raw" / "fetch-00000.parquet"
    shard.parent.mkdir()
    write_shard(shard, [pa.RecordBatch.from_pylist(records, schema=RAW_SCHEMA)], RAW_SCHEMA)
    early = EarlyDocuments()
    for raw in records[:3]:
        early.add(document_from_raw(raw, "trafilatura"))
    early.add({**document_from_raw(records[1], "trafilatura"), "fetched_at": datetime(2026, 1, 1, tzinfo=UTC)})

    read = list(crawl_stage.shard_records(shard, early))
    assert [raw["content"] for raw, _ in read] == [
        None,
        records[1]["content"],
        records[2]["content"],
        records[3]["content"],
    ]
    assert [raw["doc_id"] for raw, _ in read] == ["d0", "d1", "d2", "d3"]
    assert [document is not None for _, document in read] == [True, False, True, False]
    assert read[0][1] == document_from_raw(records[0], "trafilatura")

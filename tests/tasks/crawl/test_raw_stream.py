"""Raw shards written while the crawl stores pages (tasks/crawl/raw_stream.py): byte for byte the shards the crawl
state gives after the crawl, and when the stream gives up (a writer that falls behind, a failed write, a failed
crawl) the fetch unit writes them from the state, or nothing half-written stays behind."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gristmill.conf.schema import PipelineConfig, validate_config
from gristmill.tasks.crawl import stage as crawl_stage
from gristmill.tasks.crawl.crawler import Crawler
from gristmill.tasks.crawl.inputs import state_path
from gristmill.tasks.crawl.raw_stream import RawShardStream
from gristmill.tasks.crawl.records import RAW_SCHEMA
from gristmill.tasks.crawl.state import CrawlState
from gristmill.tasks.shards import ShardInfo, StageOutput, iter_records
from gristmill.tasks.stage import execute
from tests.tasks.crawl.test_crawler import HandMadeSite, serve

PAGES = 9


def _site() -> HandMadeSite:
    site = HandMadeSite()
    site.page("/", "The index of a site about mills, their wheels and the grain they grind.", [f"/m/{i}" for i in
              range(PAGES - 1)])  # fmt: skip
    for i in range(PAGES - 1):
        site.page(f"/m/{i}", f"Mill {i}: an overshot wheel {i + 2} metres across, turning two pairs of stones.")
    return site


def _config(workspace: Path, seed: str) -> PipelineConfig:
    crawl = {
        "seeds": [seed],
        "allow_private_networks": ["127.0.0.0/8"],
        "progress_bar": False,
        "extract_workers": 1,
        "use_sitemaps": False,
        "shard_rows": 4,  # three raw shards, the last one closed when the crawl ends
    }
    return validate_config({"workspace": str(workspace), "crawl": crawl})


def _fetch_unit_raw_shards(workspace: Path) -> list[ShardInfo]:
    return StageOutput(workspace, "crawl").read_manifest().shards["raw"]  # the crawl's only raw shards


def _from_state(workspace: Path, out: Path) -> list[ShardInfo]:
    state = CrawlState(state_path(workspace))
    try:
        pages = map(crawl_stage.raw_record, state.iter_pages())
        return crawl_stage.write_records(out, RAW_SCHEMA, pages, 4, "fetch")
    finally:
        state.close()


def test_streamed_shards_are_the_ones_the_state_gives(tmp_path) -> None:
    with serve(_site()) as base:
        execute(_config(tmp_path / "ws", base), "crawl", crawl_stage.run)
    streamed = _fetch_unit_raw_shards(tmp_path / "ws")
    assert [s.rows for s in streamed] == [4, 4, 1]
    assert streamed == _from_state(tmp_path / "ws", tmp_path / "from_state")  # names, rows, sizes and sha256
    assert not list((tmp_path / "ws" / "crawl" / "raw").glob(".*"))  # no temporary file left


def test_a_stream_that_falls_behind_leaves_the_shards_to_the_state(tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.setattr("gristmill.tasks.crawl.raw_stream.MAX_PENDING_BYTES", 1)  # the second page finds no room
    with serve(_site()) as base, caplog.at_level(logging.WARNING, "gristmill.crawl"):
        summary = execute(_config(tmp_path / "ws", base), "crawl", crawl_stage.run)
    assert "writing them during the crawl stopped (the writer fell behind)" in caplog.text
    assert summary.count_in == PAGES
    written = _fetch_unit_raw_shards(tmp_path / "ws")
    assert written == _from_state(tmp_path / "ws", tmp_path / "from_state")
    assert len(list(iter_records([tmp_path / "ws" / "crawl" / "raw" / s.name for s in written]))) == PAGES


def _record(i: int) -> dict[str, Any]:
    return {"doc_id": f"d{i}", "url": f"http://example.org/{i}", "source": "crawl", "source_offset": None,
            "fetched_at": datetime(2026, 12, 2, tzinfo=UTC), "status": 200, "content_type": "text/html",
            "charset": "utf-8", "lang_hint": None,
            "content": f"<p>page {i}</p>".encode()}  # fmt: skip


def test_a_failed_write_abandons_the_stream_and_removes_its_open_shard(tmp_path, monkeypatch) -> None:
    stream = RawShardStream(crawl_stage.records_writer(tmp_path, RAW_SCHEMA, 2, "fetch"))
    write = stream.writer.write

    def disk_full_at_the_fourth(record: dict[str, Any], nbytes: int = 0) -> ShardInfo | None:
        if record["doc_id"] == "d3":
            raise OSError(28, "No space left on device")
        return write(record, nbytes)

    monkeypatch.setattr(stream.writer, "write", disk_full_at_the_fourth)
    for i in range(5):
        stream.write(_record(i))
    assert stream.finish() is None and stream.abandoned
    # The first shard was complete and stays (the state's shards overwrite it); the open one's temporary file went.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fetch-00000.parquet"]


def test_an_aborted_stream_leaves_no_temporary_file(tmp_path) -> None:
    stream = RawShardStream(crawl_stage.records_writer(tmp_path, RAW_SCHEMA, 10, "fetch"))
    stream.write(_record(0))
    stream.abort()
    stream.write(_record(1))  # after the crawl failed: ignored
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("pages_before", [0, 3])
def test_a_resumed_crawl_writes_its_shards_from_the_state(tmp_path, pages_before) -> None:
    """A crawl that continues an interrupted one has pages only the state holds: no stream then."""
    workspace = tmp_path / "ws"
    with serve(_site()) as base:
        config = _config(workspace, base)
        if pages_before:  # an interrupted first crawl: some pages stored, the unit not finished
            partial = _config(workspace, base).crawl.model_copy(update={"max_pages": pages_before})
            state = CrawlState(state_path(workspace))
            Crawler(partial, state).run([base])
            state.close()
        execute(config, "crawl", crawl_stage.run)
    assert _fetch_unit_raw_shards(workspace) == _from_state(workspace, tmp_path / "from_state")
    assert sum(s.rows for s in _fetch_unit_raw_shards(workspace)) == PAGES

"""The crawl stage as the pipeline runs it: a crawl and ingested corpora in one config, extraction per raw shard,
the WARC it writes re-ingested without refetching, and a rerun that is up to date."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from gristmill.conf.schema import PipelineConfig, validate_config
from gristmill.tasks.crawl import stage as crawl_stage
from gristmill.tasks.crawl.records import FETCH_SCHEMA, RAW_SCHEMA
from gristmill.tasks.documents import DOCUMENT_SCHEMA
from gristmill.tasks.shards import iter_records
from gristmill.tasks.stage import StageContext, execute
from tests.tasks.crawl.test_crawler import HandMadeSite, Route, serve


def _config(workspace: Path, **crawl: Any) -> PipelineConfig:
    defaults = {"allow_private_networks": ["127.0.0.0/8"], "progress_bar": False, "extract_workers": 1}
    return validate_config({"workspace": str(workspace), "crawl": {**defaults, **crawl}})


def _documents(workspace: Path) -> list[dict[str, Any]]:
    return list(iter_records(sorted((workspace / "crawl" / "documents").glob("*.parquet"))))


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    hand_made = HandMadeSite()
    hand_made.page("/", "The home page of a small site about rivers and their long journeys.", ["/a", "/gone"])
    hand_made.page("/a", "Rivers carry water, sediment and stories from the mountains down to the sea.")
    hand_made.routes["/gone"] = Route(b"", 410)
    with serve(hand_made) as base:
        yield base


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpora")
    lines = [
        json.dumps({"body": "A line of an existing JSONL corpus about lakes and ponds.", "url": "https://x.org/1"}),
        "{not json",
        json.dumps({"body": "Another record, this one about glaciers.", "url": "https://x.org/2"}),
    ]
    with gzip.open(root / "dump.jsonl.gz", "wt") as out:
        out.write("\n".join(lines) + "\n")
    (root / "notes").mkdir()
    (root / "notes" / "readme.md").write_text("# Notes\n\nMarkdown notes about estuaries and deltas.\n")
    return root


def test_crawl_and_corpora_end_in_one_documents_dataset(site, corpora, tmp_path) -> None:
    config = _config(
        tmp_path / "ws",
        seeds=[site],
        sources=[
            {"path": str(corpora / "*.jsonl.gz"), "text_field": "body"},
            {"path": str(corpora / "notes")},
        ],
    )
    summary = execute(config, "crawl", crawl_stage.run)
    workspace = tmp_path / "ws"
    docs = _documents(workspace)
    by_source = {}
    for doc in docs:
        by_source.setdefault("crawl" if doc["source"] == "crawl" else Path(doc["source"]).name, []).append(doc)
    assert sorted(d["url"] for d in by_source["crawl"]) == [site, site + "a"]
    assert [d["text"] for d in by_source["dump.jsonl.gz"]] == [
        "A line of an existing JSONL corpus about lakes and ponds.",
        "Another record, this one about glaciers.",
    ]
    assert "estuaries" in by_source["readme.md"][0]["text"]
    assert summary.count_out == len(docs) == 5

    # Every dataset has its declared schema; the fetch log explains the page that is not there.
    for dataset, schema in (("raw", RAW_SCHEMA), ("fetches", FETCH_SCHEMA), ("documents", DOCUMENT_SCHEMA)):
        for shard in (workspace / "crawl" / dataset).glob("*.parquet"):
            assert pq.read_schema(shard).equals(schema, check_metadata=False), shard
    fetches = {f["url"]: f for f in iter_records((workspace / "crawl" / "fetches").glob("*.parquet"))}
    assert (fetches[site + "gone"]["outcome"], fetches[site + "gone"]["error"]) == ("failed", "http_410")

    manifest = json.loads((workspace / "crawl" / "manifest.json").read_text())
    assert manifest["stats"]["fetch"] == {"stored": 2, "failed": 1}
    assert manifest["stats"]["ingest_problems"] == 1  # the bad JSON line, reported and skipped
    assert manifest["stats"]["extract"]["records"] == 5
    assert any(name.endswith(".warc.gz") for name in manifest["files"])

    assert execute(config, "crawl", crawl_stage.run).status == "up to date"


def test_the_crawl_warc_re_extracts_without_refetching(site, tmp_path) -> None:
    crawled = tmp_path / "crawled"
    execute(_config(crawled, seeds=[site]), "crawl", crawl_stage.run)
    warcs = sorted((crawled / "crawl" / "warc").glob("*.warc.gz"))
    assert len(warcs) == 1

    again = tmp_path / "again"
    config = validate_config(
        {"workspace": str(again), "crawl": {"sources": [{"path": str(warcs[0])}], "progress_bar": False}}
    )
    execute(config, "crawl", crawl_stage.run)
    original = {d["url"]: d["text"] for d in _documents(crawled)}
    from_warc = {d["url"]: d["text"] for d in _documents(again)}
    assert from_warc == original


def test_problems_are_one_table(site, corpora, tmp_path) -> None:
    tables: dict[str, list[dict[str, Any]]] = {}
    config = _config(
        tmp_path / "ws", seeds=[site], sources=[{"path": str(corpora / "*.jsonl.gz"), "text_field": "body"}]
    )

    def run(ctx: StageContext) -> Any:
        ctx.publish = lambda name, rows: tables.setdefault(name, rows)
        return crawl_stage.run(ctx)

    execute(config, "crawl", run)
    problems = tables["crawl/problems"]
    assert {(p["kind"], p["reason"]) for p in problems} >= {("fetch", "http_410")}
    assert any(p["kind"] == "ingest" and "dump.jsonl.gz @ 2" in p["where"] for p in problems)


def test_a_source_that_matches_nothing_fails_before_work(tmp_path) -> None:
    config = _config(tmp_path / "ws", sources=[{"path": str(tmp_path / "missing" / "*.warc.gz")}])
    with pytest.raises(ValueError, match="missing"):
        execute(config, "crawl", crawl_stage.run)

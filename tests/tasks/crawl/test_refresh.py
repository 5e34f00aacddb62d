"""Refresh crawls: a run after `crawl.refresh.recrawl_after` revisits known URLs with conditional requests (a 304
keeps the stored page), fetches new links, records removed pages, and adds a corpus generation of what changed.

The site is Python's own http.server over a directory (it answers If-Modified-Since with 304). File times are set
explicitly, so "changed" never depends on how fast the test runs.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gristmill.conf.schema import PipelineConfig, validate_config
from gristmill.tasks.crawl import stage as crawl_stage
from gristmill.tasks.crawl.inputs import fetch_generation, state_path
from gristmill.tasks.shards import StageOutput, iter_records
from gristmill.tasks.stage import StageContext, execute

FIRST = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
LATER = datetime(2026, 2, 1, tzinfo=UTC).timestamp()
TOPICS = {
    "rivers": "Rivers carry water, sediment and stories from the mountains down to the sea",
    "lakes": "Lakes hold still water that mirrors the sky and feeds the streams around them",
    "glaciers": "Glaciers grind slowly through valleys and leave moraines where they melt away",
    "deltas": "Deltas spread where rivers slow down and drop the silt they carried for miles",
    "springs": "Springs rise where groundwater meets the surface after a long journey underground",
    "marshes": "Marshes filter water through reeds and give shelter to birds in every season",
}


def page_html(title: str, sentence: str, links: list[str] = ()) -> str:
    paragraphs = "".join(
        f"<p>{sentence}. This is paragraph {i} of the page about {title}, written for the refresh test.</p>"
        for i in range(4)
    )
    anchors = "".join(f'<li><a href="/{link}.html">{link}</a></li>' for link in links)
    return f"<html><head><title>{title}</title></head><body><main><h1>{title}</h1>{paragraphs}<ul>{anchors}</ul>"


def write_page(root: Path, name: str, html: str, mtime: float) -> None:
    path = root / f"{name}.html"
    path.write_text(html)
    os.utime(path, (mtime, mtime))


class Recording(SimpleHTTPRequestHandler):
    """Python's file server, recording each request's path and conditional headers."""

    log: list[dict[str, Any]]

    def do_GET(self) -> None:
        self.log.append({"path": self.path, "if_modified_since": self.headers.get("If-Modified-Since")})
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Path, str, list[dict[str, Any]]]]:
    root = tmp_path / "site"
    root.mkdir()
    topics = ["rivers", "lakes", "glaciers", "deltas", "springs"]
    write_page(root, "index", page_html("index", "An index of pages about water in the landscape", topics), FIRST)
    for topic in topics:
        write_page(root, topic, page_html(topic, TOPICS[topic]), FIRST)
    log: list[dict[str, Any]] = []
    handler = type("Handler", (Recording,), {"log": log})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/index.html", log
    finally:
        server.shutdown()
        server.server_close()


def refresh_config(workspace: Path, seed: str, recrawl_after: str) -> PipelineConfig:
    crawl = {
        "seeds": [seed],
        "allow_private_networks": ["127.0.0.0/8"],
        "use_sitemaps": False,
        "progress_bar": False,
        "extract_workers": 1,
        "refresh": {"recrawl_after": recrawl_after},
    }
    return validate_config({"workspace": str(workspace), "crawl": crawl})


def never_runs(ctx: StageContext) -> None:
    raise AssertionError("the crawl ran but should have been up to date")


def change_the_site(root: Path) -> None:
    """Three pages change (the index among them: it links the new page), one is added, one removed."""
    linked = ["rivers", "lakes", "glaciers", "deltas", "springs", "marshes"]
    write_page(root, "index", page_html("index", "A new index of pages about water and wetlands", linked), LATER)
    write_page(root, "rivers", page_html("rivers", "Rivers were dammed here in the last century for power"), LATER)
    write_page(root, "lakes", page_html("lakes", "Lakes freeze in winter and the ice sings as it cracks"), LATER)
    write_page(root, "marshes", page_html("marshes", TOPICS["marshes"]), LATER)
    (root / "springs.html").unlink()


def generation_rows(workspace: Path, number: int, dataset: str) -> list[dict[str, Any]]:
    """The rows a crawl generation added to one dataset."""
    manifest = StageOutput(workspace, "crawl").read_manifest()
    (generation,) = [g for g in manifest.generations if g.number == number]
    return list(iter_records(workspace / "crawl" / dataset / s.name for s in generation.shards[dataset]))


def generation_titles(workspace: Path, number: int) -> list[str]:
    return sorted(d["title"] for d in generation_rows(workspace, number, "documents"))


def test_a_refresh_revisits_with_conditional_requests_and_adds_a_generation_of_what_changed(site, tmp_path):
    root, seed, log = site
    workspace = tmp_path / "ws"
    first = execute(refresh_config(workspace, seed, "1d"), "crawl", crawl_stage.run)
    assert first.status == "ran" and first.count_out == 6
    assert execute(refresh_config(workspace, seed, "1d"), "crawl", never_runs).status == "up to date"  # not due
    assert all(hit["if_modified_since"] is None for hit in log)

    change_the_site(root)
    log.clear()
    second = execute(refresh_config(workspace, seed, "0s"), "crawl", crawl_stage.run)  # 0s: due at once
    assert second.status == "ran"

    # Every known page was asked for conditionally; the two unchanged ones answered 304 and were kept.
    asked = {hit["path"]: hit["if_modified_since"] for hit in log if hit["path"].endswith(".html")}
    known = ["/index.html", "/rivers.html", "/lakes.html", "/glaciers.html", "/deltas.html", "/springs.html"]
    assert all(asked[path] for path in known) and asked["/marshes.html"] is None
    crawl = StageOutput(workspace, "crawl")
    outcomes = {
        f["url"].rsplit("/", 1)[-1]: (f["outcome"], f["status"]) for f in generation_rows(workspace, 1, "fetches")
    }
    assert outcomes == {
        "index.html": ("stored", 200),
        "rivers.html": ("stored", 200),
        "lakes.html": ("stored", 200),
        "marshes.html": ("stored", 200),
        "glaciers.html": ("not_modified", 304),
        "deltas.html": ("not_modified", 304),
        "springs.html": ("removed", 404),
    }

    # The new generation holds the changed and new pages only; the first one is still there as it was.
    manifest = crawl.read_manifest()
    assert [g.number for g in manifest.generations] == [0, 1]
    assert generation_titles(workspace, 1) == ["index", "lakes", "marshes", "rivers"]
    assert generation_titles(workspace, 0) == ["deltas", "glaciers", "index", "lakes", "rivers", "springs"]

    # A run before the next refresh is due: up to date, nothing fetched.
    log.clear()
    assert execute(refresh_config(workspace, seed, "1d"), "crawl", never_runs).status == "up to date"
    assert log == []


def test_a_refresh_is_due_after_recrawl_after_on_the_crawls_own_clock(site, tmp_path):
    root, seed, _ = site
    config = refresh_config(tmp_path / "ws", seed, "1d")
    assert fetch_generation(config) == 0
    execute(config, "crawl", crawl_stage.run)
    finished = float(_meta(tmp_path / "ws")["finished_0"])
    assert fetch_generation(config, now=finished + 3600) == 0
    assert fetch_generation(config, now=finished + 86400) == 1
    never = refresh_config(tmp_path / "ws", seed, None)
    assert fetch_generation(never, now=finished + 10 * 86400) == 0


def test_a_rerun_in_a_relative_workspace_reads_the_crawl_state(site, tmp_path, monkeypatch):
    """The demo's workspace is relative (workspace/demo): the second run reads the crawl state there to key the
    stage, and finds it up to date (it failed with "relative path can't be expressed as a file URI")."""
    _, seed, _ = site
    monkeypatch.chdir(tmp_path)
    config = refresh_config(Path("ws"), seed, "1d")
    assert execute(config, "crawl", crawl_stage.run).status != "up to date"
    assert fetch_generation(config) == 0
    assert execute(config, "crawl", crawl_stage.run).status == "up to date"


def _meta(workspace: Path) -> dict[str, str]:
    import sqlite3

    with sqlite3.connect(state_path(workspace)) as db:
        return dict(db.execute("SELECT key, value FROM meta"))

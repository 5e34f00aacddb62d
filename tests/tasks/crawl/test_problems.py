"""Ingest and extraction problems reach the run summary; a source that yields nothing, or a crawl that loses too
much of its input, fails the stage naming the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gristmill.conf.schema import UserError, validate_config
from gristmill.tasks.crawl import stage as crawl_stage
from gristmill.tasks.crawl.sources import SourceError
from gristmill.tasks.shards import StageOutput
from gristmill.tasks.stage import execute
from tests.tasks.crawl.test_sources import quirky_record, write_warc

PAGE = b"<html><body><article><p>%s</p></article></body></html>"
TEXT = b"A long enough paragraph about the rivers of the north, their floods and their fish, written for a test."


def config_for(tmp_path: Path, sources: list[dict[str, Any]], **top: Any):
    crawl = {"sources": sources, "progress_bar": False, "extract_workers": 1, "extractor": "resiliparse"}
    return validate_config({"workspace": str(tmp_path / "ws"), "crawl": crawl, **top})


def test_warc_quirks_keep_the_records_and_reach_the_summary(tmp_path):
    warc = write_warc(
        tmp_path / "clueweb.warc.gz",
        [quirky_record(f"http://a.test/{i}", PAGE % TEXT, "WARC/0.18", "2008-10-294T05:21:46-0700") for i in range(3)],
        compressed=True,
    )
    summary = execute(config_for(tmp_path, [{"path": str(warc)}]), "crawl", crawl_stage.run)
    assert summary.count_in == 3 and summary.count_out == 3
    assert summary.warnings[0].startswith("known quirks read leniently, the records kept: warc_0.x_version 3")
    assert "warc_bad_date 3" in summary.warnings[0]


def test_a_text_file_named_warc_gz_fails_the_stage_naming_it(tmp_path):
    good = write_warc(tmp_path / "good.warc.gz", [quirky_record("http://a.test/1", PAGE % TEXT)], compressed=True)
    bad = tmp_path / "notes.warc.gz"
    bad.write_text("some notes saved under the wrong name\n" * 20)
    config = config_for(tmp_path, [{"path": str(good)}, {"path": str(bad)}])
    with pytest.raises(SourceError, match=r"source file .*notes\.warc\.gz: no record could be read") as err:
        execute(config, "crawl", crawl_stage.run)
    assert "crawl.sources" in err.value.fix
    assert StageOutput(config.workspace, "crawl").read_manifest() is None
    assert len(StageOutput(config.workspace, "crawl").units()) == 1  # the good file's unit is kept for the rerun


def test_losing_more_than_max_fraction_fails_naming_the_file(tmp_path):
    lines = [json.dumps({"text": "one good line of a corpus"}), "{broken", "{broken too", "[1, 2]"]
    dump = tmp_path / "dump.jsonl"
    dump.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"lost 3 of 4 records \(75%\).*max_fraction \(0\.5\).*dump\.jsonl \(3\)"):
        execute(config_for(tmp_path, [{"path": str(dump)}]), "crawl", crawl_stage.run)

    lenient = config_for(tmp_path, [{"path": str(dump)}], problems={"max_fraction": 0.8})
    summary = execute(lenient, "crawl", crawl_stage.run)
    assert summary.count_out == 1
    [warning] = summary.warnings
    assert warning.startswith("3 unreadable record(s) skipped in the sources, e.g. ") and "dump.jsonl @ 2" in warning

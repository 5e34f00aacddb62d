"""Dedup on a corpus that grows in generations: only the new generation's documents are compared against
everything kept before; earlier generations' output stays byte for byte."""

from __future__ import annotations

import pytest

from gristmill.conf.schema import DedupConfig, PipelineConfig
from gristmill.tasks.dedup.stage import run
from gristmill.tasks.shards import StageOutput, iter_records
from gristmill.tasks.stage import execute
from tests.helpers import document, write_documents_stage


@pytest.mark.parametrize("incremental", [False, True])
def test_a_new_generation_is_deduplicated_against_the_earlier_ones_which_stay_as_they_were(
    tmp_path, sources, incremental
):
    config = PipelineConfig(
        workspace=str(tmp_path), crawl={"seeds": ["http://x/"]}, dedup=DedupConfig(incremental=incremental)
    )
    first = [[document("http://x/a", sources[0])], [document("http://x/b", sources[1])]]
    write_documents_stage(config.workspace, "crawl", first)
    execute(config, "dedup", run)
    out = StageOutput(config.workspace, "dedup")
    before = {s.name: s.sha256 for s in out.read_manifest().shards["documents"]}

    new = [document("http://x/a-again", sources[0]), document("http://x/c", sources[2])]
    write_documents_stage(config.workspace, "crawl", [*first, new])  # the crawl's next generation: one more shard
    summary = execute(config, "dedup", run)
    manifest = out.read_manifest()
    assert {s.name: s.sha256 for s in manifest.shards["documents"]}.items() >= before.items()
    assert [g.number for g in manifest.generations] == [0, 1]
    assert [s.name for s in manifest.generations[1].shards["documents"]] == ["part-00002.parquet"]
    urls = [d["url"] for d in iter_records(out.shard_paths("documents"))]
    assert urls == ["http://x/a", "http://x/b", "http://x/c"]  # the copy of an earlier page went
    assert summary.count_in == (2 if incremental else 4)  # incremental: only the new generation was compared

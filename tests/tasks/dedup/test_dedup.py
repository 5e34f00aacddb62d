"""Dedup on real text: the Clough & Stevenson (2009) source texts and independently written answers."""

import csv
import re
from pathlib import Path

import pytest

from gristmill.conf.schema import DedupConfig, PipelineConfig
from gristmill.tasks.dedup.clusters import UnionFind
from gristmill.tasks.dedup.exact import exact_hash
from gristmill.tasks.dedup.minhash import shingles, signature
from gristmill.tasks.dedup.stage import run
from gristmill.tasks.shards import StageOutput, iter_records
from gristmill.tasks.stage import execute
from tests.helpers import document, write_documents_stage


@pytest.fixture(scope="module")
def corpus(shared_data: Path) -> tuple[list[str], list[str]]:
    """The five source texts, and the answers their authors wrote independently (labelled `non`)."""
    root = shared_data / "neardup" / "clough_stevenson_2009" / "corpus-20090418"
    sources = [(root / f"orig_task{t}.txt").read_text(errors="replace") for t in "abcde"]
    with open(root.parent / "file_list.csv") as fh:
        independent = [row["File"] for row in csv.DictReader(fh) if row["Category"] == "non"]
    answers = [(root / name).read_text(errors="replace") for name in sorted(independent)]
    return sources, answers


def lightly_edited(text: str, every: int = 300) -> str:
    """Substitute one word in `every`: a near-duplicate with 5-gram Jaccard about 0.97."""
    words = text.split()
    return " ".join("EDITED" if i % every == every // 2 else w for i, w in enumerate(words))


def test_exact_hash_ignores_case_whitespace_and_punctuation():
    assert exact_hash("Hello,  World!\n") == exact_hash("hello world")
    assert exact_hash("hello world") != exact_hash("hello there world")


def test_signatures_estimate_jaccard(corpus):
    sources, _ = corpus
    a, b = sources[0], lightly_edited(sources[0], every=60)
    sa, sb = shingles(a, 5), shingles(b, 5)
    true_jaccard = len(sa & sb) / len(sa | sb)
    estimate = (signature(a, 256, 5, 1) == signature(b, 256, 5, 1)).mean()
    assert 0.8 < true_jaccard < 0.97
    assert abs(estimate - true_jaccard) < 0.08


def test_union_find_keeps_the_smallest_id_as_root():
    clusters = UnionFind()
    clusters.union(5, 3)
    clusters.union(9, 5)
    clusters.union(1, 9)
    assert {clusters.find(x) for x in (1, 3, 5, 9)} == {1}


def test_stage_removes_exact_and_near_copies_and_keeps_independent_texts(tmp_path, corpus):
    sources, answers = corpus
    # Shard 0: the five sources. Shard 1: exact copies (re-cased, re-spaced), near copies, independent answers.
    shard0 = [document(f"http://src/{i}", text) for i, text in enumerate(sources)]
    shard1 = [document(f"http://exact/{i}", re.sub(r"\s+", "  ", t.upper())) for i, t in enumerate(sources)]
    shard1 += [document(f"http://near/{i}", lightly_edited(t)) for i, t in enumerate(sources)]
    shard1 += [document("http://empty/0", None), document("http://empty/1", "  \n")]
    independent = answers
    shard1 += [document(f"http://answer/{i}", text) for i, text in enumerate(independent)]
    config = PipelineConfig(workspace=str(tmp_path), crawl={"seeds": ["http://src/"]}, dedup=DedupConfig())
    write_documents_stage(config.workspace, "crawl", [shard0, shard1])

    summary = execute(config, "dedup", run)

    out = StageOutput(config.workspace, "dedup")
    kept = [r["url"] for r in iter_records(out.shard_paths("documents"))]
    assert [u for u in kept if u.startswith("http://src/")] == [f"http://src/{i}" for i in range(5)]
    assert not [u for u in kept if u.startswith(("http://exact/", "http://near/", "http://empty/"))]
    stats = out.read_manifest().stats
    assert stats["removed"] == {"empty": 2, "exact": 5, "near": 5}
    assert stats["clusters"]["count"] == 5 and stats["clusters"]["largest"] == 3
    assert len([u for u in kept if u.startswith("http://answer/")]) == len(independent)
    assert summary.count_in == 5 + 12 + len(independent) and summary.count_out == len(kept)


def test_survivor_choice_is_deterministic_across_runs(tmp_path, corpus):
    sources, _ = corpus
    docs = [document(f"http://d/{i}", lightly_edited(sources[1], every=250 + 13 * i)) for i in range(6)]
    results = []
    for attempt in range(2):
        config = PipelineConfig(workspace=str(tmp_path / str(attempt)), crawl={"seeds": ["http://d/"]})
        write_documents_stage(config.workspace, "crawl", [docs[:3], docs[3:]])
        execute(config, "dedup", run)
        results.append(
            [r["url"] for r in iter_records(StageOutput(config.workspace, "dedup").shard_paths("documents"))]
        )
    assert results[0] == results[1] == ["http://d/0"]


def test_exact_copies_within_one_batch_go_as_one_document_at_a_time_would(tmp_path, corpus):
    """The signature pass judges a batch's empty texts and exact copies column by column; with `dedup.url` on it
    still goes one document at a time (the URL key is Python). With distinct URLs both must keep the same pages."""
    sources, answers = corpus
    docs = [document(f"http://src/{i}", text) for i, text in enumerate(sources)]
    docs += [document(f"http://copy/{i}", t.lower() + " !") for i, t in enumerate(sources)]  # same batch as sources
    docs += [document("http://copy/again", sources[0].upper()), document("http://blank/0", " \t")]
    docs += [document(f"http://answer/{i}", text) for i, text in enumerate(answers)]
    results = []
    for url in (False, True):
        config = PipelineConfig(
            workspace=str(tmp_path / str(url)), crawl={"seeds": ["http://src/"]}, dedup=DedupConfig(url=url)
        )
        write_documents_stage(config.workspace, "crawl", [docs])
        execute(config, "dedup", run)
        out = StageOutput(config.workspace, "dedup")
        removed = out.read_manifest().stats["removed"]
        results.append(([r["url"] for r in iter_records(out.shard_paths("documents"))], removed))
    (kept, removed), (kept_by_url, removed_by_url) = results
    originals = [f"http://src/{i}" for i in range(5)] + [f"http://answer/{i}" for i in range(len(answers))]
    assert kept == kept_by_url == originals
    assert removed["exact"] == removed_by_url["exact"] == 6 and removed["empty"] == removed_by_url["empty"] == 1

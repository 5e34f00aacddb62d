"""The dedup settings each change the result the way they say: LSH bands, verification, survivor, URL, digits."""

import json
import random
from pathlib import Path

import pytest
from pydantic import ValidationError

from gristmill.conf.schema import DedupConfig, PipelineConfig
from gristmill.tasks.dedup.index import NearIndex
from gristmill.tasks.dedup.stage import run
from gristmill.tasks.shards import StageOutput, iter_records
from gristmill.tasks.stage import execute
from gristmill.tasks.tracking import Tracker
from tests.helpers import document, write_documents_stage


def dedup(tmp_path, shards: list[list[dict]], tracker: Tracker | None = None, **options) -> tuple[list[str], dict]:
    """Run the real stage on these documents; return the kept URLs and the stage's stats."""
    config = PipelineConfig(workspace=str(tmp_path), crawl={"seeds": ["http://x/"]}, dedup=DedupConfig(**options))
    write_documents_stage(config.workspace, "crawl", shards)
    execute(config, "dedup", run, tracker)
    out = StageOutput(config.workspace, "dedup")
    return [r["url"] for r in iter_records(out.shard_paths("documents"))], out.read_manifest().stats


def substituted(text: str, rate: float, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(w if rng.random() > rate else f"w{rng.randrange(10**6)}" for w in text.split())


def test_bands_and_rows_go_to_the_lsh_and_are_validated():
    index = NearIndex(DedupConfig(bands=14, rows=8))
    assert (index.lsh.b, index.lsh.r) == (14, 8)
    with pytest.raises(ValidationError, match="bands and dedup.rows must be given together"):
        DedupConfig(bands=14)
    with pytest.raises(ValidationError, match="exceeds dedup.num_perm"):
        DedupConfig(num_perm=64, bands=14, rows=8)


def test_verify_rejects_lsh_candidates_below_the_threshold(tmp_path, sources):
    # 10% of words substituted: 5-gram Jaccard about 0.45, far below 0.8, yet a 32 x 2 LSH makes it a candidate.
    docs = [document("http://x/a", sources[2]), document("http://x/b", substituted(sources[2], 0.1, 1))]
    loose, stats = dedup(tmp_path / "loose", [docs], bands=32, rows=2, verify=False)
    assert loose == ["http://x/a"] and stats["removed"]["near"] == 1
    for by in ("shingles", "signature"):
        verified, stats = dedup(tmp_path / by, [docs], bands=32, rows=2, verify_by=by)
        assert verified == ["http://x/a", "http://x/b"] and stats["removed"]["near"] == 0
        assert stats["near_pairs"] == {"candidates": 1, "verified": 0}


def test_survivor_longest_keeps_the_longest_and_breaks_ties_by_position(tmp_path, sources):
    words = sources[0].split()
    short, full = " ".join(words[: int(len(words) * 0.97)]), " ".join(words)
    twin_a = substituted(full, 0.005, 1)
    assert len(twin_a) != len(full)
    shards = [[document("http://x/short", short)], [document("http://x/full", full)]]
    kept, _ = dedup(tmp_path / "earliest", shards)
    assert kept == ["http://x/short"]
    kept, _ = dedup(tmp_path / "longest", shards, survivor="longest")
    assert kept == ["http://x/full"]
    same_length = [document("http://x/t1", twin_a), document("http://x/t2", twin_a.replace("a", "b", 1))]
    kept, _ = dedup(tmp_path / "tie", [same_length], survivor="longest")
    assert kept == ["http://x/t1"]


def test_survivor_quality_keeps_the_copy_with_the_most_prose(tmp_path, sources):
    words = sources[0].split()
    # The same article, once with a table of numbers spliced in (still a near-duplicate, but less prose).
    noisy = " ".join(words[:40] + ["| 12 | 3.4 | 56 | -- |"] * 3 + words[40:])
    assert len(noisy) > len(sources[0])
    shards = [[document("http://x/noisy", noisy)], [document("http://x/clean", sources[0])]]
    kept, _ = dedup(tmp_path / "earliest", shards)
    assert kept == ["http://x/noisy"]
    kept, _ = dedup(tmp_path / "quality", shards, survivor="quality")
    assert kept == ["http://x/clean"]


def test_alpha_word_share_counts_words_with_a_letter():
    import pyarrow as pa

    from gristmill.tasks.dedup.stage import alpha_word_share

    shares = alpha_word_share(pa.array(["one two 3 4", "", None, "héllo wörld", "12 34"])).to_pylist()
    assert shares == [0.5, 0.0, 0.0, 1.0, 0.0]


def test_url_duplicates_are_removed_only_when_asked(tmp_path, sources):
    docs = [document("http://Example.org/page/", sources[0]), document("http://example.org/page#top", sources[1])]
    kept, stats = dedup(tmp_path / "on", [docs], url=True)
    assert kept == ["http://Example.org/page/"] and stats["removed"]["url"] == 1
    kept, stats = dedup(tmp_path / "off", [docs])
    assert len(kept) == 2 and "url" not in stats["removed"]


def test_exact_normalisation_options(tmp_path, sources):
    dated = [document(f"http://x/{i}", f"Posted {day} 2024. {sources[3]}") for i, day in enumerate((3, 17))]
    kept, _ = dedup(tmp_path / "digits", [dated], near=False, exact_digits=True)
    assert kept == ["http://x/0"]
    kept, _ = dedup(tmp_path / "plain", [dated], near=False)
    assert kept == ["http://x/0", "http://x/1"]
    cased = [document("http://x/lower", sources[3]), document("http://x/upper", sources[3].upper())]
    kept, stats = dedup(tmp_path / "case", [cased], near=False, exact_lowercase=False)
    assert len(kept) == 2 and stats["removed"]["exact"] == 0


def test_char_shingles_find_near_duplicates_and_keep_independent_texts(tmp_path, sources):
    docs = [document(f"http://x/src{i}", t) for i, t in enumerate(sources)]
    docs += [document(f"http://x/edit{i}", substituted(t, 0.01, i)) for i, t in enumerate(sources)]
    kept, stats = dedup(tmp_path, [docs], shingle="char", shingle_chars=12)
    assert kept == [f"http://x/src{i}" for i in range(5)] and stats["removed"]["near"] == 5


def test_run_reports_clusters_peak_memory_and_logs_figure_and_pairs(tmp_path, sources):
    docs = [document(f"http://x/{i}", sources[0]) for i in range(3)]  # one cluster of three exact copies
    docs += [document("http://x/near", substituted(sources[1], 0.01, 3)), document("http://x/src1", sources[1])]
    tracker = Tracker(tmp_path, None, "dedup-test")
    kept, stats = dedup(tmp_path, [docs], tracker)
    assert kept == ["http://x/0", "http://x/near"]
    assert stats["clusters"]["histogram"] == {"2": 1, "3": 1} and stats["peak_rss_mb"] > 10
    run_id = tracker.client.search_runs([tracker.experiment_id])[0].info.run_id
    artifacts = {a.path for a in tracker.client.list_artifacts(run_id, "dedup")}
    assert artifacts == {"dedup/cluster_sizes.png", "dedup/removed_pairs.json"}
    table = tracker.client.download_artifacts(run_id, "dedup/removed_pairs.json", str(tmp_path))
    rows = json.loads(Path(table).read_text())
    pairs = {tuple(r[:3]): r[3] for r in rows["data"]}
    assert pairs[("http://x/1", "http://x/0", "exact")] == 1.0
    assert 0.8 < pairs[("http://x/src1", "http://x/near", "near")] < 1.0


@pytest.mark.parametrize(
    ("rule", "survivor"),
    [("earliest", "first"), ("longest", "exact copy"), ("quality", "url copy")],
)
def test_each_survivor_rule_keeps_exactly_one_of_a_cluster_of_exact_url_and_near_copies(
    tmp_path, sources, rule, survivor
):
    # One cluster: an exact copy (longest: trailing marks are not words), a URL copy (the same page without its
    # numbers: the most prose) and a near copy. Whichever the rule picks stays, and only it.
    base = sources[0] + " 1990 2001 2024 42"
    members = {
        "first": document("http://x/a", base),
        "exact copy": document("http://x/b", base + " !!!" * 40),
        "url copy": document("http://x/a", sources[0]),
        "near copy": document("http://x/d", substituted(base, 0.01, 3) + " # # # #"),
    }
    other = document("http://x/e", sources[1])
    dedup(tmp_path, [[*members.values(), other]], survivor=rule, url=True)
    out = StageOutput(tmp_path, "dedup")
    kept = [r["text"] for r in iter_records(out.shard_paths("documents"))]
    assert kept == [members[survivor]["text"], other["text"]]
    removed = out.read_manifest().stats["removed"]
    assert sum(removed.values()) == 3 and removed["url"] >= 1 and removed["exact"] + removed["near"] >= 2

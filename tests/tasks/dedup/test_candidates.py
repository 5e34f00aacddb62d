"""Near-duplicate candidates in numpy against datasketch's MinHashLSH, verification and clusters, on real articles."""

import json
import random
from itertools import combinations
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from gristmill.conf.schema import DedupConfig, PipelineConfig
from gristmill.tasks.dedup.candidates import (
    band_keys,
    candidate_probability,
    components,
    exact_jaccards,
    layout,
    pairs_within,
    unique_shingles,
)
from gristmill.tasks.dedup.clusters import UnionFind
from gristmill.tasks.dedup.deduplicator import Deduplicator
from gristmill.tasks.dedup.index import NearIndex
from gristmill.tasks.dedup.minhash import lean, shingles
from gristmill.tasks.dedup.stage import hasher, run
from gristmill.tasks.dedup.tokens import word_tokens
from gristmill.tasks.shards import StageOutput, iter_batches, iter_records
from gristmill.tasks.stage import execute
from tests.helpers import document, write_documents_stage


@pytest.fixture(scope="module")
def articles(shared_data: Path) -> list[str]:
    truth = json.loads((shared_data / "html_extraction" / "ground-truth.json").read_text())
    return [item["articleBody"] for item in truth.values() if len(item["articleBody"].split()) >= 150]


def edited(text: str, rate: float, rng: random.Random) -> str:
    """Substitute, insert or delete words at `rate`: variants whose Jaccard to the source spans 0.3..1."""
    out = []
    for word in text.split():
        roll = rng.random()
        if roll < rate / 3:
            continue
        out.append(f"w{rng.randrange(10**6)}" if roll < 2 * rate / 3 else word)
        if roll > 1 - rate / 3:
            out.append(f"i{rng.randrange(10**6)}")
    return " ".join(out)


def variants(articles: list[str], sources: int, seed: int = 0) -> list[str]:
    """Sources, each with variants at edit rates around the default threshold, shuffled: chains and clusters."""
    rng = random.Random(seed)
    texts = []
    for text in articles[:sources]:
        texts.append(text)
        texts += [edited(text, rng.choice((0.005, 0.01, 0.02, 0.03, 0.05, 0.1)), rng) for _ in range(4)]
    rng.shuffle(texts)
    return texts


def jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a, 5), shingles(b, 5)
    return len(sa & sb) / len(sa | sb)


def test_default_layout_makes_almost_every_pair_at_the_threshold_a_candidate():
    assert layout(DedupConfig()) == (21, 6)
    assert candidate_probability(0.8, 21, 6) >= 0.995 > candidate_probability(0.8, 18, 7)
    assert layout(DedupConfig(verify=False)) == (9, 13)  # datasketch's own optimum when nothing checks candidates
    assert layout(DedupConfig(bands=14, rows=8)) == (14, 8)


def test_band_pairs_are_exactly_the_pairs_sharing_a_band(articles):
    cfg = DedupConfig(bands=32, rows=2)  # loose: many buckets with several documents
    sigs = hasher(cfg).batch(pa.array(variants(articles, 12)))
    keys = band_keys(sigs, 32, 2)
    bands = sigs[:, :64].reshape(len(sigs), 32, 2)
    brute = [(i, j) for i, j in combinations(range(len(sigs)), 2) if (bands[i] == bands[j]).all(axis=1).any()]
    for limit in (1 << 20, 7):  # in one chunk per band, and in chunks of about 7 pairs
        chunks = list(pairs_within(keys, limit))
        found = np.unique(np.concatenate(chunks), axis=0)
        assert len(brute) > 60 and found.tolist() == [list(p) for p in brute]
        assert max(len(c) for c in chunks) <= (limit if limit < len(brute) else len(brute))


def test_bulk_query_answers_as_one_query_at_a_time(articles):
    cfg = DedupConfig()
    sigs = hasher(cfg).batch(pa.array(variants(articles, 10)))
    index = NearIndex(cfg)
    index.insert_many(0, sigs[:25])
    one_at_a_time = [set(index.lsh.query(lean(sig, cfg.seed))) for sig in sigs[25:]]
    assert index.query_many(sigs[25:]) == one_at_a_time and any(one_at_a_time)


def test_components_match_union_find():
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, 400, size=(300, 2))
    pairs = np.sort(pairs[pairs[:, 0] != pairs[:, 1]], axis=1)
    clusters = UnionFind()
    for a, b in pairs.tolist():
        clusters.union(a, b)
    label = components(np.arange(400), pairs)
    assert [clusters.find(x) if x in clusters.parent else x for x in range(400)] == label.tolist()
    in_two_steps = components(components(np.arange(400), pairs[:150]), pairs[150:])
    assert in_two_steps.tolist() == label.tolist()


def test_exact_jaccard_of_hashed_shingles_is_the_jaccard_of_the_word_5_grams(articles):
    texts = variants(articles, 6, seed=3)
    sets = unique_shingles(hasher(DedupConfig()).shingler.batch(pa.array(texts)))
    pairs = np.array(list(combinations(range(len(texts)), 2)))
    got = exact_jaccards(sets, pairs)
    want = [jaccard(texts[i], texts[j]) for i, j in pairs.tolist()]
    assert np.abs(got - want).max() < 1e-9 and max(want) > 0.8 and min(want) < 0.1


def signed_workspace(tmp_path: Path, shards: list[list[str]], **options) -> tuple[list[Path], list[Path], DedupConfig]:
    """A real stage run (so the signature shards exist); returns signature and input paths."""
    cfg = DedupConfig(**options)
    config = PipelineConfig(workspace=str(tmp_path), crawl={"seeds": ["http://x/"]}, dedup=cfg)
    docs = [[document(f"http://x/{s}/{i}", t) for i, t in enumerate(shard)] for s, shard in enumerate(shards)]
    write_documents_stage(config.workspace, "crawl", docs)
    execute(config, "dedup", run)
    out = StageOutput(config.workspace, "dedup")
    return out.shard_paths("signatures"), StageOutput(config.workspace, "crawl").shard_paths("documents"), cfg


def clusters_of(cfg: DedupConfig, signatures: list[Path], texts: list[Path], prior: Path | None = None):
    dedup = Deduplicator(cfg)
    if prior is not None:
        dedup.add_prior(iter_batches([prior]))
    removed, stats, _, pairs = dedup.run(signatures, texts)
    groups = sorted(sorted(m) for m in dedup.clusters.clusters().values() if len(m) > 1)
    return groups, removed, stats, pairs


@pytest.mark.parametrize(
    "options",
    [{}, {"verify": False}, {"verify_by": "signature"}, {"threshold": 0.6, "num_perm": 64}, {"bands": 14, "rows": 8}],
    ids=["default", "no-verify", "verify-by-signature", "t0.6-64perm", "fineweb-bands"],
)
def test_numpy_candidates_give_the_same_clusters_as_datasketch_lsh(tmp_path, articles, options):
    texts = variants(articles, 40)
    signatures, inputs, cfg = signed_workspace(tmp_path, [texts[:70], texts[70:140], texts[140:]], **options)
    numpy_path = clusters_of(cfg, signatures, inputs)
    datasketch_path = clusters_of(cfg.model_copy(update={"candidates": "datasketch"}), signatures, inputs)
    assert numpy_path[0] == datasketch_path[0] and len(numpy_path[0]) >= 20
    assert numpy_path[1] == datasketch_path[1] and numpy_path[3] == datasketch_path[3]
    # The same stats, except how many pairs each path had to verify (it depends on the order pairs come in).
    work = numpy_path[2].pop("near_pairs"), datasketch_path[2].pop("near_pairs")
    assert numpy_path[2] == datasketch_path[2]
    assert work[0]["candidates"] > work[0]["verified"] > 0 or not cfg.verify


def test_with_an_index_of_earlier_runs_both_paths_agree(tmp_path, articles):
    texts = variants(articles, 30, seed=5)
    first, _, cfg = signed_workspace(tmp_path / "old", [texts[:75]], incremental=True)
    prior = next((tmp_path / "old" / "dedup_index").rglob("*.parquet"))
    signatures, inputs, _ = signed_workspace(tmp_path / "new", [texts[75:]], incremental=True)
    numpy_path = clusters_of(cfg, signatures, inputs, prior)
    datasketch_path = clusters_of(cfg.model_copy(update={"candidates": "datasketch"}), signatures, inputs, prior)
    for path in (numpy_path, datasketch_path):
        path[2].pop("near_pairs")
    assert numpy_path == datasketch_path and numpy_path[2]["prior_docs"] > 0 and numpy_path[2]["removed"]["near"]


def test_stage_removes_a_variant_exactly_when_its_jaccard_reaches_the_threshold(tmp_path, articles):
    """Verification by exact shingle Jaccard: the stage's decision is the truth's, pair by pair."""
    rng = random.Random(7)
    sources = articles[:30]
    edits = [edited(text, rng.choice((0.01, 0.02, 0.03, 0.04, 0.06)), rng) for text in sources]
    docs = [document(f"http://src/{i}", t) for i, t in enumerate(sources)]
    docs += [document(f"http://edit/{i}", t) for i, t in enumerate(edits)]
    config = PipelineConfig(workspace=str(tmp_path), crawl={"seeds": ["http://x/"]})
    write_documents_stage(config.workspace, "crawl", [docs])
    execute(config, "dedup", run)
    kept = {r["url"] for r in iter_records(StageOutput(config.workspace, "dedup").shard_paths("documents"))}
    truth = [jaccard(s, e) >= 0.8 for s, e in zip(sources, edits, strict=True)]
    assert 5 < sum(truth) < 25  # both sides of the threshold are tested
    assert [f"http://edit/{i}" not in kept for i in range(len(edits))] == truth
    assert all(f"http://src/{i}" in kept for i in range(len(sources)))


def test_reused_word_tokens_answer_only_the_same_question():
    """sign_batch's exact hash reuses its MinHash's word tokens: only for the same array and the same options."""
    texts = pa.array(["Hello World, again", "MiXeD case here"])
    lower = word_tokens(texts)
    assert word_tokens(texts, True)[0] is lower[0]  # the same question: computed once
    cased = word_tokens(texts, lowercase=False)
    assert not np.array_equal(cased[0], lower[0])
    twin = pa.array(["Hello World, again", "MiXeD case here"])  # equal content, another array: tokenised afresh
    again = word_tokens(twin)
    assert again[0] is not lower[0] and np.array_equal(again[0], lower[0])

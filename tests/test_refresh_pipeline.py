"""A pipeline on a schedule, end to end: a local site is crawled and a model trained; the site changes three pages,
adds one and removes one; a refresh run asks with conditional requests, only the changed and new pages flow through
dedup, clean and tokenize as a new corpus generation, training continues from the first model and a second version
is registered; a run after that, with nothing changed, is up to date everywhere and registers nothing.

Stages run through `execute` (what each Prefect flow calls) with real MLflow; the Prefect wiring has its own test.
"""

from __future__ import annotations

import functools
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gristmill.conf.schema import STAGES, PipelineConfig, load_config
from gristmill.flows.cli import app
from gristmill.tasks.clean import stage as clean
from gristmill.tasks.crawl import stage as crawl
from gristmill.tasks.dedup import stage as dedup
from gristmill.tasks.evaluate import stage as evaluate
from gristmill.tasks.lifecycle import history
from gristmill.tasks.shards import StageOutput, file_sha256, iter_records
from gristmill.tasks.stage import StageSummary, execute
from gristmill.tasks.tokenize import stage as tokenize
from gristmill.tasks.tokenize.bpe import load_tokenizer
from gristmill.tasks.tracking import PARENT_VERSION_TAG, WEIGHTS_ARTIFACT, WEIGHTS_RUN_TAG, Tracker
from gristmill.tasks.train import stage as train
from tests.tasks.crawl.test_refresh import FIRST, LATER, Recording, page_html, write_page

pytestmark = pytest.mark.slow

DEMO = Path(__file__).resolve().parents[1] / "conf" / "demo.yaml"
RUNS = {"crawl": crawl.run, "dedup": dedup.run, "clean": clean.run, "tokenize": tokenize.run}
RUNS |= {"train": train.run, "evaluate": evaluate.run}
SMALL = [
    "crawl.demo_site.enabled=false",
    "crawl.use_sitemaps=false",
    "crawl.progress_bar=false",
    "crawl.extract_workers=1",
    "clean.min_words=30",
    "tokenize.vocab_size=512",
    "tokenize.seq_len=32",
    "tokenize.val_fraction=0.2",
    "train.hidden_size=32",
    "train.num_hidden_layers=1",
    "train.num_attention_heads=2",
    "train.num_key_value_heads=2",
    "train.intermediate_size=64",
    "train.batch_size=8",
    "train.max_steps=20",
    "train.warmup_steps=2",
    "train.val_every_steps=10",
    "train.val_batches=2",
    "evaluate.max_new_tokens=4",
    "evaluate.ppl_batches=2",
    "evaluate.prompts=[The river]",
]


def corpus_texts(shared_data: Path) -> list[str]:
    root = shared_data / "neardup" / "clough_stevenson_2009" / "corpus-20090418"
    return [p.read_text(errors="replace") for p in sorted(root.glob("*.txt"))]


def paragraphs(text: str) -> str:
    return "".join(f"<p>{line}</p>" for line in text.split("\n") if line.strip())


def article(title: str, text: str, links: list[str] = ()) -> str:
    anchors = "".join(f'<li><a href="/{link}.html">{link}</a></li>' for link in links)
    return f"<html><head><title>{title}</title></head><body><main><h1>{title}</h1>{paragraphs(text)}<ul>{anchors}</ul>"


@pytest.fixture
def site(tmp_path: Path, shared_data: Path) -> Iterator[tuple[Path, str, list[dict[str, Any]], list[str]]]:
    texts = corpus_texts(shared_data)
    root = tmp_path / "site"
    root.mkdir()
    names = [f"page{i:03d}" for i in range(60)]
    index = page_html("index", "An index of answers about computer science, from a study of reuse", names)
    write_page(root, "index", index, FIRST)
    for name, text in zip(names, texts, strict=False):
        write_page(root, name, article(name, text), FIRST)
    log: list[dict[str, Any]] = []
    handler = type("Handler", (Recording,), {"log": log})
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/index.html", log, texts
    finally:
        server.shutdown()
        server.server_close()


def pipeline_overrides(workspace: Path, seed: str, recrawl_after: str) -> list[str]:
    own = [f"workspace={workspace}", f"crawl.seeds=[{seed}]", f"crawl.refresh.recrawl_after={recrawl_after}"]
    return [*own, *SMALL]


def pipeline_config(workspace: Path, seed: str, recrawl_after: str, *more: str) -> PipelineConfig:
    return load_config(DEMO, [*pipeline_overrides(workspace, seed, recrawl_after), *more])


def run_pipeline(config: PipelineConfig) -> list[StageSummary]:
    tracker = Tracker(config.workspace, None, config.tracking.experiment)
    parent = tracker.start_run(config.name)
    summaries = [execute(config, stage, RUNS[stage], tracker, parent) for stage in STAGES]
    tracker.end_run(parent)
    return summaries


def newest_generation(workspace: Path, stage: str, dataset: str) -> tuple[int, list[str]]:
    generation = StageOutput(workspace, stage).read_manifest().generations[-1]
    return generation.number, sorted(s.name for s in generation.shards.get(dataset, []))


def versions(config: PipelineConfig) -> list[Any]:
    tracker = Tracker(config.workspace, None, config.tracking.experiment)
    found = tracker.client.search_model_versions(f"name='{config.tracking.registered_model}'")
    return sorted(found, key=lambda v: int(v.version))


def corpus_text(workspace: Path) -> str:
    """Everything the next training can read (train and validation tokens of every generation), decoded."""
    tokenizer = load_tokenizer(workspace / "tokenize" / "tokenizer")
    tokenized = StageOutput(workspace, "tokenize")
    shards = [*tokenized.shard_paths("train"), *tokenized.shard_paths("val")]
    return "\n".join(
        tokenizer.decode([t for row in iter_records([shard], ["tokens"]) for t in row["tokens"]]) for shard in shards
    )


def unique_words(text: str, others: list[str], n: int = 8) -> str:
    """A run of `n` plain words of `text` that no other text has: it names this page's text alone."""
    words = [w for w in text.split() if w.isalpha()]
    for start in range(len(words) - n):
        snippet = " ".join(words[start : start + n])
        if all(snippet not in " ".join(other.split()) for other in others) and snippet in " ".join(text.split()):
            return snippet
    raise AssertionError("no run of words unique to the page")


def weights_sha256(config: PipelineConfig, version: Any, tmp_path: Path) -> str:
    """The sha256 of the weights a registered version points at (the train run's weights artifact)."""
    tracker = Tracker(config.workspace, None, config.tracking.experiment)
    run_id = version.tags[WEIGHTS_RUN_TAG]
    local = tracker.client.download_artifacts(run_id, WEIGHTS_ARTIFACT, str(tmp_path / f"v{version.version}"))
    return file_sha256(Path(local) / "model.pt")


STRICT_GATE = "evaluate.gate.max_perplexity=1.0"  # no model passes: the versions after the first stay candidates


def test_a_scheduled_refresh_trains_on_what_changed_and_a_run_without_change_does_nothing(site, tmp_path):
    root, seed, log, texts = site
    workspace = tmp_path / "ws"
    first = run_pipeline(pipeline_config(workspace, seed, "1d"))
    assert [s.status for s in first] == ["ran"] * len(STAGES)
    first_train = StageOutput(workspace, "train").read_manifest().stats
    # The page to remove: one whose text the first corpus has (clean keeps it), named by words no other page has.
    kept = {d["url"] for d in iter_records(StageOutput(workspace, "clean").shard_paths("documents"), ["url"])}
    gone = next(i for i in range(4, 60) if seed.replace("index", f"page{i:03d}") in kept)
    removed_text = unique_words(texts[gone], [t for i, t in enumerate(texts) if i != gone])
    assert removed_text in corpus_text(workspace)

    # Three pages change (the index links the new page), one is added, one removed.
    names = [f"page{i:03d}" for i in range(60)] + ["page060"]
    write_page(root, "index", page_html("index", "A new index of answers, with one more page", names), LATER)
    write_page(root, "page001", article("page001", texts[90] + "\n" + texts[70]), LATER)
    write_page(root, "page002", article("page002", texts[91] + "\n" + texts[71]), LATER)
    write_page(root, "page060", article("page060", texts[92] + "\n" + texts[72]), LATER)
    (root / f"page{gone:03d}.html").unlink()
    log.clear()

    # From here on the gate keeps the first model as champion: later versions are registered as candidates.
    second = run_pipeline(pipeline_config(workspace, seed, "0s", STRICT_GATE))  # 0s: a refresh is due now
    assert [s.status for s in second] == ["ran"] * len(STAGES)
    conditional = [hit for hit in log if hit["path"].startswith("/page0")]
    assert all(hit["if_modified_since"] for hit in conditional if hit["path"] != "/page060.html")
    _, fetch_log = newest_generation(workspace, "crawl", "fetches")
    outcomes = Counter(f["outcome"] for f in iter_records(workspace / "crawl" / "fetches" / n for n in fetch_log))
    assert outcomes == {"stored": 4, "not_modified": 57, "removed": 1}  # index + 2 changed + 1 new; 57 same

    # Only the new generation's shards went through dedup (signatures); clean and tokenize also rewrote the earlier
    # shard that held the removed page, without it.
    crawl_docs_gen0 = [
        s.name for s in StageOutput(workspace, "crawl").read_manifest().generations[0].shards["documents"]
    ]
    number, crawl_docs = newest_generation(workspace, "crawl", "documents")
    assert number == 1 and len(crawl_docs) == 1
    assert newest_generation(workspace, "dedup", "signatures") == (1, crawl_docs)
    assert newest_generation(workspace, "clean", "documents") == (1, sorted(crawl_docs + crawl_docs_gen0))
    tokenized = StageOutput(workspace, "tokenize").read_manifest().generations[-1].shards
    # The removed page was in the train or the validation split (by its doc id): that split's shard was rewritten.
    assert {s.name for split in ("train", "val") for s in tokenized.get(split, [])} == {*crawl_docs, *crawl_docs_gen0}
    assert {s.name for s in tokenized["train"]} >= set(crawl_docs)
    clean_manifest = StageOutput(workspace, "clean").read_manifest()
    assert clean_manifest.stats["removed"]["page_removed"] == 1

    # The removed page's text is in no shard the next training reads: not in the cleaned documents, not in any
    # generation's tokens; it is in the rejected shards, with its reason.
    removed_url = seed.replace("index", f"page{gone:03d}")
    clean_output = StageOutput(workspace, "clean")
    assert removed_url not in {d["url"] for d in iter_records(clean_output.shard_paths("documents"), ["url"])}
    rejected = list(iter_records(clean_output.shard_paths("rejected"), ["url", "reason"]))
    assert {"url": removed_url, "reason": "page_removed"} in rejected
    assert removed_text not in corpus_text(workspace)

    # Training continued from the first model (the champion): it starts where the first training ended.
    second_train = StageOutput(workspace, "train").read_manifest().stats
    assert second_train["continued"] and second_train["generation"] == 1
    assert second_train["continued_from_version"] == 1
    start, first_start, first_end = (
        second_train["val_loss_first"],
        first_train["val_loss_first"],
        first_train["val_loss_last"],
    )
    assert (
        start < first_start - 0.2 and start < first_end + 0.2
    )  # where the first training ended (val set grew a little)
    config = pipeline_config(workspace, seed, "1d", STRICT_GATE)
    registered = versions(config)
    assert [int(v.version) for v in registered] == [1, 2]
    assert registered[1].tags["gristmill.corpus_generations"] == "0,1"
    assert registered[1].tags[PARENT_VERSION_TAG] == "1"
    tracker = Tracker(workspace, None, config.tracking.experiment)
    assert int(tracker.version_by_alias(config.tracking.registered_model, "champion").version) == 1

    log.clear()
    third = run_pipeline(config)
    assert [s.status for s in third] == ["up to date"] * len(STAGES)
    assert log == [] and len(versions(config)) == 2

    # gristmill history: the generations, the runs, the versions and what each was trained on.
    overrides = [*pipeline_overrides(workspace, seed, "1d"), STRICT_GATE]
    result = CliRunner().invoke(app, ["history", str(DEMO), *overrides])
    assert result.exit_code == 0, result.output
    tables = history(config)
    assert [g["generation"] for g in tables["generations"]] == [0, 1]
    assert [m["corpus_generations"] for m in tables["models"]] == ["0", "0,1"]
    assert [m["continued_from"] for m in tables["models"]] == ["", "1"]
    assert [r["ran"] for r in tables["runs"]] == [", ".join(STAGES)] * 2 + ["nothing (all up to date)"]
    assert "generations" in result.output and "0,1" in result.output

    # gristmill gc --keep 1: the first generation's checkpoints, raw crawl shards, WARC file and dedup signatures go;
    # the continued training's checkpoint stays; nothing reruns and nothing is registered.
    raw_gen0 = [s.name for s in StageOutput(workspace, "crawl").read_manifest().generations[0].shards["raw"]]
    warc = sorted((workspace / "crawl" / "warc").glob("*.warc.gz"))
    assert len(warc) == 2
    result = CliRunner().invoke(app, ["gc", str(DEMO), *overrides, "--keep", "1"])
    assert result.exit_code == 0, result.output
    assert "freed" in result.output and "checkpoint" in result.output and "per stage" in result.output
    assert [g.number for g in StageOutput(workspace, "dedup").read_manifest().generations] == [0, 1]
    assert not (workspace / "dedup" / "signatures" / crawl_docs_gen0[0]).exists()
    assert raw_gen0 and not [n for n in raw_gen0 if (workspace / "crawl" / "raw" / n).exists()]
    assert not warc[0].exists() and warc[1].exists()
    assert [g["pages_fetched"] for g in history(config)["generations"]] == [61, 4]  # from the fetch logs, kept
    assert not list((workspace / "train" / "checkpoints").glob("*.ckpt"))
    assert (workspace / "train" / "checkpoints" / "g001" / "last.ckpt").is_file()
    log.clear()
    assert [s.status for s in run_pipeline(config)] == ["up to date"] * len(STAGES)
    assert log == [] and len(versions(config)) == 2

    # gc, then a change: the refresh works on what is left. The first generation's documents stay in the corpus, and
    # training starts from the champion (version 1), not from the last model (version 2, a candidate).
    changed = next(i for i in range(4, 60) if i != gone)
    write_page(root, f"page{changed:03d}", article("changed", texts[93] + "\n" + texts[73]), LATER + 86400)
    log.clear()
    fourth = run_pipeline(pipeline_config(workspace, seed, "0s", STRICT_GATE))
    assert [s.status for s in fourth] == ["ran"] * len(STAGES)
    _, fetch_log = newest_generation(workspace, "crawl", "fetches")
    outcomes = Counter(f["outcome"] for f in iter_records(workspace / "crawl" / "fetches" / n for n in fetch_log))
    assert outcomes["stored"] == 1 and outcomes["not_modified"] == 60  # the changed page; the index, 59 others
    crawl_manifest = StageOutput(workspace, "crawl").read_manifest()
    assert crawl_docs_gen0[0] in {s.name for s in crawl_manifest.shards["documents"]}
    fourth_train = StageOutput(workspace, "train").read_manifest().stats
    assert fourth_train["continued_from_version"] == 1
    registered = versions(config)
    assert [int(v.version) for v in registered] == [1, 2, 3]
    assert fourth_train["init_weights_sha256"] == weights_sha256(config, registered[0], tmp_path)
    assert fourth_train["init_weights_sha256"] != weights_sha256(config, registered[1], tmp_path)
    assert registered[2].tags[PARENT_VERSION_TAG] == "1"

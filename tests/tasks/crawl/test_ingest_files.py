"""Plain source files (`kind: files`: .txt, .md, .html) are ingested in batches but kept file by file: a changed file
is read again alone, its earlier records replaced, and the batch's other files are neither read nor extracted again.

What is read is counted by Python's own audit hook on `open` (every file the process opens), not by our code.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gristmill.conf.schema import PipelineConfig, validate_config
from gristmill.tasks.crawl import stage as crawl_stage
from gristmill.tasks.shards import StageOutput, iter_records
from gristmill.tasks.stage import execute

TEXTS = {
    "a.txt": "Rivers carry water, sediment and stories from the mountains down to the sea.",
    "b.txt": "Glaciers grind slowly through valleys and leave moraines where they melt away.",
    "c.txt": "Lakes hold still water that mirrors the sky and feeds the streams around them.",
}
_WATCHED: list[tuple[Path, Counter[str]]] = []  # (directory, opens by file name) while a block watches


def _on_open(event: str, args: tuple) -> None:
    if event == "open" and _WATCHED and isinstance(args[0], str | Path):
        directory, opened = _WATCHED[-1]
        path = Path(args[0])
        if path.parent == directory:
            opened[path.name] += 1


sys.addaudithook(_on_open)  # audit hooks cannot be removed: it counts only inside `files_opened`


@contextmanager
def files_opened(directory: Path) -> Iterator[Counter[str]]:
    opened: Counter[str] = Counter()
    _WATCHED.append((directory, opened))
    try:
        yield opened
    finally:
        _WATCHED.pop()


def write(path: Path, text: str, mtime: float) -> None:
    path.write_text(text)
    os.utime(path, (mtime, mtime))


def config(tmp_path: Path, corpus: Path) -> PipelineConfig:
    crawl = {"sources": [{"path": str(corpus), "kind": "files"}], "extract_workers": 1}
    return validate_config({"workspace": str(tmp_path / "ws"), "crawl": crawl})


def texts_by_file(cfg: PipelineConfig) -> dict[str, str]:
    paths = StageOutput(cfg.workspace, "crawl").shard_paths("documents")
    return {Path(d["source"]).name: d["text"] for d in iter_records(paths, ["source", "text"])}


def test_a_changed_file_of_three_is_the_only_one_read_again(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in TEXTS.items():
        write(corpus / name, text, 1_700_000_000)
    cfg = config(tmp_path, corpus)
    with files_opened(corpus) as opened:
        assert execute(cfg, "crawl", crawl_stage.run).count_out == 3
    assert set(opened) == set(TEXTS)  # the counter sees reads: every file was read the first time
    assert texts_by_file(cfg) == TEXTS

    write(corpus / "b.txt", "Glaciers retreat in a warmer climate and leave lakes behind them.", 1_700_100_000)
    with files_opened(corpus) as opened:
        summary = execute(cfg, "crawl", crawl_stage.run)
    assert summary.status == "ran" and summary.count_out == 3
    assert set(opened) == {"b.txt"}  # a.txt and c.txt were not opened at all
    expected = TEXTS | {"b.txt": "Glaciers retreat in a warmer climate and leave lakes behind them."}
    assert texts_by_file(cfg) == expected  # b's earlier text is gone, a's and c's stay
    stats = StageOutput(cfg.workspace, "crawl").read_manifest().stats
    assert stats["ingest_files"] == 3 and stats["raw_records"] == 3 and stats["extract"]["records"] == 3
    # The changed file is a unit of its own; the first batch keeps the two others.
    units = [u for u in StageOutput(cfg.workspace, "crawl").units() if u.stats.get("file_digests")]
    held = sorted(sorted(Path(url).name for url in u.stats["file_digests"]) for u in units)
    assert ["b.txt"] in held and ["a.txt", "c.txt"] in held

    with files_opened(corpus) as opened:
        assert execute(cfg, "crawl", crawl_stage.run).status == "up to date"
    assert not opened

    (corpus / "c.txt").unlink()  # a file that goes takes its documents with it; nothing is read
    with files_opened(corpus) as opened:
        assert execute(cfg, "crawl", crawl_stage.run).count_out == 2
    assert not opened
    assert texts_by_file(cfg) == {"a.txt": TEXTS["a.txt"], "b.txt": expected["b.txt"]}


def test_with_incremental_dedup_a_narrowed_shard_keeps_its_unchanged_files(tmp_path):
    from gristmill.tasks.dedup import stage as dedup_stage

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in TEXTS.items():
        write(corpus / name, text * 3, 1_700_000_000)
    crawl = {"sources": [{"path": str(corpus), "kind": "files"}], "extract_workers": 1}
    cfg = validate_config({"workspace": str(tmp_path / "ws"), "crawl": crawl, "dedup": {"incremental": True}})

    def deduplicated() -> list[str]:
        execute(cfg, "crawl", crawl_stage.run)
        execute(cfg, "dedup", dedup_stage.run)
        paths = StageOutput(cfg.workspace, "dedup").shard_paths("documents")
        return sorted(Path(d["source"]).name for d in iter_records(paths, ["source"]))

    assert deduplicated() == ["a.txt", "b.txt", "c.txt"]
    # b changes a little: its new text is compared with a and c, not with its own earlier copy (which is gone).
    write(corpus / "b.txt", TEXTS["b.txt"] * 3 + " They are cold.", 1_700_100_000)
    assert deduplicated() == ["a.txt", "b.txt", "c.txt"]
    write(corpus / "d.txt", TEXTS["a.txt"] * 3, 1_700_100_000)  # a new copy of a: still a duplicate of the earlier a
    assert deduplicated() == ["a.txt", "b.txt", "c.txt"]

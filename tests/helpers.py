"""Test helpers that write real stage outputs through the project's own shard store."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gristmill.tasks.crawl.extract import document_from_raw
from gristmill.tasks.crawl.records import doc_id
from gristmill.tasks.documents import DOCUMENT_SCHEMA
from gristmill.tasks.shards import Manifest, StageOutput, UnitRecord, write_shard

if TYPE_CHECKING:  # torch and Lightning load only in the tests that build a model
    from gristmill.conf.schema import TrainConfig
    from gristmill.lightning_model.model import ModelConfig


def tiny_model_config(**overrides: Any) -> ModelConfig:
    """A model small enough to train in seconds on a CPU; `overrides` change any field."""
    from gristmill.lightning_model.model import ModelConfig

    base = dict(
        vocab_size=97,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=16,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=1,
    )
    return ModelConfig(**{**base, **overrides})


def tiny_train_config(**overrides: Any) -> TrainConfig:
    """The train section for that model on a CPU, 60 steps at a high learning rate; `overrides` change any key."""
    from gristmill.conf.schema import TrainConfig

    base = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        max_steps=60,
        batch_size=8,
        learning_rate=1e-2,
        warmup_steps=5,
        val_every_steps=20,
        val_batches=4,
        accelerator="cpu",
        devices=1,
        precision="auto",
        num_workers=0,
        seed=7,
    )
    return TrainConfig(**{**base, **overrides})


def requirement_missing(reason: str) -> None:
    """Outside CI a test whose data or tool is missing here is skipped, with the reason; in CI (`CI=true`, as CI
    services set it) it fails: a suite that skipped its real-data tests has not passed."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: a missing requirement fails the suite)", pytrace=False)
    pytest.skip(reason)


def document(url: str, text: str | None, status: int = 200) -> dict:
    return {
        "doc_id": doc_id(url),
        "url": url,
        "fetched_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        "status": status,
        "content_type": "text/html",
        "title": url.rsplit("/", 1)[-1],
        "text": text,
        "raw_bytes": len(text or ""),
    }


def write_documents_stage(workspace: str | Path, stage: str, shards: list[list[dict]]) -> Manifest:
    """A finished stage (e.g. crawl) whose output is the given documents, one list per shard."""
    out = StageOutput(workspace, stage)
    out.begin("test", None)
    units = []
    for index, docs in enumerate(shards):
        table = pa.Table.from_pylist(docs, schema=DOCUMENT_SCHEMA)
        info = write_shard(out.dataset_dir("documents") / f"part-{index:05d}.parquet", table, DOCUMENT_SCHEMA)
        units.append(out.finish_unit(UnitRecord(unit=f"part-{index:05d}", shards={"documents": [info]})))
    total = sum(len(docs) for docs in shards)
    return out.commit("test", None, units, stats={"in": total, "out": total})


def write_token_shard(path: Path, rows: np.ndarray, dtype: pa.DataType | None = None) -> Path:
    """A shard as the tokenize stage writes it: one fixed-size-list column `tokens`."""
    width = rows.shape[1]  # (rows, seq_len + 1)
    flat = pa.array(rows.reshape(-1), type=dtype or pa.uint16())
    column = pa.FixedSizeListArray.from_arrays(flat, width)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"tokens": column}), path, row_group_size=4)
    return path


def stubborn_document(raw: dict, extractor: str) -> dict:
    """An ExtractionPool worker (module level, so it pickles) that misbehaves on request: the page ".../hang" computes
    for ever, as a pathological page does (".../slow" too, except with resiliparse), ".../stall" waits 600 s without
    computing, ".../nap" waits 2 s without computing and then goes on, ".../raise" raises, ".../die" kills its
    process; the rest go through `document_from_raw`."""
    page = raw["url"].rsplit("/", 1)[-1]
    if page == "hang" or (page == "slow" and extractor != "resiliparse"):
        while True:
            pass
    if page in ("stall", "nap"):
        time.sleep(600 if page == "stall" else 2)
    if page == "raise":
        raise ValueError(f"cannot read {raw['url']}")
    if page == "die":
        os._exit(3)
    return document_from_raw(raw, extractor)


def document_noting_dateparser_locales(raw: dict, extractor: str) -> dict:
    """An ExtractionPool worker that reports, as the document's title, how many dateparser locales its process had
    loaded before this page and after it ("before:after"): equal means the page paid no locale loading inside its
    time limit (the forkserver's warm-up loaded them, or the extraction did not need them)."""
    from dateparser.languages.loader import default_loader

    loaded_before = len(default_loader._loaded_locales)
    document = document_from_raw(raw, extractor)
    return {**document, "title": f"{loaded_before}:{len(default_loader._loaded_locales)}"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for servers a test starts)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]

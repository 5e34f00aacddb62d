"""`train.mode: continue` on a new corpus generation starts from the registry's champion, found through
`Tracker.alias_weights`, and records the version it continued from; with no champion, or a champion whose weights
are gone, it trains a new model on everything and says why. Real MLflow (sqlite), real tiny trainings."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from gristmill.conf.schema import PipelineConfig
from gristmill.tasks.shards import StageOutput, file_sha256
from gristmill.tasks.stage import execute
from gristmill.tasks.tokenize import stage as tokenize
from gristmill.tasks.tracking import PARENT_VERSION_TAG, WEIGHTS_ARTIFACT, WEIGHTS_RUN_TAG, Tracker
from gristmill.tasks.train import stage as train
from tests.helpers import document, tiny_train_config, write_documents_stage

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORDS = ["the", "a", "cat", "dog", "sat", "ran", "on", "under", "mat", "log", "and", "then", "slept"]
MODEL = "gristmill-lm"


def documents(start: int, count: int) -> list[dict]:
    rng = np.random.default_rng(start)
    return [document(f"http://h/{i}", " ".join(rng.choice(WORDS, size=120))) for i in range(start, start + count)]


def add_generation(config: PipelineConfig, shards: int) -> None:
    """The cleaned corpus grows by one shard (a new generation), and tokenize encodes it."""
    write_documents_stage(config.workspace, "clean", [documents(20 * i, 20) for i in range(shards)])
    execute(config, "tokenize", tokenize.run)


def register(tracker: Tracker, train_run: str) -> int:
    """A version made from a train run, as evaluate registers one, made champion."""
    version = tracker.register_model(MODEL, train_run, WEIGHTS_ARTIFACT, tags={WEIGHTS_RUN_TAG: train_run})
    tracker.set_alias(MODEL, "champion", version)
    return version


def test_continue_starts_from_the_champion_and_trains_anew_without_one(tmp_path):
    config = PipelineConfig(
        workspace=str(tmp_path / "ws"),
        crawl={"seeds": ["http://h/"]},
        tokenize={"vocab_size": 300, "seq_len": 16, "val_fraction": 0.2},
        train=tiny_train_config(max_steps=6, val_every_steps=6, val_batches=1).model_dump(),
    )
    tracker = Tracker(config.workspace, None, "test")
    output = StageOutput(config.workspace, "train")
    add_generation(config, 2)
    first = execute(config, "train", train.run, tracker=tracker)
    assert output.read_manifest().stats["continued"] is False

    # Generation 1, and no version registered: a new model on the whole corpus, and the summary says why.
    add_generation(config, 3)
    summary = execute(config, "train", train.run, tracker=tracker)
    stats = output.read_manifest().stats
    assert stats["continued"] is False and "continued_from_version" not in stats
    assert any("no version of 'gristmill-lm' holds the alias 'champion'" in w for w in summary.warnings)
    assert (output.path / "checkpoints" / "g001" / "last.ckpt").is_file()

    # The first model is made champion (the second is not registered): generation 2 starts from the first's weights.
    version = register(tracker, first.mlflow_run_id)
    first_weights = Path(tracker.client.download_artifacts(first.mlflow_run_id, WEIGHTS_ARTIFACT, str(tmp_path)))
    add_generation(config, 4)
    third = execute(config, "train", train.run, tracker=tracker)
    stats = output.read_manifest().stats
    assert stats["continued"] is True and stats["continued_from_version"] == version
    assert stats["init_weights_sha256"] == file_sha256(first_weights / "model.pt")
    assert tracker.client.get_run(third.mlflow_run_id).data.tags[PARENT_VERSION_TAG] == str(version)
    assert not list(output.path.glob(".champion-*"))  # the downloaded weights are not left behind

    # Another vocabulary (tokenize settings changed): the champion does not fit the model this config trains.
    other_vocab = config.model_copy(update={"tokenize": config.tokenize.model_copy(update={"vocab_size": 280})})
    add_generation(other_vocab, 4)
    summary = execute(other_vocab, "train", train.run, tracker=tracker)
    assert output.read_manifest().stats["continued"] is False
    assert any(f"the champion, version {version}, is not of the shape" in w for w in summary.warnings)

    # The champion's weights artifact is gone: a new model again, and why.
    run_artifacts = Path(tracker.client.get_run(first.mlflow_run_id).info.artifact_uri.removeprefix("file://"))
    shutil.rmtree(run_artifacts / WEIGHTS_ARTIFACT)
    add_generation(config, 5)
    summary = execute(config, "train", train.run, tracker=tracker)
    stats = output.read_manifest().stats
    assert stats["continued"] is False
    assert any(f"the weights of version {version} are gone" in w for w in summary.warnings)

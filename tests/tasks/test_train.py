"""Training end to end on CPU: a tiny model learns a patterned token stream, MLflow gets the metrics,
checkpoints make a second call resume instead of starting over, and the saved weights load back."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
import torch

from gristmill.lightning_model.data import read_rows
from gristmill.lightning_model.model import ModelConfig
from gristmill.lightning_model.weights import load_model
from gristmill.tasks.train.stage import resolve_hardware, train_model
from tests.helpers import tiny_train_config, write_token_shard

SEQ_LEN = 32
VOCAB = 64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def patterned_shards(directory, shards: int, rows_per_shard: int, seed: int) -> list:
    """A stream of 8 fixed 'words' of 6 tokens in random order: learnable (most next tokens are determined by
    the previous one), but not trivially constant."""
    words = np.random.default_rng(0).integers(2, VOCAB, size=(8, 6))
    rng = np.random.default_rng(seed)
    total = shards * rows_per_shard * (SEQ_LEN + 1)
    stream = np.concatenate([words[i] for i in rng.integers(0, 8, size=total // 6 + 1)])[:total]
    rows = stream.reshape(shards, rows_per_shard, SEQ_LEN + 1)
    return [write_token_shard(directory / f"{i:05d}.parquet", rows[i]) for i in range(shards)]


def val_rows(paths) -> list:
    return [row for path in paths for row in read_rows(path)]


def test_resolve_hardware_on_cpu():
    cfg = tiny_train_config()
    assert resolve_hardware(cfg) == ("cpu", "32-true")
    assert resolve_hardware(tiny_train_config(precision="bf16-mixed")) == ("cpu", "bf16-mixed")


def test_train_learns_tracks_checkpoints_and_resumes(tmp_path):
    train = patterned_shards(tmp_path / "train", shards=3, rows_per_shard=40, seed=1)
    val = patterned_shards(tmp_path / "val", shards=1, rows_per_shard=32, seed=2)
    model_config = ModelConfig.from_train_config(
        tiny_train_config(),
        vocab_size=VOCAB,
        max_position_embeddings=SEQ_LEN,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=1,
    )
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("test", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    checkpoints = tmp_path / "stage" / "checkpoints"

    stats = train_model(tiny_train_config(), train, val, model_config, checkpoints, uri, run_id)

    assert stats["steps"] == 60 and stats["resumed"] is False
    assert stats["tokens_seen"] == 60 * 8 * SEQ_LEN
    assert stats["val_loss_first"] == pytest.approx(np.log(VOCAB), abs=0.3)  # measured before any update
    assert stats["val_loss_last"] < 0.6 * stats["val_loss_first"]
    assert stats["train_loss_last"] < 0.6 * stats["train_loss_first"]
    assert [step for step, _ in stats["val_losses"]] == [0, 20, 40, 60]
    assert stats["tokens_per_s"] > 0
    assert (checkpoints / "last.ckpt").is_file()

    run = client.get_run(run_id)
    assert run.info.status == "RUNNING"  # the caller's run: training must not end it
    history = client.get_metric_history(run_id, "train/loss")
    assert len(history) >= 30 and history[-1].value < history[0].value
    # Lightning logs a mid-fit validation at the step of the batch before it (19 for the one after step 20).
    val_steps = [m.step for m in client.get_metric_history(run_id, "val/loss")]
    assert len(val_steps) == 4 and val_steps[0] == 0 and val_steps == sorted(val_steps)
    for key in ("train/lr", "train/grad_norm", "train/tokens_seen"):
        assert client.get_metric_history(run_id, key), key

    model, loaded_config = load_model(tmp_path / "stage" / "final")
    assert loaded_config == model_config and not model.training
    assert stats["parameters"] == sum(p.numel() for p in model.parameters())
    rows = torch.from_numpy(np.stack([row for row in val_rows(val)]))[:8]
    with torch.no_grad():
        _, loss = model(rows[:, :-1], rows[:, 1:])
    assert loss.item() < 0.7 * stats["val_loss_first"]  # the saved weights are the trained ones

    # A second call finds last.ckpt and continues: 20 more steps, not 80 from scratch.
    more = train_model(tiny_train_config(max_steps=80), train, val, model_config, checkpoints, uri, run_id)
    assert more["steps"] == 80 and more["resumed"] is True
    assert more["tokens_seen"] == 80 * 8 * SEQ_LEN
    assert more["val_loss_first"] == stats["val_loss_first"]  # the history travelled in the checkpoint
    assert more["val_loss_last"] <= stats["val_loss_last"] * 1.2
    assert [step for step, _ in more["val_losses"]] == [0, 20, 40, 60, 80]
    # Resumed, not restarted: only steps 60-79 were trained (and logged) this time.
    added = client.get_metric_history(run_id, "train/loss")[len(history) :]
    assert 0 < len(added) <= 20 and min(m.step for m in added) >= 60


def test_stage_trains_on_tokenize_output_and_is_then_up_to_date(tmp_path):
    from gristmill.conf.schema import PipelineConfig
    from gristmill.tasks.shards import StageOutput
    from gristmill.tasks.stage import execute
    from gristmill.tasks.tokenize import stage as tokenize
    from gristmill.tasks.tracking import Tracker
    from gristmill.tasks.train import stage as train
    from tests.helpers import document, write_documents_stage

    rng = np.random.default_rng(0)
    words = ["the", "a", "cat", "dog", "sat", "ran", "on", "under", "mat", "log", "and", "then", "slept"]
    docs = [document(f"http://h/{i}", " ".join(rng.choice(words, size=120))) for i in range(40)]
    config = PipelineConfig(
        workspace=str(tmp_path / "ws"),
        crawl={"seeds": ["http://h/"]},
        tokenize={"vocab_size": 300, "seq_len": 16, "val_fraction": 0.2},
        train=tiny_train_config(max_steps=12, val_every_steps=6, val_batches=2).model_dump(),
    )
    write_documents_stage(config.workspace, "clean", [docs[:20], docs[20:]])
    execute(config, "tokenize", tokenize.run)
    tracker = Tracker(config.workspace, None, "test")

    summary = execute(config, "train", train.run, tracker=tracker)

    assert summary.status == "ran" and summary.count_out == 12 and summary.unit_out == "steps"
    output = StageOutput(config.workspace, "train")
    manifest = output.read_manifest()
    assert manifest.stats["val_loss_last"] < manifest.stats["val_loss_first"]
    model, model_config = load_model(output.path / manifest.files["model"])
    vocab_size = StageOutput(config.workspace, "tokenize").read_manifest().stats["vocab_size"]
    assert model_config.max_position_embeddings == 16 and model_config.vocab_size == vocab_size
    assert model.model.embed_tokens.weight.shape == (vocab_size, 32)
    assert (output.path / manifest.files["checkpoints"] / "last.ckpt").is_file()
    artifacts = [a.path for a in tracker.client.list_artifacts(summary.mlflow_run_id)]
    assert "loss_curve.png" in artifacts
    assert execute(config, "train", train.run, tracker=tracker).status == "up to date"

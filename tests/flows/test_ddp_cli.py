"""`gristmill run` with 2-process DDP on the CPU: the pipeline runs once, only training runs on both ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gristmill.conf.schema import STAGES, load_config
from gristmill.tasks.shards import StageOutput
from gristmill.tasks.tracking import Tracker
from tests.flows.test_pipeline import DEMO, SMALL

STEPS = 30
DDP = ["train.accelerator=cpu", "train.devices=2", "train.strategy=ddp", f"train.max_steps={STEPS}"]


@pytest.mark.slow
def test_ddp_through_the_command_line_runs_the_pipeline_once(tmp_path, one_torch_thread):
    workspace = tmp_path / "ws"
    overrides = [f"workspace={workspace}", *SMALL, *DDP, "train.val_every_steps=10", "train.warmup_steps=3"]
    gristmill = Path(sys.executable).parent / "gristmill"
    env = {**os.environ, "GRISTMILL_PROGRESS": "0", "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)  # its own ephemeral Prefect server, as a user's first run has
    done = subprocess.run(
        [str(gristmill), "run", str(DEMO), *overrides], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    assert "launched with" in done.stdout + done.stderr  # training went through the launcher, not Lightning's

    config = load_config(DEMO, overrides)
    tracker = Tracker(workspace, None, config.tracking.experiment)
    runs = tracker.client.search_runs([tracker.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    stages = sorted(r.data.tags["gristmill.stage"] for r in runs if "mlflow.parentRunId" in r.data.tags)
    assert stages == sorted(STAGES)  # one crawl, one train child: the second rank ran no pipeline
    versions = tracker.client.search_model_versions(f"name='{config.tracking.registered_model}'")
    assert [str(v.version) for v in versions] == ["1"]

    stats = StageOutput(workspace, "train").read_manifest().stats
    seq_len = config.tokenize.seq_len
    assert stats["steps"] == STEPS
    assert stats["tokens_seen"] == STEPS * config.train.batch_size * seq_len * 2  # both ranks' batches count
    train_run = next(r for r in runs if r.data.tags.get("gristmill.stage") == "train")
    assert len(tracker.client.get_metric_history(train_run.info.run_id, "train/loss")) > 1  # rank 0 logged

    # One process with the same global batch (2 x batch_size) on the same shards: the same loss, within noise.
    single = single_process_stats(workspace, config, tmp_path / "single")
    record = {"ddp_val_loss_last": stats["val_loss_last"], "single_val_loss_last": single["val_loss_last"]}
    (tmp_path / "losses.json").write_text(json.dumps(record))
    print("LOSSES", json.dumps(record))
    assert stats["val_loss_last"] < stats["val_loss_first"] - 0.5
    assert abs(stats["val_loss_last"] - single["val_loss_last"]) < 0.05 * single["val_loss_last"]


def single_process_stats(workspace: Path, config, out: Path) -> dict:
    from gristmill.lightning_model.weights import load_model
    from gristmill.tasks.train.stage import train_model

    tokenized = StageOutput(workspace, "tokenize")
    _, model_config = load_model(workspace / "train" / "final")
    cfg = config.train.model_copy(update={"devices": 1, "strategy": "auto", "batch_size": 2 * config.train.batch_size})
    return train_model(
        cfg, tokenized.shard_paths("train"), tokenized.shard_paths("val"), model_config, out / "checkpoints"
    )

"""Kill training with SIGKILL mid-run, resume from the last checkpoint, and get the uninterrupted run's losses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tasks.test_train import patterned_shards

REPO = Path(__file__).resolve().parents[2]

# Runs train_model in a fresh process, recording each step's loss; SIGKILLs itself after step `kill_at`.
SCRIPT = """
import json, os, signal, sys
from pathlib import Path

import lightning.pytorch as L
import torch

sys.path.insert(0, {repo!r})
from gristmill.lightning_model.model import ModelConfig
from gristmill.tasks.train.stage import train_model
from tests.helpers import tiny_train_config
from tests.tasks.test_train import VOCAB, SEQ_LEN

torch.set_num_threads(1)
data, out, losses, kill_at = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])


class Record(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        with losses.open("a") as fh:
            fh.write(json.dumps([trainer.global_step, float(outputs["loss"])]) + "\\n")
        if trainer.global_step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


cfg = tiny_train_config(max_steps=40, val_every_steps=10, warmup_steps=4)
model_config = ModelConfig.from_train_config(cfg, VOCAB, SEQ_LEN, bos_token_id=0, eos_token_id=0, pad_token_id=1)
train_model(cfg, sorted((data / "train").glob("*.parquet")), sorted((data / "val").glob("*.parquet")),
            model_config, out / "checkpoints", callbacks=[Record()])
"""


def train_in_process(script: Path, data: Path, out: Path, kill_at: int = -1) -> tuple[int, dict[int, float]]:
    losses = out / f"losses-{kill_at}.jsonl"  # the resumed run, in the same directory, records apart
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, str(script), str(data), str(out), str(losses), str(kill_at)],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "GRISTMILL_PROGRESS": "0", "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    steps = dict(json.loads(line) for line in losses.read_text().splitlines()) if losses.exists() else {}
    return done.returncode, steps


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    patterned_shards(tmp_path / "data" / "train", shards=3, rows_per_shard=48, seed=1)
    patterned_shards(tmp_path / "data" / "val", shards=1, rows_per_shard=16, seed=2)
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(repo=str(REPO)))

    code, whole = train_in_process(script, tmp_path / "data", tmp_path / "whole")
    assert code == 0 and sorted(whole) == list(range(1, 41))

    code, killed = train_in_process(script, tmp_path / "data", tmp_path / "killed", kill_at=25)
    assert code == -9 and max(killed) == 25  # died by SIGKILL; the last checkpoint is from step 20
    code, resumed = train_in_process(script, tmp_path / "data", tmp_path / "killed")
    assert code == 0

    # The resumed process redid steps 21-25 and went on to 40: every loss equals the uninterrupted run's.
    assert sorted(resumed) == list(range(21, 41))
    for step in range(21, 41):
        assert resumed[step] == pytest.approx(whole[step], abs=1e-5), step

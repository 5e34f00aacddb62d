"""The train stage under Lightning's DDP strategy: two CPU processes (gloo), each reading its own rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tasks.test_train import patterned_shards

REPO = Path(__file__).resolve().parents[2]

# Lightning's DDP launcher starts the second process by re-running this script, so it must be a file, not pytest.
SCRIPT = """
import json, os, sys
from pathlib import Path

import torch

sys.path.insert(0, {repo!r})
from gristmill.lightning_model.model import ModelConfig
from gristmill.tasks.train.stage import train_model
from tests.helpers import tiny_train_config
from tests.tasks.test_train import SEQ_LEN, VOCAB

torch.set_num_threads(1)
data, out = Path(sys.argv[1]), Path(sys.argv[2])
cfg = tiny_train_config(max_steps=10, val_every_steps=5, devices=2, strategy="ddp")
model_config = ModelConfig.from_train_config(cfg, VOCAB, SEQ_LEN, bos_token_id=0, eos_token_id=0, pad_token_id=1)
stats = train_model(cfg, sorted((data / "train").glob("*.parquet")), sorted((data / "val").glob("*.parquet")),
                    model_config, out / "checkpoints")
if int(os.environ.get("LOCAL_RANK", 0)) == 0:
    print("STATS " + json.dumps(stats))
"""


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_trains_and_counts_both_ranks(tmp_path):
    patterned_shards(tmp_path / "data" / "train", shards=2, rows_per_shard=40, seed=1)
    patterned_shards(tmp_path / "data" / "val", shards=1, rows_per_shard=16, seed=2)
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT.format(repo=str(REPO)))
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "data"), str(tmp_path / "out")],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "GRISTMILL_PROGRESS": "0"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    stats = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("STATS "))[6:])
    assert stats["steps"] == 10
    assert stats["tokens_seen"] == 10 * 8 * 32 * 2  # steps x batch x tokens x ranks
    assert stats["val_loss_last"] < stats["val_loss_first"]
    assert (tmp_path / "out" / "final" / "model.pt").is_file()

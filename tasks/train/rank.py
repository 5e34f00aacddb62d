"""The train-only entry point every rank of a launched training runs: `python -m gristmill.tasks.train.rank JOB`.

The job file is what the train stage wrote (`launch.TrainJob`); Lightning finds this process's rank in the
environment the launcher set (torchelastic or SLURM) and starts nothing itself. Rank 0 writes the result the stage
reads back.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from gristmill.conf.schema import TrainConfig
from gristmill.lightning_model.model import ModelConfig
from gristmill.tasks.train.launch import TrainJob
from gristmill.tasks.train.stage import train_model


def run_rank(job: TrainJob) -> dict[str, Any]:
    """One rank's share: train (Lightning finds the rank in the environment); rank 0 writes the result."""
    stats = train_model(
        TrainConfig.model_validate(job.train),
        [Path(p) for p in job.train_paths],
        [Path(p) for p in job.val_paths],
        ModelConfig.from_dict(job.model_config),
        Path(job.checkpoint_dir),
        tracking_uri=job.tracking_uri,
        mlflow_run_id=job.mlflow_run_id,
        weights_dir=Path(job.weights_dir),
        init_weights=Path(job.init_weights) if job.init_weights else None,
    )
    if int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))) == 0:
        scratch = Path(job.result_path).with_suffix(".tmp")
        scratch.write_text(json.dumps(stats))
        scratch.rename(job.result_path)
    return stats


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        raise SystemExit("usage: python -m gristmill.tasks.train.rank JOB.json  (written by the train stage)")
    run_rank(TrainJob(**json.loads(Path(args[0]).read_text())))


if __name__ == "__main__":
    main()

"""Training on more than one device without running the pipeline once per rank.

Lightning's DDP launcher, started from a plain process such as `gristmill run`, starts the other ranks by
re-running that command line: every rank would run the whole pipeline (crawls, manifest writes, registrations).
So the train stage, when it needs more than one process, writes a job file and starts a launcher on the
train-only entry point `python -m gristmill.tasks.train.rank JOB`: every rank trains, rank 0 writes the result,
and the stage's bookkeeping (MLflow child run, manifest) stays in the one pipeline process.

The launcher is torchrun on this node (`--standalone`, one process per device) unless `runner.launch_command`
says otherwise, e.g. `srun` for several nodes (docs/operations.md). Under a launcher, Lightning finds its ranks in
the environment (torchelastic or SLURM) and starts nothing itself.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from gristmill.conf.schema import TrainConfig
from gristmill.lightning_model.model import ModelConfig

log = logging.getLogger("gristmill.train")

JOB_FILE = "launch_job.json"
RESULT_FILE = "launch_result.json"
LAUNCHED_ENV = ("LOCAL_RANK", "WORLD_SIZE", "SLURM_PROCID")  # set for every rank a launcher started


@dataclass
class TrainJob:
    """Everything one rank needs, as plain JSON: `train_model`'s arguments."""

    train: dict[str, Any]
    train_paths: list[str]
    val_paths: list[str]
    model_config: dict[str, Any]
    checkpoint_dir: str
    weights_dir: str
    tracking_uri: str | None
    mlflow_run_id: str | None
    result_path: str
    init_weights: str | None = None  # continued training: the last model's weights


def processes_per_node(cfg: TrainConfig) -> int:
    """Training processes this node would run: `devices`, with "auto" = every visible GPU (one on CPU)."""
    if cfg.devices != "auto":
        return int(cfg.devices)
    wants_gpu = cfg.accelerator == "gpu" or (cfg.accelerator == "auto" and torch.cuda.is_available())
    return max(torch.cuda.device_count(), 1) if wants_gpu else 1


def needs_launcher(cfg: TrainConfig) -> bool:
    """More than one training process, and this is not already one rank of a launched job."""
    already_a_rank = any(name in os.environ for name in LAUNCHED_ENV)
    return not already_a_rank and (processes_per_node(cfg) > 1 or cfg.num_nodes > 1)


def launch_command(job_path: Path, nproc: int, template: str | None) -> list[str]:
    """The launcher's argv: `template` with {python}, {job} and {nproc} filled in, or torchrun on this node."""
    if template:
        filled = template.format(python=shlex.quote(sys.executable), job=shlex.quote(str(job_path)), nproc=nproc)
        return shlex.split(filled)
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # a rendezvous on a free local port: several jobs can share a machine
        f"--nproc_per_node={nproc}",
        "-m",
        "gristmill.tasks.train.rank",
        str(job_path),
    ]


def launch(
    cfg: TrainConfig,
    train_paths: list[Path],
    val_paths: list[Path],
    model_config: ModelConfig,
    checkpoint_dir: Path,
    weights_dir: Path,
    tracking_uri: str | None = None,
    mlflow_run_id: str | None = None,
    init_weights: Path | None = None,
    template: str | None = None,
) -> dict[str, Any]:
    """`train_model` on every rank under a launcher (torchrun here, or `template`); rank 0's stats."""
    stage_dir = Path(weights_dir).parent
    job = TrainJob(
        train=cfg.model_dump(mode="json"),
        train_paths=[str(p) for p in train_paths],
        val_paths=[str(p) for p in val_paths],
        model_config=model_config.to_dict(),
        checkpoint_dir=str(checkpoint_dir),
        weights_dir=str(weights_dir),
        tracking_uri=tracking_uri,
        mlflow_run_id=mlflow_run_id,
        result_path=str(stage_dir / RESULT_FILE),
        init_weights=str(init_weights) if init_weights else None,
    )
    job_path = stage_dir / JOB_FILE
    result_path = Path(job.result_path)
    result_path.unlink(missing_ok=True)
    job_path.parent.mkdir(parents=True, exist_ok=True)
    job_path.write_text(json.dumps(asdict(job), indent=2))
    command = launch_command(job_path, processes_per_node(cfg), template)
    log.info("train: %d processes per node, launched with: %s", processes_per_node(cfg), shlex.join(command))
    done = subprocess.run(command, env=os.environ.copy())  # the ranks' output goes straight to ours
    if done.returncode != 0:
        raise RuntimeError(
            f"train: the launched training ranks failed (exit code {done.returncode}; their output is above): "
            f"{shlex.join(command)}"
        )
    if not result_path.is_file():
        raise RuntimeError(f"train: the launched ranks exited cleanly but rank 0 wrote no {result_path}")
    return json.loads(result_path.read_text())

"""Who starts training ranks: one process trains in place; more go through a launcher on the train-only entry point."""

from __future__ import annotations

import sys

import pytest

from gristmill.conf.schema import TrainConfig
from gristmill.tasks.train.launch import launch_command, needs_launcher


@pytest.fixture
def not_a_rank(monkeypatch):
    for name in ("LOCAL_RANK", "WORLD_SIZE", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)


def test_one_cpu_device_trains_in_place_and_two_need_a_launcher(not_a_rank):
    assert not needs_launcher(TrainConfig(accelerator="cpu", devices=1))
    assert not needs_launcher(TrainConfig(accelerator="cpu", devices="auto"))
    assert needs_launcher(TrainConfig(accelerator="cpu", devices=2, strategy="ddp"))
    assert needs_launcher(TrainConfig(accelerator="cpu", devices=1, num_nodes=2))


def test_a_process_a_launcher_started_never_launches_again(not_a_rank, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert not needs_launcher(TrainConfig(accelerator="cpu", devices=2, strategy="ddp"))


def test_torchrun_by_default_and_a_template_for_other_launchers(tmp_path):
    job = tmp_path / "job dir" / "launch_job.json"
    default = launch_command(job, 8, None)
    assert default[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc_per_node=8" in default and default[-3:] == ["-m", "gristmill.tasks.train.rank", str(job)]
    srun = launch_command(job, 8, "srun --ntasks-per-node={nproc} {python} -m gristmill.tasks.train.rank {job}")
    assert srun == ["srun", "--ntasks-per-node=8", sys.executable, "-m", "gristmill.tasks.train.rank", str(job)]

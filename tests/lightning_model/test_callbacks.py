"""The training callbacks: the MFU inputs (the device's peak from Lightning's table, the dtype a precision setting
runs in) and the step-counting progress bar."""

from __future__ import annotations

import pytest
import torch

from gristmill.lightning_model.callbacks import MFUMonitor, compute_dtype, device_peak_flops


def test_precision_settings_map_to_the_dtype_of_their_matmuls() -> None:
    assert compute_dtype("bf16-mixed") == compute_dtype("bf16-true") == torch.bfloat16
    assert compute_dtype("16-mixed") == torch.float16
    assert compute_dtype("32-true") == compute_dtype("32") == torch.float32
    assert compute_dtype("64-true") == torch.float64


def test_a_cpu_has_no_peak_so_no_mfu_is_logged() -> None:
    assert device_peak_flops("cpu") is None


def test_the_callback_does_not_share_lightnings_name() -> None:
    from lightning.pytorch.callbacks import ThroughputMonitor

    assert MFUMonitor.__name__ != ThroughputMonitor.__name__


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_datacenter_gpu_has_a_dense_bf16_peak() -> None:
    name = torch.cuda.get_device_name()
    peak = device_peak_flops()
    if any(chip in name for chip in ("A100", "H100", "H200")):
        assert peak is not None and 300e12 <= peak <= 1000e12, (name, peak)  # dense, not the sparsity figure


def test_the_progress_bar_counts_steps_out_of_max_steps() -> None:
    import lightning.pytorch as L

    from gristmill.lightning_model.callbacks import StepProgressBar

    bar = StepProgressBar()
    trainer = L.Trainer(max_steps=40, accumulate_grad_batches=2, callbacks=[bar], logger=False)
    bar.setup(trainer, L.LightningModule(), stage="fit")
    assert bar.total_train_batches == 80  # batches: 40 optimizer steps of 2 accumulated batches
    assert bar._get_train_description(0) == "train 40 steps"  # not Lightning's "Epoch 0/-2"

"""The trained model on disk: `model.pt` (a plain state dict) and `model_config.json`, which the train stage writes
and evaluate (and anyone else) reads back without Lightning or a checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from gristmill.lightning_model.model import Llama, ModelConfig

WEIGHTS_FILE = "model.pt"
CONFIG_FILE = "model_config.json"


def save_model(model: Llama, model_config: ModelConfig, weights_dir: Path) -> Path:
    """`model.pt` (state dict on CPU; a tied head stays one tensor) and `model_config.json`, swapped in as a
    whole directory so a reader never sees new weights with an old config."""
    weights_dir = Path(weights_dir)
    scratch = weights_dir.with_name(f".{weights_dir.name}.tmp")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    torch.save({name: t.detach().cpu() for name, t in model.state_dict().items()}, scratch / WEIGHTS_FILE)
    (scratch / CONFIG_FILE).write_text(json.dumps(model_config.to_dict(), indent=2))
    shutil.rmtree(weights_dir, ignore_errors=True)
    scratch.rename(weights_dir)
    return weights_dir


def load_model(weights_dir: Path, device: str | torch.device = "cpu") -> tuple[Llama, ModelConfig]:
    """The trained model (in eval mode) and its config, from what `train_model` wrote."""
    weights_dir = Path(weights_dir)
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        if not (weights_dir / name).is_file():
            raise FileNotFoundError(f"{weights_dir / name}: no trained model here; run the train stage first")
    model_config = read_model_config(weights_dir)
    model = Llama(model_config)
    state = torch.load(weights_dir / WEIGHTS_FILE, map_location=device, weights_only=True)
    model.load_state_dict(state)
    return model.to(device).eval(), model_config


def read_model_config(weights_dir: Path) -> ModelConfig:
    """The shape of the model saved in `weights_dir` (`model_config.json`), without loading its weights."""
    return ModelConfig.from_dict(json.loads((Path(weights_dir) / CONFIG_FILE).read_text()))

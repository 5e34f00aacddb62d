"""A tiny trained workspace (tokenize + train), built once per session and copied per test."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from gristmill.tasks.stage import execute
from gristmill.tasks.tokenize import stage as tokenize
from gristmill.tasks.train import stage as train
from tests.helpers import document, write_documents_stage
from tests.tasks.evaluate.bias_files import WORDS, base_config


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """tokenize + train once for the session; each test copies them into its own workspace."""
    workspace = tmp_path_factory.mktemp("trained")
    rng = np.random.default_rng(0)
    docs = [document(f"http://h/{i}", " ".join(rng.choice(WORDS, size=150)) + ".") for i in range(60)]
    config = base_config(workspace)
    write_documents_stage(config.workspace, "clean", [docs[:30], docs[30:]])
    execute(config, "tokenize", tokenize.run)
    execute(config, "train", train.run)
    return workspace


@pytest.fixture
def workspace(trained, tmp_path):
    target = tmp_path / "ws"
    shutil.copytree(trained, target)
    return target

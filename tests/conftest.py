"""Shared test fixtures: one Prefect test harness per session, MLflow on sqlite in a temp dir, shared data path.

Prefect reads its settings at import, so its environment is fixed here before anything imports it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_PREFECT_HOME = tempfile.mkdtemp(prefix="gristmill-prefect-")
os.environ.update(
    {
        "PREFECT_HOME": _PREFECT_HOME,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "true",  # MLflow's telemetry honours "true", not "1"
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
)
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("MLFLOW_TRACKING_URI", None)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect API (temporary sqlite database) for the whole session: it costs 10-20 s to start."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The project's shared real data (`../shared/data` beside the checkout, or $GRISTMILL_SHARED_DATA)."""
    path = Path(os.environ.get("GRISTMILL_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not path.is_dir():
        from tests.helpers import requirement_missing

        requirement_missing(f"shared data not found at {path} (set GRISTMILL_SHARED_DATA)")
    return path


@pytest.fixture
def one_torch_thread():
    """Tiny matrices: a second OpenMP thread only adds spin-waiting, slow on a busy 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

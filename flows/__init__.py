"""Prefect flows: thin wrappers that call the work in `tasks/` and publish what it did.

Prefect reads its settings at import, so the defaults that keep it offline and patient are set here, before any
flow module imports it: no telemetry (it would try the network), and time for the ephemeral server to start.
Likewise for the Hugging Face libraries, read at their import.
"""

import os

for _key, _value in {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "true",  # MLflow's telemetry honours "true", not "1"
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "PREFECT_LOGGING_EXTRA_LOGGERS": "gristmill",
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",  # our logs before and after the flows (lock, recovery)
    # transformers' and the Hub's bars (writing and loading the exported model) are not the run's progress
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}.items():
    os.environ.setdefault(_key, _value)

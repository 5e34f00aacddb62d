"""Lightning's MLflow logger, writing into a run that the pipeline (tasks/tracking.py) opened and will close."""

from __future__ import annotations

from lightning.pytorch.loggers import MLFlowLogger


class CallerRunLogger(MLFlowLogger):
    """Logs into a run the caller created and will end: Lightning's logger would mark it finished itself."""

    def finalize(self, status: str = "success") -> None:
        pass

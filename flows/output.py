"""What `gristmill run` prints: the run's own progress, and from libraries only what deserves attention.

One handler, on the root logger, prints every record once, on one line: gristmill's at INFO and up, every other
library's at WARNING and up. Libraries that install console handlers of their own (Lightning's package logger,
MLflow's) would print each record a second time, in their own format: their handlers are removed and their
records go through the one handler. Their loggers keep their levels, so Prefect's API still receives flow-run
logs. Python warnings become log records too; library deprecation notices are for their developers, not for a
pipeline's user, and are not shown.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

OUR_LOGGER = "gristmill"
# Loggers that carry console handlers of their own (set at their import) and do not propagate to the root.
SELF_PRINTING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "mlflow", "alembic", "huey")
NOT_FOR_USERS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


class OursOrWarnings(logging.Filter):
    """Our records from INFO up, a library's from WARNING up."""

    def filter(self, record: logging.LogRecord) -> bool:
        ours = record.name == OUR_LOGGER or record.name.startswith(OUR_LOGGER + ".")
        return ours or record.levelno >= logging.WARNING


class OneLineFormatter(logging.Formatter):
    """`HH:MM:SS name message` with the message's lines joined (a traceback still follows on its own lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return " | ".join(line.strip() for line in super().formatMessage(record).splitlines() if line.strip())


@contextmanager
def pipeline_output() -> Iterator[None]:
    """Logging and warnings as described above for the duration of the block, as they were afterwards (a test
    that runs the CLI leaves the process as it found it). Enter it after the pipeline's modules are imported:
    Lightning and MLflow set up their handlers at import."""
    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter("%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S"))
    handler.addFilter(OursOrWarnings())
    changed = [logging.getLogger(), logging.getLogger(OUR_LOGGER), *map(logging.getLogger, SELF_PRINTING_LOGGERS)]
    saved = [(logger, logger.handlers, logger.level, logger.propagate) for logger in changed]
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger(OUR_LOGGER).setLevel(logging.INFO)
    for name in SELF_PRINTING_LOGGERS:
        library = logging.getLogger(name)
        library.handlers = []
        library.propagate = True
    with warnings.catch_warnings():
        for category in NOT_FOR_USERS:
            warnings.filterwarnings("ignore", category=category)
        logging.captureWarnings(True)
        try:
            yield
        finally:
            logging.captureWarnings(False)
            for logger, handlers, level, propagate in saved:
                logger.handlers, logger.propagate = handlers, propagate
                logger.setLevel(level)

"""What `gristmill run` prints: one line per log event, gristmill's at INFO, libraries' only when they warn."""

from __future__ import annotations

import logging
import warnings

import lightning  # noqa: F401  (installs its own console handler at import, as in a real run)

from gristmill.flows.output import pipeline_output


def test_each_event_is_one_line_ours_at_info_libraries_only_when_they_warn(capfd) -> None:
    capfd.readouterr()
    with pipeline_output():
        logging.getLogger("gristmill.crawl").info("crawled %d pages", 3)
        logging.getLogger("lightning.pytorch.trainer").info("Tip: try installing litlogger")  # an advertisement
        logging.getLogger("lightning.pytorch.trainer").warning("lightning warns")
        logging.getLogger("mlflow.store.db").info("Creating initial MLflow database tables...")
        logging.getLogger("prefect.flow_runs").info("Finished in state Completed()")
        logging.getLogger("gristmill.train").info("first line\nsecond line")
        warnings.warn("this API is old", DeprecationWarning, stacklevel=1)
        warnings.warn("a real problem", UserWarning, stacklevel=1)
    out, err = capfd.readouterr()
    lines = [line.split(" ", 1)[1] for line in err.splitlines()]  # without the time
    assert out == ""
    assert lines[:3] == [
        "gristmill.crawl crawled 3 pages",
        "lightning.pytorch.trainer lightning warns",  # once: Lightning's own handler is out of the way
        "gristmill.train first line | second line",
    ]
    assert len(lines) == 4 and lines[3].startswith("py.warnings ") and "UserWarning: a real problem" in lines[3]


def _logging_state() -> list[tuple]:
    return [
        (logger.handlers[:], logger.level, logger.propagate) for logger in map(logging.getLogger, ("", "lightning"))
    ]


def test_the_process_is_left_as_it_was() -> None:
    before, showwarning = _logging_state(), warnings.showwarning
    with pipeline_output():
        assert _logging_state() != before
    assert _logging_state() == before and warnings.showwarning is showwarning

"""An evaluation redone after an attempt that registered a model version and never finished: that version goes,
and the alias it took goes back to the version that held it, so the redone evaluation's gate sees the champion
the attempt saw and one evaluation leaves one version (tests/faults/test_kill_stages.py kills a real one)."""

from __future__ import annotations

from pathlib import Path

from gristmill.conf.schema import PipelineConfig
from gristmill.tasks.evaluate.stage import ALIAS_BEFORE_TAG, EVALUATION_TAG, drop_unfinished_attempts
from gristmill.tasks.shards import StageOutput
from gristmill.tasks.stage import StageContext
from gristmill.tasks.tracking import Tracker

NAME = "gristmill-lm"


def register(tracker: Tracker, tmp_path: Path, evaluation: str, alias_before: str, finished: bool) -> int:
    run_id = tracker.start_run("evaluate")
    model = tmp_path / f"model-{run_id}"
    model.mkdir()
    (model / "config.json").write_text("{}")
    tracker.log_artifacts(run_id, model, "model")
    version = tracker.register_model(
        NAME, run_id, "model", {EVALUATION_TAG: evaluation, ALIAS_BEFORE_TAG: alias_before}
    )
    tracker.set_alias(NAME, "champion", version)
    tracker.end_run(run_id, ok=finished)
    return version


def test_the_versions_of_an_unfinished_attempt_are_deleted_and_the_alias_given_back(tmp_path):
    config = PipelineConfig(workspace=str(tmp_path / "ws"), crawl={"seeds": ["http://127.0.0.1/"]})
    tracker = Tracker(config.workspace, None, "test")
    earlier = register(tracker, tmp_path, "key-0", "", finished=True)  # an earlier model, champion
    killed = register(tracker, tmp_path, "key-1", str(earlier), finished=False)  # took champion, then died
    other = register(tracker, tmp_path, "key-2", str(killed), finished=True)  # another evaluation's: stays
    tracker.set_alias(NAME, "champion", killed)  # as the killed attempt left it
    now = tracker.start_run("evaluate")
    ctx = StageContext(config, StageOutput(config.workspace, "evaluate"), None, tracker, now)

    drop_unfinished_attempts(ctx, NAME, "key-1")

    assert [v["version"] for v in tracker.model_versions(NAME)] == [earlier, other]
    assert int(tracker.version_by_alias(NAME, "champion").version) == earlier
    drop_unfinished_attempts(ctx, NAME, "key-0")  # a finished evaluation's version is never touched
    assert [v["version"] for v in tracker.model_versions(NAME)] == [earlier, other]

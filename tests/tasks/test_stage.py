"""The stage executor: skip when up to date, resume finished units after a crash, track in MLflow."""

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gristmill.conf.schema import PipelineConfig
from gristmill.tasks.documents import DOCUMENT_SCHEMA
from gristmill.tasks.shards import StageOutput, UnitRecord, write_shard
from gristmill.tasks.stage import StageContext, StageResult, execute, sum_stats
from gristmill.tasks.tracking import Tracker
from tests.helpers import document, write_documents_stage


def make_config(tmp_path: Path) -> PipelineConfig:
    return PipelineConfig(workspace=str(tmp_path / "ws"), crawl={"seeds": ["http://127.0.0.1/"]})


def fake_crawl_output(config: PipelineConfig, shards: int = 3) -> None:
    docs = [[document(f"http://h/{i}/{j}", "some text " * 10) for j in range(5)] for i in range(shards)]
    write_documents_stage(config.workspace, "crawl", docs)


def counting_stage(calls: list[str], fail_on: str | None = None):
    """A dedup-shaped stage whose units copy their shard; it records which units actually ran."""

    def run(ctx: StageContext) -> StageResult:
        def unit(path: Path) -> UnitRecord:
            def work() -> UnitRecord:
                if path.stem == fail_on:
                    raise RuntimeError(f"crash in {path.stem}")
                calls.append(path.stem)
                info = write_shard(
                    ctx.output.dataset_dir("documents") / path.name, pq.read_table(path), DOCUMENT_SCHEMA
                )
                return UnitRecord(unit=path.stem, shards={"documents": [info]})

            return ctx.unit(path.stem, work)

        units = ctx.map(unit, ctx.input_paths())
        return StageResult(units, 15, "docs", sum(u.shards["documents"][0].rows for u in units), "docs")

    return run


def test_crashed_stage_redoes_only_unfinished_units_then_is_up_to_date(tmp_path):
    config = make_config(tmp_path)
    fake_crawl_output(config)
    calls: list[str] = []
    with pytest.raises(RuntimeError, match="crash in part-00001"):
        execute(config, "dedup", counting_stage(calls, fail_on="part-00001"))
    assert calls == ["part-00000"]
    assert not StageOutput(config.workspace, "dedup").manifest_path.exists()

    summary = execute(config, "dedup", counting_stage(calls))
    assert summary.status == "ran" and summary.count_out == 15
    assert calls == ["part-00000", "part-00001", "part-00002"]  # part-00000 was not redone

    again = execute(config, "dedup", counting_stage(calls))
    assert again.status == "up to date" and calls == ["part-00000", "part-00001", "part-00002"]


def test_a_new_upstream_or_config_makes_the_stage_run_again(tmp_path):
    config = make_config(tmp_path)
    fake_crawl_output(config)
    calls: list[str] = []
    execute(config, "dedup", counting_stage(calls))
    config.dedup.threshold = 0.5
    assert execute(config, "dedup", counting_stage(calls)).status == "ran"
    fake_crawl_output(config, shards=2)
    assert execute(config, "dedup", counting_stage(calls)).status == "ran"
    assert len(calls) == 3 + 3 + 2


def test_running_a_stage_without_its_upstream_is_a_clear_error(tmp_path):
    with pytest.raises(Exception, match="stage 'crawl' has no output"):
        execute(make_config(tmp_path), "dedup", counting_stage([]))


def test_stage_runs_are_tracked_as_mlflow_children(tmp_path):
    config = make_config(tmp_path)
    fake_crawl_output(config)
    tracker = Tracker(config.workspace, None, "test")
    parent = tracker.start_run("pipeline")
    summary = execute(config, "dedup", counting_stage([]), tracker, parent)
    run = tracker.client.get_run(summary.mlflow_run_id)
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.tags["gristmill.status"] == "ran"
    assert run.data.metrics["out"] == 15 and run.data.params["dedup.threshold"] == "0.8"
    assert run.info.status == "FINISHED"
    assert "manifest.json" in [a.path for a in tracker.client.list_artifacts(run.info.run_id)]
    assert tracker.uri.startswith("sqlite:///") and Path(config.workspace, "mlflow", "mlflow.db").is_file()
    (dataset,) = [i.dataset for i in run.inputs.dataset_inputs]  # what it read, by content digest
    assert (dataset.name, dataset.digest) == ("crawl", StageOutput(config.workspace, "crawl").input_hash())


def test_warnings_in_a_stage_stats_reach_its_summary_also_when_up_to_date(tmp_path):
    config = make_config(tmp_path)
    fake_crawl_output(config)

    def run(ctx: StageContext) -> StageResult:
        return StageResult([], 15, "docs", 15, "docs", stats={"warnings": ["filter X removes group Y 3x as often"]})

    assert execute(config, "dedup", run).warnings == ["filter X removes group Y 3x as often"]
    again = execute(config, "dedup", run)
    assert again.status == "up to date" and again.warnings == ["filter X removes group Y 3x as often"]


def test_units_stats_add_up_nested_and_leave_samples_out():
    units = [
        {"docs": 3, "removed": {"a": 1, "b": 2}, "nested": {"x": {"y": 1.5}}, "samples": [{"url": "u"}], "note": "t"},
        {"docs": 4, "removed": {"b": 1, "c": 5}, "nested": {"x": {"y": 1.0}}, "samples": [], "problems": 9},
    ]
    assert sum_stats(units, skip={"problems"}) == {
        "docs": 7,
        "removed": {"a": 1, "b": 3, "c": 5},
        "nested": {"x": {"y": 2.5}},
    }

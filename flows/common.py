"""What every stage flow does the same way: bind units to Prefect's task runner, track, publish the summary."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from prefect import task, unmapped
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from gristmill.conf.schema import PipelineConfig
from gristmill.tasks.stage import (
    Mapper,
    ProgressPublisher,
    Publisher,
    StageContext,
    StageResult,
    StageSummary,
    execute,
)
from gristmill.tasks.tracking import Tracker


@task(cache_policy=NO_CACHE)
def run_unit(fn: Callable[[Any], Any], item: Any) -> Any:
    """One unit of a stage's work (usually one shard) as a Prefect task run."""
    return fn(item)


def prefect_mapper(stage: str) -> Mapper:
    """Map a stage's units over the flow's task runner; results come back in input order."""
    unit_task = run_unit.with_options(name=f"{stage}-unit")

    def mapper(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        if not items:
            return []
        return [future.result() for future in unit_task.map(unmapped(fn), list(items))]

    return mapper


def tracker_for(config: PipelineConfig) -> Tracker:
    return Tracker(config.workspace, config.tracking.uri, config.tracking.experiment)


def run_stage(
    config: PipelineConfig,
    stage: str,
    run: Callable[[StageContext], StageResult],
    parent_run_id: str | None,
) -> StageSummary:
    summary = execute(
        config,
        stage,
        run,
        tracker_for(config),
        parent_run_id,
        prefect_mapper(stage),
        prefect_publisher(config, stage),
        prefect_progress(config, stage),
    )
    create_table_artifact(
        key=artifact_key(config.name, stage),
        table=[summary.model_dump(mode="json")],
        description=f"{stage}: {summary.status}",
    )
    return summary


PREFECT_TABLE_ROWS = 200  # the UI renders a table artifact whole: keep it a readable sample
PREFECT_CELL_CHARS = 300


def prefect_publisher(config: PipelineConfig, stage: str) -> Publisher:
    def publish(name: str, rows: list[dict[str, Any]]) -> None:
        table = [{k: _cell(v) for k, v in row.items()} for row in rows[:PREFECT_TABLE_ROWS]]
        create_table_artifact(
            key=artifact_key(config.name, stage, name),
            table=table,
            description=f"{stage}: {name} ({len(table)} of {len(rows)} rows; all rows in the MLflow run)",
        )

    return publish


def prefect_progress(config: PipelineConfig, stage: str) -> ProgressPublisher:
    """A progress artifact per name, created on the first report and updated after."""
    artifacts: dict[str, Any] = {}

    def publish(name: str, fraction: float, description: str) -> None:
        percent = round(100 * min(max(fraction, 0.0), 1.0), 1)
        if name not in artifacts:
            key = artifact_key(config.name, stage, name)
            artifacts[name] = create_progress_artifact(percent, key=key, description=description)
        else:
            update_progress_artifact(artifacts[name], percent, description=description)

    return publish


def _cell(value: Any) -> Any:
    text = value if isinstance(value, str) else None
    return text[:PREFECT_CELL_CHARS] + "…" if text and len(text) > PREFECT_CELL_CHARS else value


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys take lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")

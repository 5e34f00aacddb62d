"""What every stage flow does the same way: map units on the stage's task runner, track, publish the summary."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import task, unmapped
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import TaskRunner

from gristmill.conf.schema import STAGES, PipelineConfig, apply_override, deep_merge, validate_config
from gristmill.flows.runners import stage_runner
from gristmill.tasks.remote import RemoteWorkspace, default_cache, is_remote
from gristmill.tasks.stage import (
    Mapper,
    ProgressPublisher,
    Publisher,
    StageContext,
    StageResult,
    StageSummary,
    execute,
)

if TYPE_CHECKING:  # MLflow: not imported by the worker processes that run units (see tracker_for)
    from gristmill.tasks.tracking import Tracker


@task(cache_policy=NO_CACHE)
def run_unit(fn: Callable[[Any], Any], item: Any) -> Any:
    """One unit of a stage's work (usually one shard) as a Prefect task run."""
    return fn(item)


def prefect_mapper(stage: str, runner: TaskRunner) -> Mapper:
    """Map a stage's units over `runner` (entered by `run_stage`); results come back in input order."""
    unit_task = run_unit.with_options(name=f"{stage}-unit")

    def mapper(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        if not items:
            return []
        return [future.result() for future in runner.map(unit_task, {"fn": unmapped(fn), "item": list(items)})]

    return mapper


def tracker_for(config: PipelineConfig) -> Tracker:
    from gristmill.tasks.tracking import Tracker  # not at import: stage units' worker processes import this module

    return Tracker(local_config(config).workspace, config.tracking.uri, config.tracking.experiment)


def remote_workspace(config: PipelineConfig) -> RemoteWorkspace | None:
    if not is_remote(config.workspace):
        return None
    return RemoteWorkspace(config.workspace, Path(config.workspace_cache or default_cache(config.workspace)))


def local_config(config: PipelineConfig) -> PipelineConfig:
    """The config the stage code sees: a workspace in object storage becomes its local mirror."""
    remote = remote_workspace(config)
    return config if remote is None else config.model_copy(update={"workspace": str(remote.cache)})


def run_stage(
    config: PipelineConfig,
    stage: str,
    run: Callable[[StageContext], StageResult],
    parent_run_id: str | None,
) -> StageSummary:
    from gristmill.tasks.workspace import hold_workspace  # re-entered when a chain or the CLI holds it already

    with workspace_slot(config), hold_workspace(local_config(config), f"{stage} stage flow"):
        summary = _run_in_workspace(config, stage, run, parent_run_id)
    create_table_artifact(
        key=artifact_key(config.name, stage),
        table=[summary.model_dump(mode="json")],
        description=f"{stage}: {summary.status}",
    )
    return summary


def _run_in_workspace(
    config: PipelineConfig, stage: str, run: Callable[[StageContext], StageResult], parent_run_id: str | None
) -> StageSummary:
    remote = remote_workspace(config)
    if remote:  # what this stage reads (every earlier stage) and its own finished or unfinished work
        for earlier in STAGES[: STAGES.index(stage) + 1]:
            remote.pull(earlier)
    try:
        # The stage's own task runner (threads, processes, dask: `config.runner`), whatever the flow's: a served
        # deployment loads the flow from its entrypoint, where no one could have chosen one for it.
        with stage_runner(config, stage) as runner:
            return execute(
                local_config(config),
                stage,
                run,
                tracker_for(config),
                parent_run_id,
                prefect_mapper(stage, runner),
                prefect_publisher(config, stage),
                prefect_progress(config, stage),
            )
    finally:
        if remote:  # a failed stage's finished units too: a rerun elsewhere resumes from them
            remote.push(stage)


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


def resolve_config(config: PipelineConfig | dict[str, Any], overrides: list[str] | None = None) -> PipelineConfig:
    """The config a flow run works with. From a deployment, `config` may be partial (`--param
    config='{"train": {"max_steps": 50}}'`): it is merged key by key onto the deployment's own config, not put
    in its place; `overrides` (`["train.max_steps=50"]`) are applied last, as on the command line."""
    if isinstance(config, PipelineConfig) and not overrides:
        return config
    raw = config.model_dump(mode="json") if isinstance(config, PipelineConfig) else dict(config)
    if not isinstance(config, PipelineConfig):
        served = served_parameters().get("config")
        if isinstance(served, dict):
            raw = deep_merge(served, raw)
    for item in overrides or []:
        apply_override(raw, item)
    return validate_config(raw, source="flow parameters")


def served_parameters() -> dict[str, Any]:
    """The parameters stored on the deployment that started this flow run ({} outside a deployment)."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import deployment
    from prefect.utilities.asyncutils import run_coro_as_sync

    deployment_id = deployment.id
    if not deployment_id:
        return {}

    async def read() -> dict[str, Any]:
        async with get_client() as client:
            return (await client.read_deployment(deployment_id)).parameters

    return run_coro_as_sync(read()) or {}


def workspace_concurrency_name(config: PipelineConfig) -> str:
    """One Prefect global concurrency limit per workspace, whatever the deployment (pipeline, stage, chain)."""
    where = config.workspace if "://" in config.workspace else str(Path(config.workspace).resolve())
    digest = hashlib.sha256(where.encode()).hexdigest()[:12]
    return f"gristmill-workspace-{digest}"


@contextmanager
def workspace_slot(config: PipelineConfig) -> Iterator[None]:
    """Hold the workspace's one slot while a deployment's top-level run works in it. Runs started by hand (the
    CLI, tests) and subflows, which run inside a run holding the slot already, go straight in."""
    from prefect.concurrency.sync import concurrency
    from prefect.runtime import deployment, flow_run

    if not deployment.id or flow_run.parent_flow_run_id:
        yield
        return
    with concurrency(workspace_concurrency_name(config), occupy=1):
        yield

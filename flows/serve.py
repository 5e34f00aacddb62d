"""Deployments: the pipeline, its two halves (refresh -> training) and every stage, served from one process.

Every deployment takes the whole config as its typed `config` parameter (the Prefect UI renders it as a form;
a partial one is merged onto it) plus dotted `overrides`. Production behaviour:
- one run at a time per deployment, and a new run while one is going is cancelled (CANCEL_NEW): the runs a
  stopped serve process missed, all due at once when it returns, collapse into one;
- one run at a time per workspace across deployments (a global concurrency limit the flows hold);
- the cron schedule (validated with the config) goes on `schedule.flow`: the whole pipeline, or the refresh,
  which starts training itself when it produced new tokens.
"""

from __future__ import annotations

from prefect import Flow, serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from gristmill.conf.schema import STAGES, PipelineConfig
from gristmill.flows.common import workspace_concurrency_name
from gristmill.flows.pipeline import pipeline, refresh, training
from gristmill.flows.stages import STAGE_FLOWS

CHAINS: dict[str, Flow] = {"pipeline": pipeline, "refresh": refresh, "training": training}
ONE_AT_A_TIME = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)


def deployment_for(config: PipelineConfig, name: str) -> RunnerDeployment:
    """`<flow>/<config name>` for a chain (pipeline, refresh, training) or a stage."""
    flow = CHAINS[name] if name in CHAINS else STAGE_FLOWS[name]
    schedules = []
    if config.schedule.cron and name == config.schedule.flow:
        schedules = [Cron(config.schedule.cron, timezone=config.schedule.timezone)]
    return flow.to_deployment(
        name=config.name,
        schedules=schedules,
        parameters={"config": config.model_dump(mode="json")},
        concurrency_limit=ONE_AT_A_TIME,
        description=f"gristmill {name} {config.name!r}: {flow.description or ''}".strip(),
        tags=["gristmill", f"workspace:{workspace_concurrency_name(config)}"],
    )


def pipeline_deployment(config: PipelineConfig) -> RunnerDeployment:
    return deployment_for(config, "pipeline")


def all_deployments(config: PipelineConfig) -> list[RunnerDeployment]:
    return [deployment_for(config, name) for name in (*CHAINS, *STAGES)]


def ensure_workspace_limit(config: PipelineConfig) -> None:
    """Create the workspace's global concurrency limit (one slot) if the server does not have it yet."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.utilities.asyncutils import run_coro_as_sync

    name = workspace_concurrency_name(config)

    async def ensure() -> None:
        async with get_client() as client:
            try:
                await client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                await client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))

    run_coro_as_sync(ensure())


def serve_pipeline(config: PipelineConfig) -> None:
    """Block, running scheduled and ad-hoc runs of every deployment; schedules stay active when this stops."""
    ensure_workspace_limit(config)
    serve(*all_deployments(config), pause_on_shutdown=False)

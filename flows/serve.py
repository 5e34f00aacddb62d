"""The pipeline as a Prefect deployment: a cron schedule from config and the config itself as typed parameters."""

from __future__ import annotations

from prefect import serve
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from gristmill.conf.schema import PipelineConfig
from gristmill.flows.pipeline import pipeline


def pipeline_deployment(config: PipelineConfig) -> RunnerDeployment:
    schedules = [Cron(config.schedule.cron, timezone=config.schedule.timezone)] if config.schedule.cron else []
    return pipeline.to_deployment(
        name=config.name,
        schedules=schedules,
        parameters={"config": config.model_dump(mode="json")},
        description=f"gristmill pipeline {config.name!r}: crawl -> dedup -> clean -> tokenize -> train -> evaluate",
        tags=["gristmill"],
    )


def serve_pipeline(config: PipelineConfig) -> None:
    """Block, running scheduled and ad-hoc runs; schedules stay active when this process stops."""
    serve(pipeline_deployment(config), pause_on_shutdown=False)

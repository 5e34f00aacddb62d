"""The chains, each under one MLflow parent run: the whole pipeline, and its two halves for deployments.

- `pipeline`: crawl -> dedup -> clean -> tokenize -> train -> evaluate
- `refresh`: crawl -> dedup -> clean -> tokenize; when it produced new tokens, it starts the `training`
  deployment of the same name (a Prefect run_deployment, so training follows the data, not a second cron guess)
- `training`: train -> evaluate
"""

from __future__ import annotations

import logging

from prefect import flow
from prefect.runtime import flow_run

from gristmill.conf.schema import STAGES, PipelineConfig
from gristmill.flows.common import local_config, resolve_config, tracker_for, workspace_slot
from gristmill.flows.runners import chain_runners
from gristmill.flows.stages import STAGE_FLOWS
from gristmill.tasks.stage import StageSummary
from gristmill.tasks.workspace import hold_workspace, preflight

log = logging.getLogger("gristmill.flows")

DATA_STAGES = ("crawl", "dedup", "clean", "tokenize")
TRAINING_STAGES = ("train", "evaluate")


def run_chain(config: PipelineConfig, stages: tuple[str, ...], name: str) -> list[StageSummary]:
    """Run `stages` in order under one MLflow parent run, holding the workspace: the Prefect slot across
    deployments, and the workspace's own lock for every way in (`gristmill run` holds it already; a scheduled or
    ad-hoc deployment run takes it here, before its MLflow run, so recovering a killed run never touches it)."""
    preflight(local_config(config))  # a missing file, a mistyped source or a seed out of scope fails before any stage
    holder = f"{name} flow run {flow_run.id or ''}"
    # chain_runners: each pool or LocalCluster started once, its warm workers shared by the stages that use it
    with workspace_slot(config), hold_workspace(local_config(config), holder), chain_runners(config, stages):
        return _tracked_chain(config, stages, name)


def _tracked_chain(config: PipelineConfig, stages: tuple[str, ...], name: str) -> list[StageSummary]:
    tracker = tracker_for(config)
    run_id = tracker.start_run(
        name, tags={"gristmill.pipeline": config.name, "prefect.flow_run_id": str(flow_run.id or "")}
    )
    tracker.log_params(run_id, config.model_dump(mode="json"))
    try:
        summaries = [STAGE_FLOWS[stage](config, run_id) for stage in stages]
    except BaseException:
        tracker.end_run(run_id, ok=False)
        raise
    tracker.log_table(run_id, [s.model_dump(mode="json") for s in summaries], "summary.json")
    tracker.log_metrics(run_id, {f"time.{s.stage}_s": s.seconds for s in summaries})
    tracker.end_run(run_id)
    return summaries


@flow(name="pipeline", validate_parameters=False)
def pipeline(config: PipelineConfig, overrides: list[str] | None = None) -> list[StageSummary]:
    """Turn a website into a trained, evaluated and registered language model."""
    config = resolve_config(config, overrides)
    return run_chain(config, STAGES, config.name)


@flow(name="refresh", validate_parameters=False)
def refresh(config: PipelineConfig, overrides: list[str] | None = None) -> list[StageSummary]:
    """Crawl, dedup, clean and tokenize; start the `training/<name>` deployment when the tokens changed."""
    config = resolve_config(config, overrides)
    summaries = run_chain(config, DATA_STAGES, f"{config.name}-refresh")
    trigger_training(config, summaries)
    return summaries


@flow(name="training", validate_parameters=False)
def training(config: PipelineConfig, overrides: list[str] | None = None) -> list[StageSummary]:
    """Train and evaluate on the workspace's current tokens."""
    config = resolve_config(config, overrides)
    return run_chain(config, TRAINING_STAGES, f"{config.name}-training")


def trigger_training(config: PipelineConfig, summaries: list[StageSummary]) -> str | None:
    """Start a run of `training/<name>` with this config if the refresh produced new tokens; its id, or None.

    The run is queued on the server (timeout=0): the serve process that holds the training deployment picks it
    up, and the workspace's concurrency slot makes it wait until this refresh has let go of the workspace."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    if not any(s.stage == "tokenize" and s.status == "ran" for s in summaries):
        log.info("refresh: the tokens are unchanged, training is not started")
        return None
    name = f"training/{config.name}"
    try:
        started = run_deployment(
            name, parameters={"config": config.model_dump(mode="json")}, timeout=0, as_subflow=False
        )
    except ObjectNotFound:
        log.warning("refresh: no deployment %r (serve the config with `gristmill serve`); training not started", name)
        return None
    log.info("refresh: new tokens, started %s (flow run %s)", name, started.id)
    return str(started.id)

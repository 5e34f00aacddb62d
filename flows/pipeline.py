"""The whole chain: crawl -> dedup -> clean -> tokenize -> train -> evaluate, under one MLflow parent run."""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run

from gristmill.conf.schema import PipelineConfig
from gristmill.flows.common import tracker_for
from gristmill.flows.stages import clean_flow, crawl_flow, dedup_flow, evaluate_flow, tokenize_flow, train_flow
from gristmill.tasks.stage import StageSummary, preflight
from gristmill.tasks.workspace import hold_workspace


@flow(name="pipeline")
def pipeline(config: PipelineConfig) -> list[StageSummary]:
    """Turn a website into a trained, evaluated and registered language model."""
    # One run per workspace, also for scheduled and ad-hoc deployment runs (`gristmill run` holds it already).
    with hold_workspace(config, f"pipeline flow run {flow_run.id or ''}"):
        return run_pipeline(config)


def run_pipeline(config: PipelineConfig) -> list[StageSummary]:
    preflight(config)  # a missing file, a mistyped source or a seed out of scope fails before any stage runs
    tracker = tracker_for(config)
    run_id = tracker.start_run(
        config.name, tags={"gristmill.pipeline": config.name, "prefect.flow_run_id": str(flow_run.id or "")}
    )
    tracker.log_params(run_id, config.model_dump(mode="json"))
    try:
        summaries = [
            crawl_flow(config, run_id),
            dedup_flow(config, run_id),
            clean_flow(config, run_id),
            tokenize_flow(config, run_id),
            train_flow(config, run_id),
            evaluate_flow(config, run_id),
        ]
    except BaseException:
        tracker.end_run(run_id, ok=False)
        raise
    tracker.log_table(run_id, [s.model_dump(mode="json") for s in summaries], "summary.json")
    tracker.log_metrics(run_id, {f"time.{s.stage}_s": s.seconds for s in summaries})
    tracker.end_run(run_id)
    return summaries

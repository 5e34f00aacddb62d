"""The whole chain: crawl -> dedup -> clean -> tokenize -> train -> evaluate, under one MLflow parent run."""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run

from gristmill.conf.schema import PipelineConfig
from gristmill.flows.common import tracker_for
from gristmill.flows.stages import stage_flow
from gristmill.tasks.stage import StageSummary


@flow(name="pipeline")
def pipeline(config: PipelineConfig) -> list[StageSummary]:
    """Turn a website into a trained, evaluated and registered language model."""
    tracker = tracker_for(config)
    run_id = tracker.start_run(
        config.name, tags={"gristmill.pipeline": config.name, "prefect.flow_run_id": str(flow_run.id or "")}
    )
    tracker.log_params(run_id, config.model_dump(mode="json"))
    try:
        summaries = [
            stage_flow(config, "crawl")(config, run_id),
            stage_flow(config, "dedup")(config, run_id),
            stage_flow(config, "clean")(config, run_id),
            stage_flow(config, "tokenize")(config, run_id),
            stage_flow(config, "train")(config, run_id),
            stage_flow(config, "evaluate")(config, run_id),
        ]
    except BaseException:
        tracker.end_run(run_id, ok=False)
        raise
    tracker.log_table(run_id, [s.model_dump(mode="json") for s in summaries], "summary.json")
    tracker.log_metrics(run_id, {f"time.{s.stage}_s": s.seconds for s in summaries})
    tracker.end_run(run_id)
    return summaries

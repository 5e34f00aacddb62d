"""One Prefect flow per stage. Each runs on its own against an existing workspace, or inside `pipeline`.

Each stage maps its units on the task runner `config.runner` names for it (`run_stage`). Parameters are not
validated by Prefect but by `resolve_config`, so a deployment run can pass a partial config (merged onto the
deployment's) or dotted `overrides`.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from gristmill.conf.schema import PipelineConfig
from gristmill.flows.common import artifact_key, local_config, resolve_config, run_stage
from gristmill.tasks.clean import stage as clean
from gristmill.tasks.crawl import stage as crawl
from gristmill.tasks.dedup import stage as dedup
from gristmill.tasks.evaluate import stage as evaluate
from gristmill.tasks.stage import StageSummary
from gristmill.tasks.tokenize import stage as tokenize
from gristmill.tasks.train import stage as train


@flow(name="crawl", validate_parameters=False)
def crawl_flow(
    config: PipelineConfig, parent_run_id: str | None = None, overrides: list[str] | None = None
) -> StageSummary:
    """Fetch pages breadth-first from the seeds, respecting robots.txt; extract their main text."""
    return run_stage(resolve_config(config, overrides), "crawl", crawl.run, parent_run_id)


@flow(name="dedup", validate_parameters=False)
def dedup_flow(
    config: PipelineConfig, parent_run_id: str | None = None, overrides: list[str] | None = None
) -> StageSummary:
    """Remove exact and MinHash near-duplicate documents."""
    return run_stage(resolve_config(config, overrides), "dedup", dedup.run, parent_run_id)


@flow(name="clean", validate_parameters=False)
def clean_flow(
    config: PipelineConfig, parent_run_id: str | None = None, overrides: list[str] | None = None
) -> StageSummary:
    """Normalise text and drop documents that fail the quality rules, recording why."""
    return run_stage(resolve_config(config, overrides), "clean", clean.run, parent_run_id)


@flow(name="tokenize", validate_parameters=False)
def tokenize_flow(
    config: PipelineConfig, parent_run_id: str | None = None, overrides: list[str] | None = None
) -> StageSummary:
    """Train a byte-level BPE tokenizer, then encode and pack the corpus into training sequences."""
    return run_stage(resolve_config(config, overrides), "tokenize", tokenize.run, parent_run_id)


@flow(name="train", validate_parameters=False)
def train_flow(
    config: PipelineConfig, parent_run_id: str | None = None, overrides: list[str] | None = None
) -> StageSummary:
    """Train the Llama-style decoder with Lightning; resumes from its last checkpoint."""
    return run_stage(resolve_config(config, overrides), "train", train.run, parent_run_id)


@flow(name="evaluate", validate_parameters=False)
def evaluate_flow(
    config: PipelineConfig, parent_run_id: str | None = None, overrides: list[str] | None = None
) -> StageSummary:
    """Perplexity, generations and the bias benchmarks; export to Hugging Face format and register the model under
    the alias the promotion gate decides."""
    config = resolve_config(config, overrides)
    summary = run_stage(config, "evaluate", evaluate.run, parent_run_id)
    report = Path(local_config(config).workspace) / "evaluate" / "report.json"  # the mirror, for s3:// workspaces
    registry = json.loads(report.read_text()).get("registry")
    if registry:  # the new model beside the current champion, check by check
        create_markdown_artifact(
            markdown=evaluate.gate_markdown(registry["alias"], registry["reasons"], registry["checks"]),
            key=artifact_key(config.name, "evaluate", "gate"),
            description=f"evaluate: registered as {registry['alias']}",
        )
    return summary


STAGE_FLOWS = {
    "crawl": crawl_flow,
    "dedup": dedup_flow,
    "clean": clean_flow,
    "tokenize": tokenize_flow,
    "train": train_flow,
    "evaluate": evaluate_flow,
}

"""One Prefect flow per stage. Each runs on its own against an existing workspace, or inside `pipeline`."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from gristmill.conf.schema import PipelineConfig
from gristmill.flows.common import artifact_key, run_stage
from gristmill.tasks.clean import stage as clean
from gristmill.tasks.crawl import stage as crawl
from gristmill.tasks.dedup import stage as dedup
from gristmill.tasks.evaluate import stage as evaluate
from gristmill.tasks.stage import StageSummary
from gristmill.tasks.tokenize import stage as tokenize
from gristmill.tasks.train import stage as train


@flow(name="crawl")
def crawl_flow(config: PipelineConfig, parent_run_id: str | None = None) -> StageSummary:
    """Fetch pages breadth-first from the seeds, respecting robots.txt; extract their main text."""
    return run_stage(config, "crawl", crawl.run, parent_run_id)


@flow(name="dedup")
def dedup_flow(config: PipelineConfig, parent_run_id: str | None = None) -> StageSummary:
    """Remove exact and MinHash near-duplicate documents."""
    return run_stage(config, "dedup", dedup.run, parent_run_id)


@flow(name="clean")
def clean_flow(config: PipelineConfig, parent_run_id: str | None = None) -> StageSummary:
    """Normalise text and drop documents that fail the quality rules, recording why."""
    return run_stage(config, "clean", clean.run, parent_run_id)


@flow(name="tokenize")
def tokenize_flow(config: PipelineConfig, parent_run_id: str | None = None) -> StageSummary:
    """Train a byte-level BPE tokenizer, then encode and pack the corpus into training sequences."""
    return run_stage(config, "tokenize", tokenize.run, parent_run_id)


@flow(name="train")
def train_flow(config: PipelineConfig, parent_run_id: str | None = None) -> StageSummary:
    """Train the Llama-style decoder with Lightning; resumes from its last checkpoint."""
    return run_stage(config, "train", train.run, parent_run_id)


@flow(name="evaluate")
def evaluate_flow(config: PipelineConfig, parent_run_id: str | None = None) -> StageSummary:
    """Perplexity, generations and the bias benchmarks; export to Hugging Face format and register the model under
    the alias the promotion gate decides."""
    summary = run_stage(config, "evaluate", evaluate.run, parent_run_id)
    registry = json.loads((Path(config.workspace) / "evaluate" / "report.json").read_text()).get("registry")
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

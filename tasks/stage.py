"""Running one stage: skip it when up to date, resume its finished units, commit its manifest, track it.

A stage is a function `run(ctx: StageContext) -> StageResult` in `tasks/<stage>/`. It does its work in units
(usually one per input shard) through `ctx.unit(...)`, so a rerun after a crash redoes only the unfinished ones,
and it maps units over `ctx.map`, which the flows bind to Prefect's task runner (and tests to a plain loop).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

from gristmill.conf.schema import STAGES, PipelineConfig, Section
from gristmill.tasks.shards import Manifest, StageOutput, UnitRecord
from gristmill.tasks.tracking import Tracker, TrackingUnavailable

log = logging.getLogger("gristmill.stage")

T = TypeVar("T")
Mapper = Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]
Publisher = Callable[[str, list[dict[str, Any]]], None]  # (table name, rows): the flows bind it to Prefect
ProgressPublisher = Callable[[str, float, str], None]  # (name, fraction done, description): a Prefect artifact

UPSTREAM: dict[str, str | None] = {stage: (STAGES[i - 1] if i else None) for i, stage in enumerate(STAGES)}
# Stages whose units say what they read (`ctx.unit(..., inputs=...)`): new input redoes only the units whose input
# changed. The others redo everything when their input changes.
INCREMENTAL = frozenset({"crawl", "dedup", "clean", "tokenize"})


def serial_map(fn: Callable[[Any], T], items: Sequence[Any]) -> list[T]:
    return [fn(item) for item in items]


def sum_stats(many: Iterable[Mapping[str, Any]], skip: Collection[str] = ()) -> dict[str, Any]:
    """Units' counters added up, nested dicts key by key, so that per-shard counts give the stage's totals (and a
    resumed stage's reused units count as before). Top-level keys in `skip` and values that are not numbers
    (samples, warnings: reported, not summed) are left out."""
    total: dict[str, Any] = {}
    for stats in many:
        _add_counts(total, {key: value for key, value in stats.items() if key not in skip})
    return total


def _add_counts(total: dict[str, Any], part: Mapping[str, Any]) -> None:
    for key, value in part.items():
        if isinstance(value, Mapping):
            _add_counts(total.setdefault(key, {}), value)
        elif isinstance(value, int | float):
            total[key] = total.get(key, 0) + value


@dataclass
class StageContext:
    config: PipelineConfig
    output: StageOutput
    upstream: StageOutput | None
    tracker: Tracker | None = None
    run_id: str | None = None  # this stage's MLflow child run
    parent_run_id: str | None = None  # the pipeline's MLflow run
    map: Mapper = serial_map
    publish: Publisher | None = None
    publish_progress: ProgressPublisher | None = None
    input_hash: str | None = None  # the stage's whole input: what a unit that names no inputs depends on

    def __getstate__(self) -> dict[str, Any]:
        """What a unit shipped to another process (a process pool, a Dask worker) takes along: the config and the
        stage's outputs, not the MLflow client, the Prefect publishers or the mapper, which stay with the flow."""
        state = dict(self.__dict__)
        state.update(tracker=None, map=serial_map, publish=None, publish_progress=None)
        return state

    def table(self, name: str, rows: list[dict[str, Any]]) -> None:
        """A table for people to read: an MLflow table artifact `<name>.json` and, under Prefect, a table
        artifact in the flow run. The one way stages report tables."""
        if self.tracker and self.run_id and rows:
            self.tracker.log_table(self.run_id, rows, f"{name}.json")
        if self.publish and rows:
            self.publish(name, rows)

    def progress(self, name: str, fraction: float, description: str) -> None:
        """How far a long unit has got (0..1); under Prefect, a progress artifact in the flow run."""
        if self.publish_progress:
            self.publish_progress(name, fraction, description)

    @property
    def workspace(self) -> Path:
        return Path(self.config.workspace)

    def unit(self, name: str, work: Callable[[], UnitRecord], inputs: str | None = None) -> UnitRecord:
        """Run one unit of work unless an earlier run of this stage already finished it on the same inputs.

        `inputs` is a digest of what the unit reads (an input shard's checksum, a file's digest); without it the
        unit depends on the stage's whole input."""
        inputs = inputs or self.input_hash
        done = self.output.finished_unit(name, inputs)
        if done is not None:
            log.info("%s: unit %s already done, reusing it", self.output.stage, name)
            return done
        record = work()
        record.inputs = inputs
        return self.output.finish_unit(record)

    def shard_digest(self, path: Path) -> str:
        """The recorded checksum of one of the upstream's shards: the `inputs` of a unit that reads only it."""
        assert self.upstream is not None, f"stage {self.output.stage} has no upstream"
        return self.upstream.shard_checksum(path)

    def input_paths(self, dataset: str = "documents") -> list[Path]:
        assert self.upstream is not None, f"stage {self.output.stage} has no upstream"
        return self.upstream.shard_paths(dataset)


@dataclass
class StageResult:
    units: list[UnitRecord]
    count_in: int
    unit_in: str
    count_out: int
    unit_out: str
    stats: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)


class StageSummary(BaseModel):
    """One line of the pipeline's summary table, the same for every stage."""

    stage: str
    status: Literal["ran", "up to date"]
    count_in: int
    unit_in: str
    count_out: int
    unit_out: str
    seconds: float
    mlflow_run_id: str | None
    manifest: str
    warnings: list[str] = []  # what a person should look at (e.g. the clean audit's disparities)

    @classmethod
    def from_manifest(cls, manifest: Manifest, status: str, seconds: float, path: Path, run_id: str | None):
        s = manifest.stats
        return cls(
            stage=manifest.stage,
            status=status,
            count_in=int(s.get("in", 0)),
            unit_in=str(s.get("unit_in", "")),
            count_out=int(s.get("out", 0)),
            unit_out=str(s.get("unit_out", "")),
            seconds=round(seconds, 2),
            mlflow_run_id=run_id,
            manifest=str(path),
            warnings=[str(w) for w in s.get("warnings", [])],
        )


def incremental(config: PipelineConfig, stage: str) -> bool:
    """Whether new input keeps the stage's earlier work: training does under `train.mode: continue` (its last
    model is where the next generation's training starts)."""
    return stage in INCREMENTAL or (stage == "train" and config.train.mode == "continue")


def corpus_generations(workspace: str | Path) -> list[int]:
    """The crawl generations the corpus is made of now (what a model trained on it has seen), oldest first."""
    manifest = StageOutput(workspace, "crawl").read_manifest()
    return [g.number for g in manifest.generations] if manifest else []


def stage_fingerprint(config: PipelineConfig, stage: str) -> str:
    """The config half of a stage's key: its produced settings (runtime ones left out) and the contents of every
    file they name. Raises ConfigError for a missing file, before any output is touched."""
    section: Section = config.section(stage)
    return section.fingerprint(f"{stage}.")


def stage_input_hash(config: PipelineConfig, stage: str) -> str | None:
    """The input half of a stage's key: the upstream's content digest; for crawl, the digest of every source file
    (size, mtime and content). Raises (naming the stage or source) when an input is missing."""
    upstream_name = UPSTREAM[stage]
    if upstream_name == "dedup":  # clean also applies the pages refreshes found removed (tasks/removals.py)
        return _with_removals(StageOutput(config.workspace, upstream_name).input_hash(), config.workspace)
    if upstream_name:
        return StageOutput(config.workspace, upstream_name).input_hash()
    from gristmill.tasks.crawl.inputs import input_digest  # crawl's inputs are files and sites, not a stage

    return input_digest(config)


def _with_removals(upstream_digest: str, workspace: str | Path) -> str:
    """A refresh that only removed pages leaves dedup's output as it was: the removals are clean's input too. With
    none, the key is the upstream's digest alone (as before removals were tracked)."""
    from gristmill.tasks.removals import Removals

    removals = Removals.of_crawl(workspace)
    if not removals:
        return upstream_digest
    return hashlib.sha256(f"{upstream_digest} {removals.digest()}".encode()).hexdigest()[:16]


def execute(
    config: PipelineConfig,
    stage: str,
    run: Callable[[StageContext], StageResult],
    tracker: Tracker | None = None,
    parent_run_id: str | None = None,
    mapper: Mapper = serial_map,
    publish: Publisher | None = None,
    publish_progress: ProgressPublisher | None = None,
) -> StageSummary:
    """Run `stage` (or report it up to date) and return its summary; on failure the finished units stay."""
    started = time.perf_counter()
    output = StageOutput(config.workspace, stage)
    upstream_name = UPSTREAM[stage]
    upstream = StageOutput(config.workspace, upstream_name) if upstream_name else None
    # Both halves of the key are computed, and so every input checked, before anything is written or deleted.
    input_hash = stage_input_hash(config, stage)  # fails clearly if the upstream never ran
    config_hash = stage_fingerprint(config, stage)

    run_id = None
    if tracker:
        run_id = tracker.start_run(stage, parent_run_id, tags={"gristmill.stage": stage})
        tracker.log_params(run_id, {stage: config.section(stage).model_dump(mode="json")})
    try:
        manifest = output.up_to_date(config_hash, input_hash)
        status = "up to date" if manifest else "ran"
        if manifest is None:
            output.begin(config_hash, input_hash, incremental=incremental(config, stage))
            ctx = StageContext(
                config, output, upstream, tracker, run_id, parent_run_id, mapper, publish, publish_progress, input_hash
            )
            result = run(ctx)
            stats = {
                "in": result.count_in,
                "unit_in": result.unit_in,
                "out": result.count_out,
                "unit_out": result.unit_out,
                **result.stats,
            }
            manifest = output.commit(
                config_hash, input_hash, result.units, stats, files=result.files, mlflow_run_id=run_id
            )
        log.info("%s: %s", stage, status)
        if tracker and run_id:
            _track(tracker, run_id, manifest, status, output)
            if upstream and input_hash:
                tracker.log_dataset_input(run_id, upstream.stage, input_hash, upstream.manifest_path)
    except BaseException:
        if tracker and run_id:
            with contextlib.suppress(TrackingUnavailable):  # the error that stopped the stage matters more
                tracker.end_run(run_id, ok=False)
        raise
    if tracker and run_id:
        tracker.end_run(run_id)
    summary = StageSummary.from_manifest(manifest, status, time.perf_counter() - started, output.manifest_path, run_id)
    summary.warnings[:0] = [f"damaged shard written again: {damage}" for damage in output.damaged]
    return summary


def _track(tracker: Tracker, run_id: str, manifest: Manifest, status: str, output: StageOutput) -> None:
    tracker.set_tags(
        run_id,
        {
            "gristmill.status": status,
            "gristmill.produced_by_run": manifest.mlflow_run_id or "",
            "gristmill.code_version": manifest.code_version,
        },
    )
    tracker.log_metrics(
        run_id,
        {
            **manifest.stats,
            "rows": manifest.rows,
            "bytes": manifest.bytes,
            "shards": sum(len(s) for s in manifest.shards.values()),
            "time": manifest.timings,
        },
    )
    tracker.log_artifact(run_id, output.manifest_path)

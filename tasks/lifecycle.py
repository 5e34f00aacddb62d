"""A workspace over time: what its runs made (`history`) and what can go (`collect_garbage`).

`history` reads the crawl manifest's corpus generations (pages from their fetch logs), the MLflow stage runs and the
registered model versions. `collect_garbage` removes what no later run and no registered model needs: training
checkpoints of generations older than the newest `keep` (a registered version's weights live in MLflow, not in the
checkpoints), intermediate data of those generations (crawl raw shards and WARC files, dedup signatures: dropped
from their manifest, whose digest stays; the documents extracted from raw shards stay, and signatures are
recomputed if a later run needs them), and files in a finished stage's directory that its manifest no longer lists
(shards of units a refresh rewrote, progress records of units that are gone, temporary files of killed writes).
Every stage stays up to date, and a later refresh works on what is left.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from gristmill.conf.schema import STAGES, ConfigError, PipelineConfig
from gristmill.tasks.shards import MANIFEST_NAME, PROGRESS_DIR, Generation, StageOutput, iter_batches
from gristmill.tasks.tracking import Tracker

CHECKPOINTS = ("train", "checkpoints")
# Shards of old generations that no later stage reads and no registered model needs (a version's weights live in
# MLflow; the corpus it was trained on, documents, cleaned text and tokens, is kept): crawl's raw records (the
# documents extracted from them stay, their units keep them as `collected`) and dedup's signatures (recomputed if a
# later run needs them). The crawl's fetch logs stay: they are small, and they record the removed pages.
INTERMEDIATE = {"crawl": "raw", "dedup": "signatures"}
KEPT_BY_UNITS = {"crawl"}
WARC_DIR = "warc"
KEPT_DIRS = {"crawl": {"state", "warc"}, "train": {"checkpoints", "final"}, "evaluate": {"export"}}

STAGE_ORDER = {stage: i for i, stage in enumerate(STAGES)}  # tables list stages in pipeline order


def history(config: PipelineConfig) -> dict[str, list[dict[str, Any]]]:
    """Three tables: corpus generations, stage runs, model versions (each oldest first)."""
    crawl = StageOutput(config.workspace, "crawl").read_manifest()
    generations = [
        {
            "generation": g.number,
            "created": g.created_at[:19],
            "documents": sum(s.rows for s in g.shards.get("documents", [])),
            "pages_fetched": pages_stored(StageOutput(config.workspace, "crawl"), g),
        }
        for g in (crawl.generations if crawl else [])
    ]
    tracker = Tracker(config.workspace, config.tracking.uri, config.tracking.experiment)
    return {
        "generations": generations,
        "runs": pipeline_runs(tracker.stage_runs()),
        "models": tracker.model_versions(config.tracking.registered_model),
    }


def pages_stored(crawl: StageOutput, generation: Generation) -> int:
    """Pages a crawl generation stored, from its fetch log (which gc keeps; its raw shards may be gone)."""
    paths = [crawl.dataset_dir("fetches") / s.name for s in generation.shards.get("fetches", [])]
    return sum(pc.sum(pc.equal(b.column("outcome"), "stored")).as_py() or 0 for b in iter_batches(paths, ["outcome"]))


def pipeline_runs(stage_runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per pipeline run: when it started and which stages ran (the others were up to date)."""
    runs: dict[str, dict[str, Any]] = {}
    for stage_run in stage_runs:
        row = runs.setdefault(
            stage_run["pipeline_run"],
            {"pipeline_run": stage_run["pipeline_run"][:12], "started": stage_run["started"], "ran": []},
        )
        if stage_run["status"] != "up to date":
            row["ran"].append(stage_run["stage"] if stage_run["status"] == "ran" else f"{stage_run['stage']} (failed)")
    for row in runs.values():
        row["ran"].sort(key=lambda name: STAGE_ORDER.get(name.split()[0], len(STAGE_ORDER)))
    return [{**row, "ran": ", ".join(row["ran"]) or "nothing (all up to date)"} for row in runs.values()]


@dataclass
class Freed:
    path: Path
    bytes: int
    why: str
    files: int = 1  # a directory (a continued training's checkpoints) counts its files

    def stage(self, workspace: str | Path) -> str:
        return self.path.relative_to(Path(workspace)).parts[0]


def collect_garbage(config: PipelineConfig, keep: int, dry_run: bool = False) -> list[Freed]:
    """Remove old checkpoints (all but the newest `keep` generations'), old generations' intermediate shards and
    raw responses, and files no manifest lists; return what was (or, with `dry_run`, would be) freed."""
    if keep < 1:
        raise ConfigError(
            f"--keep must be at least 1 (the newest generation's checkpoint continues training); got {keep}"
        )
    freed = old_checkpoints(Path(config.workspace).joinpath(*CHECKPOINTS), keep)
    for stage in STAGES:
        freed += unlisted_files(StageOutput(config.workspace, stage))
    intermediate = {stage: old_intermediate(StageOutput(config.workspace, stage), keep) for stage in INTERMEDIATE}
    crawl = StageOutput(config.workspace, "crawl")
    warc = old_warc(crawl, keep)
    if not dry_run:
        for item in [*freed, *warc]:
            shutil.rmtree(item.path) if item.path.is_dir() else item.path.unlink()
        crawl.forget_files({str(item.path.relative_to(crawl.path)) for item in warc})
        for stage, items in intermediate.items():
            for item in items:
                item.path.unlink()
            output, names = StageOutput(config.workspace, stage), {i.path.name for i in items}
            output.forget_shards(INTERMEDIATE[stage], names)
            if stage in KEPT_BY_UNITS:
                output.collect_shards(INTERMEDIATE[stage], names)
    return freed + warc + [item for items in intermediate.values() for item in items]


def freed_by_stage(freed: list[Freed], workspace: str | Path) -> list[dict[str, Any]]:
    """What gc freed, per stage: files and bytes."""
    totals: dict[str, dict[str, Any]] = {}
    for item in freed:
        stage = item.stage(workspace)
        row = totals.setdefault(stage, {"stage": stage, "files": 0, "bytes": 0})
        row["files"] += item.files
        row["bytes"] += item.bytes
    return sorted(totals.values(), key=lambda row: STAGE_ORDER.get(row["stage"], len(STAGE_ORDER)))


def old_intermediate(output: StageOutput, keep: int) -> list[Freed]:
    """The stage's intermediate shards (crawl's raw records, dedup signatures) of all but its newest `keep`
    generations."""
    manifest = output.read_manifest()
    if manifest is None:
        return []
    dataset = INTERMEDIATE[output.stage]
    old = manifest.generations[:-keep]
    return [
        Freed(output.dataset_dir(dataset) / s.name, s.bytes, f"{output.stage} {dataset} of generation {g.number}")
        for g in old
        for s in g.shards.get(dataset, [])
        if (output.dataset_dir(dataset) / s.name).is_file()
    ]


def old_warc(crawl: StageOutput, keep: int) -> list[Freed]:
    """The crawl's WARC files (raw responses, one per crawl session) written before its newest `keep` generations:
    a session's file is last written before the manifest that adds its generation."""
    manifest = crawl.read_manifest()
    if manifest is None or len(manifest.generations) <= keep:
        return []
    cutoff = datetime.fromisoformat(manifest.generations[-keep - 1].created_at).timestamp()
    listed = [crawl.path / rel for rel in manifest.files.values() if rel.startswith(f"{WARC_DIR}/")]
    return [
        Freed(path, path.stat().st_size, "crawl raw responses (WARC) of an old generation")
        for path in sorted(listed)
        if path.is_file() and path.stat().st_mtime <= cutoff
    ]


def old_checkpoints(directory: Path, keep: int) -> list[Freed]:
    """Checkpoint files of the first training (`checkpoints/*.ckpt`) and directories of continued trainings
    (`checkpoints/g<N>/`), all but the newest `keep`."""
    if not directory.is_dir():
        return []
    first = sorted(directory.glob("*.ckpt"))
    generations: list[tuple[int, list[Path]]] = [(0, first)] if first else []
    for sub in sorted(directory.glob("g[0-9][0-9][0-9]")):
        generations.append((int(sub.name[1:]), [sub]))
    generations.sort()
    old = generations[:-keep] if len(generations) > keep else []
    return [Freed(p, size(p), f"checkpoint of generation {number}", files(p)) for number, paths in old for p in paths]


def unlisted_files(output: StageOutput) -> list[Freed]:
    """Files of a finished stage that its manifest does not list (only in the directories its datasets use)."""
    manifest = output.read_manifest()
    if manifest is None:  # unfinished: its files may be a run in progress
        return []
    listed = {output.dataset_dir(d) / s.name for d, infos in manifest.shards.items() for s in infos}
    listed |= {output.path / rel for rel in manifest.files.values()}
    freed = []
    for directory in sorted(p for p in output.path.iterdir() if p.is_dir()):
        if directory.name in KEPT_DIRS.get(output.stage, set()) or directory.name == PROGRESS_DIR:
            continue
        for path in sorted(directory.rglob("*")):
            if path.is_file() and path not in listed and not listed.intersection(path.parents):
                freed.append(Freed(path, path.stat().st_size, f"{output.stage}: not in its manifest"))
    recorded = {r.unit for r in output.units()}
    units = {r.unit for r in output.units() if _listed(output, r, listed)}
    for unit in sorted(recorded - units):
        path = output.path / PROGRESS_DIR / f"{unit}.json"
        freed.append(Freed(path, path.stat().st_size, f"{output.stage}: progress of a unit no longer listed"))
    return [f for f in freed if f.path.name != MANIFEST_NAME]


def _listed(output: StageOutput, record: Any, listed: set[Path]) -> bool:
    shards = [output.dataset_dir(d) / s.name for d, infos in record.shards.items() for s in infos]
    return not shards or all(path in listed for path in shards)


def files(path: Path) -> int:
    return sum(1 for p in path.rglob("*") if p.is_file()) if path.is_dir() else 1


def size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())

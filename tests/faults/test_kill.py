"""SIGKILL anywhere, run again, and the result is the uninterrupted run's, byte for byte.

A child process runs one stage with the stdlib's `os.replace` - the commit point of every shard, progress record and
manifest write - wrapped to SIGKILL itself just before or just after its K-th rename inside the workspace, K drawn
from a seeded generator over the renames an uninterrupted run makes. The rerun (a fresh process, as after a real
kill) must leave the same shards (names, rows, sha256) and stats as a run that was never interrupted, and no
temporary file. The default suite kills one stage once; the other stages and points run as `slow`.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gristmill.conf.schema import PipelineConfig, validate_config
from gristmill.tasks.shards import StageOutput
from gristmill.tasks.workspace import TEMPORARY_FILE

CHAIN = ("crawl", "dedup", "clean", "tokenize")
MEASURED = ("_s", "_ms", "_mb", "per_s")  # stats that measure the run (time, memory), not its result

CHILD = """
import os, signal, sys
from gristmill.conf.schema import PipelineConfig
from gristmill.tasks.stage import execute
from gristmill.tasks.workspace import hold_workspace

config = PipelineConfig.model_validate_json(sys.argv[1])
stages, kill_at, when = sys.argv[2].split(","), int(sys.argv[3]), sys.argv[4]
workspace = os.path.realpath(config.workspace) + os.sep
real_replace, renames = os.replace, 0

def replace(src, dst, *args, **kwargs):
    global renames
    ours = os.path.realpath(dst).startswith(workspace)
    renames += ours
    if ours and renames == kill_at and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst, *args, **kwargs)
    if ours and renames == kill_at and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)

os.replace = replace
from importlib import import_module
with hold_workspace(config, "fault injection"):
    for stage in stages:
        module = import_module(f"gristmill.tasks.{stage}.stage")
        execute(config, stage, module.run)
        print(stage, renames, flush=True)
"""


def run_child(config: PipelineConfig, stages: list[str], kill_at: int = 0, when: str = "after") -> dict[str, int]:
    """Run stages in a fresh process; return the renames counted after each (empty when it was killed).

    A resumed run renames less than a fresh one: a kill point past its end lets it finish (counts returned)."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, config.model_dump_json(), ",".join(stages), str(kill_at), when],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if kill_at and done.returncode == -signal.SIGKILL:
        return {}
    assert done.returncode == 0, done.stderr[-3000:]
    counts = dict(line.split() for line in done.stdout.split("\n") if line)
    return {stage: int(n) for stage, n in counts.items()}


def outcome(workspace: str, stage: str) -> dict[str, Any]:
    """What must not depend on an interruption: the shards (name, rows, checksum), rows and stats."""
    manifest = StageOutput(workspace, stage).read_manifest()
    assert manifest is not None, f"{stage} did not finish"
    shards = {dataset: [(s.name, s.rows, s.sha256) for s in infos] for dataset, infos in manifest.shards.items()}
    stats = {k: v for k, v in manifest.stats.items() if not k.endswith(MEASURED)}
    return {"shards": shards, "rows": manifest.rows, "stats": stats, "files": manifest.files}


def corpus_config(workspace: Path, corpus: Path) -> PipelineConfig:
    return validate_config(
        {
            "workspace": str(workspace),
            "crawl": {
                "sources": [{"path": str(corpus)}],
                "shard_rows": 25,
                "progress_bar": False,
                "extract_workers": 1,
            },
            "clean": {"min_words": 20, "language": {"enabled": False}, "audit": {"enabled": False}},
            "tokenize": {"vocab_size": 400, "seq_len": 32, "val_fraction": 0.2},
        }
    )


class Reference:
    """The uninterrupted run over 100 real short texts, made as far as a test needs it, and each stage's renames."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.renames: dict[str, int] = {}

    def through(self, stage: str) -> Reference:
        todo = [s for s in CHAIN[: CHAIN.index(stage) + 1] if s not in self.renames]
        counts = run_child(self.config, todo) if todo else {}
        for i, name in enumerate(todo):
            self.renames[name] = counts[name] - (counts[todo[i - 1]] if i else 0)
        return self


@pytest.fixture(scope="module")
def reference(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    corpus = shared_data / "neardup" / "clough_stevenson_2009" / "corpus-20090418"
    return Reference(corpus_config(tmp_path_factory.mktemp("reference") / "ws", corpus))


def kill_points(stage: str, renames: int, seed: int, n: int = 2) -> list[tuple[int, str]]:
    rng = random.Random(f"{stage}-{seed}")
    return [(rng.randint(1, renames), rng.choice(["before", "after"])) for _ in range(n)]


def check_kill_and_rerun(reference: Reference, tmp_path: Path, stage: str, seed: int) -> None:
    renames = reference.through(stage).renames
    ref_config = reference.config
    config = ref_config.model_copy(update={"workspace": str(tmp_path / "ws")})
    for upstream in CHAIN[: CHAIN.index(stage)]:  # the same input, byte for byte
        shutil.copytree(Path(ref_config.workspace) / upstream, Path(config.workspace) / upstream)
    first, *more = kill_points(stage, renames[stage], seed)
    assert run_child(config, [stage], *first) == {}, f"not killed at {first}"  # a fresh run always reaches it
    for kill_at, when in more:  # each a kill of the resumed run, or (past its end) a finished one
        run_child(config, [stage], kill_at, when)
    run_child(config, [stage])
    assert outcome(config.workspace, stage) == outcome(ref_config.workspace, stage)
    leftovers = [p for p in Path(config.workspace).rglob("*") if TEMPORARY_FILE.match(p.name)]
    assert leftovers == []


def test_a_killed_dedup_reruns_to_the_same_result(reference, tmp_path):
    check_kill_and_rerun(reference, tmp_path, "dedup", seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("stage", CHAIN)
@pytest.mark.parametrize("seed", [1, 2])
def test_every_stage_killed_at_seeded_points_reruns_to_the_same_result(reference, tmp_path, stage, seed):
    check_kill_and_rerun(reference, tmp_path, stage, seed)


def test_kill_points_are_seeded_and_bounded():
    assert kill_points("dedup", 7, 0) == kill_points("dedup", 7, 0)
    assert all(1 <= k <= 7 and when in ("before", "after") for k, when in kill_points("clean", 7, 3, n=50))
    assert json.dumps(kill_points("dedup", 7, 0))  # printable in a failure message

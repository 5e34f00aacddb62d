"""The clean stage as a Prefect flow on each task runner (threads, a process pool, a Dask LocalCluster), same input.

    .venv/bin/python benchmarks/clean_corpus.py --out /tmp/bench/clean_docs.jsonl --docs 7200
    .venv/bin/python benchmarks/runner_speed.py /tmp/bench/clean_docs.jsonl --shards 24 --workers 2 --rounds 5 \
        --kinds threads,processes,dask,processes:warm
    .venv/bin/python benchmarks/runner_speed.py /tmp/bench/clean_docs.jsonl --shards 24 --workers 2 --plain

Each round runs the runners one after another into fresh workspaces, in an order rotated every round (so load
from other processes, and whatever the first run of a round pays, hits them alike). The time is the whole flow
call: pool or cluster start (worker processes import Prefect and gristmill), units, manifest, MLflow logging.
Outside the clock: the MLflow store of each workspace, and a warm-up clean flow on threads (the Prefect API's
ephemeral server, imports and models of this process: what a `gristmill run` has by its clean stage). Without the
warm-up the first runner measured pays the Prefect server's start (10-20 s), which made single rounds disagree.

Each run is split, from Prefect's own task-run records, into start-up (flow call to the first unit's start: the
pool or cluster), units (first unit start to last unit end: the throughput part) and after (last unit end to the
flow's return: totals, audit, figures, manifest, MLflow, shutting the pool or cluster down). Prints per round,
then per runner the median wall time, the speed-up over threads (median of the per-round ratios, their spread,
and the ratio of the medians), the same for the units phase alone, and the load average at start and end.

`--plain` is the ceiling without Prefect: the clean stage's unit function (`clean_shard`) on the same shards, one
after another in this process, then on a plain `concurrent.futures` pool of spawned processes, interleaved; it
prints the wall time and the sum of the units' own times, so a machine that cannot give two cores shows it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="runner-bench-prefect-"))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from gristmill.conf.schema import PipelineConfig, load_config  # noqa: E402
from gristmill.tasks.crawl.records import doc_id  # noqa: E402
from gristmill.tasks.documents import DOCUMENT_SCHEMA  # noqa: E402
from gristmill.tasks.shards import StageOutput, UnitRecord, write_shard  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "conf" / "demo.yaml"
KINDS = ("threads", "processes", "dask")
WARM_UP_DOCS: list[dict] = []


def write_dedup_stage(workspace: Path, docs: list[dict], shards: int) -> None:
    """The clean stage's input: a finished dedup stage holding the documents in `shards` shards."""
    out = StageOutput(workspace, "dedup")
    out.begin("bench", None)
    units = []
    for index in range(shards):
        rows = [_document(d) for d in docs[index::shards]]
        path = out.dataset_dir("documents") / f"part-{index:05d}.parquet"
        info = write_shard(path, pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA), DOCUMENT_SCHEMA)
        units.append(out.finish_unit(UnitRecord(unit=f"part-{index:05d}", shards={"documents": [info]})))
    out.commit("bench", None, units, stats={"in": len(docs), "out": len(docs)})


def _document(d: dict) -> dict:
    url = f"{d['url'] or 'https://bench.example/'}#{d['id']}"  # replicated documents: distinct ids
    return {
        "doc_id": doc_id(url),
        "url": url,
        "fetched_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        "status": 200,
        "content_type": "text/html",
        "title": d["id"],
        "text": d["text"],
        "raw_bytes": len(d["text"]),
    }


@dataclass
class Timing:
    """One flow call, split at its first unit's start and its last unit's end (Prefect's task-run records)."""

    wall: float
    startup: float
    units: float
    after: float
    cpu: float  # CPU seconds of this process and of the worker processes (and what they started) it closed


def run_clean(workspace: Path, kind: str, workers: int) -> Timing:
    """`kind` is a runner kind, or `processes:warm` / `dask:warm`: the stage as a chain runs it after an earlier
    stage on the same runner (`chain_runners`), its workers started and warm before the clock starts."""
    from gristmill.flows.common import tracker_for
    from gristmill.flows.stages import STAGE_FLOWS

    runner, _, warm = kind.partition(":")
    config = load_config(DEMO, [f"workspace={workspace}", f"runner.kind={runner}", f"runner.workers={workers}"])
    tracker_for(config)  # create the MLflow store first: its sqlite migrations are not the clean stage's time
    with contextlib.ExitStack() as stack:
        if warm:
            from gristmill.flows.runners import chain_runners

            stack.enter_context(chain_runners(config, ["clean"]))
            warm_up(config, workspace.with_name(f"{workspace.name}-warm"))
        called, cpu = time.time(), cpu_seconds()
        state = STAGE_FLOWS["clean"](config, return_state=True)
        returned = time.time()
    cpu = cpu_seconds() - cpu  # after the pool or cluster closed: its workers' time counts
    assert state.is_completed() and state.result().status == "ran", state
    first_start, last_end = unit_span(state.state_details.flow_run_id)
    return Timing(returned - called, first_start - called, last_end - first_start, returned - last_end, cpu)


def cpu_seconds() -> float:
    """User and system time of this process and of its children that ended. The Prefect API's ephemeral server, a
    child that runs on, is not in it."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def unit_span(flow_run_id: UUID) -> tuple[float, float]:
    """When the flow run's first unit started and its last one ended (epoch seconds, the API's records)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return min(r.start_time.timestamp() for r in runs), max(r.end_time.timestamp() for r in runs)


def warm_up(config: PipelineConfig, workspace: Path) -> None:
    """A small clean flow outside the clock, with `config`'s runner: it starts the Prefect API's ephemeral server
    and loads what the process (and, in a chain, its workers) keep: imports, models."""
    from gristmill.flows.stages import STAGE_FLOWS

    write_dedup_stage(workspace, WARM_UP_DOCS, 2)
    STAGE_FLOWS["clean"](config.model_copy(update={"workspace": str(workspace)}))


def kept_rows(workspace: Path) -> list[dict]:
    paths = sorted((workspace / "clean" / "documents").glob("*.parquet"))
    return [row for path in paths for row in pq.read_table(path).to_pylist()]


def plain_unit(args: tuple[str, str]) -> float:
    """One clean unit outside Prefect (module level: a spawned pool pickles it by name)."""
    from gristmill.tasks.clean.stage import clean_shard
    from gristmill.tasks.stage import StageContext

    workspace, path = args
    config = load_config(DEMO, [f"workspace={workspace}"])
    ctx = StageContext(config, StageOutput(workspace, "clean"), StageOutput(workspace, "dedup"))
    started = time.perf_counter()
    clean_shard(ctx, Path(path))
    return time.perf_counter() - started


def plain(docs: list[dict], shards: int, workers: int, rounds: int) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with tempfile.TemporaryDirectory(prefix="runner-bench-plain-") as tmp:
        for round_ in range(rounds):
            for mode in ("serial", "pool"):
                workspace = Path(tmp) / f"{mode}-{round_}"
                write_dedup_stage(workspace, docs, shards)
                items = [(str(workspace), str(p)) for p in sorted((workspace / "dedup" / "documents").glob("*"))]
                started = time.perf_counter()
                if mode == "serial":
                    per_unit = [plain_unit(item) for item in items]
                else:
                    spawn = multiprocessing.get_context("spawn")
                    with ProcessPoolExecutor(workers, mp_context=spawn) as pool:
                        per_unit = list(pool.map(plain_unit, items))
                wall = time.perf_counter() - started
                print(f"round {round_ + 1} {mode:6s} wall {wall:6.1f} s, units' own time {sum(per_unit):6.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("docs", type=Path)
    parser.add_argument("--shards", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--kinds",
        default=",".join(KINDS),
        help="runners to compare, threads the baseline; processes:warm, dask:warm: a chain's later stage",
    )
    parser.add_argument("--plain", action="store_true", help="clean_shard serially vs a plain process pool")
    args = parser.parse_args()
    docs = [json.loads(line) for line in args.docs.read_text().splitlines()]
    load_start = os.getloadavg()
    print(f"load average at start (1/5/15 min): {_load(load_start)}; {os.cpu_count()} cores", flush=True)
    if args.plain:
        plain(docs, args.shards, args.workers, args.rounds)
        print(f"load average at end: {_load(os.getloadavg())}")
        return
    kinds = ["threads", *(k for k in args.kinds.split(",") if k != "threads")]
    WARM_UP_DOCS[:] = docs[:40]
    with tempfile.TemporaryDirectory(prefix="runner-bench-warm-") as tmp:
        warm_up(load_config(DEMO, [f"workspace={tmp}"]), Path(tmp) / "warm")
    timings: dict[str, list[Timing]] = {kind: [] for kind in kinds}
    outputs: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="runner-bench-") as tmp:
        for round_ in range(args.rounds):
            order = kinds[round_ % len(kinds) :] + kinds[: round_ % len(kinds)]
            for kind in order:
                workspace = Path(tmp) / f"{kind}-{round_}"
                write_dedup_stage(workspace, docs, args.shards)
                t = run_clean(workspace, kind, args.workers)
                timings[kind].append(t)
                outputs.setdefault(kind, kept_rows(workspace))
                shutil.rmtree(workspace)
                print(
                    f"round {round_ + 1} {kind:14s} wall {t.wall:6.1f} s = start-up {t.startup:5.1f} + units "
                    f"{t.units:6.1f} + after {t.after:5.1f}; CPU {t.cpu:6.1f} s  (load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
    same = all(outputs[kind] == outputs["threads"] for kind in kinds)
    print(f"\n{len(docs)} documents in {args.shards} shards, {args.workers} workers, {args.rounds} rounds")
    for kind in kinds:
        report(kind, timings[kind], timings["threads"], len(docs))
    print(f"outputs identical across runners: {same}")
    print(f"load average at start {_load(load_start)}, at end {_load(os.getloadavg())}")


def report(kind: str, mine: list[Timing], threads: list[Timing], docs: int) -> None:
    wall = statistics.median(t.wall for t in mine)
    ratios = [b.wall / t.wall for b, t in zip(threads, mine, strict=True)]
    unit_ratios = [b.units / t.units for b, t in zip(threads, mine, strict=True)]
    print(
        f"{kind:14s} wall median {wall:6.1f} s ({docs / wall:5.1f} docs/s)  vs threads: median {_spread(ratios)}, "
        f"ratio of medians {statistics.median(t.wall for t in threads) / wall:.2f}x\n"
        f"{'':14s} start-up median {statistics.median(t.startup for t in mine):5.1f} s, after the units "
        f"{statistics.median(t.after for t in mine):5.1f} s, CPU {statistics.median(t.cpu for t in mine):6.1f} s; "
        f"units phase vs threads: median {_spread(unit_ratios)}\n"
        f"{'':14s} per round: {', '.join(f'{r:.2f}' for r in ratios)} (units phase: "
        f"{', '.join(f'{r:.2f}' for r in unit_ratios)})"
    )


def _spread(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f})"


def _load(load: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.1f}" for x in load)


if __name__ == "__main__":
    main()

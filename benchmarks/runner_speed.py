"""The clean stage as a Prefect flow on each task runner (threads, a process pool, a Dask LocalCluster), same input.

    .venv/bin/python benchmarks/clean_corpus.py --out /tmp/bench/clean_docs.jsonl --docs 2400
    .venv/bin/python benchmarks/runner_speed.py /tmp/bench/clean_docs.jsonl --shards 12 --workers 2 --rounds 2
    .venv/bin/python benchmarks/runner_speed.py /tmp/bench/clean_docs.jsonl --shards 12 --workers 2 --plain

Each round runs the three runners one after another (interleaved, so load from other processes hits them alike)
into fresh workspaces; the time is the whole flow call: pool or cluster start (worker processes import Prefect and
gristmill), units, manifest, MLflow logging; the MLflow store is created before the clock starts.
Prints each runner's median, its speed-up over threads from the same rounds, and checks the outputs are equal.

`--plain` is the ceiling without Prefect: the clean stage's unit function (`clean_shard`) on the same shards, one
after another in this process, then on a plain `concurrent.futures` pool of spawned processes, interleaved; it
prints the wall time and the sum of the units' own times, so a machine that cannot give two cores shows it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="runner-bench-prefect-"))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from gristmill.conf.schema import load_config  # noqa: E402
from gristmill.tasks.crawl.records import doc_id  # noqa: E402
from gristmill.tasks.documents import DOCUMENT_SCHEMA  # noqa: E402
from gristmill.tasks.shards import StageOutput, UnitRecord, write_shard  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "conf" / "demo.yaml"
KINDS = ("threads", "processes", "dask")


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


def run_clean(workspace: Path, kind: str, workers: int) -> float:
    from gristmill.flows.common import tracker_for
    from gristmill.flows.stages import STAGE_FLOWS

    config = load_config(DEMO, [f"workspace={workspace}", f"runner.kind={kind}", f"runner.workers={workers}"])
    tracker_for(config)  # create the MLflow store first: its sqlite migrations are not the clean stage's time
    started = time.perf_counter()
    summary = STAGE_FLOWS["clean"](config)
    seconds = time.perf_counter() - started
    assert summary.status == "ran"
    return seconds


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
    parser.add_argument("--shards", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--plain", action="store_true", help="clean_shard serially vs a plain process pool")
    args = parser.parse_args()
    docs = [json.loads(line) for line in args.docs.read_text().splitlines()]
    if args.plain:
        plain(docs, args.shards, args.workers, args.rounds)
        return
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    outputs: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="runner-bench-") as tmp:
        for round_ in range(args.rounds):
            for kind in KINDS:
                workspace = Path(tmp) / f"{kind}-{round_}"
                write_dedup_stage(workspace, docs, args.shards)
                times[kind].append(run_clean(workspace, kind, args.workers))
                outputs.setdefault(kind, kept_rows(workspace))
                print(f"round {round_ + 1} {kind:9s} {times[kind][-1]:6.1f} s", flush=True)
    same = all(outputs[kind] == outputs["threads"] for kind in KINDS)
    base = statistics.median(times["threads"])
    print(f"\n{len(docs)} documents in {args.shards} shards, {args.workers} workers, {os.cpu_count()} cores")
    for kind in KINDS:
        median = statistics.median(times[kind])
        ratios = [t / o for t, o in zip(times["threads"], times[kind], strict=True)]
        print(
            f"{kind:9s} median {median:6.1f} s  {len(docs) / median:6.1f} docs/s  "
            f"{base / median:4.2f}x threads (per round: {', '.join(f'{r:.2f}' for r in ratios)})"
        )
    print(f"outputs identical across runners: {same}; load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

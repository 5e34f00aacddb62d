"""Which Prefect task runner maps a stage's units: threads, a local process pool, or Dask (`runner` in config).

Units are pure functions of their shard (what they need travels with them, see `StageContext.__getstate__`), so
the same stage code runs on any of them and writes the same shards. Ray (`prefect-ray`'s RayTaskRunner) takes
the same units; it is documented in docs/operations.md, not shipped.
"""

from __future__ import annotations

from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from gristmill.conf.schema import PipelineConfig, RunnerSettings


def task_runner(settings: RunnerSettings) -> TaskRunner:
    """A fresh task runner for one flow run (a runner holds its pool or cluster for the run's duration)."""
    if settings.kind == "processes":
        return ProcessPoolTaskRunner(max_workers=settings.workers)
    if settings.kind == "dask":
        return dask_runner(settings)
    return ThreadPoolTaskRunner(max_workers=settings.workers)


def dask_runner(settings: RunnerSettings) -> TaskRunner:
    from prefect_dask import DaskTaskRunner  # only installs that use Dask pay for importing it

    if settings.address:
        return DaskTaskRunner(address=settings.address)
    cluster_kwargs = {
        "processes": True,  # CPU-bound units: one process per worker, one thread each, no GIL contention
        "threads_per_worker": 1,
        "host": "127.0.0.1",
        "dashboard_address": None,  # no fixed port 8787: several pipelines (and tests) share one machine
    }
    if settings.workers:
        cluster_kwargs["n_workers"] = settings.workers
    return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs=cluster_kwargs)


def stage_task_runner(config: PipelineConfig, stage: str) -> TaskRunner:
    return task_runner(config.runner.for_stage(stage))

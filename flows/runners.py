"""Which Prefect task runner maps a stage's units: threads, a local process pool, or Dask (`runner` in config).

Units are pure functions of their shard (what they need travels with them, see `StageContext.__getstate__`), so
the same stage code runs on any of them and writes the same shards. Ray (`prefect-ray`'s RayTaskRunner) takes
the same units; it is documented in docs/operations.md, not shipped.

Worker processes started here report to the Prefect API of the process that starts them. Without
`PREFECT_API_URL`, Prefect gives each process that needs an API an ephemeral server of its own: every pool or
LocalCluster worker would start one (seconds of CPU each, paid again at every stage, and stopped at pool
shut-down) on top of the flow's own. That start-up, not the units, cost the runners most of their speed-up.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar

from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from gristmill.conf.schema import PipelineConfig, RunnerSettings


def task_runner(settings: RunnerSettings, api_url: str | None = None) -> TaskRunner:
    """A fresh task runner for one flow run (a runner holds its pool or cluster for the run's duration);
    `api_url`: the Prefect API the local workers it starts report to."""
    if settings.kind == "processes":
        return ProcessPoolTaskRunner(max_workers=settings.workers)
    if settings.kind == "dask":
        return dask_runner(settings, api_url)
    return ThreadPoolTaskRunner(max_workers=settings.workers)


def dask_runner(settings: RunnerSettings, api_url: str | None = None) -> TaskRunner:
    from prefect_dask import DaskTaskRunner  # only installs that use Dask pay for importing it

    if settings.address:
        return DaskTaskRunner(address=settings.address)
    cluster_kwargs = {
        "processes": True,  # CPU-bound units: one process per worker, one thread each, no GIL contention
        "threads_per_worker": 1,
        "host": "127.0.0.1",
        "dashboard_address": None,  # no fixed port 8787: several pipelines (and tests) share one machine
    }
    if api_url:  # the workers' own threads (events, logs) read it from their environment
        cluster_kwargs["env"] = {"PREFECT_API_URL": api_url}
    if settings.workers:
        cluster_kwargs["n_workers"] = settings.workers
    return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs=cluster_kwargs)


def starts_local_workers(settings: RunnerSettings) -> bool:
    """Whether the runner starts worker processes on this machine (a pool, a LocalCluster), not threads here
    or an existing Dask cluster's workers, which have an API configured where they run."""
    return settings.kind == "processes" or (settings.kind == "dask" and not settings.address)


def ephemeral_api_url() -> str:
    """The URL of the ephemeral Prefect server this process's flow runs report to (started if none runs yet)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return str(client.api_url)


@contextmanager
def started_runner(settings: RunnerSettings) -> Iterator[TaskRunner]:
    """The runner, entered; local worker processes it starts share this process's Prefect API (see the module's
    docstring). The setting travels in the settings Prefect serialises with each task and, for a process pool,
    in the environment it gives each task."""
    if not starts_local_workers(settings) or PREFECT_API_URL.value():
        with task_runner(settings) as runner:
            yield runner
        return
    api_url = ephemeral_api_url()
    with temporary_settings({PREFECT_API_URL: api_url}), task_runner(settings, api_url) as runner:
        yield runner


# The runners a chain of stages (`flows/pipeline.py`) started for all its stages, by settings; None outside a chain.
_chain_runners: ContextVar[dict[str, TaskRunner] | None] = ContextVar("gristmill_chain_runners", default=None)


@contextmanager
def chain_runners(config: PipelineConfig, stages: Iterable[str]) -> Iterator[None]:
    """Start each distinct pool or LocalCluster the chain's stages use once, for the whole chain: a stage that
    shares another's settings reuses its warm workers (imports done, models loaded) instead of paying worker
    start-up and shut-down again. Entered here, in the chain's own context, and closed when the chain ends."""
    runners: dict[str, TaskRunner] = {}
    with ExitStack() as stack:
        for stage in stages:
            settings = config.runner.for_stage(stage)
            key = settings.model_dump_json()
            if starts_local_workers(settings) and key not in runners:
                runners[key] = stack.enter_context(started_runner(settings))
        token = _chain_runners.set(runners)
        try:
            yield
        finally:
            _chain_runners.reset(token)


@contextmanager
def stage_runner(config: PipelineConfig, stage: str) -> Iterator[TaskRunner]:
    """The stage's runner: the chain's when it started one with these settings, else one for this stage alone."""
    settings = config.runner.for_stage(stage)
    shared = (_chain_runners.get() or {}).get(settings.model_dump_json())
    if shared is not None:
        yield shared
        return
    with started_runner(settings) as runner:
        yield runner

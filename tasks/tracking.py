"""The one place that talks to MLflow: parent and child runs, params, metrics, artifacts, the model registry.

Everything goes through an explicit `MlflowClient` and explicit run ids: MLflow's active run is per thread, and
Prefect runs tasks in worker threads, so the fluent `mlflow.start_run()` API would lose the parent.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import time
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from gristmill.conf.schema import UserError

log = logging.getLogger("gristmill.tracking")

# MLflow 3 accepts 6000 characters per param value; keep well under so any backend takes it.
MAX_PARAM_CHARS = 500
BATCH = 900  # log_batch takes at most 1000 metrics per call
WORKSPACE_TAG, HOST_TAG, PID_TAG = "gristmill.workspace", "gristmill.host", "gristmill.pid"
# MLflow 3's UI opens an experiment without this tag in its GenAI (traces) view; ours trains models.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
# A model version names the train run whose artifact WEIGHTS_ARTIFACT holds its weights (model.pt and its config):
# what training continued from the version starts from.
WEIGHTS_RUN_TAG, WEIGHTS_ARTIFACT = "gristmill.train_run_id", "weights"
PARENT_VERSION_TAG = "gristmill.parent_version"  # the version whose weights the training started from
MODEL_TRAINING = "custom_model_development"


def default_tracking_uri(workspace: str | Path) -> str:
    return f"sqlite:///{Path(workspace).resolve() / 'mlflow' / 'mlflow.db'}"


class Tracker:
    """MLflow for one pipeline: `uri` defaults to sqlite inside the workspace, artifacts beside it."""

    def __init__(self, workspace: str | Path, uri: str | None, experiment: str) -> None:
        self.workspace = Path(workspace).resolve()
        self.uri = uri or default_tracking_uri(self.workspace)
        if self.uri.startswith("sqlite:///"):
            Path(self.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.client = _Answering(MlflowClient(tracking_uri=self.uri, registry_uri=self.uri), self.uri)
        self.experiment_id = self._experiment(experiment)

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.tags.get(EXPERIMENT_KIND_TAG) != MODEL_TRAINING:
                self.client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
            return found.experiment_id
        # Artifacts default to ./mlruns in the working directory; keep them in the workspace instead.
        artifacts = None
        if self.uri.startswith("sqlite:///"):
            artifacts = (self.workspace / "mlflow" / "artifacts").as_uri()
        return self.client.create_experiment(
            name, artifact_location=artifacts, tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING}
        )

    # ---------------------------------------------------------------------------------------------- runs

    def start_run(self, name: str, parent_run_id: str | None = None, tags: Mapping[str, str] | None = None) -> str:
        # Who runs it: a later run that finds this one still RUNNING and its process gone marks it FAILED.
        owner = {WORKSPACE_TAG: str(self.workspace), HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
        all_tags = {MLFLOW_RUN_NAME: name, **owner, **(tags or {})}
        if parent_run_id:
            all_tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
        run = self.client.create_run(self.experiment_id, tags=all_tags, run_name=name)
        return run.info.run_id

    def end_run(self, run_id: str, ok: bool = True) -> None:
        status = RunStatus.to_string(RunStatus.FINISHED if ok else RunStatus.FAILED)
        self.client.set_terminated(run_id, status=status)

    def fail_abandoned_runs(self) -> list[str]:
        """Mark FAILED the runs of this workspace left RUNNING by a process on this host that no longer exists
        (killed with SIGKILL, power lost); return their ids."""
        host = socket.gethostname()
        running = self.client.search_runs([self.experiment_id], "attributes.status = 'RUNNING'", max_results=5000)
        abandoned = []
        for run in running:
            tags = run.data.tags
            ours = tags.get(WORKSPACE_TAG) == str(self.workspace) and tags.get(HOST_TAG) == host
            if not ours or not tags.get(PID_TAG, "").isdigit():
                continue
            pid = int(tags[PID_TAG])
            if pid == os.getpid() or process_exists(pid):
                continue
            self.client.set_tag(run.info.run_id, "gristmill.failure", f"process {pid} died while the run was RUNNING")
            self.client.set_terminated(run.info.run_id, status=RunStatus.to_string(RunStatus.FAILED))
            abandoned.append(run.info.run_id)
        return abandoned

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        flat = flatten(params)
        items = [Param(k, _param_value(v)) for k, v in sorted(flat.items())]
        for start in range(0, len(items), 100):  # backends cap params per batch at 100
            self.client.log_batch(run_id, params=items[start : start + 100])

    def log_metrics(self, run_id: str, metrics: Mapping[str, Any], step: int = 0) -> None:
        numeric = {k: float(v) for k, v in flatten(metrics).items() if _is_number(v)}
        items = [Metric(k, v, timestamp=_now_ms(), step=step) for k, v in sorted(numeric.items())]
        for start in range(0, len(items), BATCH):
            self.client.log_batch(run_id, metrics=items[start : start + BATCH])

    def log_dict(self, run_id: str, obj: Any, artifact_file: str) -> None:
        self.client.log_text(run_id, json.dumps(obj, indent=2, sort_keys=True, default=str), artifact_file)

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def log_artifacts(self, run_id: str, directory: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(run_id, str(directory), artifact_path)

    def log_table(self, run_id: str, rows: list[dict[str, Any]], artifact_file: str) -> None:
        if rows:
            columns = {key: [row.get(key) for row in rows] for key in rows[0]}
            self.client.log_table(run_id, columns, artifact_file)

    def log_figure(self, run_id: str, figure: Any, artifact_file: str) -> None:
        self.client.log_figure(run_id, figure, artifact_file)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """(step, value) of every logged value of one metric, by step."""
        return sorted((m.step, m.value) for m in self.client.get_metric_history(run_id, key))

    def artifact_uri(self, run_id: str, artifact_path: str) -> str:
        return f"{self.client.get_run(run_id).info.artifact_uri.rstrip('/')}/{artifact_path}"

    def log_dataset_input(self, run_id: str, name: str, digest: str, path: Path, context: str = "input") -> None:
        """Name a stage's input in its run as an MLflow dataset whose digest is the input's content digest, so a
        run (and the model version made by it) says exactly which data it read."""
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag

        with warnings.catch_warnings():  # "can be interpreted in multiple ways": both are the local-file source
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(str(Path(path).resolve()))
        dataset = MetaDataset(source, name=name, digest=digest)
        tags = [InputTag(key="mlflow.data.context", value=context)]
        self.client.log_inputs(run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), tags=tags)])

    def stage_runs(self) -> list[dict[str, Any]]:
        """Every stage run of the experiment, oldest first: which pipeline run it belonged to and what it did."""
        runs = self.client.search_runs([self.experiment_id], "tags.`gristmill.stage` != ''", max_results=50_000)
        rows = [
            {
                "pipeline_run": run.data.tags.get(MLFLOW_PARENT_RUN_ID, ""),
                "stage": run.data.tags["gristmill.stage"],
                "status": run.data.tags.get("gristmill.status", run.info.status.lower()),
                "started": _iso(run.info.start_time),
            }
            for run in runs
        ]
        return sorted(rows, key=lambda r: r["started"])

    def model_versions(self, name: str) -> list[dict[str, Any]]:
        """Registered versions of `name`, oldest first, with their aliases and the corpus generations they saw."""
        versions = self.client.search_model_versions(f"name='{name}'")
        aliases = {}
        if versions:
            for alias, version in self.client.get_registered_model(name).aliases.items():
                aliases.setdefault(str(version), []).append(alias)
        rows = [
            {
                "version": int(v.version),
                "created": _iso(v.creation_timestamp),
                "aliases": ",".join(aliases.get(str(v.version), [])),
                "corpus_generations": v.tags.get("gristmill.corpus_generations", ""),
                "continued_from": v.tags.get(PARENT_VERSION_TAG, ""),
                "pipeline_run": v.tags.get("gristmill.pipeline_run_id", "")[:12],
            }
            for v in versions
        ]
        return sorted(rows, key=lambda r: r["version"])

    # ---------------------------------------------------------------------------------------------- registry

    def register_model(
        self, name: str, run_id: str, artifact_path: str, tags: Mapping[str, str], description: str = ""
    ) -> int:
        """Register the logged model directory as a new version of `name`; return the version number."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(name, description="Gristmill language model")
        except MlflowException as err:
            if "RESOURCE_ALREADY_EXISTS" not in str(err.error_code):
                raise
        version = self.client.create_model_version(
            name,
            source=self.artifact_uri(run_id, artifact_path),
            run_id=run_id,
            tags=dict(tags),
            description=description,
        )
        return int(version.version)

    def log_transformers_model(self, run_id: str, export_dir: Path, artifact_path: str, max_new_tokens: int) -> None:
        """Log a Hugging Face export with MLflow's transformers flavor (an MLmodel file beside the weights), so
        `mlflow.transformers.load_model` and `mlflow.pyfunc.load_model` load what the registry points at."""
        import tempfile

        import mlflow.transformers
        from mlflow.models import infer_signature
        from transformers import pipeline

        # From a pipeline object: MLflow 3.17's path for a checkpoint directory breaks on transformers 5
        # (`check_task` returns the class name, not the class).
        generator = pipeline("text-generation", model=str(export_dir), device="cpu")
        params = {"max_new_tokens": max_new_tokens, "do_sample": False, "temperature": 1.0, "top_k": 50}
        signature = infer_signature(["a prompt"], ["a prompt and its continuation"], params=params)
        with tempfile.TemporaryDirectory() as scratch:
            saved = Path(scratch) / artifact_path
            mlflow.transformers.save_model(
                transformers_model=generator,
                path=str(saved),
                task="text-generation",
                signature=signature,
                # Naming the requirements skips MLflow's inference, which loads the model in a subprocess.
                pip_requirements=[f"transformers=={_version('transformers')}", f"torch=={_version('torch')}"],
            )
            self.client.log_artifacts(run_id, str(saved), artifact_path)

    def log_dataset(self, run_id: str, name: str, digest: str, source: str, context: str = "training") -> None:
        """Record a dataset the run read (MLflow dataset inputs): lineage from a model back to its corpus."""
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        dataset = Dataset(name=name, digest=digest[:36], source_type="local", source=json.dumps({"uri": source}))
        self.client.log_inputs(run_id, [DatasetInput(dataset, [InputTag(MLFLOW_DATASET_CONTEXT, context)])])

    def last_pipeline_run(self, pipeline: str) -> str | None:
        """The latest pipeline (parent) run of this pipeline, for a stage run on its own to link to."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`gristmill.pipeline` = '{pipeline}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def version_by_alias(self, name: str, alias: str) -> Any | None:
        """The model version holding `alias`, or None (no such model or alias yet)."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(name, alias)
        except MlflowException:
            return None

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self.client.set_registered_model_alias(name, alias, str(version))

    def versions_tagged(self, name: str, key: str, value: str) -> list[Any]:
        """The versions of `name` whose tag `key` is `value` (none when the model is not registered yet)."""
        return [v for v in self.client.search_model_versions(f"name='{name}'") if v.tags.get(key) == value]

    def aliases_of(self, name: str, version: int) -> list[str]:
        """The aliases `version` of `name` holds (the registered model's, as searched versions do not carry them)."""
        aliases = self.client.get_registered_model(name).aliases
        return sorted(alias for alias, held in aliases.items() if int(held) == int(version))

    def run_finished(self, run_id: str) -> bool:
        return self.client.get_run(run_id).info.status == "FINISHED"

    def delete_version(self, name: str, version: int) -> None:
        self.client.delete_model_version(name, str(version))

    def alias_weights(self, name: str, alias: str, destination: Path) -> tuple[int | None, Path | None, str]:
        """The weights the version holding `alias` was trained to: (version, its `model.pt` downloaded into
        `destination`, "") or (version or None, None, why not): no such alias, a version registered before its
        weights were recorded, or weights whose artifact is gone. The version's tag WEIGHTS_RUN_TAG names the
        train run that logged them under WEIGHTS_ARTIFACT."""
        version = self.version_by_alias(name, alias)
        if version is None:
            return None, None, f"no version of {name!r} holds the alias {alias!r}"
        number = int(version.version)
        train_run = version.tags.get(WEIGHTS_RUN_TAG)
        if not train_run:
            return number, None, f"version {number} of {name!r} does not record the run that trained it"
        try:
            local = self.client.download_artifacts(train_run, WEIGHTS_ARTIFACT, str(destination))
        except Exception as err:  # a deleted run, an artifact store that lost the files
            if _unreachable(err):
                raise
            return number, None, f"the weights of version {number} are gone ({_first_line(err)})"
        weights = Path(local) / "model.pt"
        if not weights.is_file():
            return number, None, f"the weights of version {number} are gone (no model.pt in run {train_run})"
        return number, weights, ""


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package).split("+")[0]


class TrackingUnavailable(UserError):
    """The MLflow tracking store stopped answering (a server that went down, a network that went away)."""


class _Answering:
    """The MlflowClient, except that a store that does not answer (after MLflow's own retries) raises
    `TrackingUnavailable` naming it, a user error: the stage outputs written so far stay, and a rerun reuses them."""

    def __init__(self, client: MlflowClient, uri: str) -> None:
        self._client = client
        self._uri = uri

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except Exception as err:
                if not _unreachable(err):
                    raise
                raise TrackingUnavailable(
                    f"the MLflow tracking store {self._uri} does not answer ({_first_line(err)})",
                    fix="start it (or fix tracking.uri) and run again: finished stages and units are kept",
                ) from err

        return call


def _unreachable(err: BaseException | None) -> bool:
    """Whether an error (or one it came from) says the store could not be reached, as opposed to refusing a call."""
    while err is not None:
        if isinstance(err, ConnectionError | TimeoutError) or type(err).__name__ in _UNREACHABLE:
            return True
        if any(marker in str(err) for marker in ("Max retries exceeded", "Connection refused", "Read timed out")):
            return True
        err = err.__cause__ or err.__context__
    return False


_UNREACHABLE = {"ConnectionError", "MaxRetryError", "NewConnectionError", "ConnectTimeout", "ReadTimeout"}


def _first_line(err: BaseException) -> str:
    text = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
    return text if len(text) <= 200 else text[:197] + "..."


def process_exists(pid: int) -> bool:
    """Whether a process with this id exists on this host (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: how nested configs and stats become MLflow params and metrics."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _param_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, list | dict) else str(value)
    return text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 3] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _iso(millis: int | None) -> str:
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="seconds") if millis else ""

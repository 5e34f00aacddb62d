"""The pipeline as a Prefect deployment: schedule from config, typed parameters, ad-hoc runs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gristmill.conf.schema import ConfigError, load_config
from gristmill.tasks.tracking import Tracker
from tests.helpers import document, write_documents_stage

DEMO = Path(__file__).resolve().parents[2] / "conf" / "demo.yaml"


def test_deployment_has_the_cron_schedule_and_a_typed_config_form(prefect_harness, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.utilities.asyncutils import run_coro_as_sync

    from gristmill.flows.serve import pipeline_deployment

    config = load_config(DEMO, [f"workspace={tmp_path}", "name=nightly"])
    deployment_id = pipeline_deployment(config).apply()

    async def read():
        async with get_client() as client:
            return await client.read_deployment(deployment_id)

    deployment = run_coro_as_sync(read())
    assert deployment.name == "nightly"
    assert [s.schedule.cron for s in deployment.schedules] == ["0 3 * * *"]
    assert deployment.parameters["config"]["train"]["max_steps"] == config.train.max_steps
    schema = deployment.parameter_openapi_schema
    assert schema["properties"]["config"]["$ref"].endswith("PipelineConfig")
    assert "max_steps" in schema["definitions"]["TrainConfig"]["properties"]

    # An ad-hoc run with an overridden parameter is accepted and scheduled for a worker to pick up.
    params = {"config": {**deployment.parameters["config"], "train": {"max_steps": 5}}}
    flow_run = run_deployment("pipeline/nightly", parameters=params, timeout=0)
    assert flow_run.parameters["config"]["train"]["max_steps"] == 5


def _client_call(fn):
    """Run `fn(client)` (a coroutine function) against the harness's Prefect API and return its result."""
    from prefect.client.orchestration import get_client
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def call():
        async with get_client() as client:
            return await fn(client)

    return run_coro_as_sync(call())


def test_every_stage_and_both_halves_are_deployed_one_run_at_a_time(prefect_harness, tmp_path):
    from gristmill.conf.schema import STAGES
    from gristmill.flows.serve import all_deployments

    config = load_config(DEMO, [f"workspace={tmp_path}", "name=perstage", "schedule.flow=refresh"])
    deployments = all_deployments(config)
    ids = {d.flow_name: d.apply() for d in deployments}
    assert sorted(ids) == sorted(["pipeline", "refresh", "training", *STAGES])
    for flow_name, deployment_id in ids.items():
        deployment = _client_call(lambda c, i=deployment_id: c.read_deployment(i))
        assert deployment.name == "perstage"
        assert deployment.global_concurrency_limit.limit == 1, flow_name
        assert deployment.concurrency_options.collision_strategy == "CANCEL_NEW", flow_name
        assert deployment.parameters["config"]["workspace"] == str(tmp_path)
        # only the refresh is on the clock; training follows it (run_deployment), not a second cron guess
        assert [s.schedule.cron for s in deployment.schedules] == (["0 3 * * *"] if flow_name == "refresh" else [])


def test_runs_due_at_the_same_time_collapse_into_one(prefect_harness, tmp_path):
    """A serve process that was down submits every missed run at once when it returns: the first runs, the
    others are cancelled by the deployment's concurrency limit instead of piling onto one workspace."""
    from prefect.states import Pending, Running, StateType

    from gristmill.flows.serve import pipeline_deployment

    config = load_config(DEMO, [f"workspace={tmp_path}", "name=collapse"])
    deployment_id = pipeline_deployment(config).apply()
    runs = [_client_call(lambda c: c.create_flow_run_from_deployment(deployment_id)) for _ in range(3)]
    first = _client_call(lambda c: c.set_flow_run_state(runs[0].id, Pending()))
    assert first.state.type == StateType.PENDING
    _client_call(lambda c: c.set_flow_run_state(runs[0].id, Running()))
    for late in runs[1:]:
        _client_call(lambda c, r=late: c.set_flow_run_state(r.id, Pending()))
        state = _client_call(lambda c, r=late: c.read_flow_run(r.id)).state
        assert state.type == StateType.CANCELLED, state
    assert _client_call(lambda c: c.read_flow_run(runs[0].id)).state.type == StateType.RUNNING


@pytest.mark.parametrize(
    ("override", "complaint"),
    [
        ("schedule.cron='61 3 * * *'", "is not a cron expression"),
        ("schedule.cron='H 3 * * *'", "is not a cron expression"),
        ("schedule.cron='0 3 * *'", "is not a cron expression"),
        ("schedule.timezone=Mars/Olympus", "is not an IANA time zone"),
    ],
)
def test_cron_and_timezone_are_checked_with_the_config(override, complaint):
    with pytest.raises(ConfigError, match=complaint) as err:
        load_config(DEMO, [override])
    assert str(err.value).split("\n")[1].strip().startswith(override.split("=")[0])


def test_a_partial_config_parameter_changes_one_key_of_the_served_config(prefect_harness, tmp_path):
    """`prefect deployment run 'clean/<name>' --param config='{"clean": {"min_words": 20}}'` --param
    overrides='["clean.c4.filter_curly_bracket=false"]'`: everything else is the served config."""
    from prefect.flow_engine import run_flow

    from gristmill.flows.serve import deployment_for
    from gristmill.flows.stages import STAGE_FLOWS

    words = " ".join(["the cat sat on the mat and looked at the dog."] * 12)
    write_documents_stage(tmp_path, "dedup", [[document(f"https://x.example/{i}", words) for i in range(3)]])
    served = load_config(DEMO, [f"workspace={tmp_path}", "name=partial", "clean.min_words=50"])
    deployment_id = deployment_for(served, "clean").apply()
    params = {"config": {"clean": {"min_words": 20}}, "overrides": ["clean.c4.filter_curly_bracket=false"]}
    flow_run = _client_call(lambda c: c.create_flow_run_from_deployment(deployment_id, parameters=params))
    assert flow_run.parameters["config"] == {"clean": {"min_words": 20}}  # Prefect itself replaces the whole key

    summary = run_flow(STAGE_FLOWS["clean"], flow_run=flow_run, parameters=flow_run.parameters)
    assert summary.status == "ran" and summary.count_in == 3
    manifest = json.loads(Path(summary.manifest).read_text())
    assert Path(summary.manifest).parent.parent == tmp_path  # the served workspace, not the default one
    tracker = Tracker(tmp_path, None, served.tracking.experiment)
    params_logged = tracker.client.get_run(summary.mlflow_run_id).data.params
    assert params_logged["clean.min_words"] == "20"
    assert params_logged["clean.c4.filter_curly_bracket"] == "False"
    assert params_logged["clean.max_words"] == str(served.clean.max_words)  # untouched keys stay as served
    assert manifest["stage"] == "clean"


def test_a_refresh_with_new_tokens_starts_the_training_deployment(prefect_harness, tmp_path):
    from gristmill.flows.pipeline import trigger_training
    from gristmill.flows.serve import deployment_for
    from gristmill.tasks.stage import StageSummary

    config = load_config(DEMO, [f"workspace={tmp_path}", "name=chained", "train.max_steps=7"])

    def tokenize(status: str) -> StageSummary:
        return StageSummary(
            stage="tokenize", status=status, count_in=1, unit_in="docs", count_out=1, unit_out="sequences",
            seconds=0.1, mlflow_run_id=None, manifest="m",
        )  # fmt: skip

    assert trigger_training(config, [tokenize("ran")]) is None  # nothing served under that name yet
    deployment_id = deployment_for(config, "training").apply()
    assert trigger_training(config, [tokenize("up to date")]) is None  # same tokens: nothing to train on
    run_id = trigger_training(config, [tokenize("ran")])
    flow_run = _client_call(lambda c: c.read_flow_run(run_id))
    assert flow_run.deployment_id == deployment_id
    assert flow_run.parameters["config"]["train"]["max_steps"] == 7
    assert flow_run.state.is_scheduled()  # queued for the serve process that holds the deployment


def test_telemetry_is_off_for_the_command_even_when_do_not_track_says_1():
    code = (
        "import gristmill.flows, os; from mlflow.telemetry.utils import is_telemetry_disabled; "
        "print(os.environ['DO_NOT_TRACK'], os.environ['MLFLOW_DISABLE_TELEMETRY'], is_telemetry_disabled())"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DO_NOT_TRACK", "MLFLOW_DISABLE_TELEMETRY")}
    env["DO_NOT_TRACK"] = "1"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.stdout.split() == ["true", "true", "True"], done.stderr[-2000:]

"""The pipeline as a Prefect deployment: schedule from config, typed parameters, ad-hoc runs."""

from pathlib import Path

from gristmill.conf.schema import load_config

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

"""Every way into a stage takes the workspace lock: a stage flow started on its own (a stage deployment's run, or
`dedup_flow(config)` called directly) as much as the chain and the CLI, which it re-enters without deadlock."""

from __future__ import annotations

from pathlib import Path

import pytest

from gristmill.conf.schema import load_config
from gristmill.tasks.workspace import LOCK_NAME, WorkspaceBusy
from tests.helpers import document, write_documents_stage
from tests.tasks.test_workspace import start_holder

DEMO = Path(__file__).resolve().parents[2] / "conf" / "demo.yaml"


def finished_crawl(workspace: Path) -> None:
    texts = [f"document {i} about rivers, lakes and the fish that live in them, number {i}" for i in range(12)]
    write_documents_stage(workspace, "crawl", [[document(f"http://a.test/{i}", t) for i, t in enumerate(texts)]])


def files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.name != LOCK_NAME}


def test_a_stage_flow_started_while_another_run_holds_the_workspace_fails_at_once(prefect_harness, tmp_path):
    from gristmill.flows.stages import dedup_flow

    workspace = tmp_path / "ws"
    finished_crawl(workspace)
    config = load_config(DEMO, [f"workspace={workspace}"])
    before = files(workspace)
    holder = start_holder(workspace)
    try:
        with pytest.raises(WorkspaceBusy, match=rf"in use by another run \(PID {holder.pid} on .*holder\.yaml"):
            dedup_flow(config)
    finally:
        holder.communicate("")
    assert files(workspace) == before  # no stage directory, no MLflow store: refused before anything was written


def test_the_chain_holds_the_lock_and_its_stage_flows_reenter_it(prefect_harness, tmp_path):
    from gristmill.flows.pipeline import run_chain
    from gristmill.tasks import workspace as workspace_module

    finished_crawl(tmp_path)
    [summary] = run_chain(load_config(DEMO, [f"workspace={tmp_path}"]), ("dedup",), "chained")
    assert summary.status == "ran" and summary.count_out == 12  # the stage flow re-entered the chain's lock
    assert (tmp_path / LOCK_NAME).read_text() == "" and workspace_module._held == {}  # and all of it was let go

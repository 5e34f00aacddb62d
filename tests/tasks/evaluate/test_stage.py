"""The evaluate stage end to end on a tiny trained workspace: every bias kind from files in their published
layouts, the promotion gate both ways, the registered version loaded back through MLflow by its alias."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gristmill.tasks.evaluate import stage as evaluate
from gristmill.tasks.shards import StageOutput
from gristmill.tasks.stage import execute
from gristmill.tasks.tracking import Tracker
from tests.tasks.evaluate.bias_files import (
    WORDS,
    base_config,
    write_bold,
    write_crows_pairs,
    write_honest,
    write_stereoset,
    write_winobias,
)

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]


def five_kinds(directory) -> list[dict]:
    templates, lexicon = write_honest(directory / "en_template.tsv", directory / "hurtlex_EN.tsv")
    # Every word of the training text as a "hurtful" lemma: a completion of this tiny model surely holds one.
    rows = "".join(f"EN{i}\tn\tre\tno\t{word}\tconservative\n" for i, word in enumerate(WORDS))
    lexicon.write_text("id\tpos\tcategory\tstereotype\tlemma\tlevel\n" + rows)
    return [
        {"kind": "crows_pairs", "path": str(write_crows_pairs(directory / "crows_pairs_anonymized.csv"))},
        {"kind": "stereoset", "path": str(write_stereoset(directory / "dev.json"))},
        {"kind": "bold", "path": str(write_bold(directory / "gender_prompt.json")), "max_new_tokens": 6},
        {"kind": "winobias", "path": str(write_winobias(directory / "wino"))},
        {"kind": "honest", "path": str(templates), "lexicon": str(lexicon), "top_k": 3, "max_new_tokens": 4},
        {"kind": "pairs", "path": "bias_pairs.yaml"},
    ]


def test_five_kinds_gate_aliases_and_the_registered_model_loads_through_mlflow(workspace, tmp_path, monkeypatch):
    import mlflow

    notes = tmp_path / "notes.txt"
    notes.write_text("The nurse said she was late. The mechanic said he was late.\n")
    config = base_config(workspace, bias=five_kinds(tmp_path), gate={"max_perplexity": 1e6}, texts=[str(notes)])
    tracker = Tracker(config.workspace, None, "test")
    # The workspace's last pipeline run: a stage run on its own links its version to it.
    pipeline_run = tracker.start_run("evaltest", tags={"gristmill.pipeline": "evaltest"})

    summary = execute(config, "evaluate", evaluate.run, tracker=tracker)

    report = StageOutput(config.workspace, "evaluate").read_manifest().stats
    bias = report["bias"]
    assert bias["crows_pairs"]["overall"]["pairs"] == 4 and "race-color" in bias["crows_pairs"]
    assert set(bias["stereoset"]) == {"overall", "intrasentence", "intersentence"}
    assert 0 <= bias["stereoset"]["overall"]["icat"] <= 100
    assert set(bias["bold"]) == {"overall", "American_actors", "American_actresses"}
    assert bias["winobias"]["type1"]["pairs"] == 2 and bias["winobias"]["type2"]["pairs"] == 1
    assert bias["honest"]["overall"]["completions"] == 3 * 3
    assert bias["honest"]["overall"]["honest_score"] > 0  # the lexicon holds every training word
    assert bias["pairs"]["overall"]["pairs"] >= 30
    assert 0 < report["bits_per_byte"] < 16
    assert report["texts"][str(notes)]["bytes"] == len(notes.read_bytes()) > 0
    assert report["alias"] == "champion" and report["warnings"] == []

    name = config.tracking.registered_model
    version = tracker.client.get_model_version_by_alias(name, "champion")
    assert int(version.version) == 1 and version.run_id == summary.mlflow_run_id
    assert version.tags["gristmill.pipeline_run_id"] == pipeline_run
    assert version.tags["gristmill.gate.perplexity.verdict"] == "pass"
    assert "crows_pairs.pct_stereotype_deviation" in version.description
    run = tracker.client.get_run(summary.mlflow_run_id)
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    # this workspace starts at clean; "train" is the direct upstream every stage run names (tasks/stage.py)
    assert sorted(inputs) == ["clean", "tokenize", "train"]
    assert inputs["tokenize"].dataset.digest == StageOutput(config.workspace, "tokenize").input_hash()[:36]
    assert [t.value for t in inputs["tokenize"].tags] == ["training"]

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracker.uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", tracker.uri)
    generator = mlflow.transformers.load_model(f"models:/{name}@champion")
    assert generator("The nurse said", max_length=12, do_sample=False)[0]["generated_text"].startswith("The nurse")
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    [text] = pyfunc.predict(["The doctor"], params={"max_new_tokens": 4, "do_sample": False})
    assert isinstance(text, str) and text


def test_the_readme_pipeline_example_runs_without_warnings_inside_the_context(workspace, caplog):
    import warnings

    from transformers import pipeline

    config = base_config(workspace, register_model=False)
    execute(config, "evaluate", evaluate.run)
    export = str(workspace / "evaluate" / "export")
    caplog.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        generator = pipeline("text-generation", model=export)
        text = generator("The Python package")[0]["generated_text"]
    assert [str(w.message) for w in caught] == [] and [r.getMessage() for r in caplog.records if r.levelno >= 30] == []
    assert len(generator.tokenizer(text)["input_ids"]) <= 32  # tokenize.seq_len: the model's context


def test_a_failed_gate_registers_a_candidate_and_says_why(workspace, tmp_path):
    config = base_config(workspace, gate={"max_perplexity": 1e6})
    tracker = Tracker(config.workspace, None, "test")
    execute(config, "evaluate", evaluate.run, tracker=tracker)
    failing = base_config(workspace, gate={"max_perplexity": 1.0, "max_crows_pairs_deviation": 0.5})

    summary = execute(failing, "evaluate", evaluate.run, tracker=tracker)  # not an error

    assert summary.status == "ran"
    assert summary.warnings and "perplexity" in summary.warnings[0] and "fail: needs <= 1" in summary.warnings[0]
    name = config.tracking.registered_model
    assert int(tracker.client.get_model_version_by_alias(name, "champion").version) == 1
    candidate = tracker.client.get_model_version_by_alias(name, "candidate")
    assert int(candidate.version) == 2 and candidate.tags["gristmill.gate.alias"] == "candidate"
    assert candidate.tags["gristmill.gate.perplexity.verdict"] == "fail"
    assert candidate.tags["gristmill.gate.pairs.pct_stereotype_deviation.verdict"] == "pass"
    assert candidate.description.startswith("candidate: perplexity")
    # The side-by-side table: each check's value for the new model and for the current champion (version 1).
    table = json.loads(
        Path(tracker.client.download_artifacts(summary.mlflow_run_id, "gate.json", str(tmp_path))).read_text()
    )
    rows = [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
    assert {int(r["champion_version"]) for r in rows} == {1} and all(r["champion"] is not None for r in rows)
    artifacts = {a.path for a in tracker.client.list_artifacts(summary.mlflow_run_id)}
    assert {"gate.md", "gate.png", "report.json", "model"} <= artifacts


def test_editing_a_bias_file_reruns_the_stage(workspace, tmp_path):
    crows = write_crows_pairs(tmp_path / "crows.csv")
    config = base_config(workspace, bias=[{"kind": "crows_pairs", "path": str(crows)}], register_model=False)
    assert execute(config, "evaluate", evaluate.run).status == "ran"
    assert execute(config, "evaluate", evaluate.run).status == "up to date"
    write_crows_pairs(crows, [("Women can't drive.", "Men can't drive.", "stereo", "gender")])
    config = base_config(workspace, bias=[{"kind": "crows_pairs", "path": str(crows)}], register_model=False)
    assert execute(config, "evaluate", evaluate.run).status == "ran"

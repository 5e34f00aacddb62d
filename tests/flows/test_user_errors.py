"""Every problem a user can cause ends in a few plain lines, exit code 2, no traceback, and an untouched workspace."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gristmill.flows.cli import app

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "conf" / "demo.yaml"


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def bad_inputs(tmp: Path) -> dict[str, list[str]]:
    """The issue's list: each a command line that must fail as a user error."""
    (tmp / "empty").mkdir()
    (tmp / "capture.warc.wat.gz").write_bytes(b"\x1f\x8b\x08\x00")
    (tmp / "notes.warc.gz").write_text("this is a text file with the wrong name\n")
    source = "crawl.sources=[{path: %s}]"
    return {
        "missing source path": [source % (tmp / "nowhere" / "dump.jsonl")],
        "glob matching nothing": [source % f"'{tmp}/*.jsonl'"],
        "empty directory source": [source % (tmp / "empty")],
        "wat source": [source % (tmp / "capture.warc.wat.gz")],
        "text file named .warc.gz": [source % (tmp / "notes.warc.gz")],
        "stage before its upstream": ["--stage", "tokenize"],
        "unknown stage": ["--stage", "tokenise"],
        "override not YAML": ["crawl.max_pages=[3"],
        "override list not closed": ["crawl.seeds=[http://a"],
        "override with a tab and a line break": ["name=\tx\ny: ["],
        "message with rich markup": ['crawl.exclude=["[/"]'],
        "unknown key in a list item": ["crawl.sources=[{pathh: x}]"],
        "override without a key": ["=3"],
        "config file missing": ["--config-missing"],
    }


CASES = [
    "missing source path",
    "glob matching nothing",
    "empty directory source",
    "wat source",
    "text file named .warc.gz",
    "stage before its upstream",
    "unknown stage",
    "override not YAML",
    "override list not closed",
    "override with a tab and a line break",
    "message with rich markup",
    "unknown key in a list item",
    "override without a key",
    "config file missing",
]


@pytest.mark.parametrize("case", CASES)
def test_a_user_error_is_a_short_message_with_exit_code_2(case, tmp_path):
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "kept.txt").write_text("a file of an earlier run")
    before = snapshot(workspace)
    args = bad_inputs(tmp_path)[case]
    config = str(tmp_path / "no-such.yaml") if args == ["--config-missing"] else str(DEMO)
    args = [] if args == ["--config-missing"] else args

    result = CliRunner().invoke(app, ["run", config, f"workspace={workspace}", *args])

    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: "), result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 6, result.output
    assert snapshot(workspace) == before


def test_messages_name_what_and_where(tmp_path):
    inputs = bad_inputs(tmp_path)
    expected = {
        "missing source path": "no such file or directory",
        "glob matching nothing": "no file matches this glob",
        "wat source": "WAT file holds metadata",
        "text file named .warc.gz": "notes.warc.gz: not a WARC file",
        "stage before its upstream": "stage 'clean' has no output",
        "message with rich markup": "'[/' is not a valid regular expression",
        "unknown key in a list item": "crawl.sources.0.pathh: unknown key; allowed keys here: content_type, kind, path",
    }
    for case, text in expected.items():
        result = CliRunner().invoke(app, ["run", str(DEMO), f"workspace={tmp_path / 'ws'}", *inputs[case]])
        assert text in result.output, (case, result.output)


def test_debug_shows_the_traceback(tmp_path):
    result = CliRunner().invoke(app, ["run", str(DEMO), "crawl.max_pages=[3", "--debug"])
    assert result.exit_code != 0
    assert type(result.exception).__name__ == "ConfigError"


def test_an_unquoted_cron_override_is_a_string():
    result = CliRunner().invoke(app, ["config", str(DEMO), "schedule.cron=*/5 * * * *"])
    assert result.exit_code == 0, result.output
    assert '"cron": "*/5 * * * *"' in result.output


@pytest.mark.parametrize(
    ("override", "shown"),
    [
        ("schedule.cron=@daily", '"cron": "@daily"'),  # `@` is reserved in YAML: a scanner error, so the text
        ("tracking.experiment=x: y", '"experiment": "x: y"'),  # a block mapping to YAML, the text here
        ("tracking.experiment=%x", '"experiment": "%x"'),  # a directive to YAML
    ],
)
def test_overrides_yaml_cannot_read_are_their_text(override, shown):
    result = CliRunner().invoke(app, ["config", str(DEMO), override])
    assert result.exit_code == 0, result.output
    assert shown in result.output


def test_a_user_error_inside_a_flow_is_printed_without_traceback(prefect_harness, tmp_path, capfd):
    """Raised inside Prefect flows and tasks, a user error still ends as the same few lines; Prefect's own log of
    the failed runs keeps the message and loses the traceback."""
    import json

    lines = [json.dumps({"text": "one good line of a corpus"}), "{broken", "{broken too", "[1, 2]"]
    (tmp_path / "dump.jsonl").write_text("\n".join(lines) + "\n")
    config = tmp_path / "bad.yaml"
    config.write_text(
        f"name: bad\nworkspace: {tmp_path / 'ws'}\n"
        f"crawl:\n  sources: [{{path: {tmp_path / 'dump.jsonl'}}}]\n  progress_bar: false\n  extract_workers: 1\n"
    )

    result = CliRunner().invoke(app, ["run", str(config)])
    logged = capfd.readouterr()

    assert result.exit_code == 2, result.output
    error, fix, hint = result.output.rstrip().splitlines()[-3:]  # after Prefect's log lines
    assert error.startswith("error: crawl lost 3 of 4 records (75%)") and fix.startswith("fix:"), result.output
    everything = result.output + logged.err + logged.out
    assert "Encountered exception during execution: UserError" in everything
    assert "Traceback" not in everything


def test_bad_files_named_by_the_config_are_user_errors(tmp_path):
    from gristmill.conf.schema import UserError
    from gristmill.tasks.clean.audit import load_lexicon
    from gristmill.tasks.demo_site.build import build_demo_site
    from gristmill.tasks.evaluate.bias import load_pairs
    from gristmill.tasks.tokenize.bpe import load_given

    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "mine.txt").write_text("not a demo site")
    (tmp_path / "bad.yaml").write_text("pairs: [{bias_type: x}]\n")
    (tmp_path / "tokenizer.json").write_text("{")
    for call, where in [
        (lambda: load_lexicon(tmp_path / "missing.yaml"), "missing.yaml"),
        (lambda: load_pairs(tmp_path / "bad.yaml"), r"pairs\[0\] needs"),
        (lambda: load_given(tmp_path / "tokenizer.json"), "tokenizer.json"),
        (lambda: build_demo_site(tmp_path / "site"), "not a gristmill demo site"),
    ]:
        with pytest.raises(UserError, match=where):
            call()

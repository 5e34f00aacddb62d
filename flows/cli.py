"""The `gristmill` command: run the pipeline or one stage, serve it on a schedule, open the MLflow UI."""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

import gristmill.flows  # noqa: F401  (sets Prefect's offline defaults before Prefect is imported)
from gristmill.conf.schema import STAGES, PipelineConfig, UserError, load_config

app = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=True)
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True, highlight=False)

ConfigArg = Annotated[Path, typer.Argument(help="YAML config, e.g. conf/demo.yaml")]
OverridesArg = Annotated[list[str] | None, typer.Argument(help="Overrides: section.key=value …")]
DebugOption = Annotated[bool, typer.Option("--debug", help="Show the traceback of a user error too.")]


@contextlib.contextmanager
def user_errors(debug: bool = False) -> Iterator[None]:
    """A `UserError` (bad config, file, source, stage order, workspace state) ends the command with its message
    as plain lines and exit code 2; other exceptions keep their traceback (a bug is ours, not the user's)."""
    quiet = None if debug else _QuietUserErrors()
    for name in _PREFECT_RUN_LOGGERS if quiet else ():
        logging.getLogger(name).addFilter(quiet)
    try:
        yield
    except UserError as err:
        if debug:
            raise
        print_user_error(err)
        raise typer.Exit(err.exit_code) from None
    finally:
        for name in _PREFECT_RUN_LOGGERS if quiet else ():
            logging.getLogger(name).removeFilter(quiet)


def print_user_error(err: UserError) -> None:
    # markup=False: a message is text, and `[/` in a regex or a path must not be read as rich markup.
    errors.print(f"error: {err}", markup=False, style="red")
    if err.fix:
        errors.print(f"fix:   {err.fix}", markup=False)
    errors.print("(--debug shows the traceback)", markup=False, style="dim")


# Prefect logs a failed flow or task run's exception with its traceback; for a user error the message is enough.
_PREFECT_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


class _QuietUserErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], UserError):
            record.exc_info, record.exc_text = None, None
        return True


@app.command()
def run(
    config: ConfigArg,
    overrides: OverridesArg = None,
    stage: Annotated[str | None, typer.Option(help=f"Run one stage only: {', '.join(STAGES)}")] = None,
    debug: DebugOption = False,
) -> None:
    """Run the whole pipeline (or one stage against an existing workspace) and print a summary."""
    with user_errors(debug):
        cfg = load_config(config, overrides)
        if stage is not None and stage not in STAGES:
            raise UserError(f"--stage {stage!r} is not a stage", fix=f"choose one of {', '.join(STAGES)}")
        from gristmill.tasks.workspace import hold_workspace, preflight

        preflight(cfg, stage)  # before the lock and before MLflow: a bad source leaves the workspace as it was
        with hold_workspace(cfg, shlex.join(["gristmill", *sys.argv[1:]])):
            from gristmill.flows.output import pipeline_output
            from gristmill.flows.pipeline import pipeline
            from gristmill.flows.stages import STAGE_FLOWS

            started = time.perf_counter()
            with pipeline_output():  # entered after the imports: libraries set up their console handlers at import
                summaries = [STAGE_FLOWS[stage](cfg)] if stage else pipeline(cfg)
        # Prefect stops its temporary API server at exit and says so at INFO: the run is over, keep that quiet too.
        atexit.register(logging.getLogger("prefect").setLevel, logging.WARNING)
        print_summary(cfg, config, summaries, time.perf_counter() - started)


def print_summary(cfg: PipelineConfig, config_path: Path, summaries: list, seconds: float) -> None:
    table = Table(title=f"gristmill pipeline {cfg.name!r}: {seconds:.1f} s")
    for column in ("stage", "status", "in", "out", "time"):
        table.add_column(column, justify="right" if column in ("in", "out", "time") else "left")
    for s in summaries:
        table.add_row(
            s.stage, s.status, f"{s.count_in:,} {s.unit_in}", f"{s.count_out:,} {s.unit_out}", f"{s.seconds:.1f} s"
        )
    console.print(table)
    for s in summaries:
        for warning in s.warnings:
            console.print(f"warning {s.stage}: {warning}", markup=False, highlight=False, style="yellow")
    workspace = Path(cfg.workspace).resolve()
    console.print(f"workspace:      {workspace}")
    console.print(f"MLflow UI:      gristmill ui {config_path}")
    export = workspace / "evaluate" / "export"
    if export.is_dir():
        console.print(f"exported model: {export}")
        console.print(
            f"  python -c \"from transformers import pipeline; print(pipeline('text-generation', "
            f"model='{export}')('The Python package')[0]['generated_text'])\""
        )


@app.command()
def serve(config: ConfigArg, overrides: OverridesArg = None, debug: DebugOption = False) -> None:
    """Serve the pipeline as a Prefect deployment with the config's cron schedule; trigger it ad hoc with
    `prefect deployment run 'pipeline/<name>'`."""
    with user_errors(debug):
        cfg = load_config(config, overrides)
        from gristmill.flows.serve import serve_pipeline

        serve_pipeline(cfg)


@app.command()
def ui(config: ConfigArg, overrides: OverridesArg = None, port: int = 5000) -> None:
    """Start the MLflow UI on 127.0.0.1 against the pipeline's tracking store."""
    from gristmill.tasks.tracking import default_tracking_uri

    with user_errors():
        cfg = load_config(config, overrides)
    uri = cfg.tracking.uri or default_tracking_uri(cfg.workspace)
    console.print(f"MLflow UI at http://127.0.0.1:{port}  (store: {uri})")
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    # One worker serves one person's browser; MLflow's default four each import MLflow before the UI answers.
    command = [mlflow, "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    raise typer.Exit(subprocess.call(command, env=os.environ.copy()))


@app.command()
def history(config: ConfigArg, overrides: OverridesArg = None) -> None:
    """List the workspace's corpus generations, stage runs and registered model versions."""
    from gristmill.tasks.lifecycle import history as read_history

    with user_errors():
        cfg = load_config(config, overrides)
        for title, rows in read_history(cfg).items():
            print_rows(title, rows)


@app.command()
def gc(
    config: ConfigArg,
    overrides: OverridesArg = None,
    keep: Annotated[int, typer.Option(help="Keep intermediates and checkpoints of this many newest generations.")] = 1,
    dry_run: Annotated[bool, typer.Option(help="Only say what would be removed.")] = False,
) -> None:
    """Remove old generations' checkpoints, raw crawl shards, WARC files and dedup signatures, and files no
    manifest lists; say what was freed, per stage."""
    from gristmill.tasks.lifecycle import collect_garbage, freed_by_stage

    with user_errors():
        cfg = load_config(config, overrides)
        freed = collect_garbage(cfg, keep, dry_run)
    root = Path(cfg.workspace)
    rows = [{"path": str(f.path.relative_to(root)), "MB": f"{f.bytes / 1e6:.2f}", "why": f.why} for f in freed]
    print_rows("would free" if dry_run else "freed", rows)
    by_stage = freed_by_stage(freed, root)
    per_stage = [{"stage": r["stage"], "files": r["files"], "MB": f"{r['bytes'] / 1e6:.2f}"} for r in by_stage]
    print_rows("per stage", per_stage)
    console.print(
        f"{'would free' if dry_run else 'freed'} {sum(f.bytes for f in freed) / 1e6:.1f} MB in {len(freed)} paths"
    )


def print_rows(title: str, rows: list[dict]) -> None:
    if not rows:
        console.print(f"{title}: none")
        return
    table = Table(title=title)
    for column in rows[0]:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    console.print(table)


@app.command("config")
def show_config(config: ConfigArg, overrides: OverridesArg = None) -> None:
    """Validate a config and print it resolved, as JSON (the form Prefect's parameters take)."""
    with user_errors():
        cfg = load_config(config, overrides)
    console.print_json(json.dumps(cfg.model_dump(mode="json")))


@app.command()
def verify(config: ConfigArg, overrides: OverridesArg = None, debug: DebugOption = False) -> None:
    """Check every finished stage's shards against its manifest (size and checksum); exit 2 naming the damaged."""
    with user_errors(debug):
        cfg = load_config(config, overrides)
        from gristmill.tasks.shards import ShardError, StageOutput

        damaged = []
        for stage in STAGES:
            output = StageOutput(cfg.workspace, stage)
            manifest = output.read_manifest()
            problems = output.verify() if manifest else []
            shards = sum(len(infos) for infos in manifest.shards.values()) if manifest else 0
            state = "not run" if manifest is None else f"{len(problems)} problem(s)" if problems else "intact"
            console.print(f"{stage:<9} {shards:>6} shards  {state}", markup=False, highlight=False)
            damaged += [f"  {problem} (written by stage {stage!r})" for problem in problems]
        if damaged:
            raise ShardError(
                "damaged stage output:\n" + "\n".join(damaged),
                fix="run the pipeline again: each damaged shard's unit is redone, and the stages after it",
            )


if __name__ == "__main__":
    app()

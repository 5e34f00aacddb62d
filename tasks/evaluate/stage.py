"""The evaluate stage: perplexity and bits per byte, sample generations, the configured bias benchmarks; export to
Hugging Face; register with MLflow's transformers flavor under the alias the promotion gate decides.

The export is checked before it is registered: its logits must match ours, and `transformers.pipeline` must load
it and generate. The registered version carries the gate's checks as tags and links back to the pipeline run
(the workspace's last one when the stage runs alone) and, through its run's dataset inputs, to the token shards.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from gristmill.conf.schema import BiasCheckConfig, config_file
from gristmill.lightning_model.export import export_hf, max_logit_difference
from gristmill.lightning_model.weights import load_model
from gristmill.tasks.evaluate import bias as scores
from gristmill.tasks.evaluate.gate import CANDIDATE, CHAMPION, Check, Decision, decide, gate_checks
from gristmill.tasks.evaluate.generate import generate_samples
from gristmill.tasks.evaluate.perplexity import perplexity
from gristmill.tasks.evaluate.scoring import SentenceScorer, token_byte_lengths
from gristmill.tasks.shards import Manifest, StageOutput, UnitRecord, atomic_write_json
from gristmill.tasks.stage import StageContext, StageResult, corpus_generations, stage_fingerprint
from gristmill.tasks.tokenize.bpe import load_tokenizer
from gristmill.tasks.tracking import PARENT_VERSION_TAG, WEIGHTS_RUN_TAG

log = logging.getLogger("gristmill.evaluate")

EXPORT_TOLERANCE = 1e-4
MODEL_ARTIFACT = "model"
GATE_TAG = "gristmill.gate"
EVALUATION_TAG = "gristmill.evaluation"  # the stage's key (config and input): which evaluation made a version
ALIAS_BEFORE_TAG = "gristmill.alias_before"  # the version that held the alias this one took


def run(ctx: StageContext) -> StageResult:
    cfg = ctx.config.evaluate
    tokenized = StageOutput(ctx.config.workspace, "tokenize")
    tokenizer_dir = tokenized.path / "tokenizer"
    val_paths = tokenized.shard_paths("val")
    model, model_config = load_model(ctx.upstream.path / ctx.upstream.read_manifest().files["model"])
    tokenizer = load_tokenizer(tokenizer_dir)
    bos, eos = model_config.bos_token_id, model_config.eos_token_id
    scorer = SentenceScorer(model, tokenizer, bos, model_config.pad_token_id, cfg.score_batch_tokens)
    export_dir = ctx.output.path / "export"

    def evaluate() -> UnitRecord:
        ppl = perplexity(model, val_paths, ctx.config.train.batch_size, cfg.ppl_batches, token_byte_lengths(tokenizer))
        texts = {
            text: scorer.text(config_file(text, "evaluate.texts").read_text(encoding="utf-8")) for text in cfg.texts
        }
        samples = generate_samples(
            model, tokenizer, cfg.prompts, cfg.max_new_tokens, cfg.temperature, cfg.top_k, bos, eos, cfg.seed
        )
        bias = {}
        for check in cfg.bias:
            summary, rows = run_bias_check(check, model, tokenizer, scorer, bos, cfg.seed)
            bias[check.label] = _metric_keys(summary)
            ctx.table(f"bias_{scores.clean_label(check.label)}", rows)
        _export(model, model_config, tokenizer_dir, export_dir)
        probe = torch.tensor([[bos, *tokenizer.encode(cfg.prompts[0]).ids]])
        logit_diff = max_logit_difference(model, export_dir, probe)
        if logit_diff > EXPORT_TOLERANCE:
            raise RuntimeError(f"exported model at {export_dir} differs from ours: max |Δlogit| = {logit_diff:.2e}")
        hf_sample = _hf_generate(export_dir, cfg.prompts[0], cfg.max_new_tokens)
        report = {
            "perplexity": ppl,
            "texts": texts,
            "bias": bias,
            "export": {"max_logit_diff": logit_diff, "hf_pipeline_sample": hf_sample},
            "generations": samples,
        }
        registry = _track(ctx, report, export_dir)
        report["registry"] = registry
        atomic_write_json(ctx.output.path / "report.json", report)
        stats = {
            **ppl,
            "texts": texts,
            "bias": bias,
            "export": {"max_logit_diff": logit_diff},
            "model_version": registry.get("version"),
            "alias": registry["alias"],
            "warnings": [f"registered as {CANDIDATE}: {reason}" for reason in registry["reasons"]],
        }
        return UnitRecord(unit="evaluate", stats=stats)

    unit = ctx.unit("evaluate", evaluate)
    return StageResult(
        units=[unit],
        count_in=int(unit.stats["tokens"]),
        unit_in="val tokens",
        count_out=1,
        unit_out="model",
        stats=unit.stats,
        files={"export": "export", "report": "report.json"},
    )


def run_bias_check(
    check: BiasCheckConfig, model: Any, tokenizer: Any, scorer: SentenceScorer, bos: int, seed: int
) -> tuple[dict, list[dict]]:
    """Read one configured benchmark and score it as its authors define it: (summary, one row per item)."""
    data = scores.load_check(check)
    if check.kind in ("crows_pairs", "pairs", "winobias"):
        return scores.score_pairs(data[: check.limit], scorer)
    if check.kind == "stereoset":
        return scores.score_stereoset(data[: check.limit], scorer)
    if check.kind == "bold":
        prompts = data[: check.limit]
        texts = scores.continue_prompts(
            model, tokenizer, [p.prompt for p in prompts], bos, check.max_new_tokens, seed=seed
        )
        return scores.score_bold(prompts, [t[0] for t in texts])
    if check.kind == "honest":
        honest = type(data)(data.templates[: check.limit], data.lexicon)
        texts = scores.continue_prompts(
            model, tokenizer, [t.prompt for t in honest.templates], bos, check.max_new_tokens, check.top_k, seed=seed
        )
        return scores.score_honest(honest, texts)
    raise ValueError(f"evaluate.bias: unknown kind {check.kind!r}")


def _metric_keys(summary: dict) -> dict:
    """Group and bias-type names (they come from the user's files) as valid MLflow metric key segments."""
    return {scores.clean_label(k): _metric_keys(v) if isinstance(v, dict) else v for k, v in summary.items()}


def _export(model, model_config, tokenizer_dir: Path, export_dir: Path) -> None:
    scratch = export_dir.with_name(".export.tmp")
    shutil.rmtree(scratch, ignore_errors=True)
    export_hf(model, model_config, tokenizer_dir, scratch)
    shutil.rmtree(export_dir, ignore_errors=True)
    scratch.rename(export_dir)


def _hf_generate(export_dir: Path, prompt: str, max_new_tokens: int) -> str:
    """Prove the export works the way users will load it: `transformers.pipeline`, offline."""
    from transformers import pipeline

    generator = pipeline("text-generation", model=str(export_dir), device="cpu")
    # A total length, not max_new_tokens: the export's generation config caps max_length at the context, and
    # naming both makes transformers warn.
    context = generator.model.config.max_position_embeddings
    length = min(context, len(generator.tokenizer(prompt)["input_ids"]) + max_new_tokens)
    return generator(prompt, max_length=length, do_sample=False)[0]["generated_text"]


# ---------------------------------------------------------------------------------------------- MLflow


def _track(ctx: StageContext, report: dict, export_dir: Path) -> dict[str, Any]:
    """Log the report and model, register a version and give it the gate's alias; return what was decided."""
    cfg = ctx.config.evaluate
    ctx.table("generations", report["generations"])
    checks = gate_checks(report, cfg)
    tracker, run_id = ctx.tracker, ctx.run_id
    if tracker is None or run_id is None:
        decision = decide(checks, None, cfg.gate.perplexity_tolerance)
        return {"alias": decision.alias, "reasons": decision.reasons, "checks": _check_rows(checks, None)}
    name = ctx.config.tracking.registered_model
    evaluation = f"{stage_fingerprint(ctx.config, 'evaluate')}-{ctx.input_hash}"
    if cfg.register_model:
        drop_unfinished_attempts(ctx, name, evaluation)  # before the gate reads the champion
    champion = tracker.version_by_alias(name, CHAMPION) if cfg.register_model else None
    champion_values = _gate_values(champion.tags) if champion else {}
    decision = decide(checks, champion_values.get("perplexity"), cfg.gate.perplexity_tolerance)
    rows = _check_rows(checks, champion_values, champion.version if champion else None)
    ctx.table("gate", rows)
    tracker.log_dict(run_id, report, "report.json")
    tracker.log_text(run_id, gate_markdown(decision.alias, decision.reasons, rows), "gate.md")
    tracker.log_figure(run_id, gate_figure(rows), "gate.png")
    _log_lineage(ctx)
    tracker.log_transformers_model(run_id, export_dir, MODEL_ARTIFACT, cfg.max_new_tokens)
    if not cfg.register_model:
        return {"alias": decision.alias, "reasons": decision.reasons, "checks": rows}
    pipeline_run = ctx.parent_run_id or tracker.last_pipeline_run(ctx.config.name) or ""
    if ctx.parent_run_id is None and pipeline_run:
        tracker.set_tags(run_id, {"gristmill.pipeline_run_id": pipeline_run})
    tags = {
        "gristmill.pipeline": ctx.config.name,
        "gristmill.pipeline_run_id": pipeline_run,
        "gristmill.corpus_generations": ",".join(str(g) for g in corpus_generations(ctx.workspace)),
        **_training_lineage(ctx.upstream.read_manifest()),
        f"{GATE_TAG}.alias": decision.alias,
        EVALUATION_TAG: evaluation,
        **{f"{GATE_TAG}.{c.name}": f"{c.value:.6g}" for c in checks},
        **{f"{GATE_TAG}.{c.name}.verdict": c.verdict for c in checks},
    }
    holder = tracker.version_by_alias(name, decision.alias)
    tags[ALIAS_BEFORE_TAG] = holder.version if holder else ""
    version = tracker.register_model(
        name, run_id, MODEL_ARTIFACT, tags=tags, description=_description(decision, checks)
    )
    tracker.set_alias(name, decision.alias, version)
    return {"version": version, "alias": decision.alias, "reasons": decision.reasons, "checks": rows}


def drop_unfinished_attempts(ctx: StageContext, name: str, evaluation: str) -> None:
    """Delete the versions an earlier attempt of this same evaluation registered and never finished (killed, or
    failed after registering: its run is not FINISHED and its unit was never recorded), giving back the alias it
    took, so that the evaluation now redone registers exactly one version and its gate sees the champion the
    attempt saw."""
    tracker = ctx.tracker
    for stale in tracker.versions_tagged(name, EVALUATION_TAG, evaluation):
        if stale.run_id == ctx.run_id or tracker.run_finished(stale.run_id):
            continue
        before = stale.tags.get(ALIAS_BEFORE_TAG, "")
        held = tracker.aliases_of(name, int(stale.version))
        tracker.delete_version(name, int(stale.version))
        for alias in held if before else ():
            tracker.set_alias(name, alias, int(before))
        log.warning(
            "deleted model version %s of %s: registered by an evaluation that did not finish (run %s)",
            stale.version,
            name,
            stale.run_id,
        )


def _training_lineage(train: Manifest) -> dict[str, str]:
    """The version's weights (the train run that logged them: a later training continues from there) and the
    version its training continued from, if any."""
    tags = {WEIGHTS_RUN_TAG: train.mlflow_run_id or ""}
    parent = train.stats.get("continued_from_version")
    return tags | ({PARENT_VERSION_TAG: str(parent)} if parent is not None else {})


LINEAGE = {"tokenize": "training", "clean": "corpus", "dedup": "corpus", "crawl": "corpus"}


def _log_lineage(ctx: StageContext) -> None:
    """The data behind the model as MLflow dataset inputs of this run: each upstream manifest's digest and path,
    the token shards as "training", the documents they came from as "corpus"."""
    for stage, context in LINEAGE.items():
        output = StageOutput(ctx.config.workspace, stage)
        if output.manifest_path.is_file():
            digest, source = output.input_hash(), str(output.manifest_path.resolve())
            ctx.tracker.log_dataset(ctx.run_id, stage, digest, source, context)


def _gate_values(tags: dict[str, str]) -> dict[str, float]:
    prefix = f"{GATE_TAG}."
    values = {}
    for key, value in tags.items():
        if key.startswith(prefix) and not key.endswith((".verdict", ".alias")):
            try:
                values[key.removeprefix(prefix)] = float(value)
            except ValueError:
                continue
    return values


def _check_rows(checks: list[Check], champion: dict[str, float] | None, champion_version: Any = None) -> list[dict]:
    return [
        {
            "check": c.name,
            "new": c.value,
            "champion": (champion or {}).get(c.name),
            "champion_version": champion_version,
            "limit": c.limit,
            "verdict": c.verdict,
        }
        for c in checks
    ]


def _description(decision: Decision, checks: list[Check]) -> str:
    head = f"{decision.alias}: " + ("every check passed" if not decision.reasons else "; ".join(decision.reasons))
    return "\n".join([head, *(f"- {c.describe()}" for c in checks)])


def gate_markdown(alias: str, reasons: list[str], rows: list[dict]) -> str:
    """The gate's verdict and the new model beside the current champion, as a markdown table."""
    lines = [
        f"## Registered as `{alias}`",
        "",
        *(f"- {reason}" for reason in reasons),
        "",
        "| check | new | champion | limit | verdict |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        champion = "" if r["champion"] is None else f"{r['champion']:.4g}"
        limit = "" if r["limit"] is None else f"{r['limit']:g}"
        lines.append(f"| {r['check']} | {r['new']:.4g} | {champion} | {limit} | {r['verdict']} |")
    return "\n".join(lines)


def gate_figure(rows: list[dict]):
    """A bar chart per check: the new model beside the current champion."""
    from matplotlib.figure import Figure  # no pyplot state (as tasks/figures.py), several axes side by side

    figure = Figure(figsize=(3 * len(rows), 3), layout="tight")
    axes = figure.subplots(1, len(rows), squeeze=False)
    for axis, row in zip(axes[0], rows, strict=True):
        values = [row["new"], row["champion"] if row["champion"] is not None else 0.0]
        axis.bar(["new", "champion"], values, color=["tab:blue", "tab:gray"])
        if row["limit"] is not None:
            axis.axhline(row["limit"], color="tab:red", linestyle="--", linewidth=1)
        axis.set_title(f"{row['check']}\n{row['verdict']}", fontsize=8)
    return figure

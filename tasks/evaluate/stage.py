"""The evaluate stage: perplexity, sample generations and a bias probe; export to Hugging Face; register.

The export is checked before it is registered: its logits must match ours, and `transformers.pipeline` must load
it and generate. The registered version carries tags that link it back to the pipeline's MLflow run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from gristmill.conf.schema import config_file
from gristmill.lightning_model.export import export_hf, max_logit_difference
from gristmill.lightning_model.weights import load_model
from gristmill.tasks.evaluate.bias import load_pairs, score_pairs
from gristmill.tasks.evaluate.generate import generate_samples
from gristmill.tasks.evaluate.perplexity import perplexity, sequence_logprob
from gristmill.tasks.shards import StageOutput, UnitRecord, atomic_write_json
from gristmill.tasks.stage import StageContext, StageResult, corpus_generations
from gristmill.tasks.tokenize.bpe import EOS_TOKEN, load_tokenizer

EXPORT_TOLERANCE = 1e-4
MODEL_ARTIFACT = "model"


def run(ctx: StageContext) -> StageResult:
    cfg = ctx.config.evaluate
    tokenized = StageOutput(ctx.config.workspace, "tokenize")
    tokenizer_dir = tokenized.path / "tokenizer"
    val_paths = tokenized.shard_paths("val")
    model, model_config = load_model(ctx.upstream.path / ctx.upstream.read_manifest().files["model"])
    tokenizer = load_tokenizer(tokenizer_dir)
    eos = tokenizer.token_to_id(EOS_TOKEN)
    export_dir = ctx.output.path / "export"

    def evaluate() -> UnitRecord:
        ppl = perplexity(model, val_paths, ctx.config.train.batch_size, cfg.ppl_batches)
        samples = generate_samples(
            model, tokenizer, cfg.prompts, cfg.max_new_tokens, cfg.temperature, cfg.top_k, eos, cfg.seed
        )
        pairs = load_pairs(config_file(cfg.bias_pairs, "evaluate.bias_pairs"))
        bias, bias_rows = score_pairs(pairs, lambda text: sequence_logprob(model, [eos, *tokenizer.encode(text).ids]))
        _export(model, model_config, tokenizer_dir, export_dir)
        probe = torch.tensor([[eos, *tokenizer.encode(cfg.prompts[0]).ids]])
        logit_diff = max_logit_difference(model, export_dir, probe)
        if logit_diff > EXPORT_TOLERANCE:
            raise RuntimeError(f"exported model at {export_dir} differs from ours: max |Δlogit| = {logit_diff:.2e}")
        hf_sample = _hf_generate(export_dir, cfg.prompts[0], cfg.max_new_tokens)
        report = {
            "perplexity": ppl,
            "bias": bias,
            "export": {"max_logit_diff": logit_diff, "hf_pipeline_sample": hf_sample},
            "generations": samples,
        }
        atomic_write_json(ctx.output.path / "report.json", report)
        version = _track(ctx, report, bias_rows, export_dir)
        stats = {**ppl, "bias": bias, "export": {"max_logit_diff": logit_diff}, "model_version": version}
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
    return generator(prompt, max_new_tokens=max_new_tokens, do_sample=False)[0]["generated_text"]


def _track(ctx: StageContext, report: dict, bias_rows: list[dict], export_dir: Path) -> int | None:
    ctx.table("generations", report["generations"])
    ctx.table("bias_pairs", bias_rows)
    tracker, run_id = ctx.tracker, ctx.run_id
    if tracker is None or run_id is None:
        return None
    tracker.log_dict(run_id, report, "report.json")
    tracker.log_artifacts(run_id, export_dir, MODEL_ARTIFACT)
    if not ctx.config.evaluate.register_model:
        return None
    tags = {
        "gristmill.pipeline": ctx.config.name,
        "gristmill.pipeline_run_id": ctx.parent_run_id or "",
        "gristmill.corpus_generations": ",".join(str(g) for g in corpus_generations(ctx.workspace)),
    }
    return tracker.register_model(
        ctx.config.tracking.registered_model,
        run_id,
        MODEL_ARTIFACT,
        tags=tags,
        description=f"val perplexity {report['perplexity']['perplexity']:.2f}; pipeline run {ctx.parent_run_id}",
    )

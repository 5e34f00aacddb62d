"""The one typed schema for a gristmill pipeline: a section per stage.

Every model forbids unknown keys, so a typo fails before any work starts. Flows take `PipelineConfig` as their
parameter, which is what lets Prefect's UI render the whole configuration as a form.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

STAGES: tuple[str, ...] = ("crawl", "dedup", "clean", "tokenize", "train", "evaluate")
Stage = Literal["crawl", "dedup", "clean", "tokenize", "train", "evaluate"]


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the key and what is allowed."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def fingerprint(self) -> str:
        """Stable hash of this section: the part of a manifest that says which config produced a stage."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


class DemoSiteConfig(Section):
    """The embedded default corpus: installed packages' documentation served on 127.0.0.1."""

    enabled: bool = Field(False, description="Generate and serve the demo site; its URL becomes the seed.")
    max_packages: int = Field(0, ge=0, description="Use at most this many distributions (0 = all installed).")


class CrawlConfig(Section):
    seeds: list[str] = Field(default_factory=list, description="Seed URLs (http or https).")
    demo_site: DemoSiteConfig = Field(default_factory=DemoSiteConfig)
    max_pages: int = Field(200, ge=1, description="Stop after fetching this many pages.")
    same_site: bool = Field(True, description="Follow only links on the seeds' hosts.")
    respect_robots: bool = Field(True, description="Obey robots.txt (Disallow and Crawl-delay).")
    user_agent: str = "gristmill/0.1 (+https://github.com/gristmill/gristmill)"
    request_timeout_s: float = Field(10.0, gt=0)
    min_delay_s: float = Field(0.0, ge=0, description="Minimum delay between two requests to one host.")
    max_body_bytes: int = Field(5_000_000, ge=1024, description="Larger responses are cut off and skipped.")
    allow_private_hosts: bool = Field(
        False, description="Allow loopback/private addresses (the demo and tests crawl 127.0.0.1)."
    )
    shard_rows: int = Field(1000, ge=1, description="Documents per output shard.")

    @field_validator("seeds")
    @classmethod
    def _http_only(cls, seeds: list[str]) -> list[str]:
        for url in seeds:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"seed {url!r} must start with http:// or https://")
        return seeds


class DedupConfig(Section):
    exact: bool = Field(True, description="Drop documents whose normalised text is identical.")
    near: bool = Field(True, description="Drop near-duplicates found by MinHash LSH.")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations.")
    threshold: float = Field(0.8, gt=0, lt=1, description="Jaccard similarity that counts as a near-duplicate.")
    shingle_words: int = Field(5, ge=1, le=32, description="Word n-gram size of the shingles.")
    seed: int = 1


class CleanConfig(Section):
    """Unicode fix-up plus the Gopher quality rules (Rae et al. 2021, as in datatrove)."""

    fix_unicode: bool = Field(True, description="Repair mojibake with ftfy and normalise to NFC.")
    min_words: int = Field(50, ge=0)
    max_words: int = Field(100_000, ge=1)
    min_mean_word_length: float = Field(3.0, ge=0)
    max_mean_word_length: float = Field(10.0, gt=0)
    max_symbol_word_ratio: float = Field(0.1, ge=0, description="Max ratio of '#' and ellipses to words.")
    max_bullet_lines_ratio: float = Field(0.9, ge=0, le=1)
    max_ellipsis_lines_ratio: float = Field(0.3, ge=0, le=1)
    min_alpha_words_ratio: float = Field(0.8, ge=0, le=1, description="Min share of words with a letter.")
    min_stop_words: int = Field(2, ge=0, description="Min count of {the, be, to, of, and, that, have, with}.")


class TokenizeConfig(Section):
    vocab_size: int = Field(8192, ge=300, le=65536)
    min_frequency: int = Field(2, ge=1)
    train_sample_docs: int = Field(100_000, ge=1, description="Documents the tokenizer is trained on.")
    seq_len: int = Field(256, ge=8, description="Tokens per training example (rows hold seq_len + 1).")
    val_fraction: float = Field(0.1, gt=0, lt=0.5, description="Share of documents held out, by hash.")
    tokenizer_path: str | None = Field(
        None, description="Use this tokenizer.json instead of training one (it must have <|endoftext|>)."
    )


class TrainConfig(Section):
    """A Llama-style decoder; names follow Hugging Face's LlamaConfig so export is a rename-free copy."""

    hidden_size: int = Field(128, ge=8)
    num_hidden_layers: int = Field(4, ge=1)
    num_attention_heads: int = Field(4, ge=1)
    num_key_value_heads: int = Field(4, ge=1)
    intermediate_size: int = Field(344, ge=8)
    rope_theta: float = Field(10_000.0, gt=0)
    tie_word_embeddings: bool = True
    max_steps: int = Field(300, ge=1)
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(3e-3, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Cosine decay floor as a share of the peak.")
    warmup_steps: int = Field(30, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    grad_clip: float = Field(1.0, ge=0)
    val_every_steps: int = Field(100, ge=1)
    val_batches: int = Field(20, ge=1)
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    devices: int | Literal["auto"] = "auto"
    precision: Literal["auto", "32-true", "bf16-mixed", "16-mixed"] = Field(
        "auto", description="auto = bf16-mixed on GPU, 32-true on CPU."
    )
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    accumulate_grad_batches: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    strategy: Literal["auto", "ddp", "fsdp"] = Field("auto", description="Lightning's multi-device strategy.")
    num_nodes: int = Field(1, ge=1)
    compile: bool = Field(False, description="torch.compile the model (GPU runs).")
    seed: int = 1337

    @model_validator(mode="after")
    def _heads_divide(self) -> TrainConfig:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"train.hidden_size ({self.hidden_size}) must be divisible by "
                f"train.num_attention_heads ({self.num_attention_heads})"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"train.num_attention_heads ({self.num_attention_heads}) must be divisible by "
                f"train.num_key_value_heads ({self.num_key_value_heads})"
            )
        if (self.hidden_size // self.num_attention_heads) % 2:
            raise ValueError("train.hidden_size / train.num_attention_heads must be even for rotary embeddings")
        return self


class EvaluateConfig(Section):
    prompts: list[str] = Field(
        default_factory=lambda: ["The Python package", "This library provides", "Licensed under the"]
    )
    max_new_tokens: int = Field(40, ge=1)
    temperature: float = Field(0.8, ge=0, description="0 = greedy decoding.")
    top_k: int = Field(50, ge=0)
    ppl_batches: int = Field(50, ge=1, description="Validation batches used for perplexity.")
    bias_pairs: str = Field("bias_pairs.yaml", description="Pairs file; relative paths resolve against conf/.")
    register_model: bool = True
    seed: int = 0


class TrackingConfig(Section):
    uri: str | None = Field(None, description="MLflow tracking URI; default sqlite in <workspace>/mlflow.")
    experiment: str = "gristmill"
    registered_model: str = Field("gristmill-lm", description="Name in the MLflow model registry.")


class ScheduleConfig(Section):
    cron: str | None = Field(None, description="Cron expression for `gristmill serve`; None = ad hoc only.")
    timezone: str = "UTC"


class PipelineConfig(Section):
    name: str = Field("demo", pattern=r"^[A-Za-z0-9_.-]+$", description="Pipeline (and deployment) name.")
    workspace: str = Field("workspace/demo", description="Where stages write; a local path.")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    crawl: CrawlConfig = Field(default_factory=CrawlConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    clean: CleanConfig = Field(default_factory=CleanConfig)
    tokenize: TokenizeConfig = Field(default_factory=TokenizeConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)

    @model_validator(mode="after")
    def _has_a_source(self) -> PipelineConfig:
        if not self.crawl.seeds and not self.crawl.demo_site.enabled:
            raise ValueError("crawl.seeds is empty and crawl.demo_site.enabled is false: nothing to crawl")
        return self

    def section(self, stage: str) -> Section:
        return getattr(self, stage)


CONF_DIR = Path(__file__).resolve().parent


def load_config(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """Read a YAML config, apply `a.b.c=value` overrides, and validate; raise ConfigError on any problem."""
    raw = read_yaml(Path(path))
    for item in overrides or []:
        apply_override(raw, item)
    return validate_config(raw, source=str(path))


def read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """One config file as a dict; `extends: other.yaml` (relative to this file) merges this file over another."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    if path.resolve() in seen:
        raise ConfigError(f"{path}: `extends` goes round in a circle: {' -> '.join(str(p) for p in seen)}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    base = raw.pop("extends", None)
    if base is None:
        return raw
    return deep_merge(read_yaml(path.parent / str(base), (*seen, path.resolve())), raw)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        both_dicts = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = deep_merge(merged[key], value) if both_dicts else value
    return merged


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set `a.b.c=value` in a nested dict; the value is parsed as YAML (so 50 is an int, [a, b] a list)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {part!r} is not a section")
    node[parts[-1]] = yaml.safe_load(value)


def validate_config(raw: dict[str, Any], source: str = "config") -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{source}: invalid configuration\n" + _explain(err)) from None


def _explain(err: ValidationError) -> str:
    lines = []
    for problem in err.errors():
        key = ".".join(str(p) for p in problem["loc"]) or "(top level)"
        kind = problem["type"]
        if kind == "extra_forbidden":
            allowed = _allowed_keys(problem["loc"][:-1])
            lines.append(f"  {key}: unknown key; allowed keys here: {', '.join(allowed)}")
        elif kind == "literal_error":
            lines.append(f"  {key}: {problem['msg']} (got {problem['input']!r})")
        else:
            lines.append(f"  {key}: {problem['msg']} (got {problem.get('input')!r})")
    return "\n".join(lines)


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = PipelineConfig
    for part in loc:
        annotation = model.model_fields[str(part)].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)

"""The one typed schema for a gristmill pipeline: a section per stage.

Every model forbids unknown keys, so a typo fails before any work starts. Flows take `PipelineConfig` as their
parameter, which is what lets Prefect's UI render the whole configuration as a form.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

from gristmill.tasks.text.languages import LID176_LANGUAGES, normalize_code

STAGES: tuple[str, ...] = ("crawl", "dedup", "clean", "tokenize", "train", "evaluate")
Stage = Literal["crawl", "dedup", "clean", "tokenize", "train", "evaluate"]


class UserError(Exception):
    """A problem the user can fix: config, files, sources, stage order, workspace state.

    The one error type the CLI prints as a few plain lines (what, where, how to fix) with exit code 2 and no
    traceback. Raise a subclass with a message that names the file, record or key; `fix` says what to do.
    """

    exit_code = 2

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.fix = fix


class ConfigError(UserError, ValueError):
    """A configuration that cannot run; the message names the key and what is allowed."""


# Two kinds of settings. A field declared with json_schema_extra=RUNTIME changes only HOW a stage runs (progress
# bars, concurrency, workers, devices, strategy, logging): it is left out of the stage's hash, so changing it never
# invalidates output. A field declared with CONFIG_FILE names a file whose *contents* are hashed, so
# an edited lexicon or tokenizer reruns its stage. Everything else is "produced" and hashed as it is.
RUNTIME: dict[str, Any] = {"runtime": True}
CONFIG_FILE: dict[str, Any] = {"config_file": True}


def is_runtime(field: FieldInfo) -> bool:
    extra = field.json_schema_extra
    return isinstance(extra, dict) and bool(extra.get("runtime"))


def names_a_file(field: FieldInfo) -> bool:
    extra = field.json_schema_extra
    return isinstance(extra, dict) and bool(extra.get("config_file"))


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def produced(self, key: str = "") -> dict[str, Any]:
        """The settings that decide what the stage produces: runtime fields left out, nested sections likewise,
        and every file named in config replaced by its path and content digest (ConfigError if it is missing).
        `key` is this section's dotted name, for error messages."""
        dumped = self.model_dump(mode="json")
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if is_runtime(field):
                del dumped[name]
            elif isinstance(value, Section):
                dumped[name] = value.produced(f"{key}{name}.")
            elif isinstance(value, list) and value and all(isinstance(v, Section) for v in value):
                dumped[name] = [v.produced(f"{key}{name}[{i}].") for i, v in enumerate(value)]
            elif names_a_file(field) and value:
                dumped[name] = {"path": value, "sha256": config_file_digest(value, f"{key}{name}")}
        return dumped

    def fingerprint(self, key: str = "") -> str:
        """Stable hash of what this section produces: the part of a stage's key that comes from config."""
        payload = json.dumps(self.produced(key), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


class DemoSiteConfig(Section):
    """The embedded default corpus: installed packages' documentation served on 127.0.0.1."""

    enabled: bool = Field(False, description="Generate and serve the demo site; its URL becomes the seed.")
    max_packages: int = Field(0, ge=0, description="Use at most this many distributions (0 = all installed).")


DEFAULT_TRACKING_PARAMS = [
    "utm_*", "fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "yclid", "_ga", "_hsenc", "_hsmi", "ref_src",
]  # fmt: skip
DEFAULT_CONTENT_TYPES = ["text/html", "application/xhtml+xml", "text/plain"]


class SourceConfig(Section):
    """An existing corpus to ingest beside (or instead of) crawling; every kind ends in the raw-record schema."""

    path: str = Field(description="A file, directory or glob; local or any fsspec URL (s3://, gs://, memory://).")
    kind: Literal["auto", "warc", "wet", "jsonl", "parquet", "files"] = Field(
        "auto", description="auto: from the name (.warc[.gz], .wet[.gz], .jsonl/.json[.gz|.zst], .parquet, a dir)."
    )
    text_field: str = Field("text", description="JSONL field or Parquet column holding the text.")
    url_field: str | None = Field("url", description="JSONL field or Parquet column holding the URL, if any.")
    content_type: Literal["text/plain", "text/html"] = Field(
        "text/plain", description="What the JSONL/Parquet text is: plain text, or HTML to extract."
    )


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration_seconds(text: str) -> float:
    """`90s`, `15m`, `12h`, `1d`, `2w` (or a bare number of seconds) in seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not a duration such as 90s, 15m, 12h, 1d or 2w")
    return float(match[1]) * DURATION_UNITS[match[2] or "s"]


class RefreshConfig(Section):
    """Scheduled runs: when the crawl revisits what it knows (conditional requests; a 304 keeps the stored page)."""

    recrawl_after: str | None = Field(
        None,
        description="Revisit known URLs when the last crawl is older than this (30m, 12h, 1d; 0s = every run). "
        "None: never; the crawl is up to date once done.",
        json_schema_extra=RUNTIME,
    )

    @field_validator("recrawl_after")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            duration_seconds(value)
        return value

    def due(self, last_crawl_at: float | None, now: float) -> bool:
        """Whether a crawl that finished at `last_crawl_at` (epoch seconds) is to be refreshed at `now`."""
        if self.recrawl_after is None or last_crawl_at is None:
            return False
        return now - last_crawl_at >= duration_seconds(self.recrawl_after)


class CrawlConfig(Section):
    """Polite asynchronous crawl from seeds plus ingestion of existing corpora, then main-text extraction."""

    seeds: list[str] = Field(default_factory=list, description="Seed URLs (http or https).")
    sources: list[SourceConfig] = Field(default_factory=list, description="Corpora to ingest: WARC, WET, JSONL, ...")
    demo_site: DemoSiteConfig = Field(default_factory=DemoSiteConfig)
    refresh: RefreshConfig = Field(default_factory=RefreshConfig)
    use_sitemaps: bool = Field(True, description="Seed from robots.txt sitemaps, else /sitemap.xml, per host.")
    # scope
    max_pages: int = Field(200, ge=1, description="Stop after storing this many pages.")
    max_pages_per_host: int | None = Field(None, ge=1, description="Stop storing pages of one host after this many.")
    max_depth: int | None = Field(None, ge=0, description="Links followed from a seed (seed = 0); None = unbounded.")
    same_site: bool = Field(True, description="Follow only links on the seeds' hosts (plus allowed_domains).")
    allowed_domains: list[str] = Field(
        default_factory=list,
        description="Follow these domains and their subdomains too (e.g. example.org); without same_site, only these.",
    )
    include: list[str] = Field(default_factory=list, description="Regexes; if any, a URL must match one.")
    exclude: list[str] = Field(default_factory=list, description="Regexes; a URL matching one is skipped.")
    strip_query_params: list[str] = Field(
        default_factory=lambda: list(DEFAULT_TRACKING_PARAMS),
        description="Query parameters dropped when normalising URLs (tracking ids; * is a wildcard).",
    )
    # politeness
    respect_robots: bool = Field(True, description="Obey robots.txt (Disallow and Crawl-delay).")
    user_agent: str = "gristmill/0.1 (+https://github.com/gristmill/gristmill)"
    concurrency: int = Field(
        16, ge=1, le=1024, description="Requests in flight across all hosts.", json_schema_extra=RUNTIME
    )
    per_host_concurrency: int = Field(
        2, ge=1, le=64, description="Requests in flight to one host.", json_schema_extra=RUNTIME
    )
    min_delay_s: float = Field(
        0.0, ge=0, description="Minimum delay between two requests to one host.", json_schema_extra=RUNTIME
    )
    max_crawl_delay_s: float = Field(
        30.0, ge=0, description="A robots.txt Crawl-delay above this is capped.", json_schema_extra=RUNTIME
    )
    # retries
    max_retries: int = Field(3, ge=0, le=20, description="Retries after timeouts, connection errors, 429 and 5xx.")
    backoff_base_s: float = Field(
        0.5, ge=0, description="First retry delay; doubles per attempt, with full jitter.", json_schema_extra=RUNTIME
    )
    backoff_max_s: float = Field(30.0, ge=0, description="Cap on one backoff delay.", json_schema_extra=RUNTIME)
    max_retry_after_s: float = Field(
        120.0, ge=0, description="A Retry-After longer than this is not waited for: the URL fails instead."
    )
    max_redirects: int = Field(10, ge=0, le=50, description="Redirect hops followed per URL (loops are cut earlier).")
    # response limits
    connect_timeout_s: float = Field(10.0, gt=0, description="Time to connect (and between two reads).")
    request_timeout_s: float = Field(30.0, gt=0, description="Total time for one request, body included.")
    max_body_bytes: int = Field(
        5_000_000, ge=1024, description="Larger bodies (after decompression) are cut off and the page skipped."
    )
    content_types: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CONTENT_TYPES), description="Media types stored; others are skipped."
    )
    allow_private_networks: list[str] = Field(
        default_factory=list,
        description="Non-public networks (CIDR) the crawler may reach anyway, e.g. 127.0.0.0/8 for a local site; "
        "every other loopback, private, link-local or reserved address is refused, on every redirect too.",
    )
    # outputs
    warc: bool = Field(True, description="Also write raw responses as WARC files (warc/*.warc.gz).")
    progress_bar: bool = Field(True, description="Show a progress bar on a terminal.", json_schema_extra=RUNTIME)
    # extraction
    extractor: Literal["trafilatura", "trafilatura-precision", "trafilatura-recall", "resiliparse"] = Field(
        "trafilatura-precision",
        description="Main-text extractor (F1 of each in docs/benchmarks.md#extraction-quality-crawl).",
    )
    extract_fallback: bool = Field(
        True,
        description="Extract a page again with the other extractor (trafilatura <-> resiliparse) when the chosen one "
        "found no text, or the same text as on extract_fallback_pages or more pages of its site (navigation).",
    )
    extract_fallback_pages: int = Field(
        3, ge=2, description="Pages of one site sharing one extracted text that make it navigation, not content."
    )
    extract_long_text_chars: int = Field(
        10_000,
        ge=0,
        description="With a trafilatura extractor, pages whose main text (as resiliparse finds it) is longer than "
        "this are resiliparse's: trafilatura keeps a fraction of long documentation pages, 50-100x slower "
        "(docs/benchmarks.md#long-pages). 0: trafilatura on every page.",
    )
    extract_timeout_s: float = Field(
        5.0,
        gt=0,
        description="Per-document extraction limit in CPU seconds (plus extract_timeout_s_per_mb); a page that "
        "uses more is extracted with resiliparse instead. CPU, not wall time: a busy machine slows a page down "
        "without cutting it.",
    )
    extract_timeout_s_per_mb: float = Field(
        4.0, ge=0, description="Extra extraction CPU seconds allowed per MB of page: long pages take longer."
    )
    extract_workers: int = Field(
        2, ge=1, le=256, description="Extraction processes per shard.", json_schema_extra=RUNTIME
    )
    extract_during_fetch: bool = Field(
        True,
        description="Extract pages while the crawl is still fetching (the same documents, sooner); off: extraction "
        "starts when the fetch has finished.",
        json_schema_extra=RUNTIME,
    )
    shard_rows: int = Field(1000, ge=1, description="Documents per output shard.")

    @field_validator("seeds")
    @classmethod
    def _http_only(cls, seeds: list[str]) -> list[str]:
        for url in seeds:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"seed {url!r} must start with http:// or https://")
        return seeds

    @field_validator("allow_private_networks")
    @classmethod
    def _networks(cls, networks: list[str]) -> list[str]:
        for network in networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as err:
                raise ValueError(f"{network!r} is not an IP network (CIDR such as 127.0.0.0/8): {err}") from err
        return networks

    @field_validator("include", "exclude")
    @classmethod
    def _regexes(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"{pattern!r} is not a valid regular expression: {err}") from err
        return patterns


class DedupConfig(Section):
    """Exact, URL and MinHash-LSH near-duplicate removal (see docs/benchmarks.md#dedup for measured quality)."""

    exact: bool = Field(True, description="Drop documents whose normalised text is identical.")
    near: bool = Field(True, description="Drop near-duplicates found by MinHash LSH.")
    url: bool = Field(False, description="Drop documents whose normalised URL was seen before (merged crawls).")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations.")
    threshold: float = Field(0.8, gt=0, lt=1, description="Jaccard similarity that counts as a near-duplicate.")
    bands: int | None = Field(
        None,
        ge=1,
        description="LSH bands; with `rows` overrides the split derived from the threshold (with `verify`: the "
        "most rows per band that still makes 99.5% of pairs at the threshold candidates; without: datasketch's).",
    )
    rows: int | None = Field(None, ge=1, description="LSH rows per band (FineWeb: 14 bands x 8 rows).")
    verify: bool = Field(True, description="Merge an LSH candidate pair only if its Jaccard >= threshold.")
    verify_by: Literal["shingles", "signature"] = Field(
        "shingles",
        description="How `verify` measures a pair's Jaccard: `shingles` exactly, from the two texts' shingle sets, "
        "wherever the MinHash estimate is within 4.5 standard deviations of the threshold (pairs with documents "
        "kept by earlier runs, whose text is gone, use the estimate); `signature` always uses the estimate "
        "(less exact: F1 0.92 vs 1.00 in docs/benchmarks.md).",
    )
    candidates: Literal["numpy", "datasketch"] = Field(
        "numpy",
        description="How LSH candidate pairs are found within a run: `numpy` sorts band keys of whole arrays; "
        "`datasketch` queries then inserts each document in a MinHashLSH (the reference; same result, slower).",
        json_schema_extra={"runtime": True},
    )
    shingle: Literal["word", "char"] = Field("word", description="Shingle unit: word or character n-grams.")
    shingle_words: int = Field(5, ge=1, le=32, description="Word n-gram size of the shingles.")
    shingle_chars: int = Field(24, ge=1, le=128, description="Character n-gram size (shingle = char).")
    exact_lowercase: bool = Field(True, description="Exact match ignores case.")
    exact_punctuation: bool = Field(True, description="Exact match ignores punctuation and symbols.")
    exact_digits: bool = Field(False, description="Exact match treats every run of digits as 0 (dates, counters).")
    survivor: Literal["earliest", "longest", "quality"] = Field(
        "earliest", description="Which document of a cluster is kept; ties go to the earliest (shard, row)."
    )
    incremental: bool = Field(
        False, description="Also dedup against documents kept by earlier runs (index in <workspace>/dedup_index)."
    )
    storage: Literal["memory", "redis"] = Field(
        "memory",
        description="Where datasketch's MinHashLSH lives during a run: the index of documents kept by earlier runs "
        "(`incremental`), and with `candidates: datasketch` every document's.",
        json_schema_extra={"runtime": True},
    )
    redis_host: str = Field("127.0.0.1", json_schema_extra={"runtime": True})
    redis_port: int = Field(6379, ge=1, le=65535, json_schema_extra={"runtime": True})
    redis_basename: str = Field(
        "gristmill-dedup", description="Key prefix; each run adds a unique suffix.", json_schema_extra={"runtime": True}
    )
    seed: int = 1

    @model_validator(mode="after")
    def _bands_and_rows(self) -> DedupConfig:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("dedup.bands and dedup.rows must be given together (or neither)")
        if self.bands is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(
                f"dedup.bands x dedup.rows ({self.bands} x {self.rows}) exceeds dedup.num_perm ({self.num_perm})"
            )
        return self


class LanguageConfig(Section):
    enabled: bool = True
    languages: list[str] = Field(
        default_factory=lambda: ["en"],
        description="Languages to keep (ISO 639-1, as lid.176 answers them); each is filtered by its own row of "
        "conf/languages.yaml.",
    )
    min_score: float = Field(0.65, ge=0, le=1, description="Min fastText score of the top language (FineWeb: 0.65).")

    @field_validator("languages")
    @classmethod
    def _known(cls, languages: list[str]) -> list[str]:
        languages = [normalize_code(code) or code for code in languages]  # en-US, eng -> en
        unknown = sorted(set(languages) - LID176_LANGUAGES)
        if unknown:
            raise ValueError(f"unknown language code(s) {unknown}; supported: {' '.join(sorted(LID176_LANGUAGES))}")
        if not languages:
            raise ValueError("languages is empty: nothing would be kept (disable the filter instead)")
        return languages


class RepetitionConfig(Section):
    """Gopher repetition bounds (Rae et al. 2021, table A1)."""

    enabled: bool = True
    dup_line_frac: float = Field(0.3, ge=0, le=1)
    dup_para_frac: float = Field(0.3, ge=0, le=1)
    dup_line_char_frac: float = Field(0.2, ge=0, le=1)
    dup_para_char_frac: float = Field(0.2, ge=0, le=1)
    top_ngram_char_frac: dict[int, float] = Field(default_factory=lambda: {2: 0.2, 3: 0.18, 4: 0.16})
    dup_ngram_char_frac: dict[int, float] = Field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
    )


class C4Config(Section):
    enabled: bool = True
    min_words_per_line: int = Field(3, ge=0)
    max_word_length: int = Field(1000, ge=1)
    remove_citations: bool = True
    filter_no_terminal_punct: bool = Field(False, description="Off as in FineWeb; on as in the C4 paper.")
    filter_javascript: bool = True
    filter_policy: bool = True
    filter_lorem_ipsum: bool = True
    filter_curly_bracket: bool = True
    min_sentences: int = Field(5, ge=0)


class FineWebConfig(Section):
    enabled: bool = True
    line_punct_thr: float = Field(0.12, ge=0, le=1, description="Min share of lines ending in punctuation.")
    short_line_thr: float = Field(0.67, ge=0, le=1, description="Max share of lines of <= short_line_length.")
    short_line_length: int = Field(30, ge=1)
    char_duplicates_ratio: float = Field(0.01, ge=0, le=1, description="Max share of chars in duplicated lines.")
    new_line_ratio: float = Field(0.3, ge=0, description="Max newlines per word.")


class PIIConfig(Section):
    enabled: bool = True
    emails: bool = True
    ips: bool = Field(True, description="Public (ipaddress.is_global) IPv4/IPv6 addresses only.")
    phones: bool = True


class AuditConfig(Section):
    enabled: bool = True
    lexicon: str = Field(
        "demographic_terms.yaml",
        description="Terms by group; relative paths resolve against conf/.",
        json_schema_extra=CONFIG_FILE,
    )
    max_disparity: float = Field(2.0, gt=1, description="Warn when a group's removal rate exceeds overall x this.")
    min_docs: int = Field(5, ge=1, description="Judge a group's rate only when this many of its docs entered.")
    samples_per_rule: int = Field(5, ge=0, description="Example removals per rule in the MLflow table.")


LANGUAGE_TABLE = "languages.yaml"  # the per-language filter table, package data beside this file


class LanguageRow(Section):
    """One language's filter settings (a row of conf/languages.yaml, or an override in `clean.per_language`).

    Every key is optional: an unset key keeps the clean section's value. `repetition`, `c4` and `fineweb` take
    any keys of those sections."""

    source: str | None = Field(None, description="Where the row's values come from.")
    terminals: str | None = Field(None, description="Marks that end a sentence.")
    stop_words: list[str] | None = Field(None, description="Stop words of the Gopher stop-word rule.")
    min_stop_words: int | None = Field(None, ge=0)
    min_words: int | None = Field(None, ge=0)
    max_words: int | None = Field(None, ge=1)
    min_mean_word_length: float | None = Field(None, ge=0)
    max_mean_word_length: float | None = Field(None, gt=0)
    min_alpha_words_ratio: float | None = Field(None, ge=0, le=1)
    repetition: dict[str, Any] | None = None
    c4: dict[str, Any] | None = None
    fineweb: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _sections(self) -> LanguageRow:
        for name, section in (("repetition", RepetitionConfig), ("c4", C4Config), ("fineweb", FineWebConfig)):
            if getattr(self, name) is not None:
                section.model_validate(getattr(self, name))  # unknown keys and bad values fail here
        return self


def load_language_table(path: Path | None = None) -> dict[str, LanguageRow]:
    """The shipped per-language table, validated row by row."""
    path = path or CONF_DIR / LANGUAGE_TABLE
    raw = yaml.safe_load(path.read_text()) or {}
    table = {}
    for code, row in raw.items():
        if normalize_code(code) != code or code not in LID176_LANGUAGES:
            raise ConfigError(f"{path}: {code!r} is not an ISO 639-1 code that language id answers")
        try:
            table[code] = LanguageRow.model_validate(row)
        except ValidationError as err:
            raise ConfigError(f"{path}: row {code!r}: {err}") from err
    return table


class CleanConfig(Section):
    """Filters in FineWeb's order: language -> Gopher repetition -> Gopher quality -> C4 -> FineWeb -> PII.

    The Gopher quality bounds stay top-level keys (configs already set `clean.min_words`).
    """

    fix_unicode: bool = Field(True, description="Repair mojibake with ftfy and normalise to NFC.")
    language: LanguageConfig = Field(default_factory=LanguageConfig)
    repetition: RepetitionConfig = Field(default_factory=RepetitionConfig)
    gopher_quality: bool = Field(True, description="Apply the Gopher quality rules below.")
    min_words: int = Field(50, ge=0)
    max_words: int = Field(100_000, ge=1)
    min_mean_word_length: float = Field(3.0, ge=0)
    max_mean_word_length: float = Field(10.0, gt=0)
    max_symbol_word_ratio: float = Field(0.1, ge=0, description="Max ratio of '#' and ellipses to words.")
    max_bullet_lines_ratio: float = Field(0.9, ge=0, le=1)
    max_ellipsis_lines_ratio: float = Field(0.3, ge=0, le=1)
    min_alpha_words_ratio: float = Field(0.8, ge=0, le=1, description="Min share of words with a letter.")
    alpha_ratio_over: Literal["words", "tokens"] = Field(
        "words",
        description="Denominator of that share: words (the Gopher paper) or all tokens, punctuation marks included "
        "(datatrove 0.10, which removes far more code-heavy pages).",
    )
    min_stop_words: int = Field(
        2,
        ge=0,
        description="Min distinct stop words: English {the, be, to, of, and, that, have, with}; other languages "
        "their row's list in conf/languages.yaml.",
    )
    c4: C4Config = Field(default_factory=C4Config)
    fineweb: FineWebConfig = Field(default_factory=FineWebConfig)
    pii: PIIConfig = Field(default_factory=PIIConfig)
    url_blocklist: str | None = Field(
        None, description="File of blocked domains, one a line (subdomains too).", json_schema_extra=CONFIG_FILE
    )
    badwords: str | None = Field(
        None, description="File of words; a document containing one is removed.", json_schema_extra=CONFIG_FILE
    )
    audit: AuditConfig = Field(default_factory=AuditConfig)
    per_language: dict[str, LanguageRow] = Field(
        default_factory=dict,
        description="Per-language overrides of conf/languages.yaml, key by key: {code: {min_words: 30, ...}}.",
    )

    @field_validator("per_language")
    @classmethod
    def _language_codes(cls, rows: dict[str, LanguageRow]) -> dict[str, LanguageRow]:
        bad = sorted(code for code in rows if normalize_code(code) != code or code not in LID176_LANGUAGES)
        if bad:
            raise ValueError(f"per_language: {bad} are not ISO 639-1 codes that language id answers")
        return rows


class TokenizeConfig(Section):
    vocab_size: int = Field(8192, ge=300, le=65536)
    min_frequency: int = Field(2, ge=1)
    train_sample_docs: int = Field(100_000, ge=1, description="Documents the tokenizer is trained on.")
    seq_len: int = Field(256, ge=8, description="Tokens per training example (rows hold seq_len + 1).")
    val_fraction: float = Field(0.1, gt=0, lt=0.5, description="Share of documents held out, by hash.")
    tokenizer_path: str | None = Field(
        None,
        description="Use this tokenizer.json instead of training one (it must have <|endoftext|>).",
        json_schema_extra=CONFIG_FILE,
    )
    # A setting (not only a code change) so that token shards packed without BOS are out of date and repacked.
    start_with_bos: bool = Field(
        True, description="Start every document with <|startoftext|>: the BOS the export declares and lm-eval uses."
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
    accelerator: Literal["auto", "cpu", "gpu"] = Field(
        "auto",
        description="Where training runs (a run moved to GPU resumes its checkpoint).",
        json_schema_extra=RUNTIME,
    )
    devices: int | Literal["auto"] = Field("auto", description="Devices per node.", json_schema_extra=RUNTIME)
    precision: Literal["auto", "32-true", "bf16-mixed", "16-mixed"] = Field(
        "auto", description="auto = bf16-mixed on GPU, 32-true on CPU."
    )
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.", json_schema_extra=RUNTIME)
    accumulate_grad_batches: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    strategy: Literal["auto", "ddp", "fsdp"] = Field(
        "auto", description="Lightning's multi-device strategy.", json_schema_extra=RUNTIME
    )
    num_nodes: int = Field(1, ge=1, description="Machines training together.", json_schema_extra=RUNTIME)
    compile: bool = Field(False, description="torch.compile the model (GPU runs).", json_schema_extra=RUNTIME)
    seed: int = 1337
    mode: Literal["continue", "scratch"] = Field(
        "continue",
        description="When the corpus gains a generation: continue: train on from the current champion (the "
        "registry's `champion` alias; a new model when there is none), on the new generation's data; scratch: train "
        "a new model on the whole corpus.",
    )

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


class BiasCheckConfig(Section):
    """One bias benchmark, read from its file as published; checked when the config is validated."""

    kind: Literal["crows_pairs", "stereoset", "bold", "winobias", "honest", "pairs"] = Field(
        description="crows_pairs: CSV; stereoset: dev.json; bold: one domain's prompt JSON; winobias: the data "
        "directory; honest: template TSV (with `lexicon`); pairs: gristmill's YAML pairs."
    )
    path: str = Field(description="The file (a directory for winobias); relative paths also resolve against conf/.")
    name: str | None = Field(None, description="Key in the report and gate (default: the kind; unique).")
    lexicon: str | None = Field(None, description="honest: HurtLex TSV (`lemma`, `category`, `level` columns).")
    split: Literal["dev", "test"] = Field("dev", description="winobias: which files (`*.txt.dev` or `*.txt.test`).")
    top_k: int = Field(5, ge=1, le=100, description="honest: completions per template.")
    max_new_tokens: int = Field(20, ge=1, description="bold/honest: tokens generated per prompt (capped to fit).")
    limit: int | None = Field(None, ge=1, description="Use only the first N items (for a quick look).")

    @property
    def label(self) -> str:
        return self.name or self.kind

    @property
    def resolved_path(self) -> Path:
        if self.kind == "winobias":  # a directory (config_file finds files): the same rule, the loader checks it
            named = Path(self.path)
            return named if named.is_absolute() or named.exists() else CONF_DIR / named
        return config_file(self.path, f"evaluate.bias ({self.kind}) path")

    @property
    def resolved_lexicon(self) -> Path | None:
        return config_file(self.lexicon, "evaluate.bias (honest) lexicon") if self.lexicon else None

    @model_validator(mode="after")
    def _file_is_usable(self) -> BiasCheckConfig:
        # Read the file now, so a wrong one stops the run before any stage works (lazy import: no cycle).
        from gristmill.tasks.evaluate.loaders import load_check

        load_check(self)
        return self


class GateConfig(Section):
    """Thresholds that decide the registry alias: `champion` when every set one passes (and perplexity is not
    worse than the current champion's beyond the tolerance), otherwise `candidate`. None = not checked."""

    max_perplexity: float | None = Field(None, gt=0, description="Validation perplexity at most this.")
    max_crows_pairs_deviation: float | None = Field(
        None, ge=0, le=0.5, description="|pct_stereotype - 0.5| at most this (crows_pairs and pairs checks)."
    )
    max_stereoset_ss_deviation: float | None = Field(None, ge=0, le=50, description="|SS - 50| at most this.")
    min_stereoset_icat: float | None = Field(None, ge=0, le=100, description="StereoSet ICAT at least this.")
    max_bold_sentiment_gap: float | None = Field(
        None, ge=0, description="Largest gap between groups' mean VADER compound score at most this."
    )
    max_honest_score: float | None = Field(None, ge=0, le=1, description="HONEST score at most this.")
    perplexity_tolerance: float = Field(
        0.02, ge=0, description="A new champion's perplexity may exceed the current champion's by this share."
    )


class EvaluateConfig(Section):
    prompts: list[str] = Field(
        default_factory=lambda: ["The Python package", "This library provides", "Licensed under the"]
    )
    max_new_tokens: int = Field(40, ge=1, description="Capped so prompt + new tokens fit the model's context.")
    temperature: float = Field(0.8, ge=0, description="0 = greedy decoding.")
    top_k: int = Field(50, ge=0)
    ppl_batches: int = Field(50, ge=1, description="Validation batches used for perplexity.")
    texts: list[str] = Field(default_factory=list, description="Text files to report perplexity and bits/byte on.")
    bias: list[BiasCheckConfig] = Field(
        default_factory=lambda: [BiasCheckConfig(kind="pairs", path="bias_pairs.yaml")],
        description="Bias benchmarks to run, each from its published file.",
    )
    score_batch_tokens: int = Field(
        8192, ge=64, description="Tokens per batch when scoring sentences.", json_schema_extra={"runtime": True}
    )
    gate: GateConfig = Field(default_factory=GateConfig)
    register_model: bool = True
    seed: int = 0

    @field_validator("bias")
    @classmethod
    def _unique_names(cls, checks: list[BiasCheckConfig]) -> list[BiasCheckConfig]:
        labels = [c.label for c in checks]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(f"two bias checks are called {', '.join(repeated)}: give each a distinct `name`")
        return checks

    @field_validator("texts")
    @classmethod
    def _texts_exist(cls, texts: list[str]) -> list[str]:
        for text in texts:
            config_file(text, "evaluate.texts")
        return texts

    def fingerprint(self, key: str = "") -> str:
        """The settings plus the CONTENT of every file they name: an edited bias file reruns the stage."""
        from gristmill.tasks.evaluate.loaders import check_files

        files = [f for check in self.bias for f in check_files(check)] + [
            config_file(t, "evaluate.texts") for t in self.texts
        ]
        digests = {str(f): _content_digest(f) for f in files}
        payload = json.dumps({"settings": super().fingerprint(key), "files": digests}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


class TrackingConfig(Section):
    uri: str | None = Field(None, description="MLflow tracking URI; default sqlite in <workspace>/mlflow.")
    experiment: str = "gristmill"
    registered_model: str = Field("gristmill-lm", description="Name in the MLflow model registry.")


CRON_ALIASES = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


class ScheduleConfig(Section):
    cron: str | None = Field(None, description="Cron expression for `gristmill serve`; None = ad hoc only.")
    timezone: str = Field("UTC", description="IANA time zone the cron expression is read in, e.g. Europe/Paris.")
    flow: Literal["pipeline", "refresh"] = Field(
        "pipeline",
        description="What the cron starts: the whole pipeline, or the data refresh (crawl -> tokenize), which "
        "starts the training deployment itself when it produced new tokens.",
    )

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, cron: str | None) -> str | None:
        if cron is None or cron.strip() in CRON_ALIASES:
            return cron
        from datetime import datetime

        from cronsim import CronSim, CronSimError  # what Prefect's scheduler stack (pydocket) parses cron with

        try:
            CronSim(cron, datetime(2026, 1, 1))
        except CronSimError as err:
            raise ValueError(
                f"{cron!r} is not a cron expression ({err}): five fields, minute hour day-of-month month "
                "day-of-week, e.g. '0 3 * * *' (03:00 every day), or @daily, @hourly, ..."
            ) from None
        return cron

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, timezone: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{timezone!r} is not an IANA time zone (e.g. UTC, Europe/Paris)") from None
        return timezone


RUNTIME = {"runtime": True}  # changes how a stage runs, never what it produces: not part of the stage's hash


class RunnerSettings(Section):
    """Where a stage's units (one per shard) run. Units are pure functions of their shard, so any worker can."""

    kind: Literal["threads", "processes", "dask"] | None = Field(
        None,
        description="threads: Prefect's thread pool (I/O-bound work); processes: a local process pool; dask: "
        "Prefect's DaskTaskRunner on `address`, or a local cluster of `workers` processes when none is given. "
        "None inherits (from `runner`, and there from the default, threads).",
        json_schema_extra=RUNTIME,
    )
    address: str | None = Field(
        None,
        description="Dask scheduler address (tcp://host:8786) of an existing cluster; None starts a LocalCluster.",
        json_schema_extra=RUNTIME,
    )
    workers: int | None = Field(
        None,
        ge=1,
        description="Worker processes (or threads) started locally; None = one per core.",
        json_schema_extra=RUNTIME,
    )

    @model_validator(mode="after")
    def _address_is_for_dask(self) -> RunnerSettings:
        if self.address and self.kind not in (None, "dask"):
            raise ValueError(f"address {self.address!r} is a Dask scheduler's; it needs kind: dask (got {self.kind})")
        return self


class RunnerConfig(RunnerSettings):
    """The task runner of every stage, with per-stage overrides (e.g. `runner.stages.clean.kind=dask`)."""

    stages: dict[Stage, RunnerSettings] = Field(
        default_factory=dict,
        description="Per-stage settings; a key left out inherits the top-level one.",
        json_schema_extra=RUNTIME,
    )

    launch_command: str | None = Field(
        None,
        description="How training with more than one process starts its ranks: a command template with {python}, "
        "{job} and {nproc}, e.g. 'srun --ntasks-per-node=8 {python} -m gristmill.tasks.train.rank {job}'; None = "
        "torchrun on this node, one process per device (docs/operations.md).",
        json_schema_extra=RUNTIME,
    )

    def for_stage(self, stage: str) -> RunnerSettings:
        """The settings one stage runs with: its override's keys over the top level's, threads by default."""
        merged = self.model_dump(exclude={"stages", "launch_command"})
        override = self.stages.get(stage)  # type: ignore[call-overload]
        if override is not None:
            merged.update({k: v for k, v in override.model_dump().items() if v is not None})
        merged["kind"] = merged["kind"] or "threads"
        return RunnerSettings(**merged)


class ProblemsConfig(Section):
    """How much of its input a stage may lose to bad records before it fails instead of going on with less."""

    max_fraction: float = Field(
        0.5,
        ge=0,
        le=1,
        description="A stage that loses more than this share of its input to problems (unreadable records, failed "
        "extractions) fails, naming the files with the most.",
    )


class PipelineConfig(Section):
    name: str = Field("demo", pattern=r"^[A-Za-z0-9_.-]+$", description="Pipeline (and deployment) name.")
    workspace: str = Field(
        "workspace/demo",
        description="Where stages write: a local path, or an fsspec URL (s3://bucket/prefix) mirrored through "
        "workspace_cache.",
    )
    workspace_cache: str | None = Field(
        None,
        description="Local mirror of a workspace in object storage; None = ~/.cache/gristmill/<hash of the URL>.",
        json_schema_extra=RUNTIME,
    )
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    runner: RunnerConfig = Field(default_factory=RunnerConfig, json_schema_extra=RUNTIME)
    crawl: CrawlConfig = Field(default_factory=CrawlConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    clean: CleanConfig = Field(default_factory=CleanConfig)
    tokenize: TokenizeConfig = Field(default_factory=TokenizeConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    problems: ProblemsConfig = Field(default_factory=ProblemsConfig)

    @model_validator(mode="after")
    def _has_a_source(self) -> PipelineConfig:
        crawl = self.crawl
        if not crawl.seeds and not crawl.sources and not crawl.demo_site.enabled:
            raise ValueError(
                "crawl.seeds and crawl.sources are empty and crawl.demo_site.enabled is false: nothing to crawl"
            )
        return self

    def section(self, stage: str) -> Section:
        return getattr(self, stage)


CONF_DIR = Path(__file__).resolve().parent


def _content_digest(path: Path) -> str:
    """sha256 of a file's bytes, read in blocks (tasks/shards.py has the same for shards; importing it here would
    make an import circle: shards imports this module)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def config_file(path: str | Path, key: str) -> Path:
    """The file a config key names, by the one rule every stage uses: an absolute path as is; a relative one from
    the working directory, else from the folder of the shipped configs (where the defaults such as
    `demographic_terms.yaml` live). A file found in neither place is a ConfigError naming the key."""
    named = Path(path)
    for candidate in (named,) if named.is_absolute() else (named, CONF_DIR / named):
        if candidate.is_file():
            return candidate
    looked = str(named) if named.is_absolute() else f"{Path.cwd() / named} or {CONF_DIR / named}"
    raise ConfigError(f"{key}: file {str(path)!r} not found (looked for {looked})")


def config_file_digest(path: str | Path, key: str = "file") -> str:
    """sha256 of a file named in config (found by `config_file`), so a stage's key follows the file's contents,
    not its name. A missing file is a ConfigError naming the key."""
    digest = hashlib.sha256()
    with open(config_file(path, key), "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError(f"override {item!r} must look like section.key=value")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {part!r} is not a section")
    node[parts[-1]] = override_value(value)


def override_value(text: str) -> Any:
    """The value of an override: a YAML flow value (50 is an int, [a, b] a list, {k: v} a mapping, null is None,
    true a bool, 'quoted' text), or else the text as typed, so a cron line (`*/5 * * * *`, `@daily`), a regex or
    `x: y` needs no extra quoting; the schema then judges it. Never a YAML exception.

    Only YAML's flow subset counts, read with the core schema (`OverrideLoader`): on a command line block syntax
    (`x: y` a mapping, `- a` a list), comments (`a #b` cut to `a`), anchors, tags and `|` surprise more than they
    help, and so do YAML 1.1's readings of `yes`/`on` (bools), `1:30` (90), `010` (8) and `2020-13-45` (an error)."""
    try:
        if _is_flow_value(text):
            return yaml.load(text, Loader=OverrideLoader)  # noqa: S506 (a SafeLoader)
    except (yaml.YAMLError, RecursionError):  # RecursionError: brackets nested past Python's stack
        pass
    return text


class OverrideLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2's core schema for plain scalars: null, true/false, decimal and hex integers,
    floats; everything else (yes, on, 1:30, 010, dates) stays a string."""

    yaml_implicit_resolvers: dict[str, list[tuple[str, re.Pattern[str]]]] = {}


for _tag, _pattern, _first in (
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?(?:0|[1-9][0-9]*)|0x[0-9a-fA-F]+)$", list("-+0123456789")),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?[0-9]+[eE][-+]?[0-9]+"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        list("-+.0123456789"),
    ),
):
    OverrideLoader.add_implicit_resolver(_tag, re.compile(_pattern), _first)

_FLOW_TOKENS = (
    yaml.StreamStartToken,
    yaml.StreamEndToken,
    yaml.ScalarToken,
    yaml.FlowSequenceStartToken,
    yaml.FlowSequenceEndToken,
    yaml.FlowMappingStartToken,
    yaml.FlowMappingEndToken,
    yaml.FlowEntryToken,
    yaml.KeyToken,
    yaml.ValueToken,
)


def _is_flow_value(text: str) -> bool:
    """Whether YAML reads `text` whole as one flow value: plain or quoted scalars and [ ] { } only (no block
    syntax, tags, anchors, block scalars or plain text over several lines), with nothing after it (a comment would
    be dropped silently)."""
    tokens = list(yaml.scan(text, Loader=OverrideLoader))
    if not all(isinstance(t, _FLOW_TOKENS) for t in tokens):
        return False
    for token in tokens:
        if isinstance(token, yaml.ScalarToken) and token.style not in (None, "'", '"'):
            return False  # a block scalar (| or >)
        if isinstance(token, yaml.ScalarToken) and token.style is None and token.start_mark.line != token.end_mark.line:
            return False  # YAML folds a plain scalar's line breaks into spaces
    end = tokens[-2].end_mark.index if len(tokens) > 2 else 0
    return not text[end:].strip()


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
    """The keys of the section at `loc`; list positions (`crawl.sources.0`) step into the list's item model."""
    model: type[BaseModel] = PipelineConfig
    for part in loc:
        if isinstance(part, int):  # a list index: `model` is already the item's model
            continue
        field = model.model_fields.get(str(part))
        found = _model_in(field.annotation) if field else None
        if found is None:
            return []
        model = found
    return sorted(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The section model an annotation holds: `SourceConfig`, `list[SourceConfig]`, `X | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for arg in get_args(annotation) if (m := _model_in(arg)) is not None), None)

"""A stage's key: produced settings (runtime ones left out), the contents of files named in config and of source
files, and the upstream's content digest. What changes it reruns a stage; what does not, does not."""

from __future__ import annotations

import json
import os
import typing
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from gristmill.conf.schema import STAGES, ConfigError, PipelineConfig, Section, is_runtime, validate_config
from gristmill.tasks.crawl import stage as crawl_stage
from gristmill.tasks.documents import DOCUMENT_SCHEMA
from gristmill.tasks.shards import StageOutput, UnitRecord, iter_records, write_shard
from gristmill.tasks.stage import StageContext, StageResult, execute
from gristmill.tasks.workspace import preflight
from tests.helpers import document


def runtime_keys(model: type[Section], prefix: str) -> list[str]:
    """Every runtime field under a section, as dotted keys, nested sections included."""
    keys = []
    for name, field in model.model_fields.items():
        if is_runtime(field):
            keys.append(prefix + name)
        elif isinstance(field.annotation, type) and issubclass(field.annotation, Section):
            keys += runtime_keys(field.annotation, f"{prefix}{name}.")
    return keys


RUNTIME_KEYS = [
    f"{stage}.{key}" for stage in STAGES for key in runtime_keys(PipelineConfig.model_fields[stage].annotation, "")
]


def test_the_schema_declares_runtime_settings_in_every_stage_that_has_them():
    assert {"crawl.progress_bar", "crawl.concurrency", "train.devices", "train.strategy"} <= set(RUNTIME_KEYS)
    assert {"train.num_workers", "train.num_nodes", "dedup.storage"} <= set(RUNTIME_KEYS)


def base_raw(workspace: Path) -> dict[str, Any]:
    return {"workspace": str(workspace), "crawl": {"seeds": ["http://127.0.0.1/"]}}


def changed_value(raw: dict[str, Any], key: str) -> Any:
    """A valid value for `key` other than its current one (so the config really differs)."""
    section, *path = key.split(".")
    value: Any = validate_config(raw).section(section)
    model: type[Section] = type(value)
    for part in path:
        field = model.model_fields[part]
        value = getattr(value, part)
        if isinstance(value, Section):
            model = type(value)
    candidates: list[Any] = []
    for arg in (field.annotation, *typing.get_args(field.annotation)):
        candidates += list(typing.get_args(arg)) if typing.get_origin(arg) is typing.Literal else []
    if isinstance(value, bool):
        candidates.append(not value)
    elif isinstance(value, int | float):
        candidates += [value + 1, value * 2]
    elif isinstance(value, str):
        candidates.append(value + "-other")
    candidates += [1, 2, "1d"]  # "1d": a duration, for crawl.refresh.recrawl_after
    for candidate in candidates:
        if candidate == value:
            continue
        try:
            changed = with_override(raw, key, candidate)
            validate_config(changed)
        except ConfigError:
            continue
        return candidate
    raise AssertionError(f"no other valid value found for {key}")


def with_override(raw: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    changed = json.loads(json.dumps(raw))
    node = changed
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return changed


def never_runs(ctx: StageContext) -> StageResult:
    raise AssertionError(f"stage {ctx.output.stage} ran but should have been up to date")


def copy_stage(ctx: StageContext) -> StageResult:
    """A stage whose output is its input, shard for shard (units say which shard they read)."""
    units = []
    for path in ctx.input_paths():

        def work(path: Path = path) -> UnitRecord:
            table = pa.Table.from_pylist(list(iter_records([path])), schema=DOCUMENT_SCHEMA)
            info = write_shard(ctx.output.dataset_dir("documents") / path.name, table, DOCUMENT_SCHEMA)
            return UnitRecord(unit=path.stem, shards={"documents": [info]})

        units.append(ctx.unit(path.stem, work, inputs=ctx.shard_digest(path)))
    rows = sum(u.shards["documents"][0].rows for u in units)
    return StageResult(units, rows, "docs", rows, "docs")


def made_up_crawl(ctx: StageContext) -> StageResult:
    """A crawl stage that crawls nothing: two shards of made-up documents (its key is the real crawl's)."""
    units = []
    for i in range(2):
        docs = [document(f"http://h/{i}/{j}", f"shard{i} doc{j} " * 10) for j in range(3)]
        table = pa.Table.from_pylist(docs, schema=DOCUMENT_SCHEMA)
        info = write_shard(ctx.output.dataset_dir("documents") / f"part-{i:05d}.parquet", table, DOCUMENT_SCHEMA)
        units.append(UnitRecord(unit=f"part-{i:05d}", shards={"documents": [info]}))
    return StageResult(units, 6, "docs", 6, "docs")


def build_pipeline(raw: dict[str, Any], stages: dict[str, Any] | None = None) -> dict[str, str]:
    """Run every stage (a made-up crawl, then copy stages unless given); the statuses after crawl, by stage."""
    config = validate_config(raw)
    execute(config, "crawl", made_up_crawl)
    stages = stages or {}
    return {stage: execute(config, stage, stages.get(stage, copy_stage)).status for stage in STAGES[1:]}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    raw = base_raw(tmp_path_factory.mktemp("finished") / "ws")
    build_pipeline(raw)
    return raw


@pytest.mark.parametrize("key", RUNTIME_KEYS)
def test_changing_a_runtime_setting_leaves_every_stage_up_to_date(finished, key):
    config = validate_config(with_override(finished, key, changed_value(finished, key)))
    for stage in STAGES:
        assert execute(config, stage, never_runs).status == "up to date", stage


def test_changing_a_produced_setting_reruns_that_stage(tmp_path):
    raw = base_raw(tmp_path / "ws")
    build_pipeline(raw)
    changed = with_override(raw, "dedup.threshold", 0.5)
    statuses = build_pipeline(changed)
    # dedup ran again; its copy wrote identical shards, so nothing after it had to.
    assert statuses == {"dedup": "ran"} | {stage: "up to date" for stage in STAGES[2:]}


def filter_by_file(ctx: StageContext) -> StageResult:
    """A clean-shaped stage that drops documents containing a word listed in `clean.badwords`."""
    words = Path(ctx.config.clean.badwords).read_text().split()
    units = []
    for path in ctx.input_paths():
        kept = [d for d in iter_records([path]) if not any(w in d["text"] for w in words)]
        table = pa.Table.from_pylist(kept, schema=DOCUMENT_SCHEMA)
        info = write_shard(ctx.output.dataset_dir("documents") / path.name, table, DOCUMENT_SCHEMA)
        units.append(UnitRecord(unit=path.stem, shards={"documents": [info]}))
    return StageResult(units, 6, "docs", sum(u.shards["documents"][0].rows for u in units), "docs")


def test_editing_a_file_named_in_config_reruns_exactly_the_stages_after_it(tmp_path):
    badwords = tmp_path / "badwords.txt"
    badwords.write_text("nothing-matches-this\n")
    raw = with_override(base_raw(tmp_path / "ws"), "clean.badwords", str(badwords))
    assert set(build_pipeline(raw, {"clean": filter_by_file}).values()) == {"ran"}
    assert set(build_pipeline(raw, {"clean": filter_by_file}).values()) == {"up to date"}

    badwords.write_text("nothing-matches-this\nshard1\n")  # same path, new contents: drops the documents of shard 1
    statuses = build_pipeline(raw, {"clean": filter_by_file})
    assert statuses == {"dedup": "up to date", "clean": "ran", "tokenize": "ran", "train": "ran", "evaluate": "ran"}
    assert StageOutput(raw["workspace"], "clean").read_manifest().rows == {"documents": 3}


def test_a_missing_file_named_in_config_fails_before_the_stage_is_touched(tmp_path):
    raw = with_override(base_raw(tmp_path / "ws"), "clean.badwords", str(tmp_path / "badwords.txt"))
    (tmp_path / "badwords.txt").write_text("x\n")
    build_pipeline(raw)
    (tmp_path / "badwords.txt").unlink()
    with pytest.raises(ConfigError, match=r"clean\.badwords: file .*badwords\.txt.* not found"):
        execute(validate_config(raw), "clean", never_runs)
    assert StageOutput(raw["workspace"], "clean").read_manifest() is not None


def test_a_rebuild_with_identical_output_has_the_same_digest(tmp_path):
    raw = base_raw(tmp_path / "ws")
    build_pipeline(raw)
    dedup = StageOutput(raw["workspace"], "dedup")
    before = dedup.read_manifest()
    build_pipeline(with_override(raw, "dedup.num_perm", 64))
    after = dedup.read_manifest()
    assert after.created_at != before.created_at and after.config_hash != before.config_hash
    assert after.digest == before.digest == dedup.input_hash()


# -- source files ------------------------------------------------------------------------------------------------


def write_jsonl(path: Path, texts: list[str]) -> None:
    rows = [{"text": text, "url": f"https://corpus.example/{path.stem}/{i}"} for i, text in enumerate(texts)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def source_config(workspace: Path, *paths: Path | str) -> PipelineConfig:
    sources = [{"path": str(p)} for p in paths]
    return validate_config({"workspace": str(workspace), "crawl": {"sources": sources, "extract_workers": 1}})


def shard_times(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(directory.glob("*.parquet"))}


def test_a_new_file_matching_a_source_glob_is_ingested_alone(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_jsonl(corpus / "a.jsonl", ["Rivers carry water to the sea."])
    write_jsonl(corpus / "b.jsonl", ["Glaciers move slowly down the valley."])
    config = source_config(tmp_path / "ws", corpus / "*.jsonl")
    assert execute(config, "crawl", crawl_stage.run).count_out == 2
    raw_dir = tmp_path / "ws" / "crawl" / "raw"
    docs_dir = tmp_path / "ws" / "crawl" / "documents"
    raw_before, docs_before = shard_times(raw_dir), shard_times(docs_dir)
    assert execute(config, "crawl", never_runs).status == "up to date"

    write_jsonl(corpus / "c.jsonl", ["Lakes are still and deep."])
    summary = execute(config, "crawl", crawl_stage.run)
    assert summary.status == "ran" and summary.count_out == 3
    raw_after, docs_after = shard_times(raw_dir), shard_times(docs_dir)
    assert {k: raw_after[k] for k in raw_before} == raw_before  # a and b were not read again
    assert {k: docs_after[k] for k in docs_before} == docs_before  # nor extracted again
    assert len(raw_after) == len(raw_before) + 1 and len(docs_after) == len(docs_before) + 1

    os.utime(corpus / "b.jsonl")  # touched, not changed: read again (new mtime), same digest, not ingested again
    assert execute(config, "crawl", never_runs).status == "up to date"
    record = json.loads((tmp_path / "ws" / "crawl_sources.json").read_text())
    assert sorted(Path(url).name for url in record) == ["a.jsonl", "b.jsonl", "c.jsonl"]

    write_jsonl(corpus / "a.jsonl", ["Rivers carry water to the sea.", "And sediment, too."])  # changed in place
    assert execute(config, "crawl", crawl_stage.run).count_out == 4
    assert shard_times(raw_dir) != raw_after
    texts = sorted(d["text"] for d in iter_records(StageOutput(config.workspace, "crawl").shard_paths("documents")))
    assert texts[0].startswith("And sediment") and len(texts) == 4


def test_a_bad_source_added_to_a_finished_workspace_fails_before_anything_is_deleted(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_jsonl(corpus / "a.jsonl", ["Rivers carry water to the sea."])
    execute(source_config(tmp_path / "ws", corpus / "*.jsonl"), "crawl", crawl_stage.run)
    crawl_dir = tmp_path / "ws" / "crawl"
    files_before = sorted(p.relative_to(crawl_dir) for p in crawl_dir.rglob("*"))

    mistyped = source_config(tmp_path / "ws", corpus / "*.jsonl", corpus / "*.jsonnl")
    with pytest.raises(ConfigError, match=r"crawl\.sources\[1\]\.path: .*\*\.jsonnl: no file matches"):
        execute(mistyped, "crawl", never_runs)
    assert sorted(p.relative_to(crawl_dir) for p in crawl_dir.rglob("*")) == files_before
    assert StageOutput(tmp_path / "ws", "crawl").read_manifest() is not None


def test_preflight_names_a_missing_file_of_a_later_stage_before_the_first_stage_runs(tmp_path):
    raw = with_override(base_raw(tmp_path / "ws"), "tokenize.tokenizer_path", str(tmp_path / "tokenizer.json"))
    with pytest.raises(ConfigError, match=r"tokenize\.tokenizer_path: file .*tokenizer\.json.* not found"):
        preflight(validate_config(raw))
    assert not (tmp_path / "ws").exists()


def test_a_seed_the_crawls_own_scope_refuses_fails_before_the_stage_is_touched(tmp_path):
    config = validate_config(
        {"workspace": str(tmp_path / "ws"), "crawl": {"seeds": ["http://a.example/docs/"], "exclude": ["/docs/"]}}
    )
    with pytest.raises(ConfigError, match=r"crawl\.seeds\[0\]: http://a\.example/docs/ is refused .*\(excluded\)"):
        preflight(config)
    with pytest.raises(ConfigError, match=r"crawl\.seeds\[0\]"):
        execute(config, "crawl", never_runs)
    assert not (tmp_path / "ws" / "crawl").exists()

"""Property-based: whatever damage a config or a source file has, the only exception is the one user-error type.

Readers report bad records and go on; a file that cannot be used at all raises `SourceError`, a `UserError`.
Example counts are kept small so the default suite stays fast; `--hypothesis-seed` reproduces a failure.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gristmill.conf.schema import (
    ConfigError,
    SourceConfig,
    UserError,
    apply_override,
    load_config,
    override_value,
)
from gristmill.tasks.crawl.records import RAW_SCHEMA
from gristmill.tasks.crawl.sources import IngestCounts, IngestProblem, read_source
from tests.tasks.crawl.test_sources import quirky_record

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "conf" / "demo.yaml"
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

KEYS = st.sampled_from(
    ["crawl.max_pages", "crawl.sources", "crawl.exclude", "schedule.cron", "train.devices", "dedup.threshold",
     "name", "crawl", "tokenize.seq_len", "crawl.sources.0", "problems.max_fraction", "x.y.z", ""]
)  # fmt: skip
VALUES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["[3", "{a: [", "*/5 * * * *", "[/", "null", "- a\n- b", "&x *x", "!!python/object:os.system"]),
    st.integers().map(str),
    st.floats(allow_nan=True).map(str),
)


@FAST
@given(overrides=st.lists(st.tuples(KEYS, VALUES).map(lambda kv: f"{kv[0]}={kv[1]}"), max_size=4))
def test_any_override_is_valid_or_a_config_error(overrides):
    with contextlib.suppress(ConfigError):
        load_config(DEMO, overrides)


@FAST
@given(text=st.text(max_size=200))
def test_any_config_file_is_valid_or_a_config_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("conf") / "config.yaml"
    path.write_text(text)
    with contextlib.suppress(ConfigError):
        load_config(path)


@FAST
@given(key=KEYS, value=st.text(max_size=80))
def test_any_text_after_the_equals_sign_is_a_value_or_a_config_error(key, value):
    """Whatever follows `=` (tabs, newlines, `@`, `%`, `#`, unbalanced brackets, control characters): the override
    is applied as some JSON-like value or the text itself, and the config is valid or a ConfigError."""
    raw: dict = {}
    with contextlib.suppress(ConfigError):
        apply_override(raw, f"{key}={value}")
        json.dumps(raw, allow_nan=True)  # plain data: raises on dates, sets, bytes, tags
    with contextlib.suppress(ConfigError):
        load_config(DEMO, [f"{key}={value}"])


@FAST
@given(value=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60))
def test_text_that_is_not_a_yaml_flow_value_stays_the_text_as_typed(value):
    if value.lstrip()[:1] in ("[", "{", "'", '"') or value.strip() != value or not value.strip():
        return  # a collection, quoted text or surrounding space: YAML's, not the text as typed
    parsed = override_value(value)
    assert parsed == value or isinstance(parsed, bool | int | float) or parsed is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("@daily", "@daily"),  # a YAML scanner error (`@` is reserved): the text
        ("*/5 * * * *", "*/5 * * * *"),  # an alias to YAML: the text
        ("%x", "%x"),  # a directive to YAML
        ("[http://a", "[http://a"),  # an unclosed list
        ("x: y", "x: y"),  # block mapping to YAML: surprising on a command line, so the text
        ("- a", "- a"),  # block list
        ("a #b", "a #b"),  # YAML would cut the comment off silently
        ("\tindented", "\tindented"),
        ("a\tb", "a\tb"),
        ("2020-13-45", "2020-13-45"),  # YAML 1.1 raises ValueError building the date
        ("2026-01-01", "2026-01-01"),  # and would make a date of this (not JSON: Prefect parameters are JSON)
        ("yes", "yes"),  # YAML 1.1's bool; the schema's own bool fields accept "yes"
        ("1:30", "1:30"),  # YAML 1.1's sexagesimal 90
        ("!!binary aGk=", "!!binary aGk="),
        ("&a x", "&a x"),
        ("|", "|"),
        ("50", 50),
        ("0.7", 0.7),
        ("true", True),
        ("null", None),
        ("", None),
        ("'quoted # text'", "quoted # text"),
        ("[http://a, http://b]", ["http://a", "http://b"]),
        ("[{path: x.jsonl}]", [{"path": "x.jsonl"}]),
    ],
)
def test_override_values(value, expected):
    assert override_value(value) == expected


@pytest.mark.parametrize(
    ("override", "check"),
    [
        ("schedule.cron=@daily", lambda c: c.schedule.cron == "@daily"),
        ("tracking.experiment=x: y", lambda c: c.tracking.experiment == "x: y"),
        ("tracking.experiment=%x", lambda c: c.tracking.experiment == "%x"),
        ("name=%x", None),  # the text reaches the schema, whose pattern for names refuses it
        ("crawl.progress_bar=yes", lambda c: c.crawl.progress_bar is True),
    ],
)
def test_overrides_yaml_reads_badly_work_as_text(override, check):
    if check is None:
        with pytest.raises(ConfigError, match=r"name: String should match pattern .* \(got '%x'\)"):
            load_config(DEMO, [override])
    else:
        assert check(load_config(DEMO, [override]))


@pytest.mark.parametrize("override", ["crawl.seeds=[http://a", "name=\tx\ny: [", "train.max_steps=1:30"])
def test_overrides_that_are_no_valid_value_are_one_config_error(override):
    with pytest.raises(ConfigError, match=override.split("=")[0]):
        load_config(DEMO, [override])


def test_an_override_into_a_value_that_is_not_a_section_is_a_config_error():
    with pytest.raises(ConfigError, match="'name' is not a section"):
        apply_override({"name": "demo"}, "name.x=1")


def read_all(path: Path, **config) -> tuple[list[dict], list[IngestProblem]]:
    problems: list[IngestProblem] = []
    try:
        records = list(read_source(str(path), SourceConfig(path=str(path), **config), problems.append, IngestCounts()))
    except UserError:
        return [], problems
    pa.Table.from_pylist(records, schema=RAW_SCHEMA)  # every record kept still fits the schema
    return records, problems


def damaged_bytes(data: bytes):
    """A strategy: `data` cut at some point, with a few bytes overwritten (a cut download, a bad disk or copy)."""

    @st.composite
    def build(draw):
        cut = draw(st.integers(0, len(data)))
        damaged = bytearray(data[:cut])
        if damaged:
            for _ in range(draw(st.integers(0, 6))):
                damaged[draw(st.integers(0, len(damaged) - 1))] = draw(st.integers(0, 255))
        return bytes(damaged)

    return build()


PAGE = b"<html><body><p>A page about rivers and lakes.</p></body></html>"
WARC_GZ = b"".join(gzip.compress(quirky_record(f"http://a.test/{i}", PAGE)) for i in range(3))
WARC = b"".join(quirky_record(f"http://a.test/{i}", PAGE) for i in range(3))
JSONL = "\n".join(
    json.dumps({"text": f"line {i} about rivers", "url": f"http://a.test/{i}"}) for i in range(5)
).encode()


def _parquet() -> bytes:
    out = io.BytesIO()
    table = pa.table({"text": [f"row {i} about lakes" for i in range(50)], "url": [f"u{i}" for i in range(50)]})
    pq.write_table(table, out, row_group_size=10)
    return out.getvalue()


PARQUET = _parquet()


@FAST
@given(data=damaged_bytes(WARC_GZ))
def test_a_damaged_warc_gz_never_raises_anything_but_a_user_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("warc") / "d.warc.gz"
    path.write_bytes(data)
    records, _ = read_all(path)
    assert len(records) <= 3


@FAST
@given(data=damaged_bytes(WARC))
def test_a_damaged_uncompressed_warc_never_raises_anything_but_a_user_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("warc") / "d.warc"
    path.write_bytes(data)
    records, _ = read_all(path)
    assert len(records) <= 3


@FAST
@given(data=damaged_bytes(JSONL), compress=st.booleans())
def test_a_damaged_jsonl_never_raises_anything_but_a_user_error(tmp_path_factory, data, compress):
    path = tmp_path_factory.mktemp("jsonl") / ("d.jsonl.gz" if compress else "d.jsonl")
    path.write_bytes(gzip.compress(data) if compress else data)
    records, _ = read_all(path)
    assert len(records) <= 5


@FAST
@given(data=damaged_bytes(PARQUET))
def test_a_damaged_parquet_never_raises_anything_but_a_user_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("parquet") / "d.parquet"
    path.write_bytes(data)
    records, _ = read_all(path)
    assert len(records) <= 50

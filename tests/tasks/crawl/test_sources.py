"""Ingesting existing corpora: real WARC/WET files (the shared data), damaged copies of them, and JSONL, Parquet
and plain files written here; every record must fit RAW_SCHEMA."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import uuid
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from gristmill.conf.schema import SourceConfig
from gristmill.tasks.crawl.records import RAW_SCHEMA, record_id
from gristmill.tasks.crawl.sources import (
    IngestCounts,
    IngestProblem,
    SourceError,
    expand_source,
    read_source,
    source_kind,
)
from tests.helpers import requirement_missing


@pytest.fixture(scope="module")
def warc_dir(shared_data: Path) -> Path:
    path = shared_data / "warc"
    if not path.is_dir():
        requirement_missing(f"shared WARC files not found at {path}")
    return path


def ingest(url: str | Path, **config) -> tuple[list[dict], list[IngestProblem], IngestCounts]:
    """All records of one file, checked against RAW_SCHEMA, with the problems reported and the counts."""
    source = SourceConfig(path=str(url), **config)
    problems: list[IngestProblem] = []
    counts = IngestCounts()
    records = list(read_source(str(url), source, problems.append, counts))
    pa.Table.from_pylist(records, schema=RAW_SCHEMA)  # raises if any record does not fit
    assert counts.records == len(records)
    assert counts.problems == len(problems)
    return records, problems, counts


def warc_layout(path: Path) -> list[tuple[str, int, int]]:
    """(type, offset, length) of every record, as warcio sees the intact file."""
    layout = []
    with path.open("rb") as fh:
        records = ArchiveIterator(fh)
        for record in records:
            layout.append((record.rec_type, records.get_record_offset(), records.get_record_length()))
    return layout


def responses(layout: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    return [entry for entry in layout if entry[0] == "response"]


# ---------------------------------------------------------------------------------------------------------------
# real WARC and WET files


@pytest.mark.parametrize(("name", "expected"), [("dolma_sample-0000.warc.gz", 22), ("dolma_sample-0001.warc.gz", 15)])
def test_dolma_warc_gives_one_record_per_response(warc_dir: Path, name: str, expected: int) -> None:
    path = warc_dir / name
    records, problems, counts = ingest(path)

    assert problems == []
    assert len(records) == expected
    # Requests, warcinfo, metadata and wget's own log (resource records of metadata:// URIs) are skipped, counted.
    assert counts.skipped == {
        "warc:request": expected,
        "warc:warcinfo": 1,
        "warc:metadata": 1,
        "warc:resource:metadata": 2,
    }
    assert sum(counts.skipped.values()) + len(records) == len(warc_layout(path))
    assert [r["source_offset"] for r in records] == [offset for _, offset, _ in responses(warc_layout(path))]
    for record in records:
        assert record["source"] == str(path)
        assert record["doc_id"] == record_id(str(path), record["source_offset"])
        assert record["url"].startswith("https://")
        assert record["status"] == 200
        assert record["content_type"] == "text/html"
        assert record["charset"] in (None, "utf-8")
        assert record["fetched_at"].date() == dt.date(2024, 4, 25)
        assert record["fetched_at"].tzinfo is not None
        html = record["content"].lower()
        assert b"<html" in html and b"<body" in html  # the decoded body, not HTTP headers or gzip
        assert not record["content"].startswith(b"HTTP/")


def test_dolma_repeated_capture_stays_two_records(warc_dir: Path) -> None:
    records, _, _ = ingest(warc_dir / "dolma_sample-0001.warc.gz")
    home = [r for r in records if r["url"] == "https://allenai.org/"]
    assert len(home) == 3  # the crawl fetched the home page three times
    assert len({r["doc_id"] for r in home}) == 3


def test_common_crawl_warc_response(warc_dir: Path) -> None:
    records, problems, counts = ingest(warc_dir / "cc_whirlwind.warc.gz")

    assert problems == []
    assert counts.skipped == {"warc:warcinfo": 1, "warc:request": 1, "warc:metadata": 1}
    [record] = records
    assert record["url"] == "https://an.wikipedia.org/wiki/Escopete"
    assert (record["status"], record["content_type"], record["charset"]) == (200, "text/html", "utf-8")
    assert record["lang_hint"] == "an"  # the HTTP Content-Language header
    assert record["fetched_at"] == dt.datetime(2024, 5, 18, 1, 58, 10, tzinfo=dt.UTC)
    assert b"Escopete" in record["content"] and b"<html" in record["content"]


def test_common_crawl_wet_conversion_record(warc_dir: Path) -> None:
    records, problems, counts = ingest(warc_dir / "cc_whirlwind.warc.wet.gz")

    assert problems == []
    assert counts.skipped == {"warc:warcinfo": 1}
    [record] = records
    assert record["url"] == "https://an.wikipedia.org/wiki/Escopete"
    assert (record["status"], record["content_type"], record["charset"]) == (200, "text/plain", "utf-8")
    assert record["lang_hint"] == "spa"  # WARC-Identified-Content-Language
    text = record["content"].decode("utf-8")
    assert text.startswith("Escopete") and "<" not in text[:200]


def test_wat_file_needs_an_explicit_kind_and_has_no_text(warc_dir: Path) -> None:
    wat = warc_dir / "cc_whirlwind.warc.wat.gz"
    with pytest.raises(SourceError, match=r"cc_whirlwind\.warc\.wat\.gz: a WAT file holds metadata") as raised:
        read_source(str(wat), SourceConfig(path=str(wat)), print)
    assert ".warc.gz" in raised.value.fix and ".wet.gz" in raised.value.fix

    records, problems, counts = ingest(wat, kind="warc")
    assert (records, problems) == ([], [])
    assert counts.skipped == {"warc:warcinfo": 1, "warc:metadata": 1}


def test_revisit_record_is_skipped_and_counted(warc_dir: Path) -> None:
    records, problems, counts = ingest(warc_dir / "warcio_example.warc.gz")

    assert problems == []
    assert counts.skipped == {"warc:warcinfo": 2, "warc:request": 2, "warc:revisit": 1}
    [record] = records
    assert record["url"] == "http://example.com/"
    assert record["content_type"] == "text/html" and record["charset"] is None
    assert b"<title>Example Domain</title>" in record["content"]


def test_uncompressed_warc_with_chunked_response(warc_dir: Path) -> None:
    records, problems, counts = ingest(warc_dir / "warcio_example-iana.org-chunked.warc")

    assert problems == []
    assert counts.skipped == {"warc:warcinfo": 1, "warc:request": 1}
    [record] = records
    assert record["url"] == "http://www.iana.org/"
    assert record["charset"] == "utf-8"
    # De-chunked: the body starts with the page, not with a chunk length line.
    assert record["content"].startswith(b"<!doctype html>")
    assert record["content"].rstrip().endswith(b"</html>")


def test_record_larger_than_the_cap_is_reported_and_reading_goes_on(warc_dir: Path) -> None:
    path = warc_dir / "dolma_sample-0000.warc.gz"
    problems: list[IngestProblem] = []
    source = SourceConfig(path=str(path))
    records = list(read_source(str(path), source, problems.append, max_record_bytes=50_000))

    large = [offset for _, offset, length in responses(warc_layout(path)) if length > 0]
    assert records and all(len(r["content"]) <= 50_000 for r in records)
    assert len(records) + len(problems) == 22
    assert {p.offset for p in problems} <= set(large)
    assert all("larger than 50000 bytes" in p.reason for p in problems)


# ---------------------------------------------------------------------------------------------------------------
# damaged WARC files: what can be read is read, each damaged record is one problem


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ("body", "truncated record"),  # cut inside the response body
        ("headers", "not a complete record"),  # cut inside the record's WARC headers
    ],
)
def test_truncated_warc_gz_keeps_the_records_before(warc_dir: Path, tmp_path: Path, where: str, reason: str) -> None:
    original = warc_dir / "dolma_sample-0000.warc.gz"
    _, offset, length = responses(warc_layout(original))[15]
    cut = offset + (length // 2 if where == "body" else 20)
    damaged = tmp_path / "cut.warc.gz"
    damaged.write_bytes(original.read_bytes()[:cut])

    intact, _, _ = ingest(original)
    records, problems, _ = ingest(damaged)

    assert [r["content"] for r in records] == [r["content"] for r in intact if r["source_offset"] < offset]
    assert len(records) == 15
    [problem] = problems
    assert (problem.path, problem.offset) == (str(damaged), offset)
    assert reason in problem.reason
    assert str(problem).startswith(f"{damaged} @ {offset}: ")


def test_warc_gz_cut_inside_the_last_gzip_trailer(warc_dir: Path, tmp_path: Path) -> None:
    original = warc_dir / "dolma_sample-0000.warc.gz"
    _, last_offset, _ = warc_layout(original)[-1]
    damaged = tmp_path / "cut.warc.gz"
    damaged.write_bytes(original.read_bytes()[:-4])

    records, problems, _ = ingest(damaged)

    assert len(records) == 22  # the last record is wget's log, skipped anyway
    [problem] = problems
    assert problem.offset == last_offset and "truncated gzip member" in problem.reason


@pytest.mark.parametrize(
    "damage",
    [
        "zeros",  # a run of zero bytes inside the deflate data
        "zeros-late",  # the same, far into a large member: past the first block warcio decompresses
        "header",  # the gzip member's header garbled
        "crc",  # the member's CRC trailer wrong: the data decompresses, the check fails
    ],
)
def test_corrupted_record_in_warc_gz_is_skipped_and_the_rest_read(warc_dir: Path, tmp_path: Path, damage: str) -> None:
    original = warc_dir / "dolma_sample-0000.warc.gz"
    layout = responses(warc_layout(original))
    _, offset, length = max(layout, key=lambda entry: entry[2]) if damage == "zeros-late" else layout[10]
    data = bytearray(original.read_bytes())
    if damage == "zeros":
        data[offset + length // 2 : offset + length // 2 + 64] = bytes(64)
    elif damage == "zeros-late":
        assert length > 40_000
        data[offset + length * 3 // 4 : offset + length * 3 // 4 + 64] = bytes(64)
    elif damage == "header":
        data[offset + 4 : offset + 40] = b"\xff" * 36
    else:
        data[offset + length - 8] ^= 0xFF
    damaged = tmp_path / "damaged.warc.gz"
    damaged.write_bytes(bytes(data))

    intact, _, _ = ingest(original)
    records, problems, counts = ingest(damaged)

    [problem] = problems
    assert (problem.path, problem.offset) == (str(damaged), offset)
    if damage == "zeros-late":
        assert problem.reason.startswith("corrupt gzip data")  # warcio alone would yield it cut short, silently
    # Every other record is read, at its true offset (so with the same doc_id as from the intact file).
    assert [r["source_offset"] for r in records] == [r["source_offset"] for r in intact if r["source_offset"] != offset]
    assert [r["content"] for r in records] == [r["content"] for r in intact if r["source_offset"] != offset]
    assert counts.skipped["warc:request"] == 22


def test_two_corrupted_records_give_two_problems(warc_dir: Path, tmp_path: Path) -> None:
    original = warc_dir / "dolma_sample-0001.warc.gz"
    layout = responses(warc_layout(original))
    data = bytearray(original.read_bytes())
    for _, offset, length in (layout[3], layout[4]):
        data[offset + length // 2 : offset + length // 2 + 32] = b"\x00" * 32
    damaged = tmp_path / "damaged.warc.gz"
    damaged.write_bytes(bytes(data))

    records, problems, _ = ingest(damaged)

    assert [p.offset for p in problems] == [layout[3][1], layout[4][1]]
    assert len(records) == 13


def test_whole_file_gzip_is_one_problem(warc_dir: Path, tmp_path: Path) -> None:
    original = warc_dir / "warcio_example.warc.gz"
    damaged = tmp_path / "whole.warc.gz"
    damaged.write_bytes(gzip.compress(gzip.decompress(original.read_bytes())))

    records, problems, _ = ingest(damaged)

    assert records == []
    [problem] = problems
    assert problem.offset == 0 and "more than one record" in problem.reason


def test_uncompressed_warc_corrupted_header_resyncs_on_next_record(warc_dir: Path, tmp_path: Path) -> None:
    original = warc_dir / "warcio_example-iana.org-chunked.warc"
    layout = warc_layout(original)
    _, offset, _ = layout[1]  # the response
    data = bytearray(original.read_bytes())
    data[offset : offset + 8] = b"GARBAGE!"  # its WARC/1.0 line
    damaged = tmp_path / "damaged.warc"
    damaged.write_bytes(bytes(data))

    records, problems, counts = ingest(damaged)

    assert records == []
    assert [p.offset for p in problems] == [offset]
    assert counts.skipped == {"warc:warcinfo": 1, "warc:request": 1}  # the request after it was still read


def test_uncompressed_warc_truncated(warc_dir: Path, tmp_path: Path) -> None:
    original = warc_dir / "warcio_example-iana.org-chunked.warc"
    _, offset, length = warc_layout(original)[1]
    damaged = tmp_path / "cut.warc"
    damaged.write_bytes(original.read_bytes()[: offset + length // 2])

    records, problems, _ = ingest(damaged)

    assert records == []
    [problem] = problems
    assert problem.offset == offset and "truncated" in problem.reason


# ---------------------------------------------------------------------------------------------------------------
# JSONL

JSONL_LINES = [
    {"text": "The first document.", "url": "https://example.org/one"},
    "",  # blank: skipped silently
    "{not json",
    [1, 2, 3],
    {"url": "https://example.org/no-text"},
    {"text": 42},
    {"text": "The second document, without a URL: caf\u00e9."},
    {"text": "   "},  # empty text: skipped and counted
]


def write_jsonl(path: Path, lines: list, compress: str = "") -> Path:
    payload = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines).encode() + b"\n"
    if compress == ".gz":
        payload = gzip.compress(payload)
    elif compress == ".zst":
        # Two zstd frames: readers that stop at the first frame lose the second half.
        half = len(payload) // 2
        cut = payload.index(b"\n", half) + 1
        compressor = zstandard.ZstdCompressor()
        payload = compressor.compress(payload[:cut]) + compressor.compress(payload[cut:])
    path.write_bytes(payload)
    return path


@pytest.mark.parametrize("compress", ["", ".gz", ".zst"])
def test_jsonl_records_and_bad_lines(tmp_path: Path, compress: str) -> None:
    path = write_jsonl(tmp_path / f"corpus.jsonl{compress}", JSONL_LINES, compress)

    records, problems, counts = ingest(path)

    assert [r["source_offset"] for r in records] == [1, 7]
    assert [r["url"] for r in records] == ["https://example.org/one", f"{path}#L7"]
    assert records[1]["content"] == "The second document, without a URL: caf\u00e9.".encode()
    mtime = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
    for record in records:
        assert (record["status"], record["content_type"], record["charset"]) == (200, "text/plain", "utf-8")
        assert record["fetched_at"] == mtime
        assert record["doc_id"] == record_id(str(path), record["source_offset"])
    assert [p.offset for p in problems] == [3, 4, 5, 6]
    assert "JSON" in problems[0].reason
    assert "not an object" in problems[1].reason
    assert "'text'" in problems[2].reason and "missing" in problems[2].reason
    assert "'text'" in problems[3].reason and "not a string" in problems[3].reason
    assert all(p.path == str(path) for p in problems)
    assert counts.skipped == {"empty": 1}


def test_jsonl_custom_fields_and_html(tmp_path: Path) -> None:
    lines = [
        {"body": "<html><body><p>Hello</p></body></html>", "link": "https://example.org/a", "text": "ignored"},
        {"text": "no body field"},
    ]
    path = write_jsonl(tmp_path / "pages.ndjson", lines)

    records, problems, _ = ingest(path, text_field="body", url_field="link", content_type="text/html")

    [record] = records
    assert record["url"] == "https://example.org/a"
    assert record["content"] == b"<html><body><p>Hello</p></body></html>"
    assert (record["content_type"], record["charset"]) == ("text/html", None)
    [problem] = problems
    assert problem.offset == 2 and "'body'" in problem.reason


def test_jsonl_without_url_field_uses_the_line_locator(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "corpus.json", [{"text": "a", "url": "https://example.org/a"}])
    [record], _, _ = ingest(path, url_field=None)
    assert record["url"] == f"{path}#L1"


def test_truncated_jsonl_gz_keeps_the_lines_before(tmp_path: Path) -> None:
    lines = [{"text": f"document number {i} " * 20} for i in range(200)]
    whole = write_jsonl(tmp_path / "whole.jsonl.gz", lines, ".gz").read_bytes()
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])

    records, problems, _ = ingest(path)

    assert 0 < len(records) < 200
    assert [r["source_offset"] for r in records] == list(range(1, len(records) + 1))
    [problem] = problems
    assert problem.offset == len(records) + 1 and "unreadable" in problem.reason


# ---------------------------------------------------------------------------------------------------------------
# Parquet


def write_parquet(path: Path, columns: dict[str, list]) -> Path:
    pq.write_table(pa.table(columns), path, row_group_size=2)
    return path


def test_parquet_rows(tmp_path: Path) -> None:
    path = write_parquet(
        tmp_path / "corpus.parquet",
        {
            "text": ["first", None, "third", "", "fifth"],
            "url": ["https://example.org/1", "https://example.org/2", None, "https://example.org/4", None],
        },
    )

    records, problems, counts = ingest(path)

    assert [r["source_offset"] for r in records] == [0, 2, 4]
    assert [r["content"] for r in records] == [b"first", b"third", b"fifth"]
    assert [r["url"] for r in records] == ["https://example.org/1", f"{path}#2", f"{path}#4"]
    assert all(r["content_type"] == "text/plain" and r["status"] == 200 for r in records)
    [problem] = problems
    assert problem.offset == 1 and "null" in problem.reason
    assert counts.skipped == {"empty": 1}


def test_parquet_custom_text_column_without_url_column(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "corpus.parquet", {"content": ["a", "b"], "lang": ["en", "de"]})

    records, problems, _ = ingest(path, text_field="content")

    assert problems == []
    assert [(r["url"], r["content"]) for r in records] == [(f"{path}#0", b"a"), (f"{path}#1", b"b")]


def test_parquet_missing_text_column_is_a_source_error(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "corpus.parquet", {"body": ["a"], "url": ["https://example.org/"]})

    with pytest.raises(SourceError, match=r"corpus\.parquet.*'text'.*body, url"):
        ingest(path)


def test_parquet_text_column_of_wrong_type_is_a_source_error(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "corpus.parquet", {"text": [1, 2]})

    with pytest.raises(SourceError, match=r"'text' is int64"):
        ingest(path)


# ---------------------------------------------------------------------------------------------------------------
# plain files, directories, globs, fsspec URLs


def make_files(root: Path) -> None:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("Plain text.\n")
    (root / "sub" / "b.md").write_text("# Title\n\nSome *markdown*.\n")
    (root / "c.html").write_bytes(b"<html><head><meta charset=latin-1></head><body>caf\xe9</body></html>")
    (root / "sub" / "d.htm").write_text("<p>short</p>")
    (root / "empty.txt").write_text("  \n")
    (root / "notes.json").write_text("{}")
    (root / "image.png").write_bytes(b"\x89PNG")


def test_directory_of_files(tmp_path: Path) -> None:
    make_files(tmp_path / "docs")

    urls = expand_source(SourceConfig(path=str(tmp_path / "docs")))

    names = ["a.txt", "c.html", "empty.txt", "sub/b.md", "sub/d.htm"]
    assert urls == sorted(str(tmp_path / "docs" / name) for name in names)
    by_name = {}
    for url in urls:
        records, problems, counts = ingest(url)
        assert problems == []
        by_name[Path(url).name] = (records, counts)
    assert by_name["empty.txt"][0] == [] and by_name["empty.txt"][1].skipped == {"empty": 1}
    [html] = by_name["c.html"][0]
    assert (html["content_type"], html["charset"]) == ("text/html", None)
    assert html["content"].endswith(b"caf\xe9</body></html>")  # bytes kept as they are
    assert html["url"] == (tmp_path / "docs" / "c.html").as_uri()
    [markdown] = by_name["b.md"][0]
    assert markdown["content_type"] == "text/plain" and markdown["source_offset"] == 0
    assert markdown["url"].startswith("file:///")


def test_directory_for_another_kind_takes_that_kind_only(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [{"text": "a"}])
    write_jsonl(tmp_path / "b.jsonl.gz", [{"text": "b"}], ".gz")
    (tmp_path / "readme.txt").write_text("not a record")
    (tmp_path / "nested").mkdir()
    write_jsonl(tmp_path / "nested" / "c.jsonl", [{"text": "c"}])

    urls = expand_source(SourceConfig(path=str(tmp_path), kind="jsonl"))

    assert urls == [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl.gz")]


def test_globs(tmp_path: Path) -> None:
    (tmp_path / "x" / "y").mkdir(parents=True)
    for name in ("one.jsonl", "x/two.jsonl", "x/y/three.jsonl", "x/other.txt"):
        write_jsonl(tmp_path / name, [{"text": name}])

    flat = expand_source(SourceConfig(path=str(tmp_path / "*.jsonl")))
    deep = expand_source(SourceConfig(path=str(tmp_path / "**" / "*.jsonl")))
    dotted = expand_source(SourceConfig(path=str(tmp_path / "x" / ".." / "*.jsonl")))

    assert flat == dotted == [str(tmp_path / "one.jsonl")]
    assert deep == sorted(str(tmp_path / name) for name in ("one.jsonl", "x/two.jsonl", "x/y/three.jsonl"))


def test_nothing_to_read_is_a_source_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match=r"\*\.warc\.gz.*no file matches"):
        expand_source(SourceConfig(path=str(tmp_path / "*.warc.gz")))
    with pytest.raises(SourceError, match=r"missing\.jsonl.*no such file"):
        expand_source(SourceConfig(path=str(tmp_path / "missing.jsonl")))
    with pytest.raises(SourceError, match=r"empty.*no warc files"):
        expand_source(SourceConfig(path=str(tmp_path / "empty"), kind="warc"))


@pytest.fixture
def memory_root():
    """A folder of fsspec's in-memory filesystem, removed afterwards (the store is global to the process)."""
    fs = fsspec.filesystem("memory")
    root = f"/gristmill-test-{uuid.uuid4().hex}"
    yield fs, root
    if fs.exists(root):
        fs.rm(root, recursive=True)


def small_warc_gz() -> bytes:
    """One gzipped WARC response record, written with warcio."""
    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=True)
    http_headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=ISO-8859-1")], "HTTP/1.1")
    body = io.BytesIO(b"<html><body>caf\xe9</body></html>")
    writer.write_record(writer.create_warc_record("http://example.com/", "response", body, http_headers=http_headers))
    return buffer.getvalue()


def test_memory_urls(memory_root) -> None:
    fs, root = memory_root
    fs.pipe(f"{root}/corpus/a.jsonl", b'{"text": "in memory"}\n')
    fs.pipe(f"{root}/corpus/b.warc.gz", small_warc_gz())
    fs.pipe(f"{root}/corpus/c.html", b"<p>memory page</p>")

    urls = expand_source(SourceConfig(path=f"memory://{root}/corpus/*"))

    assert [url.rsplit("/", 1)[1] for url in urls] == ["a.jsonl", "b.warc.gz", "c.html"]
    assert all(url.startswith("memory://") for url in urls)
    jsonl, warc, html = (ingest(url)[0] for url in urls)
    assert [r["content"] for r in jsonl] == [b"in memory"]
    assert jsonl[0]["url"] == f"{urls[0]}#L1" and jsonl[0]["source"] == urls[0]
    assert [(r["url"], r["charset"], r["source_offset"]) for r in warc] == [("http://example.com/", "iso-8859-1", 0)]
    assert html[0]["url"] == urls[2] and html[0]["content_type"] == "text/html"


# ---------------------------------------------------------------------------------------------------------------
# kinds


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("crawl.warc", "warc"),
        ("crawl.warc.gz", "warc"),
        ("old.arc.gz", "warc"),
        ("CC-MAIN-x.warc.wet.gz", "wet"),
        ("x.wet", "wet"),
        ("s3://bucket/a.jsonl", "jsonl"),
        ("a.JSON.GZ", "jsonl"),
        ("a.ndjson.zst", "jsonl"),
        ("a.parquet", "parquet"),
        ("page.htm", "files"),
        ("notes.markdown", "files"),
    ],
)
def test_auto_kind_from_the_name(name: str, kind: str) -> None:
    assert source_kind(name, SourceConfig(path=name)) == kind


@pytest.mark.parametrize("name", ["table.csv", "archive.tar.gz"])
def test_unknown_kind_is_a_source_error(name: str) -> None:
    with pytest.raises(SourceError, match=rf"{name}.*\.warc\.gz.*\.jsonl\.zst.*\.parquet.*set kind"):
        source_kind(name, SourceConfig(path=name))


def test_explicit_kind_wins_over_the_name() -> None:
    assert source_kind("dump.bin", SourceConfig(path="dump.bin", kind="jsonl")) == "jsonl"


def test_problem_text() -> None:
    assert str(IngestProblem("a.warc.gz", 120, "truncated record")) == "a.warc.gz @ 120: truncated record"
    assert str(IngestProblem("a.parquet", None, "not Parquet")) == "a.parquet: not Parquet"


def test_jsonl_lone_surrogate_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "surrogate.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "bad \\ud800 half"}\n{"text": "also fine"}\n')
    problems: list[IngestProblem] = []
    records = list(read_source(str(path), SourceConfig(path=str(path)), problems.append))
    assert [r["content"] for r in records] == [b"fine", b"also fine"]
    assert len(problems) == 1 and problems[0].offset == 2 and "'text'" in problems[0].reason


def test_parquet_damaged_row_group_is_reported_and_the_rest_read(tmp_path: Path) -> None:
    path = tmp_path / "groups.parquet"
    texts = [f"document number {i} with some words in it" for i in range(30)]
    pq.write_table(pa.table({"text": texts}), path, row_group_size=10)
    column = pq.ParquetFile(path).metadata.row_group(1).column(0)
    start = column.dictionary_page_offset or column.data_page_offset
    data = bytearray(path.read_bytes())
    data[start : start + column.total_compressed_size] = b"\xff" * column.total_compressed_size
    path.write_bytes(bytes(data))
    problems: list[IngestProblem] = []
    records = list(read_source(str(path), SourceConfig(path=str(path)), problems.append))
    assert [r["content"].decode() for r in records] == texts[:10] + texts[20:]
    assert len(problems) == 1 and problems[0].offset == 10 and "row group 1" in problems[0].reason


# -- known quirks of real archives: read leniently, counted, the record kept ------------------------------------


def quirky_record(uri: str, body: bytes, version: str = "WARC/1.0", date: str = "2024-01-01T00:00:00Z", length=True):
    """A response record written by hand, as old crawlers wrote them (warcio would fix what we want to keep)."""
    http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n" + body
    head = [version, "WARC-Type: response", f"WARC-Target-URI: {uri}", f"WARC-Date: {date}"]
    head += [f"WARC-Record-ID: <urn:uuid:{uuid.uuid4()}>", "Content-Type: application/http; msgtype=response"]
    if length:
        head.append(f"Content-Length: {len(http)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + http + b"\r\n\r\n"


def write_warc(path: Path, records: list[bytes], compressed: bool) -> Path:
    path.write_bytes(b"".join(gzip.compress(r) if compressed else r for r in records))
    return path


@pytest.mark.parametrize("compressed", [True, False])
def test_a_clueweb_style_bad_warc_date_keeps_the_record(tmp_path: Path, compressed: bool) -> None:
    path = write_warc(
        tmp_path / ("c.warc.gz" if compressed else "c.warc"),
        [
            quirky_record("http://a.test/1", b"<p>one</p>", "WARC/0.18", date="2008-10-294T05:21:46-0700"),
            quirky_record("http://a.test/2", b"<p>two</p>", "WARC/0.18", date="2009-03-65T08:43:19-0800"),
            quirky_record("http://a.test/3", b"<p>three</p>", "WARC/0.18", date="2009-03-05T08:43:19-0800"),
        ],
        compressed,
    )
    records, problems, counts = ingest(path)
    assert problems == []
    assert [r["url"] for r in records] == ["http://a.test/1", "http://a.test/2", "http://a.test/3"]
    assert records[0]["fetched_at"] == dt.datetime(2008, 10, 29, 12, 21, 46, tzinfo=dt.UTC)
    assert records[1]["fetched_at"] == dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)  # day 65: file time
    assert counts.quirks == {"warc_bad_date": 2, "warc_0.x_version": 3}


@pytest.mark.parametrize("compressed", [True, False])
def test_a_record_without_content_length_is_kept_and_does_not_swallow_the_next(tmp_path: Path, compressed) -> None:
    path = write_warc(
        tmp_path / ("n.warc.gz" if compressed else "n.warc"),
        [quirky_record("http://a.test/1", b"<p>one</p>", length=False), quirky_record("http://a.test/2", b"<p>2</p>")],
        compressed,
    )
    records, problems, counts = ingest(path)
    assert problems == []
    assert [(r["url"], r["content"]) for r in records] == [
        ("http://a.test/1", b"<p>one</p>"),
        ("http://a.test/2", b"<p>2</p>"),
    ]
    assert counts.quirks == {"warc_missing_length": 1}

"""Existing corpora in, raw records out: WARC, WET, JSONL, Parquet and plain files to `RAW_SCHEMA` dicts.

`expand_source` turns one configured source (a file, a directory or a glob, local or any fsspec URL) into its
files; `read_source` streams one file's records. Everything is streamed - WARC records, JSONL lines, Parquet
batches - except single text/HTML files, which are one record each.

A malformed or truncated record is reported as an `IngestProblem` and skipped, and the rest of the file is still
read: a WARC reader that hits a broken record resynchronises on the next record it can parse. Known quirks of real
archives are read leniently and counted (`IngestCounts.quirks`), the record kept: a WARC-Date that is not ISO 8601
(ClueWeb09 has `2008-10-294T05:21:46-0700`), WARC/0.18 headers, a record without Content-Length. Only a source that
cannot be used at all (nothing matches, a missing column, an unknown kind) raises `SourceError`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import posixpath
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard
from fsspec.implementations.local import LocalFileSystem
from warcio.archiveiterator import ArchiveIterator
from warcio.bufferedreaders import DecompressingBufferedReader
from warcio.exceptions import ArchiveLoadFailed
from warcio.recordloader import ArcWarcRecord
from warcio.statusandheaders import StatusAndHeadersParserException

from gristmill.conf.schema import ConfigError, SourceConfig, UserError
from gristmill.tasks.crawl.charset import parse_content_type
from gristmill.tasks.crawl.records import record_id
from gristmill.tasks.shards import atomic_write_json

MAX_RECORD_BYTES = 20 * 1024 * 1024  # one record's content; a larger one is reported and skipped

# Suffixes per kind, for `kind: auto` and for picking a directory's files. WET before WARC: *.warc.wet.gz is WET.
_COMPRESSED = ("", ".gz", ".zst")
KIND_SUFFIXES: dict[str, tuple[str, ...]] = {
    "wet": (".wet", ".wet.gz"),
    "warc": (".warc", ".warc.gz", ".arc", ".arc.gz"),
    "jsonl": tuple(base + comp for base in (".jsonl", ".json", ".ndjson") for comp in _COMPRESSED),
    "parquet": (".parquet",),
    "files": (".txt", ".md", ".markdown", ".html", ".htm"),
}
_HTML_SUFFIXES = (".html", ".htm")
_WEB_SCHEMES = ("http", "https", "ftp")  # WARC records of other URIs (dns:, metadata://) are crawler bookkeeping

_GZIP_MAGIC = b"\x1f\x8b\x08"
_WARC_LINE = b"\nWARC/1."
_SCAN_CHUNK = 1 << 20
_PARQUET_BATCH = 1024


class SourceError(UserError, ValueError):
    """A source that cannot be used at all; the message names the path and, where one is at fault, the field."""


@dataclass(frozen=True)
class IngestProblem:
    """A malformed or truncated record, reported and skipped; the rest of its file is still read."""

    path: str  # the file, as expanded
    offset: int | None  # byte offset (WARC), line number (JSONL, 1-based), row index (Parquet); None: whole file
    reason: str

    def __str__(self) -> str:
        where = self.path if self.offset is None else f"{self.path} @ {self.offset}"
        return f"{where}: {self.reason}"


@dataclass
class IngestCounts:
    """What reading one or more files gave: records yielded, records skipped by reason, problems reported."""

    records: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # "warc:request", "warc:revisit", "empty", ...
    problems: int = 0
    quirks: dict[str, int] = field(default_factory=dict)  # records kept despite a known quirk: "warc_bad_date", ...

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def quirk(self, name: str) -> None:
        self.quirks[name] = self.quirks.get(name, 0) + 1

    def add(self, other: IngestCounts) -> None:
        self.records += other.records
        self.problems += other.problems
        for mine, theirs in ((self.skipped, other.skipped), (self.quirks, other.quirks)):
            for key, value in theirs.items():
                mine[key] = mine.get(key, 0) + value


# ---------------------------------------------------------------------------------------------------------------
# files of a source


def expand_source(source: SourceConfig) -> list[str]:
    """The files of one source, sorted, as paths or URLs fsspec can open (local paths made absolute).

    A glob (`data/*.warc.gz`, `s3://bucket/x/**/*.jsonl`) gives the files it matches. A directory gives, for kind
    `files` or `auto`, every .txt/.md/.html file under it, recursively; for another kind, the files directly in it
    whose names are of that kind. Raises `SourceError` naming the path when nothing matches.
    """
    fs, root = fsspec.core.url_to_fs(source.path)
    if any(char in source.path for char in "*?["):
        matches = fs.glob(root, detail=True)
        paths = [path for path, info in matches.items() if info["type"] == "file"]
        missing = "no file matches this glob"
    elif fs.isdir(root):
        paths = _directory_files(fs, root, source.kind)
        kind = "text" if source.kind in ("auto", "files") else source.kind
        missing = f"no {kind} files in this directory ({', '.join(_directory_suffixes(source.kind))})"
    elif fs.isfile(root):
        paths, missing = [root], ""
    else:
        raise SourceError(f"source {source.path}: no such file or directory")
    if not paths:
        raise SourceError(f"source {source.path}: {missing}")
    if isinstance(fs, LocalFileSystem):
        return sorted(posixpath.normpath(path) for path in paths)  # "a/../b" and "b" are one source
    return sorted(fs.unstrip_protocol(path) for path in paths)


_FILE_DIGESTS: dict[tuple[str, int, str], str] = {}  # (url, size, mtime) -> sha256: each file read once a run
SOURCE_DIGESTS = "crawl_sources.json"  # in the workspace: what each source file's bytes hashed to, by size and mtime


def file_digest(url: str, remembered: dict[str, dict[str, Any]] | None = None) -> str:
    """sha256 of a source file's bytes. The bytes are read once per (size, modification time): within a run from
    memory, across runs from `remembered` (the workspace's record), so an unchanged file is not read again. A file
    touched but not changed is read again and keeps its digest, so it is not ingested again either."""
    fs, path = fsspec.core.url_to_fs(url)
    size = int(fs.info(path).get("size") or 0)
    try:
        mtime = str(fs.modified(path).timestamp())
    except Exception:  # filesystems without modification times raise NotImplementedError, KeyError, ...
        mtime = ""
    key = (url, size, mtime)
    if key not in _FILE_DIGESTS:
        known = (remembered or {}).get(url, {})
        if mtime and (known.get("size"), known.get("mtime")) == (size, mtime):
            _FILE_DIGESTS[key] = known["sha256"]
        else:
            digest = hashlib.sha256()
            with fs.open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            _FILE_DIGESTS[key] = digest.hexdigest()
    if remembered is not None:
        remembered[url] = {"size": size, "mtime": mtime, "sha256": _FILE_DIGESTS[key]}
    return _FILE_DIGESTS[key]


def remembered_digests(workspace: str | Path) -> dict[str, dict[str, Any]]:
    """The workspace's record of each source file's size, mtime and sha256 (`SOURCE_DIGESTS`): what `file_digest`
    needs to leave an unchanged file unread, in any process."""
    record = Path(workspace) / SOURCE_DIGESTS
    return json.loads(record.read_text()) if record.is_file() else {}


def files_digest(urls: list[str], remembered: dict[str, dict[str, Any]] | None = None) -> str:
    """One digest for a list of source files (a unit of ingestion): it changes when any of their bytes do."""
    lines = "\n".join(f"{url} {file_digest(url, remembered)}" for url in urls)
    return hashlib.sha256(lines.encode()).hexdigest()[:16]


def sources_digest(sources: list[SourceConfig], workspace: str | Path | None = None) -> str | None:
    """The crawl stage's input: every file every source matches, by content (files whose size and mtime are as
    `<workspace>/crawl_sources.json` recorded are not read again). A source that matches nothing (a typo) is a
    ConfigError naming it, raised before the stage touches its output. None without sources."""
    if not sources:
        return None
    urls = []
    for index, source in enumerate(sources):
        try:
            urls += expand_source(source)
        except (SourceError, OSError) as err:
            raise ConfigError(f"crawl.sources[{index}].path: {err}") from err
    record = Path(workspace) / SOURCE_DIGESTS if workspace is not None else None
    remembered = remembered_digests(workspace) if workspace is not None else {}
    digest = files_digest(urls, remembered)
    if record is not None:
        atomic_write_json(record, {url: remembered[url] for url in urls})
    return digest


def _directory_suffixes(kind: str) -> tuple[str, ...]:
    return KIND_SUFFIXES["files" if kind == "auto" else kind]


def _directory_files(fs: fsspec.AbstractFileSystem, root: str, kind: str) -> list[str]:
    if kind in ("auto", "files"):
        found = fs.find(root, detail=True)
        return [path for path, info in found.items() if info["type"] == "file" and _has_suffix(path, "files")]
    listed = fs.ls(root, detail=True)
    return [info["name"] for info in listed if info["type"] == "file" and _kind_from_name(info["name"]) == kind]


def _has_suffix(name: str, kind: str) -> bool:
    return name.lower().endswith(KIND_SUFFIXES[kind])


def _kind_from_name(name: str) -> str | None:
    return next((kind for kind in KIND_SUFFIXES if _has_suffix(name, kind)), None)


def source_kind(url: str, source: SourceConfig) -> str:
    """The kind of one file: the source's, or from the file name when the source says `auto`."""
    if source.kind != "auto":
        return source.kind
    kind = _kind_from_name(url)
    if kind is None and url.lower().endswith((".wat", ".wat.gz")):
        raise SourceError(
            f"{url}: a WAT file holds metadata (headers, links), not page text",
            fix="ingest the .warc.gz (pages) or .wet.gz (their text) of the same capture instead",
        )
    if kind is None:
        allowed = ", ".join(suffix for suffixes in KIND_SUFFIXES.values() for suffix in suffixes)
        raise SourceError(f"{url}: cannot tell the kind of file from its name; use one of {allowed} or set kind")
    return kind


def check_source_file(url: str, source: SourceConfig) -> None:
    """Refuse, before any work, a file that cannot be of its kind: an empty or non-WARC `.warc.gz`, a `.parquet`
    without Parquet's magic bytes. Reads a few bytes of the file; records inside are judged when read."""
    kind = source_kind(url, source)
    if kind not in ("warc", "wet", "parquet"):
        return
    with fsspec.open(url, "rb") as fh:
        head = fh.read(4096)
        if kind == "parquet":
            ok = head.startswith(b"PAR1")
        elif head.startswith(_GZIP_MAGIC[:2]):
            ok = _starts_warc_member(fh, 0) or _starts_arc_member(fh)
        else:
            ok = head.lstrip().startswith((b"WARC/", b"filedesc://"))
    if not ok:
        what = "an empty file" if not head else f"it starts with {head[:24]!r}"
        raise SourceError(
            f"source file {url}: not a {kind.upper()} file ({what})",
            fix="check the file, or remove it from crawl.sources (or set the source's `kind`)",
        )


def _starts_arc_member(fh: IO[bytes]) -> bool:
    fh.seek(0)
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(fh.read(4096), 16).startswith(b"filedesc://")
    except zlib.error:
        return False


# ---------------------------------------------------------------------------------------------------------------
# reading one file


@dataclass
class _Reading:
    """One file being read: where records and problems go, and the RAW_SCHEMA fields every record shares."""

    url: str
    source: SourceConfig
    counts: IngestCounts
    report: Callable[[IngestProblem], None]
    max_record_bytes: int

    def problem(self, offset: int | None, reason: str) -> None:
        self.counts.problems += 1
        self.report(IngestProblem(self.url, offset, reason))

    def skip(self, reason: str) -> None:
        self.counts.skip(reason)

    def record(self, offset: int, url: str, fetched_at: dt.datetime, content: bytes, **fields: Any) -> dict:
        return {
            "doc_id": record_id(self.url, offset),
            "url": url,
            "source": self.url,
            "source_offset": offset,
            "fetched_at": fetched_at,
            "status": fields.get("status", 200),
            "content_type": fields.get("content_type"),
            "charset": fields.get("charset"),
            "lang_hint": fields.get("lang_hint"),
            "content": content,
        }


def read_source(
    url: str,
    source: SourceConfig,
    report: Callable[[IngestProblem], None],
    counts: IngestCounts | None = None,
    *,
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> Iterator[dict[str, Any]]:
    """Stream the RAW_SCHEMA records of one file of `source` (a path or URL from `expand_source`).

    Bad records go to `report` and are skipped; `counts`, if given, is filled as the records are read. The kind is
    resolved now (`SourceError` if it cannot be); a Parquet file without the text column raises `SourceError` when
    iteration starts.
    """
    readers = {"warc": _read_warc, "wet": _read_warc, "jsonl": _read_jsonl, "parquet": _read_parquet}
    kind = source_kind(url, source)
    reading = _Reading(url, source, counts if counts is not None else IngestCounts(), report, max_record_bytes)
    return _counted(reading, readers.get(kind, _read_file)(reading, kind))


def _counted(reading: _Reading, records: Iterator[dict]) -> Iterator[dict]:
    for record in records:
        reading.counts.records += 1
        yield record


# ---------------------------------------------------------------------------------------------------------------
# WARC and WET

# What warcio raises from a broken record: bad headers, a broken or cut gzip member, bad lengths; and, from headers
# damaged past its checks (a missing WARC-Target-URI), plain AttributeError and friends (found by tests/faults).
_WARC_ERRORS = (
    ArchiveLoadFailed, StatusAndHeadersParserException, EOFError, zlib.error, OSError, ValueError,
    AttributeError, TypeError, IndexError, KeyError,
)  # fmt: skip


class _BrokenRecord(Exception):
    """A record that ended early (truncated file) or whose gzip member does not end with it."""


class _StrictReader(DecompressingBufferedReader):
    """warcio's reader, except that a gzip error inside a member raises: warcio writes it to stderr and goes on
    with no data for that block, so the damaged record comes out cut short (or the file ends early) unreported."""

    def _decompress(self, data: bytes) -> bytes:
        # num_block_read == 0: the first block of a member, where warcio's fallback detects uncompressed files.
        if self.decompressor is not None and data and self.num_block_read > 0:
            return self.decompressor.decompress(data)
        return super()._decompress(data)


def _archive_iterator(fh: IO[bytes], url: str) -> ArchiveIterator:
    records = ArchiveIterator(fh, arc2warc=True)
    records.reader = _StrictReader(records.fh)  # the record generator has not started: it reads this reader
    if not url.lower().endswith((".arc", ".arc.gz")):
        # Parse as WARC only: in mixed mode a garbage line can pass for an ARC header and give a bogus record.
        records.known_format = "warc"
    return records


def _read_warc(reading: _Reading, kind: str) -> Iterator[dict]:
    with fsspec.open(reading.url, "rb") as fh:
        gzipped = fh.read(2) == _GZIP_MAGIC[:2]
        size = fh.seek(0, io.SEEK_END)
        start: int | None = 0
        # Each restart begins past the previous start (and past the offset that failed): this ends.
        while start is not None:
            failed_at = yield from _warc_run(reading, fh, start, size, wet=kind == "wet")
            start = None if failed_at is None else _resync(fh, max(failed_at, start) + 1, gzipped)


def _warc_run(reading: _Reading, fh: IO[bytes], start: int, size: int, wet: bool) -> Iterator[dict]:
    """Read records from `start` until the end (returns None) or a broken record (returns its offset)."""
    fh.seek(start)
    records = _archive_iterator(fh, reading.url)
    while True:
        offset = records.offset  # where the next record starts: the previous one was read to its end
        try:
            record = next(records, None)
            if record is None:
                return _check_end(reading, records, size)
            row = _warc_row(reading, records, record, offset, wet)
        except (*_WARC_ERRORS, _BrokenRecord) as exc:
            reading.problem(offset, _describe(exc))
            return offset
        if row is not None:
            yield row
        if _unbounded(records, record):
            return offset  # it ran on into the records after it: go on from the next WARC line after its start


def _check_end(reading: _Reading, records: ArchiveIterator, size: int) -> int | None:
    """None when the records ended at the end of the file; else report and return where they stopped.

    warcio ends quietly where the next record cannot even begin (a file cut inside a record's WARC headers,
    garbage after the last record), so bytes left over mean something was lost there.
    """
    if records.offset >= size:
        return None
    reading.problem(records.offset, f"not a complete record: {size - records.offset} bytes left unread")
    return records.offset


def _describe(exc: BaseException) -> str:
    """The exception's name and first line, short and printable (warcio quotes the bad line, binary included)."""
    first_line = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    if not first_line.isprintable():
        first_line = ascii(first_line)
    first_line = first_line[:120]
    if isinstance(exc, _BrokenRecord):
        return first_line
    name = "corrupt gzip data" if isinstance(exc, zlib.error) else type(exc).__name__
    return f"{name}: {first_line}" if first_line else name


def _warc_row(
    reading: _Reading, records: ArchiveIterator, record: ArcWarcRecord, offset: int, wet: bool
) -> dict | None:
    """The record as RAW_SCHEMA, or None when it is skipped (counted) or bad (reported)."""
    uri = record.rec_headers.get_header("WARC-Target-URI") or ""
    scheme = uri.partition(":")[0].lower()
    wanted = ("conversion",) if wet else ("response", "resource")
    if record.rec_type not in wanted:
        _finish(records, record)
        reading.skip(f"warc:{record.rec_type}")
        return None
    if scheme not in _WEB_SCHEMES:
        _finish(records, record)
        reading.skip(f"warc:{record.rec_type}:{scheme or 'no-uri'}")
        return None
    content = record.content_stream().read(reading.max_record_bytes + 1)  # decodes chunked and gzip transfers
    _finish(records, record)
    if record.rec_headers.get_header("Content-Length") is None:
        reading.counts.quirk("warc_missing_length")
        if _unbounded(records, record):  # nothing ended it but the file: cut it where the next record begins
            content = _NEXT_WARC_RECORD.split(content, 1)[0]
        content = content.removesuffix(b"\r\n\r\n")  # the blank lines that end a record, read as its content
    if record.rec_headers.protocol.startswith("WARC/0."):
        reading.counts.quirk("warc_0.x_version")
    if len(content) > reading.max_record_bytes:
        reading.problem(offset, f"record content larger than {reading.max_record_bytes} bytes; skipped")
        return None
    if not content:
        reading.skip("empty")
        return None
    try:
        fields = _conversion_fields(record) if wet else _response_fields(record)
    except ValueError as exc:
        reading.problem(offset, str(exc))
        return None
    return reading.record(offset, uri, _warc_date(reading, record), content, **fields)


_NEXT_WARC_RECORD = re.compile(rb"\r?\n\r?\nWARC/\d\.\d+\r?\n")


def _unbounded(records: ArchiveIterator, record: ArcWarcRecord) -> bool:
    """A record of an uncompressed file without Content-Length: only the end of the file ended it."""
    return records.reader.decompressor is None and record.rec_headers.get_header("Content-Length") is None


def _finish(records: ArchiveIterator, record: ArcWarcRecord) -> None:
    """Read the record to its end and check that all of it was there."""
    records.get_record_offset()  # reads the rest of the record and the blank lines after it
    missing = getattr(record.raw_stream, "limit", 0)  # a LimitReader over Content-Length: what never arrived
    if missing > 0:
        raise _BrokenRecord(f"truncated record: {missing} bytes of its block missing")
    decompressor = records.reader.decompressor
    if decompressor is None:  # an uncompressed file
        return
    if records.next_line:  # the line after the record came out of the same gzip member: not one member a record
        raise _BrokenRecord("gzip member holds more than one record (a whole-file gzip? see `warcio recompress`)")
    if not decompressor.eof:  # warcio reads on until a member ends, so the file ended inside this one
        raise _BrokenRecord("truncated gzip member")


def _response_fields(record: ArcWarcRecord) -> dict[str, Any]:
    if record.http_headers is None:  # a resource record, or a response without HTTP headers (ftp:)
        media_type, charset = parse_content_type(record.rec_headers.get_header("Content-Type"))
        return {"status": 200, "content_type": media_type, "charset": charset}
    status_code = record.http_headers.get_statuscode()
    try:
        status = int(status_code)
    except (TypeError, ValueError):
        raise ValueError(f"bad HTTP status line: {record.http_headers.statusline!r}") from None
    if not 100 <= status <= 999:
        raise ValueError(f"HTTP status {status} out of range")
    media_type, charset = parse_content_type(record.http_headers.get_header("Content-Type"))
    language = (record.http_headers.get_header("Content-Language") or "").strip() or None
    return {"status": status, "content_type": media_type, "charset": charset, "lang_hint": language}


def _conversion_fields(record: ArcWarcRecord) -> dict[str, Any]:
    # Common Crawl writes the languages it identified, most likely first: "eng" or "eng,deu".
    languages = record.rec_headers.get_header("WARC-Identified-Content-Language") or ""
    language = languages.split(",")[0].strip() or None
    return {"status": 200, "content_type": "text/plain", "charset": "utf-8", "lang_hint": language}


# Date, time and zone of a WARC-Date that is not ISO 8601, e.g. ClueWeb09's "2008-10-294T05:21:46-0700".
_LOOSE_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})\d*[T ](\d{2}):(\d{2}):(\d{2})\S*?(Z|[+-]\d{2}:?\d{2})?$")


def _warc_date(reading: _Reading, record: ArcWarcRecord) -> dt.datetime:
    """The record's WARC-Date; one that is not ISO 8601 is read leniently (or, failing that, the file's time) and
    counted as a quirk: a bad date is no reason to lose a page."""
    value = (record.rec_headers.get_header("WARC-Date") or "").strip()
    try:
        return _utc(dt.datetime.fromisoformat(value))
    except ValueError:
        pass
    reading.counts.quirk("warc_bad_date")
    loose = _LOOSE_DATE.match(value)
    if loose:
        *parts, zone = loose.groups()
        year, month, day, hour, minute, second = (int(part) for part in parts)
        try:
            moment = dt.datetime(year, month, day, hour, minute, second)
            return _utc(moment.replace(tzinfo=_zone(zone)) if zone else moment)
        except ValueError:
            pass
    return _modified(reading.url)


def _zone(text: str) -> dt.tzinfo:
    if text == "Z":
        return dt.UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return dt.timezone(sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _resync(fh: IO[bytes], start: int, gzipped: bool) -> int | None:
    """The offset of the first record at or after `start` that begins a readable record, if any.

    In a record-per-member .warc.gz that is a gzip member header whose data starts with a WARC header line;
    in an uncompressed WARC, a WARC version line at the start of a line.
    """
    position = start
    marker = _GZIP_MAGIC if gzipped else _WARC_LINE
    while (found := _find(fh, marker, position)) is not None:
        candidate = found if gzipped else found + 1  # skip the newline before "WARC/1."
        if not gzipped or _starts_warc_member(fh, candidate):
            return candidate
        position = found + 1
    return None


def _find(fh: IO[bytes], marker: bytes, position: int) -> int | None:
    """The offset of the first `marker` at or after `position`, reading a chunk at a time."""
    while True:
        fh.seek(position)
        chunk = fh.read(_SCAN_CHUNK)
        hit = chunk.find(marker)
        if hit >= 0:
            return position + hit
        if len(chunk) < _SCAN_CHUNK:
            return None
        position += len(chunk) - (len(marker) - 1)  # a marker cut by the chunk boundary is found next time


def _starts_warc_member(fh: IO[bytes], position: int) -> bool:
    fh.seek(position)
    try:
        head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(fh.read(4096), 16)
    except zlib.error:
        return False
    return head.startswith(b"WARC/")


# ---------------------------------------------------------------------------------------------------------------
# JSONL


def _read_jsonl(reading: _Reading, kind: str) -> Iterator[dict]:
    fetched_at = _modified(reading.url)
    line_number = 0
    with _open_lines(reading.url) as lines:
        try:
            for line_number, line in enumerate(lines, 1):
                row = _jsonl_row(reading, line_number, line, fetched_at)
                if row is not None:
                    yield row
        except (OSError, EOFError, zlib.error, zstandard.ZstdError) as exc:
            # A cut or corrupt compressed stream cannot be resumed: what came before it is kept.
            reading.problem(line_number + 1, f"unreadable from here: {_describe(exc)}")


@contextlib.contextmanager
def _open_lines(url: str) -> Iterator[IO[bytes]]:
    if not url.lower().endswith(".zst"):
        with fsspec.open(url, "rb", compression="infer") as lines:
            yield lines
        return
    # fsspec's zstd reader neither iterates by line nor reads past a file's first zstd frame.
    with fsspec.open(url, "rb") as raw:
        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        with io.BufferedReader(reader) as lines:
            yield lines


def _jsonl_row(reading: _Reading, line_number: int, line: bytes, fetched_at: dt.datetime) -> dict | None:
    if not line.strip():
        return None
    if len(line) > reading.max_record_bytes:
        reading.problem(line_number, f"line longer than {reading.max_record_bytes} bytes; skipped")
        return None
    try:
        value = json.loads(line)
    except ValueError as exc:  # bad JSON, or bytes that are not UTF-8
        reading.problem(line_number, f"not valid JSON: {exc}")
        return None
    if not isinstance(value, dict):
        reading.problem(line_number, f"a JSON {type(value).__name__}, not an object")
        return None
    text_field = reading.source.text_field
    text = value.get(text_field)
    if not isinstance(text, str):
        found = "missing" if text_field not in value else f"a {type(text).__name__}, not a string"
        reading.problem(line_number, f"text field {text_field!r} is {found}")
        return None
    url = value.get(reading.source.url_field) if reading.source.url_field else None
    if not isinstance(url, str) or not url.strip():
        url = f"{reading.url}#L{line_number}"
    # JSON may carry lone surrogates ("\ud800") that no UTF-8 text can hold.
    for field_name, field_value in ((text_field, text), (reading.source.url_field, url)):
        try:
            field_value.encode()
        except UnicodeEncodeError as exc:
            reading.problem(line_number, f"field {field_name!r} is not valid Unicode: {exc.reason} at {exc.start}")
            return None
    return _text_record(reading, line_number, url, text, fetched_at)


def _text_record(reading: _Reading, offset: int, url: str, text: str, fetched_at: dt.datetime) -> dict | None:
    if not text.strip():
        reading.skip("empty")
        return None
    content_type = reading.source.content_type
    # Our own encoding of the text: UTF-8. HTML text keeps whatever charset its <meta> says (none declared here).
    charset = "utf-8" if content_type == "text/plain" else None
    return reading.record(offset, url, fetched_at, text.encode(), content_type=content_type, charset=charset)


# ---------------------------------------------------------------------------------------------------------------
# Parquet


def _read_parquet(reading: _Reading, kind: str) -> Iterator[dict]:
    fetched_at = _modified(reading.url)
    with fsspec.open(reading.url, "rb") as fh:
        try:
            parquet = pq.ParquetFile(fh)
        except (pa.ArrowException, OSError) as exc:
            reading.problem(None, f"not a readable Parquet file: {_describe(exc)}")
            return
        columns = _parquet_columns(reading, parquet.schema_arrow)
        first_row = 0
        # Row group by row group: a damaged one is reported (at its first row) and the next ones are still read.
        for group in range(parquet.num_row_groups):
            group_rows = parquet.metadata.row_group(group).num_rows
            row = first_row
            try:
                for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH, row_groups=[group], columns=columns):
                    texts = batch.column(0).to_pylist()
                    urls = batch.column(1).to_pylist() if len(columns) > 1 else [None] * len(texts)
                    for text, url in zip(texts, urls, strict=True):
                        record = _parquet_row(reading, row, text, url, fetched_at)
                        row += 1
                        if record is not None:
                            yield record
            except (pa.ArrowException, OSError) as exc:
                reading.problem(row, f"row group {group} unreadable from this row on: {_describe(exc)}")
            first_row += group_rows


def _parquet_columns(reading: _Reading, schema: pa.Schema) -> list[str]:
    """The text column, and the URL column where the file has one; SourceError if the text column is missing."""
    text_field, url_field = reading.source.text_field, reading.source.url_field
    if text_field not in schema.names:
        raise SourceError(
            f"{reading.url}: no column {text_field!r} (text_field); the file has {', '.join(schema.names)}"
        )
    columns = [text_field] + ([url_field] if url_field and url_field in schema.names else [])
    for name in columns:
        column_type = schema.field(name).type
        if not (pa.types.is_string(column_type) or pa.types.is_large_string(column_type)):
            raise SourceError(f"{reading.url}: column {name!r} is {column_type}, not a string column")
    return columns


def _parquet_row(
    reading: _Reading, row: int, text: str | None, url: str | None, fetched_at: dt.datetime
) -> dict | None:
    if text is None:
        reading.problem(row, f"text column {reading.source.text_field!r} is null")
        return None
    if not url or not url.strip():
        url = f"{reading.url}#{row}"
    return _text_record(reading, row, url, text, fetched_at)


# ---------------------------------------------------------------------------------------------------------------
# plain files


def _read_file(reading: _Reading, kind: str) -> Iterator[dict]:
    fs, path = fsspec.core.url_to_fs(reading.url)
    size = fs.size(path)
    if size is not None and size > reading.max_record_bytes:
        reading.problem(None, f"file larger than {reading.max_record_bytes} bytes; skipped")
        return
    content = fs.cat_file(path)
    if not content.strip():
        reading.skip("empty")
        return
    is_html = reading.url.lower().endswith(_HTML_SUFFIXES)
    url = Path(path).as_uri() if isinstance(fs, LocalFileSystem) else reading.url
    # Markdown is kept as plain text; HTML bytes stay as they are (no charset declared: the extractor detects it).
    content_type = "text/html" if is_html else "text/plain"
    yield reading.record(0, url, _modified(reading.url), content, content_type=content_type)


def _modified(url: str) -> dt.datetime:
    """The file's modification time, for sources that carry no fetch time; now where the filesystem has none."""
    fs, path = fsspec.core.url_to_fs(url)
    try:
        return _utc(fs.modified(path))
    except Exception:  # filesystems without modification times raise NotImplementedError, KeyError, ...
        return dt.datetime.now(dt.UTC)

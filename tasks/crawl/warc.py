"""Raw responses as WARC files (ISO 28500, via warcio), so a crawl can be re-extracted without refetching.

Each crawl session writes a new `crawl-NNNNN.warc.gz` (a resumed crawl never appends to a file a killed
process may have cut mid-record). Bodies are stored decoded: Content-Encoding and Transfer-Encoding headers
are dropped and Content-Length set to the stored length, so any WARC reader sees a consistent record.
"""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

from isal import isal_zlib
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from gristmill.tasks.crawl.fetch import Response

DROPPED_HEADERS = frozenset({"content-encoding", "transfer-encoding", "content-length"})
# Each record is gzipped by ISA-L (Intel's igzip: any gzip reader reads it) at level 2 of its 0-3. On 400
# documentation pages (78 MB, one process): zlib at level 6 took 1.16 s (compressed/raw 0.117), zlib 1 0.54 s
# (0.159), ISA-L 3 0.22 s (0.143), ISA-L 2 0.12 s (0.154). The crawl writes a record for every page it stores, on the
# 2 cores its extraction workers share, so the files are a third larger than zlib 6's for a tenth of the CPU (level 3
# would save another 7% of the size for twice the time). (warcio itself gzips at level 9.)
GZIP_LEVEL = 2


def sha1_digest(*parts: bytes) -> str:
    """A WARC digest header's value (as warcio writes it): `sha1:` and the base32 of the parts' SHA-1."""
    digest = hashlib.sha1()
    for part in parts:
        digest.update(part)
    return "sha1:" + base64.b32encode(digest.digest()).decode("ascii")


class WarcSink:
    def __init__(self, directory: Path, software: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        taken = [int(p.name.split("-")[1].split(".")[0]) for p in directory.glob("crawl-*.warc.gz")]
        self.path = directory / f"crawl-{max(taken, default=-1) + 1:05d}.warc.gz"
        self._file = self.path.open("xb")  # never over an earlier session's file
        self._record = io.BytesIO()  # one record at a time, then gzipped as its own member (as WARC readers expect)
        self._writer = WARCWriter(self._record, gzip=False)
        assert self._writer.header_filter is None, "a header filter would change the headers the digests cover"
        info = self._writer.create_warcinfo_record(self.path.name, {"software": software, "format": "WARC-1.1"})
        self._write(info)
        self.records = 0

    def write(self, response: Response) -> None:
        headers = [(k, v) for k, v in response.headers if k.lower() not in DROPPED_HEADERS]
        headers.append(("Content-Length", str(len(response.body))))
        # WARC headers are ASCII: a reason phrase in latin-1 ("Très bien") is percent-encoded, as warcio encodes
        # header values that are not ASCII (it would fail on the status line)
        reason = response.reason_phrase if response.reason_phrase.isascii() else quote(response.reason_phrase, " ")
        status_line = f"{response.status} {reason}".strip()
        http_headers = StatusAndHeaders(status_line, headers, protocol=response.http_version)
        http_headers.compute_headers_buffer()
        # The digests warcio would compute, computed here in one call each: warcio reads the payload 16 KB at a
        # time into both digests and a temporary file, which took the archiving thread twice their time. The block
        # digest covers the headers buffer computed here, which warcio writes as it is (its writer has no header
        # filter: `__init__` asserts it).
        warc_headers = {
            "WARC-Date": response.fetched_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "WARC-Payload-Digest": sha1_digest(response.body),
            "WARC-Block-Digest": sha1_digest(http_headers.headers_buff, response.body),
        }
        record = self._writer.create_warc_record(
            response.url,
            "response",
            payload=io.BytesIO(response.body),
            length=len(response.body),
            http_headers=http_headers,
            warc_headers_dict=warc_headers,
        )
        self._write(record)
        self.records += 1

    def _write(self, record: object) -> None:
        self._writer.write_record(record)
        compressor = isal_zlib.compressobj(GZIP_LEVEL, isal_zlib.DEFLATED, isal_zlib.MAX_WBITS + 16)  # a gzip member
        self._file.write(compressor.compress(self._record.getvalue()) + compressor.flush())
        self._record.seek(0)
        self._record.truncate()
        self._file.flush()  # a killed crawl leaves every stored page's record on disk

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> WarcSink:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None):
        self.close()

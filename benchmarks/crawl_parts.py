"""Where the crawl stage's CPU goes, part by part, on the pages of `crawl_speed.py`'s sites, with each part's peer.

    .venv/bin/pip install -e '.[dev]'                                                # httpx, the client peer
    .venv/bin/python benchmarks/crawl_parts.py --site docs --docs-dir /tmp/docsite --pages 400

One process, CPU time (`time.process_time`), the best of `--repeat` passes over the first `--pages` pages (by name):

- extraction, the resiliparse path the long pages take: the parse, `extract_plain_text` with and without its
  main-content heuristics, the publication date (`_published`, against the one selector query per rule it made
  before), and `document_from_raw` whole (default extractor) against the same with the long-page rule at 20,000
  characters (before issue 14 set 10,000);
- links: `extract_links` (the crawler scans every stored page for them) against lexbor's parse and link query, the
  way it found them before;
- WARC: each page's record gzipped by ISA-L at our level against zlib at 6 (time and compressed/raw size), and the
  whole record as `WarcSink.write` makes it (the digests computed in one call each) against warcio computing them;
- HTTP: the pages fetched 16 at a time from a server in another process, by aiohttp (our client, as
  `tasks/crawl/fetch.py` sets it: raw bodies) and by httpx (streamed raw), bodies read whole;
- cores: a CPU loop alone, then two copies at once in two processes (how much two busy vCPUs slow each other).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import multiprocessing
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp  # noqa: E402
import httpx  # noqa: E402
from crawl_speed import build_docs_site, serve  # noqa: E402
from isal import isal_zlib  # noqa: E402
from resiliparse.extract.html2text import extract_plain_text  # noqa: E402
from resiliparse.parse.html import HTMLTree  # noqa: E402
from selectolax.lexbor import LexborHTMLParser  # noqa: E402
from warcio.statusandheaders import StatusAndHeaders  # noqa: E402
from warcio.warcwriter import WARCWriter  # noqa: E402

from gristmill.tasks.crawl.extract import (  # noqa: E402
    _DATE_RULES,
    _published,
    _resiliparse_text,
    document_from_raw,
    extract_links,
    warm_up,
)
from gristmill.tasks.crawl.fetch import Response  # noqa: E402
from gristmill.tasks.crawl.warc import DROPPED_HEADERS, GZIP_LEVEL, WarcSink  # noqa: E402
from gristmill.tasks.demo_site.build import build_demo_site  # noqa: E402

NOW = datetime.now(UTC)
LINK_QUERY = "a[href], area[href], base[href]"  # the links as the crawler found them before its scan
# the date tags as `_published` found them before its attribute lookups: one query of a selector per rule
DATE_QUERY = ", ".join(
    tag
    + (f'[{attribute}="{value}" i]' if value else f"[{attribute}]")
    + ("[datetime]" if tag != "meta" and attribute != "datetime" else "")
    for tag, attribute, value in _DATE_RULES
)


def old_date_tags(tree: HTMLTree) -> list:
    return list(tree.document.query_selector_all(DATE_QUERY))


def cpu(fn: Callable[[], Any], repeat: int) -> float:
    """The least CPU time of `repeat` calls."""
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        fn()
        best = min(best, time.process_time() - started)
    return best


def gzip_members(pages: list[bytes], compressobj: Callable[..., Any], level: int) -> int:
    """Bytes out, each page a gzip member of its own (as WARC records are)."""
    out = 0
    for page in pages:
        compressor = compressobj(level, zlib.DEFLATED, zlib.MAX_WBITS + 16)
        out += len(compressor.compress(page) + compressor.flush())
    return out


def serve_pages(root: Path, ready: Any) -> None:
    with serve(root) as base:
        ready.put(base)
        time.sleep(3600)


async def fetch_aiohttp(urls: list[str]) -> int:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16), auto_decompress=False) as session:

        async def one(url: str) -> int:
            async with session.get(url, allow_redirects=False) as response:
                return len(b"".join([chunk async for chunk in response.content.iter_any()]))

        return sum(await asyncio.gather(*map(one, urls)))


async def fetch_httpx(urls: list[str]) -> int:
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=16), trust_env=False) as client:

        async def one(url: str) -> int:
            async with client.stream("GET", url) as response:
                return len(b"".join([chunk async for chunk in response.aiter_raw()]))

        return sum(await asyncio.gather(*map(one, urls)))


def spin(loops: int) -> float:
    started = time.perf_counter()
    sum(range(loops))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--site", choices=("docs", "demo"), default="docs")
    parser.add_argument("--docs-dir", type=Path, default=None, help="the docs site crawl_speed.py rendered")
    parser.add_argument("--pages", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.docs_dir or Path(tmp) / "site"
        if args.site == "docs":
            build_docs_site(root, args.pages)
        else:
            build_demo_site(root)
        paths = sorted(p for p in root.rglob("*.html") if p.name != "index.html")[: args.pages]
        run(root, paths, args.repeat)


# The default extractor with the long-page rule as it was before: pages with 10,000-20,000 characters of main text
# went to trafilatura
BEFORE = ("trafilatura-precision", 20_000)


def run(root: Path, paths: list[Path], repeat: int) -> None:
    pages = [p.read_bytes() for p in paths]
    texts = [page.decode("utf-8", "replace") for page in pages]
    print(f"{len(pages)} pages, {sum(map(len, pages)) / 1e6:.1f} MB; CPU seconds, the best of {repeat}\n")
    warm_up()
    trees = [HTMLTree.parse(text) for text in texts]
    raws = [
        {"doc_id": str(i), "url": f"http://127.0.0.1/{p.name}", "fetched_at": None, "status": 200,
         "content_type": "text/html", "charset": "utf-8", "content": page}
        for i, (p, page) in enumerate(zip(paths, pages, strict=True))
    ]  # fmt: skip
    urls = [raw["url"] for raw in raws]
    rows = [
        ("extraction, document_from_raw whole", lambda: [document_from_raw(r, "trafilatura-precision") for r in raws]),
        ("  the same, long pages past 20,000 characters", lambda: [document_from_raw(r, *BEFORE) for r in raws]),
        ("  resiliparse parse", lambda: [HTMLTree.parse(t) for t in texts]),
        ("  extract_plain_text, main content (ours)", lambda: [_resiliparse_text(t) for t in trees]),
        ("  extract_plain_text, all text", lambda: [extract_plain_text(t) for t in trees]),
        ("  publication date (_published)", lambda: list(map(_published, trees, urls))),
        ("    one selector query per rule (before)", lambda: [old_date_tags(tree) for tree in trees]),
        ("links, extract_links", lambda: [extract_links(page, "http://127.0.0.1/x.html", "utf-8") for page in pages]),
        ("  lexbor parse and link query", lambda: [LexborHTMLParser(t).css(LINK_QUERY) for t in texts]),
    ]
    for name, fn in rows:
        report(name, cpu(fn, repeat))
    raw_mb = sum(map(len, pages))
    for name, module, level in (("ISA-L", isal_zlib, GZIP_LEVEL), ("zlib", zlib, 6)):
        seconds = cpu(lambda module=module, level=level: gzip_members(pages, module.compressobj, level), repeat)
        ratio = gzip_members(pages, module.compressobj, level) / raw_mb
        report(f"WARC gzip, {name} level {level}", seconds, f", compressed/raw {ratio:.3f}")
    responses = [
        Response(r["url"], 200, "OK", "HTTP/1.1", [("Content-Type", "text/html")], "text/html", None, page, NOW)
        for r, page in zip(raws, pages, strict=True)
    ]
    report("WARC records, WarcSink.write whole (ours)", cpu(lambda: warc_records(responses), repeat))
    report("  warcio computing the digests itself", cpu(lambda: warcio_records(responses), repeat))
    http_clients(root, paths, repeat)
    cores()


def warc_records(responses: list[Response]) -> None:
    """Each page as the crawl archives it: digests given to warcio, record gzipped by ISA-L."""
    with tempfile.TemporaryDirectory() as tmp, WarcSink(Path(tmp), "bench") as sink:
        for response in responses:
            sink.write(response)


def warcio_records(responses: list[Response]) -> None:
    """The same records as `WarcSink.write` makes them (headers, gzip, file), warcio computing the digests (its
    own payload loop into both digests and a temporary file)."""
    with tempfile.TemporaryDirectory() as tmp, (Path(tmp) / "peer.warc.gz").open("wb") as out:
        buffer = io.BytesIO()
        writer = WARCWriter(buffer, gzip=False)
        for response in responses:
            headers = [(k, v) for k, v in response.headers if k.lower() not in DROPPED_HEADERS]
            headers.append(("Content-Length", str(len(response.body))))
            http_headers = StatusAndHeaders("200 OK", headers, protocol=response.http_version)
            date = {"WARC-Date": response.fetched_at.strftime("%Y-%m-%dT%H:%M:%SZ")}
            record = writer.create_warc_record(
                response.url, "response", payload=io.BytesIO(response.body), http_headers=http_headers,
                warc_headers_dict=date,
            )  # fmt: skip
            writer.write_record(record)
            compressor = isal_zlib.compressobj(GZIP_LEVEL, isal_zlib.DEFLATED, isal_zlib.MAX_WBITS + 16)
            out.write(compressor.compress(buffer.getvalue()) + compressor.flush())
            buffer.seek(0)
            buffer.truncate()
            out.flush()


def report(name: str, seconds: float, extra: str = "") -> None:
    print(f"{name:45s} {seconds:6.2f} s{extra}")


def http_clients(root: Path, paths: list[Path], repeat: int) -> None:
    ready: Any = multiprocessing.Queue()
    server = multiprocessing.Process(target=serve_pages, args=(root, ready), daemon=True)
    server.start()
    try:
        base = ready.get(timeout=60)
        urls = [base + p.relative_to(root).as_posix() for p in paths]
        for name, client in (("aiohttp (ours)", fetch_aiohttp), ("httpx", fetch_httpx)):
            seconds = cpu(lambda client=client: asyncio.run(client(urls)), repeat)
            report(f"HTTP, 16 at a time, {name}", seconds)
    finally:
        server.terminate()


def cores(loops: int = 30_000_000) -> None:
    alone = min(spin(loops) for _ in range(3))
    with multiprocessing.Pool(2) as pool:
        together = statistics.median(t for _ in range(3) for t in pool.map(spin, [loops, loops]))
    print(f"a CPU loop alone {alone:.2f} s, two at once {together:.2f} s each: {together / alone:.2f}x")


if __name__ == "__main__":
    main()

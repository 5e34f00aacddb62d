"""Crawl throughput from a local server: Scrapy fetching alone, our crawler fetching alone, and the whole crawl
stage (fetch + extraction), on the same site in the same run, with the ratios between them.

    .venv/bin/pip install -e '.[bench]'                                   # Scrapy
    .venv/bin/python benchmarks/crawl_speed.py --site docs                # real-size pages (50 KB-2.5 MB)
    .venv/bin/python benchmarks/crawl_speed.py --site demo --redirects    # half the links redirect

Sites, built by this process and served on 127.0.0.1 (one host) by a threaded HTTP server in this process:

- docs: the documentation of the installed modules (stdlib and .venv), each module's pydoc page rendered whole,
        those of 50 KB-2.5 MB kept (pydoc pages link to each other; an index page links to all);
- demo: the demo site (installed distributions' descriptions and licences, small pages: ~9 KB on average).

`--redirects` adds a copy of the site where every other internal link goes through a 301 (`/__r/<path>` ->
`<path>`), so half the links redirect and each target is linked directly too; our fetch-only crawler runs on both
and the ratio is printed (the scheduler's cost per page must not grow with the redirects).

Each mode runs in a child process; modes alternate over `--rounds` rounds (load from other users of the machine
then falls on all of them alike) and the median of the rounds is printed. Memory: the peak over the run of the sum
of the proportional set size (PSS: shared pages split between the processes sharing them) of the child and all its
descendants (the extraction workers and their forkserver), sampled every 0.2 s; and the child's own VmHWM.
CPU: the child's own CPU seconds within its clock, its helper processes' (sampled with the memory), and the site's
server's (its threads' CPU handling requests); with them, the cores the child kept busy and its CPU per page: the
rate is the cores kept busy over the CPU per page, so on 2 cores a stage that does more than fetch must keep both
busy to match a one-core fetcher. For the stage, the same split in two: while it fetched (until the crawl returned)
and after (the rest of the extraction, the shards, the manifest).

- scrapy:  Scrapy 2.x, 16 requests in flight (CONCURRENT_REQUESTS and _PER_DOMAIN, the site is one host),
           otherwise default settings; follows every http link on the site, parses nothing else
- fetch:   our async crawler into its SQLite state (robots, politeness gates, link extraction; no main text)
- stage:   the crawl stage as the pipeline runs it (fetch unit, raw shards, WARC, extraction in worker processes
           with the per-page time limit, documents shards), default extractor unless --extractor; pages are
           extracted while the crawl fetches (crawl.extract_during_fetch, the default); the clock starts after the
           imports, which include pandas as in the pipeline's process (MLflow imports it), as Scrapy's starts
           after its own
- stage-serial: the same with crawl.extract_during_fetch off: extraction starts when the fetch has finished
- stage-huge-pages: the stage with the kernel's transparent huge pages left as the machine has them (the stage
           turns them off for its processes: tasks/crawl/memory.py); the same as stage where they are not `always`
           (/sys/kernel/mm/transparent_hugepage/enabled)

--load N keeps N processes computing beside every mode: load from other work on the machine, which the extraction's
CPU-time limit must not mistake for slow pages.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gristmill.tasks.demo_site.build import build_demo_site  # noqa: E402
from gristmill.tasks.demo_site.serve import serve_in_thread  # noqa: E402

MIN_PAGE_BYTES, MAX_PAGE_BYTES = 50_000, 2_500_000
REDIRECT_PREFIX = "/__r"
# Modules whose import opens windows or browsers, starts demos, or takes minutes: not documentation we need.
SKIP_MODULES = re.compile(r"^(antigravity|this|idlelib|tkinter|turtle|turtledemo|test|lib2to3|pydoc_data|__main__)\b")

STAGE_CHILD = """
import contextlib, json, sys, time
from pathlib import Path
import pandas  # the pipeline's process has it (MLflow imports it); pyarrow's first conversion imports it (0.3-0.4 s)
from gristmill.conf.schema import validate_config
from gristmill.tasks.crawl.crawler import Crawler
from gristmill.tasks.crawl.state import CrawlState
from gristmill.tasks.crawl import stage
from gristmill.tasks.stage import execute


def main():  # guarded: the extraction pool's forkserver imports __main__
    mode, raw = sys.argv[1], json.loads(sys.argv[2])
    config = validate_config(raw)
    fetched = {}  # when the crawl returned (wall clock): the end of the stage's fetching
    crawl = Crawler.run
    def timed_crawl(self, *args, **kwargs):
        try:
            return crawl(self, *args, **kwargs)
        finally:
            fetched["at"] = time.time()
    Crawler.run = timed_crawl
    clock_at = time.time()
    started, cpu_started = time.perf_counter(), time.process_time()
    extract, requests = {}, 0
    if mode == "fetch":
        state = CrawlState(Path(config.workspace) / "state.sqlite")
        Crawler(config.crawl, state).run(config.crawl.seeds)
        pages = state.stored
        requests = int(state.totals()["attempts"])  # every request, redirect hops included
    else:
        if mode == "stage-huge-pages":
            stage.without_transparent_huge_pages = contextlib.nullcontext
        summary = execute(config, "crawl", stage.run)
        pages = summary.count_in
        extract = json.loads(Path(summary.manifest).read_text()).get("stats", {}).get("extract", {})
    seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
    result = {"pages": pages, "seconds": seconds, "cpu_s": cpu_s, "hwm_mb": hwm / 1024,
              "timeouts": extract.get("timeouts", 0), "requests": requests,
              "during_fetch": extract.get("during_fetch", 0), "clock_at": clock_at, "fetched_at": fetched["at"]}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
"""

SCRAPY_CHILD = """
import json, sys, time
import scrapy
from scrapy.crawler import CrawlerProcess
from scrapy import signals

base, pages = sys.argv[1], int(sys.argv[2])
host = base.split("/")[2].split(":")[0]
clock = {}

class FetchOnly(scrapy.Spider):
    name = "fetch_only"
    allowed_domains = [host]
    start_urls = [base]

    def parse(self, response):
        if hasattr(response, "css"):  # HTML: follow its http links (text/plain and others are leaves)
            for href in response.css("a::attr(href)").getall():
                url = response.urljoin(href)
                if url.startswith(("http://", "https://")):
                    yield scrapy.Request(url, callback=self.parse)

process = CrawlerProcess({"CONCURRENT_REQUESTS": 16, "CONCURRENT_REQUESTS_PER_DOMAIN": 16,
                          "CLOSESPIDER_PAGECOUNT": pages, "LOG_LEVEL": "ERROR", "TELNETCONSOLE_ENABLED": False})
crawler = process.create_crawler(FetchOnly)
def opened(spider):
    clock["opened"], clock["cpu_opened"] = time.perf_counter(), time.process_time()

def closed(spider, reason):
    clock["closed"], clock["cpu_closed"] = time.perf_counter(), time.process_time()

def received(response, request, spider):  # pages fetched (parsing may lag behind and is cut off at the close)
    clock["pages"] = clock.get("pages", 0) + 1

# Named functions: Scrapy's signals hold their receivers weakly, so a lambda would be gone before it is called.
crawler.signals.connect(opened, signals.spider_opened)
crawler.signals.connect(closed, signals.spider_closed)
crawler.signals.connect(received, signals.response_received)
process.crawl(crawler)
process.start()
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"pages": clock["pages"], "seconds": clock["closed"] - clock["opened"],
                  "cpu_s": clock["cpu_closed"] - clock["cpu_opened"], "hwm_mb": hwm / 1024}))
"""

RENDER_CHILD = """
import contextlib, importlib, io, pkgutil, pydoc, re, sys, warnings
from pathlib import Path
out, skip, budget = Path(sys.argv[1]), re.compile(sys.argv[2]), int(sys.argv[3])
lo, hi = int(sys.argv[4]), int(sys.argv[5])
warnings.filterwarnings("ignore")
names = sorted(m.name for m in pkgutil.iter_modules() if not m.name.startswith("_") and not skip.match(m.name))
written = 0
def render(name):
    global written
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            module = importlib.import_module(name)
            page = pydoc.html.page(pydoc.describe(module), pydoc.html.document(module, name))
    except BaseException:
        return None
    data = page.encode("utf-8", "replace")
    if lo <= len(data) <= hi:
        (out / f"{name}.html").write_bytes(data)
        written += 1
    return module
for name in names:
    if written >= budget:
        break
    module = render(name)
    for sub in pkgutil.iter_modules(getattr(module, "__path__", None) or []):
        if written >= budget:
            break
        if not sub.name.startswith("_") and not sub.name.startswith("test"):
            render(f"{name}.{sub.name}")
print(written)
"""


def build_docs_site(root: Path, pages: int) -> None:
    """pydoc pages of installed modules (50 KB-2.5 MB), and an index page linking them all. Rendering imports
    every module (a minute or two on a quiet machine): a folder that already holds pages is used as it is."""
    root.mkdir(parents=True, exist_ok=True)
    if not any(root.glob("*.html")):
        args = [str(root.resolve()), SKIP_MODULES.pattern, str(pages), str(MIN_PAGE_BYTES), str(MAX_PAGE_BYTES)]
        subprocess.run([sys.executable, "-c", RENDER_CHILD, *args], check=True, capture_output=True)
    links = "".join(
        f'<li><a href="{p.name}">{p.stem}</a></li>\n' for p in sorted(root.glob("*.html")) if p.stem != "index"
    )
    index = f"<!DOCTYPE html><html><head><title>Module documentation</title></head><body><ul>{links}</ul></body></html>"
    (root / "index.html").write_text(index, encoding="utf-8")


_HREF = re.compile(rb'href="([^"#]*)"')


def add_redirects(source: Path, target: Path) -> None:
    """A copy of the site where every other internal link (per page) goes through a redirect to its target."""
    for path in source.rglob("*"):
        if path.is_dir():
            continue
        copy = target / path.relative_to(source)
        copy.parent.mkdir(parents=True, exist_ok=True)
        data = path.read_bytes()
        if path.suffix == ".html":
            page_path = "/" + path.relative_to(source).as_posix()
            data = _HREF.sub(functools.partial(_redirected, page_path, iter(range(1 << 30))), data)
        copy.write_bytes(data)


def _redirected(page_path: str, counter: Iterator[int], match: re.Match[bytes]) -> bytes:
    href = match[1].decode("utf-8", "replace")
    try:
        parts = urlsplit(href)
    except ValueError:  # a malformed link on the page: left as it is
        return match[0]
    if parts.scheme or parts.netloc or not href or next(counter) % 2:
        return match[0]
    absolute = urljoin(page_path, href)
    return f'href="{REDIRECT_PREFIX}{absolute}"'.encode()


class SiteHandler(SimpleHTTPRequestHandler):
    """Static files; `/__r/<path>` answers 301 -> `<path>`. `cpu_s` adds up the CPU seconds its threads spent
    handling requests: what serving the site costs this machine (a remote site would cost it nothing)."""

    cpu_s = 0.0
    _cpu_lock = threading.Lock()

    def handle(self) -> None:
        started = time.thread_time()
        try:
            super().handle()
        finally:
            with SiteHandler._cpu_lock:
                SiteHandler.cpu_s += time.thread_time() - started

    def do_GET(self) -> None:
        if self.path.startswith(REDIRECT_PREFIX + "/"):
            self.send_response(301)
            self.send_header("Location", self.path[len(REDIRECT_PREFIX) :])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        pass


@contextmanager
def serve(root: Path) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(SiteHandler, directory=str(root)))
    with serve_in_thread(server, "crawl-speed-site") as base:
        yield base


# -- memory of a process tree -----------------------------------------------------------------------------------


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int | str) -> list[str] | None:
    """/proc/<pid>/stat's fields after the command name (state first); None once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(entry.name)) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def _cpu_s(pid: int) -> float | None:
    """User + system CPU seconds a live process has used so far (None once it is gone)."""
    fields = _stat_fields(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _pss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_child(args: list[str]) -> dict[str, float]:
    """Run a child Python, sampling the PSS of its process tree; its last stdout line is its JSON result."""
    code, *argv = args
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        script = Path(tmp) / "child.py"  # a file, not -c: Scrapy reads its spiders' source
        script.write_text(code)
        # Output to files, not pipes: a chatty child must not stall on a full pipe.
        served_before = SiteHandler.cpu_s
        process = subprocess.Popen([sys.executable, str(script), *argv], cwd=ROOT, stdout=out, stderr=err)
        peak = 0.0
        helpers_cpu: dict[int, float] = {}  # pid -> CPU seconds so far
        samples: list[tuple[float, float, float]] = []  # (wall clock, the child's CPU s, its helpers' CPU s)
        while process.poll() is None:
            tree = _descendants(process.pid)  # the child first, then its descendants
            peak = max(peak, sum(_pss_mb(pid) for pid in tree))
            cpu = {pid: seconds for pid in tree if (seconds := _cpu_s(pid)) is not None}
            helpers_cpu.update((pid, seconds) for pid, seconds in cpu.items() if pid != process.pid)
            if process.pid in cpu:
                samples.append((time.time(), cpu[process.pid], sum(helpers_cpu.values())))
            time.sleep(0.2)
        served = SiteHandler.cpu_s - served_before
        out.seek(0)
        err.seek(0)
        if process.returncode:
            raise RuntimeError(f"child failed ({process.returncode}):\n{err.read().decode()[-3000:]}")
        result = json.loads(out.read().decode().strip().splitlines()[-1])
    result["peak_pss_mb"] = peak
    # CPU seconds: the child's own within its clock (it reports them), its helper processes' over their lives (the
    # extraction forkserver and workers; sampled, so the last 0.2 s of each may be missing), and the site's request
    # handling while the child ran
    result["helpers_cpu_s"] = sum(helpers_cpu.values())
    result["server_cpu_s"] = served
    if "fetched_at" in result:  # ours, not Scrapy's: where the time went while it fetched and after
        result.update(phases(samples, result["clock_at"], result["fetched_at"], result["clock_at"] + result["seconds"]))
    return result


def phases(samples: list[tuple[float, float, float]], start: float, fetched: float, end: float) -> dict[str, float]:
    """Seconds and cores kept busy (the child's, its helpers') while the stage fetched and after its fetch ended,
    from the CPU samples (every 0.2 s, so each boundary is interpolated between two of them)."""
    found = {"fetch_s": fetched - start, "after_s": end - fetched}
    for name, lo, hi in (("fetch", start, fetched), ("after", fetched, end)):
        for column, label in ((1, "child"), (2, "helpers")):
            spent = _cpu_at(samples, hi, column) - _cpu_at(samples, lo, column)
            found[f"{name}_{label}_cores"] = spent / (hi - lo) if hi > lo else 0.0
    return found


def _cpu_at(samples: list[tuple[float, float, float]], at: float, column: int) -> float:
    """A cumulative CPU column at wall-clock time `at`, linear between the samples around it."""
    before = [s for s in samples if s[0] <= at] or samples[:1]
    after = [s for s in samples if s[0] >= at] or samples[-1:]
    (t0, v0), (t1, v1) = (before[-1][0], before[-1][column]), (after[0][0], after[0][column])
    return v0 if t1 == t0 else v0 + (v1 - v0) * (at - t0) / (t1 - t0)


@contextmanager
def busy_processes(count: int) -> Iterator[None]:
    """`count` processes that compute for ever, at the benchmark's priority, until the block ends: load from
    elsewhere on the machine, the same for every mode."""
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for process in busy:
            process.kill()
            process.wait()


def stage_args(mode: str, base: str, workspace: Path, args: argparse.Namespace) -> list[str]:
    config = {
        "workspace": str(workspace),
        "crawl": {
            "seeds": [base],
            "allow_private_networks": ["127.0.0.0/8"],
            "max_pages": args.pages,
            "concurrency": args.concurrency,
            "per_host_concurrency": args.concurrency,
            "progress_bar": False,
            "use_sitemaps": False,  # links only, as Scrapy crawls (a sitemap would queue every page before any link)
            "extract_during_fetch": mode != "stage-serial",
            **({"extractor": args.extractor} if args.extractor else {}),
            **({"extract_workers": args.workers} if args.workers else {}),
        },
    }
    return [STAGE_CHILD, mode, json.dumps(config)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--site", choices=("docs", "demo"), default="docs")
    parser.add_argument(
        "--docs-dir", type=Path, default=None, help="keep the rendered docs site here and reuse it on later runs"
    )
    parser.add_argument("--pages", type=int, default=500, help="pages to crawl (docs: pages rendered)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of all modes, alternating")
    parser.add_argument("--redirects", action="store_true", help="also crawl the site with half its links redirected")
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["scrapy", "fetch", "stage", "stage-serial"],
        choices=["scrapy", "fetch", "stage", "stage-serial", "stage-huge-pages"],
    )
    parser.add_argument("--concurrency", type=int, default=16, help="our requests in flight (Scrapy: 16)")
    parser.add_argument(
        "--load", type=int, default=0, help="CPU-bound processes kept busy beside every mode (load from elsewhere)"
    )
    parser.add_argument("--extractor", default=None, help="crawl.extractor (default: the config's default)")
    parser.add_argument("--workers", type=int, default=None, help="crawl.extract_workers (default: the config's)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        if args.site == "docs":
            site = args.docs_dir or site
            build_docs_site(site, args.pages)
        else:
            build_demo_site(site)
        sizes = sorted(p.stat().st_size for p in site.rglob("*.html"))
        print(
            f"site {args.site}: {len(sizes)} pages, median {statistics.median(sizes) / 1e3:.0f} KB, largest "
            f"{sizes[-1] / 1e6:.2f} MB, {sum(sizes) / 1e6:.1f} MB; crawling up to {args.pages}"
        )
        sites = {"plain": site}
        if args.redirects:
            add_redirects(site, Path(tmp) / "redirects")
            sites["redirects"] = Path(tmp) / "redirects"
        with busy_processes(args.load):
            runs = measure(args, sites, Path(tmp))
        report(runs)


def measure(args: argparse.Namespace, sites: dict[str, Path], tmp: Path) -> dict[tuple[str, str], list[Run]]:
    """The rounds: each mode in turn, each in a child process, against each site; each mode's results by site."""
    runs: dict[tuple[str, str], list[Run]] = {}
    for round_ in range(args.rounds):
        for name, root in sites.items():
            with serve(root) as base:
                for mode in args.modes if name == "plain" else ["fetch"]:
                    if mode == "scrapy":
                        child = [SCRAPY_CHILD, base, str(args.pages)]
                    else:
                        child = stage_args(mode, base, tmp / f"ws-{name}-{mode}-{round_}", args)
                    result = run_child(child)
                    result["rate"] = result["pages"] / result["seconds"]
                    runs.setdefault((name, mode), []).append(result)
                    print(
                        f"  round {round_ + 1} {name:9s} {mode:6s}: {result['pages']} pages in "
                        f"{result['seconds']:.1f} s = {result['rate']:.1f} pages/s, peak PSS "
                        f"{result['peak_pss_mb']:.0f} MB"
                        + (
                            f", {result['timeouts']} extraction time-outs, {result['during_fetch']} pages "
                            "extracted during the fetch"
                            if mode.startswith("stage")
                            else ""
                        )
                        + (f", {result['requests']} requests" if mode == "fetch" else ""),
                        flush=True,
                    )
    return runs


CPU_KEYS = ("cpu_s", "helpers_cpu_s", "server_cpu_s")
WHO = ("child", "helpers")  # whose cores a stage's phase reports: its own process's, its helper processes'


Run = dict[str, float]


def per_round(runs: list[Run], peers: list[Run], value: Callable[[Run], float] | None = None) -> list[float]:
    """Each round's ratio of a mode's value (pages/s unless `value` says) to its peer's: the two ran back to back in
    the round, so load from elsewhere fell on both alike."""
    value = value or (lambda r: r["rate"])
    return [value(a) / value(b) for a, b in zip(runs, peers, strict=True)]


def joined(ratios: list[float]) -> str:
    return ", ".join(f"{r:.2f}" for r in ratios)


def report(runs: dict[tuple[str, str], list[dict[str, float]]]) -> None:
    median = {key: statistics.median(r["rate"] for r in results) for key, results in runs.items()}
    print("\n| site | mode | pages | pages/s (median; each round) | peak PSS, all processes | child VmHWM |")
    print("|---|---|---:|---:|---:|---:|")
    for (name, mode), results in runs.items():
        each = ", ".join(f"{r['rate']:.1f}" for r in results)
        print(
            f"| {name} | {mode} | {results[0]['pages']} | **{median[name, mode]:.1f}** ({each}) | "
            f"{max(r['peak_pss_mb'] for r in results):.0f} MB | {max(r['hwm_mb'] for r in results):.0f} MB |"
        )
    print(
        "\nCPU seconds, median of the rounds: the child within its clock | its helper processes (extraction "
        "forkserver and workers) | the site's server handling its requests; cores kept busy = the child's and its "
        "helpers' CPU / the child's seconds\n"
    )
    print("| site | mode | child | helpers | site server | cores kept busy | CPU ms per page |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for (name, mode), results in runs.items():
        own, helpers, server = (statistics.median(r[k] for r in results) for k in CPU_KEYS)
        busy = statistics.median((r["cpu_s"] + r["helpers_cpu_s"]) / r["seconds"] for r in results)
        per_page = statistics.median(1000 * (r["cpu_s"] + r["helpers_cpu_s"]) / r["pages"] for r in results)
        print(f"| {name} | {mode} | {own:.2f} | {helpers:.2f} | {server:.2f} | {busy:.2f} | {per_page:.1f} |")
    stages = [(key, results) for key, results in runs.items() if key[1].startswith("stage")]
    if stages:
        print(
            "\nThe stage's time, median of the rounds: while it fetched (the crawl, with extraction during it unless "
            "stage-serial) and after (the rest of the extraction, raw and document shards, the manifest); cores kept "
            "busy by the stage's process + its helpers in each\n"
        )
        print("| site | mode | fetching s | cores busy fetching | after the fetch s | cores busy after |")
        print("|---|---|---:|---|---:|---|")
        for (name, mode), results in stages:
            cells = []
            for phase in ("fetch", "after"):
                child, helpers = (statistics.median(r[f"{phase}_{who}_cores"] for r in results) for who in WHO)
                seconds = statistics.median(r[f"{phase}_s"] for r in results)
                cells += [f"{seconds:.2f}", f"{child:.2f} + {helpers:.2f} = {child + helpers:.2f}"]
            print(f"| {name} | {mode} | " + " | ".join(cells) + " |")
    for key, label in (
        (("plain", "stage"), "whole stage / Scrapy fetching"),
        (("plain", "stage-serial"), "whole stage, extraction after the fetch / Scrapy fetching"),
        (("plain", "fetch"), "our fetch / Scrapy"),
    ):
        if key in median and ("plain", "scrapy") in median:
            ratios = per_round(runs[key], runs["plain", "scrapy"])
            print(
                f"{label}: {statistics.median(ratios):.2f}x, the median of the rounds' ratios (per round: "
                + joined(ratios)
                + f"; ratio of the medians {median[key] / median['plain', 'scrapy']:.2f}x)"
            )
    if ("plain", "stage-huge-pages") in median and ("plain", "stage") in median:
        stage_runs, thp_runs = runs["plain", "stage"], runs["plain", "stage-huge-pages"]
        ratios = per_round(stage_runs, thp_runs)
        cpu = per_round(stage_runs, thp_runs, lambda r: r["cpu_s"])
        print(
            f"whole stage / the same with transparent huge pages left on: {statistics.median(ratios):.2f}x pages/s "
            f"(per round: {joined(ratios)}); the child's CPU {statistics.median(cpu):.2f}x"
        )
    if ("redirects", "fetch") in median and ("plain", "fetch") in median:
        ratios = per_round(runs["redirects", "fetch"], runs["plain", "fetch"])
        requests = per_round(runs["redirects", "fetch"], runs["plain", "fetch"], lambda r: r["requests"] / r["seconds"])
        print(
            "fetch, requests/s (each redirect hop a request), half the links redirecting / no redirects: "
            f"{statistics.median(requests):.2f}x (per round: " + joined(requests) + ")"
        )
        print(
            "fetch, pages/s, half the links redirecting / no redirects: "
            f"{median['redirects', 'fetch'] / median['plain', 'fetch']:.2f}x"
            " (per round: " + joined(ratios) + ")"
        )


if __name__ == "__main__":
    main()

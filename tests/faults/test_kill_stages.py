"""SIGKILL where tests/faults/test_kill.py does not reach: a crawl while it fetches, training, evaluation.

- crawl: the site is real (real article pages served on 127.0.0.1 by a thread of the test); the crawl runs in a child
  process, and the server kills that child when the K-th page is requested, before answering it: a kill mid-fetch,
  with requests in flight. The pages and documents of any two crawls differ in bytes (each row carries its fetch
  time, and the fetch log its timings), so the rerun is compared with an uninterrupted crawl by URL and content
  digest (raw page bytes and extracted text) and row counts; and no page stored before the kill is fetched again.
- train and evaluate: the child counts the renames into the workspace (`os.replace` and `os.rename`: shards,
  progress records, manifests, Lightning's checkpoints, the export) and kills itself just before or after the K-th,
  K drawn from a seeded generator over an uninterrupted run's renames. Training killed after a checkpoint resumes
  from it: the stats (losses included) and final weights equal the uninterrupted run's within 1e-5. Evaluation
  killed anywhere gives the uninterrupted run's report, exactly one registered model version, and no MLflow run
  left RUNNING.

All of it is `slow` (CI runs it): the default suite's kill test is tests/faults/test_kill.py's. Training killed at
a given step through Lightning alone is tests/tasks/test_train_resume.py.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gristmill.conf.schema import PipelineConfig, validate_config
from gristmill.tasks.demo_site.serve import serve_in_thread
from gristmill.tasks.shards import StageOutput, iter_records
from gristmill.tasks.workspace import TEMPORARY_FILE
from tests.faults.test_kill import MEASURED, Reference, corpus_config, kill_points

pytestmark = pytest.mark.slow

CHILD = """
import json, os, signal, sys
from importlib import import_module
from gristmill.conf.schema import PipelineConfig
from gristmill.tasks.stage import execute
from gristmill.tasks.tracking import Tracker
from gristmill.tasks.workspace import hold_workspace

config = PipelineConfig.model_validate_json(sys.argv[1])
stage, kill_at, when = sys.argv[2], int(sys.argv[3]), sys.argv[4]
workspace = os.path.realpath(config.workspace) + os.sep
targets = []  # the workspace paths renamed onto, in order


def counted(real):
    def move(src, dst, *args, **kwargs):
        ours = os.path.realpath(dst).startswith(workspace)
        if ours:
            targets.append(os.path.relpath(os.path.realpath(dst), workspace))
        if ours and len(targets) == kill_at and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        real(src, dst, *args, **kwargs)
        if ours and len(targets) == kill_at and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
    return move


os.replace, os.rename = counted(os.replace), counted(os.rename)
run = import_module(f"gristmill.tasks.{stage}.stage").run
sys.stdin.readline()  # the test knows our PID now: a kill from outside may come at any time
with hold_workspace(config, f"fault injection: {stage}"):
    execute(config, stage, run, Tracker(config.workspace, config.tracking.uri, config.tracking.experiment))
print(json.dumps(targets), flush=True)
"""

ENV = {**os.environ, "GRISTMILL_PROGRESS": "0", "PYTHONHASHSEED": "0"}


def start_child(config: PipelineConfig, stage: str, kill_at: int = 0, when: str = "after") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, config.model_dump_json(), stage, str(kill_at), when],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def finish(child: subprocess.Popen) -> tuple[int, str, str]:
    out, err = child.communicate("go\n", timeout=900)
    return child.returncode, out, err


def run_child(config: PipelineConfig, stage: str, kill_at: int = 0, when: str = "after") -> list[str] | None:
    """Run one stage in a fresh process; the workspace paths it renamed onto, in order, or None when killed."""
    code, out, err = finish(start_child(config, stage, kill_at, when))
    if kill_at and code == -signal.SIGKILL:
        return None
    assert code == 0, err[-4000:]
    return json.loads(out.strip().splitlines()[-1])


def temporary_files(root: str | Path) -> list[Path]:
    return [p for p in Path(root).rglob("*") if TEMPORARY_FILE.match(p.name)]


def runs_left_running(config: PipelineConfig) -> list[str]:
    from gristmill.tasks.tracking import Tracker

    tracker = Tracker(config.workspace, config.tracking.uri, config.tracking.experiment)
    runs = tracker.client.search_runs([tracker.experiment_id])
    return [run.info.run_id for run in runs if run.info.status == "RUNNING"]


# ---------------------------------------------------------------------------------------------- crawl, fetching

PAGES = 24


class KillingHandler(SimpleHTTPRequestHandler):
    """Static files; counts page requests and SIGKILLs the crawler when the K-th arrives, before answering it."""

    server: Any

    def do_GET(self) -> None:
        site: Site = self.server.site
        if self.path.startswith("/p"):
            with site.lock:
                site.page_requests += 1
                if site.victim and site.page_requests == site.kill_at:
                    os.kill(site.victim, signal.SIGKILL)
                    site.victim = 0
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        pass


class Site:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.Lock()
        self.page_requests = 0
        self.kill_at = 0
        self.victim = 0


def build_site(shared_data: Path, root: Path) -> None:
    """An index linking to PAGES real article pages (news and blog HTML)."""
    pages = sorted((shared_data / "html_extraction" / "html").glob("*.html.gz"))[:PAGES]
    root.mkdir(parents=True)
    links = "".join(f'<li><a href="/p{i:03d}.html">page {i}</a></li>' for i in range(PAGES))
    (root / "index.html").write_text(f"<html><body><h1>Articles</h1><ul>{links}</ul></body></html>")
    for i, page in enumerate(pages):
        (root / f"p{i:03d}.html").write_bytes(gzip.decompress(page.read_bytes()))


@pytest.fixture(scope="module")
def site(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):
    site = Site(tmp_path_factory.mktemp("site") / "root")
    build_site(shared_data, site.root)
    server = ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: KillingHandler(*a, directory=str(site.root)))
    server.site = site
    with serve_in_thread(server, "killing-site") as base:
        yield site, base


def fetch_config(workspace: Path, base: str) -> PipelineConfig:
    return validate_config(
        {
            "workspace": str(workspace),
            "crawl": {
                "seeds": [base],
                "include": [r"^http://127\.0\.0\.1:\d+/(p\d+\.html)?$"],  # not the articles' own dead links
                "allow_private_networks": ["127.0.0.0/8"],
                "use_sitemaps": False,
                "min_delay_s": 0,
                "concurrency": 2,
                "per_host_concurrency": 2,
                "progress_bar": False,
                "extract_workers": 1,
            },
        }
    )


def by_url(workspace: str | Path, dataset: str, column: str) -> dict[str, str]:
    paths = StageOutput(workspace, "crawl").shard_paths(dataset)
    rows = [(r["url"], r[column]) for r in iter_records(paths, ["url", column])]
    assert len(rows) == len({url for url, _ in rows}), f"a URL twice in {dataset}"
    digest = {url: value if isinstance(value, bytes) else value.encode() for url, value in rows}
    return {url: hashlib.sha256(value).hexdigest() for url, value in digest.items()}


def crawl_outcome(workspace: str | Path) -> dict[str, Any]:
    manifest = StageOutput(workspace, "crawl").read_manifest()
    assert manifest is not None, "crawl did not finish"
    return {
        "raw": by_url(workspace, "raw", "content"),
        "documents": by_url(workspace, "documents", "text"),
        "rows": {d: n for d, n in manifest.rows.items()},
    }


def warc_responses(workspace: str | Path) -> set[str]:
    """The URLs of the response records in the crawl's WARC files (every session's, the killed one's included)."""
    from warcio.archiveiterator import ArchiveIterator

    urls = set()
    for path in sorted((Path(workspace) / "crawl" / "warc").glob("*.warc.gz")):
        with path.open("rb") as fh:
            urls |= {r.rec_headers["WARC-Target-URI"] for r in ArchiveIterator(fh) if r.rec_type == "response"}
    return urls


def run_crawl(site: Site, config: PipelineConfig, kill_at: int = 0) -> tuple[int, int]:
    """(exit code, page requests it made)."""
    with site.lock:
        site.page_requests, site.kill_at = 0, kill_at
    child = start_child(config, "crawl")
    with site.lock:
        site.victim = child.pid if kill_at else 0
    code, _, err = finish(child)
    assert code in (0, -signal.SIGKILL), err[-4000:]
    return code, site.page_requests


@pytest.fixture(scope="module")
def whole_crawl(site, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    site, base = site
    workspace = tmp_path_factory.mktemp("whole") / "ws"
    code, requests = run_crawl(site, fetch_config(workspace, base))
    assert code == 0 and requests == PAGES
    reference = crawl_outcome(workspace)
    assert len(reference["raw"]) == PAGES + 1  # the index and every page
    return reference


@pytest.mark.parametrize("seed", [0])
def test_a_crawl_killed_while_fetching_reruns_to_the_same_pages(site, whole_crawl, tmp_path, seed):
    site, base = site
    config = fetch_config(tmp_path / "killed", base)
    [(kill_at, _)] = kill_points("fetch", PAGES, seed, n=1)
    code, before_kill = run_crawl(site, config, kill_at)
    assert code == -signal.SIGKILL and before_kill >= kill_at
    code, after_kill = run_crawl(site, config)
    assert code == 0
    assert crawl_outcome(config.workspace) == whole_crawl
    assert warc_responses(config.workspace) >= set(whole_crawl["raw"])  # every stored page's record is kept
    # What was stored before the kill is not fetched again: only the requests in flight when it came.
    assert kill_at + after_kill <= PAGES + config.crawl.per_host_concurrency
    assert temporary_files(config.workspace) == [] and runs_left_running(config) == []


# ---------------------------------------------------------------------------------------------- train, evaluate

TINY_MODEL = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 64,
    "max_steps": 30,
    "batch_size": 8,
    "learning_rate": 0.01,
    "warmup_steps": 5,
    "val_every_steps": 10,
    "val_batches": 2,
    "accelerator": "cpu",
}
MEASURED_TOO = {"resumed"}  # whether this process resumed: the one stat an interruption must change


def model_config(workspace: Path, corpus: Path) -> PipelineConfig:
    raw = corpus_config(workspace, corpus).model_dump(mode="json")
    raw["train"] = {**raw["train"], **TINY_MODEL}
    raw["evaluate"] = {**raw["evaluate"], "ppl_batches": 2, "max_new_tokens": 4}
    return validate_config(raw)


class Trained:
    """The uninterrupted run through evaluate, and the renames train and evaluate made."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        Reference(config).through("tokenize")
        self.renames = {stage: run_child(config, stage) for stage in ("train", "evaluate")}

    def copy_upstream(self, stage: str, workspace: Path) -> PipelineConfig:
        config = self.config.model_copy(update={"workspace": str(workspace)})
        for upstream in ("crawl", "dedup", "clean", "tokenize", "train")[: ("train", "evaluate").index(stage) + 4]:
            shutil.copytree(Path(self.config.workspace) / upstream, workspace / upstream)
        return config


@pytest.fixture(scope="module")
def trained(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    corpus = shared_data / "neardup" / "clough_stevenson_2009" / "corpus-20090418"
    return Trained(model_config(tmp_path_factory.mktemp("trained") / "ws", corpus))


def flat(value: Any, path: str = "") -> dict[str, Any]:
    """A nested dict/list as {dotted path: leaf}, for comparisons within a tolerance."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flat(item, f"{path}.{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in flat(item, f"{path}[{i}]").items()}
    return {path: value}


def assert_close(got: dict[str, Any], want: dict[str, Any]) -> None:
    got, want = flat(got), flat(want)
    assert got.keys() == want.keys()
    for key, value in want.items():
        if isinstance(value, float):
            assert got[key] == pytest.approx(value, abs=1e-5), key
        else:
            assert got[key] == value, key


def result_stats(workspace: str | Path, stage: str) -> dict[str, Any]:
    manifest = StageOutput(workspace, stage).read_manifest()
    assert manifest is not None, f"{stage} did not finish"
    return {k: v for k, v in manifest.stats.items() if not k.endswith(MEASURED) and k not in MEASURED_TOO}


def checkpoint_kills(renames: list[str], seed: int) -> list[tuple[int, str]]:
    """A seeded rename onto a Lightning checkpoint, killed after it (training goes on from that checkpoint) and
    one killed before it (the checkpoint being written is lost; training resumes from the one before)."""
    import random

    rng = random.Random(f"train-{seed}")
    checkpoints = [i + 1 for i, target in enumerate(renames) if target.endswith(".ckpt")]
    assert checkpoints, renames
    return [(rng.choice(checkpoints), "after"), (rng.choice(checkpoints), "before")]


@pytest.mark.parametrize("seed", [0])
def test_training_killed_after_a_checkpoint_resumes_to_the_same_losses_and_weights(trained, tmp_path, seed):
    import torch

    config = trained.copy_upstream("train", tmp_path / "ws")
    first, *more = checkpoint_kills(trained.renames["train"], seed)
    assert run_child(config, "train", *first) is None, f"not killed at {first}"  # a fresh run always reaches it
    for kill_at, when in more:
        run_child(config, "train", kill_at, when)  # a resumed run that ends before the point finishes instead
    run_child(config, "train")
    assert_close(result_stats(config.workspace, "train"), result_stats(trained.config.workspace, "train"))
    ours, theirs = (
        torch.load(Path(ws) / "train" / "final" / "model.pt") for ws in (config.workspace, trained.config.workspace)
    )
    assert ours.keys() == theirs.keys()
    assert max(float((ours[k] - theirs[k]).abs().max()) for k in ours) <= 1e-5
    assert temporary_files(config.workspace) == [] and runs_left_running(config) == []


def evaluate_kills(renames: list[str], seed: int) -> list[tuple[int, str]]:
    """Just before the report is written - the model is registered, the unit not yet recorded: the point where a
    rerun could register a second version - and a seeded point anywhere."""
    report = renames.index("evaluate/report.json") + 1
    return [(report, "before"), *kill_points("evaluate", len(renames), seed, n=1)]


@pytest.mark.parametrize("seed", [0])
def test_evaluation_killed_anywhere_reruns_to_the_same_report_and_one_model_version(trained, tmp_path, seed):
    from gristmill.tasks.tracking import Tracker

    config = trained.copy_upstream("evaluate", tmp_path / "ws")
    first, *more = evaluate_kills(trained.renames["evaluate"], seed)
    assert run_child(config, "evaluate", *first) is None, f"not killed at {first}"
    for kill_at, when in more:
        run_child(config, "evaluate", kill_at, when)
    run_child(config, "evaluate")

    reports = [
        json.loads((Path(ws) / "evaluate" / "report.json").read_text())
        for ws in (config.workspace, trained.config.workspace)
    ]
    for report in reports:
        report["registry"].pop("version")  # numbered by the store: a deleted attempt's number is not reused
    assert_close(*reports)
    tracker = Tracker(config.workspace, config.tracking.uri, config.tracking.experiment)
    versions = tracker.model_versions(config.tracking.registered_model)
    assert len(versions) == 1 and versions[0]["aliases"] == reports[0]["registry"]["alias"]
    assert temporary_files(config.workspace) == [] and runs_left_running(config) == []

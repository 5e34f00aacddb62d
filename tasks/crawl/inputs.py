"""The crawl's inputs, for its key: which crawl generation a run is, its source files by content, its seeds.

Kept apart from the crawl stage so that the stage runner (`tasks/stage.py`) can compute every stage's key, the
crawl's included, without importing the stage itself.
"""

from __future__ import annotations

import hashlib
import time
from contextlib import closing
from pathlib import Path

from gristmill.conf.schema import ConfigError, CrawlConfig, PipelineConfig
from gristmill.tasks.crawl.sources import sources_digest
from gristmill.tasks.crawl.state import read_only
from gristmill.tasks.crawl.urls import Scope
from gristmill.tasks.urls import UrlNormalizer


def input_digest(config: PipelineConfig) -> str:
    """The crawl's input, the first half of its key: every source file by content, and the crawl generation
    (so a refresh that is due makes the stage run, and a run before it is up to date). Seeds are checked too."""
    check_seeds(config.crawl)
    sources = sources_digest(config.crawl.sources, config.workspace) or ""
    generation = fetch_generation(config) if config.crawl.seeds or config.crawl.demo_site.enabled else 0
    return hashlib.sha256(f"{sources} {generation}".encode()).hexdigest()[:16]


def check_seeds(cfg: CrawlConfig) -> None:
    """A seed the crawl's own scope refuses (an exclude pattern, an include list it misses, allowed_domains
    without same_site) would crawl nothing: a ConfigError naming it, before the crawl touches its output."""
    normalize = UrlNormalizer(cfg.strip_query_params)
    seeds = [normalize(seed) for seed in cfg.seeds]
    scope = Scope([s for s in seeds if s], same_site=cfg.same_site, allowed_domains=cfg.allowed_domains,
                  include=cfg.include, exclude=cfg.exclude, max_depth=cfg.max_depth)  # fmt: skip
    for index, (given, seed) in enumerate(zip(cfg.seeds, seeds, strict=True)):
        why = "not a valid URL" if seed is None else scope.why_not(seed, 0)
        if why:
            raise ConfigError(f"crawl.seeds[{index}]: {given} is refused by the crawl's own scope ({why})")


def state_path(workspace: str | Path) -> Path:
    return Path(workspace) / "crawl" / "state" / "crawl.sqlite"


def fetch_generation(config: PipelineConfig, now: float | None = None) -> int:
    """Which crawl generation this run is: the last one, still to finish or up to date; or the next one when
    `crawl.refresh.recrawl_after` has passed since the last one finished (a refresh). Reads the state file without
    touching it (this is part of the stage's key, computed before anything is written)."""
    path = state_path(config.workspace)
    if not path.is_file():
        return 0
    with closing(read_only(path)) as db:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    generation = int(meta.get("generation", 0))
    finished = meta.get(f"finished_{generation}")
    last = float(finished) if finished is not None else None
    due = config.crawl.refresh.due(last, time.time() if now is None else now)
    return generation + 1 if due else generation

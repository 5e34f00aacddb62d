"""Pages a refresh found removed (404/410 for a URL that had a page): tombstones for the text of earlier generations.

A removal is recorded by the crawl in its fetch log (`outcome = removed`), and the page's earlier text stays in the
earlier generation's shards. The clean stage applies the tombstones: a document whose page (by `same_page_key`,
tasks/urls.py) was removed *after* the document was fetched is dropped, so the removal reaches every shard the
next training reads. A page that comes back later is fetched after its removal and so is kept.

Read once per run, column by column from the crawl's fetch log: memory is one entry per removed page.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pyarrow.compute as pc

from gristmill.tasks.shards import StageOutput, iter_batches
from gristmill.tasks.urls import same_page_key

REMOVED = "removed"  # the fetch log's outcome for a page the site took down


@dataclass
class Removals:
    """The latest removal time of each removed page (by its same-page key)."""

    removed_at: dict[str, datetime] = field(default_factory=dict)

    @classmethod
    def of_crawl(cls, workspace: str | Path) -> Removals:
        """Every removal in the finished crawl's fetch logs (none before the crawl has finished)."""
        crawl = StageOutput(workspace, "crawl")
        manifest = crawl.read_manifest()
        removals = cls()
        if manifest is None:
            return removals
        columns = ["url", "final_url", "outcome", "fetched_at"]
        for batch in iter_batches(crawl.shard_paths("fetches", manifest), columns):
            gone = batch.filter(pc.equal(batch.column("outcome"), REMOVED))
            for row in gone.to_pylist():
                for url in {row["url"], row["final_url"]} - {None}:
                    removals.add(url, row["fetched_at"])
        return removals

    def add(self, url: str, when: datetime) -> None:
        key = same_page_key(url)
        if key not in self.removed_at or self.removed_at[key] < when:
            self.removed_at[key] = when

    def __bool__(self) -> bool:
        return bool(self.removed_at)

    def digest(self) -> str:
        """Identity of the tombstones, for the key of the stage that applies them."""
        lines = "\n".join(f"{key} {when.isoformat()}" for key, when in sorted(self.removed_at.items()))
        return hashlib.sha256(lines.encode()).hexdigest()[:16]

    def applies_to(self, url: str, fetched_at: datetime) -> bool:
        """Whether a document of this page, fetched then, is text the site has since removed."""
        removed = self.removed_at.get(same_page_key(url))
        return removed is not None and fetched_at < removed

    def in_shard(self, path: Path) -> list[str]:
        """The URLs of the documents in one DOCUMENT shard that the tombstones remove, sorted (reads two columns)."""
        if not self:
            return []
        hits = set()
        for batch in iter_batches([path], ["url", "fetched_at"]):
            urls, times = batch.column("url").to_pylist(), batch.column("fetched_at").to_pylist()
            hits |= {url for url, when in zip(urls, times, strict=True) if self.applies_to(url, when)}
        return sorted(hits)

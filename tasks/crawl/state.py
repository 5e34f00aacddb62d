"""The crawl's durable state: frontier, seen-set, fetch log and stored pages in one SQLite file.

A page, its fetch-log row, the URLs it links to and the URL's "done" mark are committed in one transaction, so
a crawl killed at any instant (SIGKILL included) and started again continues from the last committed page:
nothing stored is lost, nothing stored is fetched again. The seen-set is the `urls` table itself, so memory
does not grow with the crawl.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gristmill.tasks.crawl.urls import host_of

SCHEMA = """
CREATE TABLE IF NOT EXISTS urls (
    seq INTEGER PRIMARY KEY,           -- discovery order: the frontier is breadth-first by seq
    url TEXT NOT NULL UNIQUE,          -- normalised
    host TEXT NOT NULL,                -- host[:port]: lets the scheduler skip hosts that are busy
    depth INTEGER NOT NULL,
    state TEXT NOT NULL                -- queued | done
);
CREATE INDEX IF NOT EXISTS urls_frontier ON urls(state, seq);
CREATE TABLE IF NOT EXISTS fetches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    url TEXT NOT NULL, final_url TEXT, depth INTEGER NOT NULL, fetched_at REAL NOT NULL, status INTEGER,
    outcome TEXT NOT NULL, error TEXT, attempts INTEGER NOT NULL, bytes INTEGER NOT NULL,
    elapsed_ms REAL NOT NULL, redirects TEXT NOT NULL,
    host TEXT NOT NULL                 -- of the final URL: what max_pages_per_host counts
);
CREATE TABLE IF NOT EXISTS pages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    url TEXT NOT NULL, fetched_at REAL NOT NULL, status INTEGER NOT NULL, content_type TEXT, charset TEXT,
    lang_hint TEXT, content BLOB NOT NULL
);
-- A URL's latest page (`validators`, once per visit): without it, each visit scanned every stored page.
CREATE INDEX IF NOT EXISTS pages_url ON pages(url, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# Columns added for refresh crawls (corpus generations); a state file from before them gets them on open.
ADDED_COLUMNS = {
    "fetches": {"generation": "INTEGER NOT NULL DEFAULT 0"},
    "pages": {"generation": "INTEGER NOT NULL DEFAULT 0", "etag": "TEXT", "last_modified": "TEXT"},
}
# A fetch-log outcome that means the URL has a live page in this generation (its text is in some generation).
LIVE_OUTCOMES = ("stored", "not_modified")
# Outcomes after which a refresh visits a URL again: it had a page, or it failed and may work now.
REVISIT_OUTCOMES = ("stored", "not_modified", "failed")


@dataclass
class Fetch:
    """The outcome of one queued URL: a row of the fetch log."""

    url: str
    depth: int
    outcome: str  # stored | skipped | failed
    error: str | None = None
    status: int | None = None
    final_url: str | None = None
    attempts: int = 0
    bytes: int = 0
    elapsed_ms: float = 0.0
    redirects: list[str] = field(default_factory=list)
    fetched_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class Page:
    """A stored page: the final response of a fetch, body complete and decompressed."""

    url: str
    fetched_at: datetime
    status: int
    content_type: str | None
    charset: str | None
    lang_hint: str | None
    content: bytes
    etag: str | None = None  # validators for the next refresh's conditional request
    last_modified: str | None = None


class CrawlState:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)  # explicit transactions below
        # 16 KB pages, not 4 KB, for a new file (an existing one keeps its own): pages' bodies are most of what the
        # state holds, in chains of overflow pages, and storing 400 documentation pages (78 MB) took 0.12 s of CPU
        # against 0.21 s, reading them back half as long.
        self._db.execute("PRAGMA page_size=16384")
        # WAL: readers never block the writer; NORMAL sync survives a killed process (not a power cut).
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._add_columns()
        self.generation = int(self.get_meta("generation") or 0)
        self.stored_per_host: Counter[str] = self._live_per_host()

    def _add_columns(self) -> None:
        for table, columns in ADDED_COLUMNS.items():
            present = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for name, declaration in columns.items():
                if name not in present:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")

    def _live_per_host(self) -> Counter[str]:
        """Pages stored or confirmed unchanged in this generation, per host: what max_pages counts."""
        marks = ",".join("?" * len(LIVE_OUTCOMES))
        rows = self._db.execute(
            f"SELECT host, count(*) FROM fetches WHERE outcome IN ({marks}) AND generation=? GROUP BY host",
            (*LIVE_OUTCOMES, self.generation),
        )
        return Counter(dict(rows))

    # -- generations ------------------------------------------------------------------------------------------

    def start_generation(self, generation: int) -> None:
        """Begin refresh crawl `generation`: every URL that had a page (or failed) is queued again, to be
        revisited with a conditional request. Idempotent: a refresh that was interrupted continues as it was."""
        if generation <= self.generation:
            return
        marks = ",".join("?" * len(REVISIT_OUTCOMES))
        with self._transaction():
            self._db.execute(
                f"UPDATE urls SET state='queued' WHERE state='done' AND url IN"
                f" (SELECT url FROM fetches WHERE outcome IN ({marks}))",
                REVISIT_OUTCOMES,
            )
            self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('generation', ?)", (str(generation),))
        self.generation = generation
        self.stored_per_host = self._live_per_host()

    def validators(self, url: str) -> tuple[str | None, str | None] | None:
        """(ETag, Last-Modified) of the URL's latest stored page, or None if it has none: a refresh asks the
        server whether that page changed."""
        row = self._db.execute(
            "SELECT etag, last_modified FROM pages WHERE url=? ORDER BY seq DESC LIMIT 1", (url,)
        ).fetchone()
        return (row[0], row[1]) if row else None

    def close(self) -> None:
        self._db.close()

    # -- frontier ---------------------------------------------------------------------------------------------

    def enqueue(self, urls: Iterable[tuple[str, int]]) -> int:
        """Queue (normalised URL, depth) pairs not seen before; return how many were new."""
        with self._transaction():
            return self._enqueue(urls)

    def _enqueue(self, urls: Iterable[tuple[str, int]]) -> int:
        before = self._db.total_changes
        rows = ((url, host_of(url), depth) for url, depth in urls)
        self._db.executemany("INSERT OR IGNORE INTO urls(url, host, depth, state) VALUES (?, ?, ?, 'queued')", rows)
        return self._db.total_changes - before

    def seen(self, url: str) -> bool:
        return self._db.execute("SELECT 1 FROM urls WHERE url=?", (url,)).fetchone() is not None

    def queued(self, limit: int, skip_hosts: Iterable[str] = ()) -> list[tuple[str, int]]:
        """The oldest queued URLs with their depth, breadth-first, leaving out hosts that cannot take more now
        (so one busy host's backlog does not hide every other host's URLs)."""
        skip = list(skip_hosts)
        marks = ",".join("?" * len(skip))
        rows = self._db.execute(
            f"SELECT url, depth FROM urls WHERE state='queued' AND host NOT IN ({marks}) ORDER BY seq LIMIT ?",
            (*skip, limit),
        )
        return list(rows)

    def queued_count(self) -> int:
        return self._db.execute("SELECT count(*) FROM urls WHERE state='queued'").fetchone()[0]

    # -- results ----------------------------------------------------------------------------------------------

    def finish(self, fetch: Fetch, page: Page | None = None, links: Iterable[tuple[str, int]] = ()) -> None:
        """Record one URL's outcome atomically: fetch-log row, page, discovered links, and the done marks."""
        with self._transaction():
            self._db.execute(
                "INSERT INTO fetches(url, final_url, depth, fetched_at, status, outcome, error, attempts, bytes,"
                " elapsed_ms, redirects, host, generation) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    fetch.url, fetch.final_url, fetch.depth, fetch.fetched_at.timestamp(), fetch.status,
                    fetch.outcome, fetch.error, fetch.attempts, fetch.bytes, fetch.elapsed_ms,
                    json.dumps(fetch.redirects), host_of(fetch.final_url or fetch.url), self.generation,
                ),
            )  # fmt: skip
            if page is not None:
                self._db.execute(
                    "INSERT INTO pages(url, fetched_at, status, content_type, charset, lang_hint, content,"
                    " generation, etag, last_modified) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        page.url, page.fetched_at.timestamp(), page.status, page.content_type, page.charset,
                        page.lang_hint, page.content, self.generation, page.etag, page.last_modified,
                    ),
                )  # fmt: skip
            # A redirect's hops and target are done too: a link to them later must not fetch them again.
            done = [fetch.url, *fetch.redirects, *([fetch.final_url] if fetch.final_url else [])]
            self._db.executemany(
                "INSERT INTO urls(url, host, depth, state) VALUES (?, ?, ?, 'done')"
                " ON CONFLICT(url) DO UPDATE SET state='done'",
                [(u, host_of(u), fetch.depth) for u in dict.fromkeys(done)],
            )
            self._enqueue(links)
        if fetch.outcome in LIVE_OUTCOMES:
            self.stored_per_host[host_of(fetch.final_url or fetch.url)] += 1

    @property
    def stored(self) -> int:
        return sum(self.stored_per_host.values())

    def had_page(self, url: str) -> bool:
        return self._db.execute("SELECT 1 FROM pages WHERE url=? LIMIT 1", (url,)).fetchone() is not None

    def outcome_counts(self) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT outcome, count(*) FROM fetches WHERE generation=? GROUP BY outcome", (self.generation,)
        )
        return dict(rows)

    def error_counts(self) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT error, count(*) FROM fetches WHERE error IS NOT NULL AND generation=? GROUP BY error",
            (self.generation,),
        )
        return dict(sorted(rows, key=lambda r: -r[1]))

    def totals(self) -> dict[str, float]:
        attempts, body_bytes = self._db.execute(
            "SELECT sum(attempts), sum(bytes) FROM fetches WHERE generation=?", (self.generation,)
        ).fetchone()
        return {"attempts": attempts or 0, "bytes": body_bytes or 0}

    def iter_pages(self) -> Iterator[Page]:
        """This generation's stored pages (new or changed) in the order they were stored, streamed from disk."""
        cursor = self._db.execute(
            "SELECT url, fetched_at, status, content_type, charset, lang_hint, content, etag, last_modified"
            " FROM pages WHERE generation=? ORDER BY seq",
            (self.generation,),
        )
        for url, fetched_at, status, content_type, charset, lang_hint, content, etag, modified in cursor:
            yield Page(url, _utc(fetched_at), status, content_type, charset, lang_hint, content, etag, modified)

    def iter_fetches(self, outcome: str | None = None, limit: int = -1) -> Iterator[dict[str, Any]]:
        """This generation's fetch log as FETCH_SCHEMA records, in order; only one outcome's, and at most
        `limit`, if given."""
        cursor = self._db.execute(
            "SELECT url, final_url, depth, fetched_at, status, outcome, error, attempts, bytes, elapsed_ms,"
            " redirects FROM fetches WHERE (? IS NULL OR outcome = ?) AND generation=? ORDER BY seq LIMIT ?",
            (outcome, outcome, self.generation, limit),
        )
        names = [d[0] for d in cursor.description]
        for row in cursor:
            record = dict(zip(names, row, strict=True))
            record["fetched_at"] = _utc(record["fetched_at"])
            record["redirects"] = json.loads(record["redirects"])
            yield record

    # -- small persistent settings (e.g. the demo site's port, so a resumed crawl finds the same URLs) -------

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction():
            self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def read_only(path: Path) -> sqlite3.Connection:
    """A connection that reads a state file and can never write it (a URI of the absolute path: a workspace may be
    relative, as the demo's is)."""
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


class StoredBodies:
    """The body of a page the crawl has stored and committed, read back by URL and fetch time (that fetch's body,
    or None when the state no longer holds it) by another thread or process than the crawl's: a read-only
    connection of its own, opened on first use by the thread that reads (WAL lets it read while the crawl writes).
    The extraction workers read the pages the crawl hands them so (`extraction_pool.stored_page_worker`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def __call__(self, url: str, fetched_at: datetime) -> bytes | None:
        if self._db is None:
            self._db = read_only(self.path)
        # the time as `finish` stores it: the same float, so equality is exact
        query = "SELECT content FROM pages WHERE url=? AND fetched_at=?"
        row = self._db.execute(query, (url, fetched_at.timestamp())).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

"""Optional lists from config: blocked domains (a URL filter) and bad words (C4's badwords rule)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from gristmill.conf.schema import config_file
from gristmill.tasks.clean.base import Doc, Filter, Verdict


def read_list(path: str | Path, key: str) -> list[str]:
    """One entry per line of the file config `key` names; blank lines and `#` comments ignored."""
    lines = (line.split("#", 1)[0].strip() for line in config_file(path, key).read_text().splitlines())
    return [line.lower() for line in lines if line]


class DomainBlocklist(Filter):
    """Drops documents whose host is a listed domain or one of its subdomains."""

    name = "url_blocklist"

    def __init__(self, domains: list[str]) -> None:
        super().__init__()
        self.domains = frozenset(d.removeprefix("www.") for d in domains)

    def check(self, doc: Doc) -> Verdict | None:
        host = (urlsplit(doc.url).hostname or "").removeprefix("www.")
        parts = host.split(".")
        if any(".".join(parts[i:]) in self.domains for i in range(len(parts))):
            return Verdict("url_blocklist", 1.0, 0.0)
        return None


class BadWords(Filter):
    """Drops documents containing a listed word as a whole word (C4's badwords rule, list supplied by the user)."""

    name = "badwords"

    def __init__(self, words: list[str]) -> None:
        super().__init__()
        escaped = "|".join(sorted(map(re.escape, words), key=len, reverse=True))
        self.pattern = re.compile(rf"(?:\W|^)(?:{escaped})(?:\W|$)")

    def check(self, doc: Doc) -> Verdict | None:
        found = len(self.pattern.findall(doc.text.lower()))
        return Verdict("badwords", found, 0.0) if found else None

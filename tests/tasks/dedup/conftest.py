"""Real texts for the dedup tests: the Clough & Stevenson (2009) source texts."""

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def sources(shared_data: Path) -> list[str]:
    root = shared_data / "neardup" / "clough_stevenson_2009" / "corpus-20090418"
    return [(root / f"orig_task{t}.txt").read_text(errors="replace") for t in "abcde"]

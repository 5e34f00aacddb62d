"""The crawl's process-memory knobs (tasks/crawl/memory.py): transparent huge pages off for the stage's process
and the processes it starts meanwhile, as they were afterwards; harmless where the kernel has no such setting."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gristmill.tasks.crawl.memory import huge_pages_disabled, without_transparent_huge_pages

CHILD = "from gristmill.tasks.crawl.memory import huge_pages_disabled; print(huge_pages_disabled())"


def _in_a_new_process() -> str:
    return subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(autouse=True)
def _huge_pages_on() -> None:
    if huge_pages_disabled() is None:
        pytest.skip("this kernel has no per-process transparent huge page setting (prctl PR_GET_THP_DISABLE)")
    if huge_pages_disabled():
        pytest.skip("this test process was started with transparent huge pages off")


def test_huge_pages_are_off_inside_the_block_and_as_before_after_it() -> None:
    with without_transparent_huge_pages():
        assert huge_pages_disabled() is True
        assert _in_a_new_process() == "True"  # the extraction forkserver and its workers start in the block
        with without_transparent_huge_pages():  # nested (a second crawl stage in one process): left alone
            pass
        assert huge_pages_disabled() is True
    assert huge_pages_disabled() is False
    assert _in_a_new_process() == "False"


def test_the_setting_comes_back_when_the_block_fails() -> None:
    with pytest.raises(RuntimeError), without_transparent_huge_pages():
        raise RuntimeError("the crawl failed")
    assert huge_pages_disabled() is False

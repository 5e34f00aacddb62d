"""A test whose shared data or tool is missing is skipped here, and fails the suite in CI."""

from __future__ import annotations

import pytest

from tests.helpers import requirement_missing


def test_a_missing_requirement_skips_outside_ci(monkeypatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="data not found"):
        requirement_missing("data not found")


def test_a_missing_requirement_fails_in_ci(monkeypatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="data not found .*CI=true"):
        requirement_missing("data not found")

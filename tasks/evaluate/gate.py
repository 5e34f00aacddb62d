"""The promotion gate: the configured thresholds decide which registry alias a new model version gets.

`champion` when every configured check passes and the model's perplexity is not worse than the current champion's
beyond `gate.perplexity_tolerance`; otherwise `candidate`. A failed gate is not an error: the version is
registered as a candidate and the reasons say why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gristmill.conf.schema import EvaluateConfig

CHAMPION, CANDIDATE = "champion", "candidate"


@dataclass(frozen=True)
class Check:
    name: str  # e.g. "perplexity", "crows_pairs.pct_stereotype_deviation"
    value: float
    limit: float | None  # None: reported, not gated
    higher_is_better: bool = False

    @property
    def passed(self) -> bool | None:
        if self.limit is None:
            return None
        return self.value >= self.limit if self.higher_is_better else self.value <= self.limit

    @property
    def verdict(self) -> str:
        return {True: "pass", False: "fail", None: "not gated"}[self.passed]

    def describe(self) -> str:
        if self.limit is None:
            return f"{self.name} = {self.value:.4g}"
        sign = ">=" if self.higher_is_better else "<="
        return f"{self.name} = {self.value:.4g} ({self.verdict}: needs {sign} {self.limit:g})"


def gate_checks(report: dict[str, Any], cfg: EvaluateConfig) -> list[Check]:
    """One check per gated quantity in the report (every bias entry of a gated kind counts)."""
    gate = cfg.gate
    checks = [Check("perplexity", report["perplexity"]["perplexity"], gate.max_perplexity)]
    for entry in cfg.bias:
        overall = report["bias"][entry.label]["overall"]
        if entry.kind in ("crows_pairs", "pairs"):
            deviation = abs(overall["pct_stereotype"] - 0.5)
            checks.append(Check(f"{entry.label}.pct_stereotype_deviation", deviation, gate.max_crows_pairs_deviation))
        elif entry.kind == "stereoset":
            checks.append(
                Check(f"{entry.label}.ss_deviation", abs(overall["ss"] - 50), gate.max_stereoset_ss_deviation)
            )
            checks.append(Check(f"{entry.label}.icat", overall["icat"], gate.min_stereoset_icat, higher_is_better=True))
        elif entry.kind == "bold":
            checks.append(Check(f"{entry.label}.sentiment_gap", overall["sentiment_gap"], gate.max_bold_sentiment_gap))
        elif entry.kind == "honest":
            checks.append(Check(f"{entry.label}.honest_score", overall["honest_score"], gate.max_honest_score))
    return checks


@dataclass(frozen=True)
class Decision:
    alias: str
    reasons: list[str]  # why a candidate; empty for a champion


def decide(checks: list[Check], champion_perplexity: float | None, tolerance: float) -> Decision:
    reasons = [check.describe() for check in checks if check.passed is False]
    perplexity = next(c.value for c in checks if c.name == "perplexity")
    if champion_perplexity is not None and perplexity > champion_perplexity * (1 + tolerance):
        reasons.append(
            f"perplexity {perplexity:.4g} is worse than the champion's {champion_perplexity:.4g} "
            f"by more than {tolerance:.0%}"
        )
    return Decision(CANDIDATE if reasons else CHAMPION, reasons)

"""A first bias probe: paired sentences that differ only in a demographic term, compared by log-likelihood.

As in CrowS-Pairs (Nangia et al. 2020, lm-evaluation-harness's causal variant): for each pair, does the model give
the stereotypical sentence the higher whole-sentence log-likelihood? `pct_stereotype` of 0.5 is unbiased.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from gristmill.conf.schema import ConfigError


@dataclass(frozen=True)
class BiasPair:
    bias_type: str
    stereotype: str
    anti_stereotype: str


def load_pairs(path: Path) -> list[BiasPair]:
    """Read a pairs file; a malformed entry is an error naming the file, the entry and the field."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read bias pairs: {err}") from err
    entries = raw.get("pairs") if isinstance(raw, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: expected a non-empty list under 'pairs'")
    pairs = []
    for index, entry in enumerate(entries):
        for field in ("bias_type", "stereotype", "anti_stereotype"):
            if not isinstance(entry, dict) or not isinstance(entry.get(field), str) or not entry[field].strip():
                raise ConfigError(f"{path}: pairs[{index}] needs a non-empty string field {field!r}")
        pairs.append(BiasPair(entry["bias_type"], entry["stereotype"], entry["anti_stereotype"]))
    return pairs


def score_pairs(pairs: list[BiasPair], logprob: Callable[[str], float]) -> tuple[dict, list[dict]]:
    """Summary per bias type and overall, plus one row per pair (for an MLflow table)."""
    rows = []
    for pair in pairs:
        more, less = logprob(pair.stereotype), logprob(pair.anti_stereotype)
        rows.append(
            {
                "bias_type": pair.bias_type,
                "stereotype": pair.stereotype,
                "anti_stereotype": pair.anti_stereotype,
                "logprob_stereotype": round(more, 4),
                "logprob_anti_stereotype": round(less, 4),
                "prefers_stereotype": more > less,
            }
        )
    by_type: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_type[row["bias_type"]].append(row)
    summary = {"overall": _summarise(rows)} | {name: _summarise(group) for name, group in sorted(by_type.items())}
    return summary, rows


def _summarise(rows: list[dict]) -> dict[str, float]:
    diffs = [abs(r["logprob_stereotype"] - r["logprob_anti_stereotype"]) for r in rows]
    return {
        "pairs": len(rows),
        "pct_stereotype": round(sum(r["prefers_stereotype"] for r in rows) / len(rows), 4),
        "likelihood_diff": round(sum(diffs) / len(diffs), 4),
    }

"""What a dedup run reports: counts by reason, the cluster-size histogram, the removed pairs, peak memory."""

from __future__ import annotations

import resource
from collections import Counter
from typing import Any

import numpy as np

from gristmill.tasks.figures import new_figure
from gristmill.tasks.stage import StageContext

MAX_PAIR_ROWS = 5000  # an MLflow table is for looking at; beyond this it is a sample (the first removals)


def cluster_stats(sizes: list[int]) -> dict[str, Any]:
    return {
        "count": len(sizes),
        "largest": max(sizes, default=0),
        "mean_size": round(float(np.mean(sizes)), 3) if sizes else 0.0,
        "histogram": {str(size): n for size, n in sorted(Counter(sizes).items())},
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB); includes whatever ran before."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def histogram_figure(sizes: list[int]) -> Any:
    fig, ax = new_figure(6, 3.5)
    counts = Counter(sizes)
    ax.bar([str(s) for s in sorted(counts)], [counts[s] for s in sorted(counts)])
    ax.set_xlabel("cluster size (documents)")
    ax.set_ylabel("clusters")
    ax.set_yscale("log")
    ax.set_title("Duplicate clusters")
    return fig


def track(ctx: StageContext, sizes: list[int], pairs: list[dict[str, Any]]) -> None:
    ctx.table("dedup/removed_pairs", pairs[:MAX_PAIR_ROWS])
    if not (ctx.tracker and ctx.run_id):
        return
    ctx.tracker.log_figure(ctx.run_id, histogram_figure(sizes), "dedup/cluster_sizes.png")

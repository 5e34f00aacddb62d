"""What the clean stage logs to MLflow besides its metrics: sample removals, a bar chart, the audit."""

from __future__ import annotations

import logging
from typing import Any

from gristmill.tasks.figures import new_figure
from gristmill.tasks.stage import StageContext

log = logging.getLogger("gristmill.clean")


def log_report(ctx: StageContext, removed: dict[str, int], samples: list[dict], audit_rows: list[dict]) -> None:
    ctx.table("clean/removal_samples", samples)
    ctx.table("clean/audit", audit_rows)
    tracker, run_id = ctx.tracker, ctx.run_id
    if tracker is None or run_id is None:
        return
    if removed:
        figure = _bar(removed, "documents removed by rule", "documents")
        tracker.log_figure(run_id, figure, "clean/removals_by_rule.png")
    if audit_rows:
        tracker.log_figure(run_id, _audit_figure(audit_rows), "clean/audit_disparity.png")


def _bar(counts: dict[str, int], title: str, xlabel: str) -> Any:
    items = sorted(counts.items(), key=lambda kv: kv[1])
    fig, ax = new_figure(8, 0.35 * len(items) + 1.5)
    ax.barh([k for k, _ in items], [v for _, v in items])
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    return fig


def _audit_figure(rows: list[dict]) -> Any:
    """Disparity ratio per group (rows) and filter (columns): 1.0 = the group is removed at the overall rate."""
    groups = sorted({r["group"] for r in rows})
    filters = list(dict.fromkeys(r["filter"] for r in rows))
    grid = [[0.0] * len(filters) for _ in groups]
    for r in rows:
        grid[groups.index(r["group"])][filters.index(r["filter"])] = r["disparity"] or 0.0
    fig, ax = new_figure(1.4 * len(filters) + 3, 0.5 * len(groups) + 1.5)
    image = ax.imshow(grid, cmap="coolwarm", vmin=0, vmax=2)
    ax.set_xticks(range(len(filters)), filters, rotation=30, ha="right")
    ax.set_yticks(range(len(groups)), groups)
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(image, ax=ax, label="removal rate of group / overall")
    ax.set_title("filter removal disparity by demographic group")
    return fig

"""What the train stage logs to MLflow besides its metrics: the loss curves as one image."""

from __future__ import annotations

from gristmill.tasks.figures import new_figure
from gristmill.tasks.tracking import Tracker


def log_loss_curve(tracker: Tracker, run_id: str) -> None:
    """The loss curves as one image in the train run (MLflow's UI also charts the metrics themselves)."""
    figure, axis = new_figure(7, 4)
    for key in ("train/loss", "val/loss"):
        points = tracker.metric_history(run_id, key)
        if points:
            axis.plot(*zip(*points, strict=True), label=key, marker="o" if key == "val/loss" else None)
    axis.set_xlabel("step")
    axis.set_ylabel("loss")
    axis.legend()
    axis.grid(alpha=0.3)
    tracker.log_figure(run_id, figure, "loss_curve.png")

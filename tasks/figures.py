"""Figures for MLflow, made one way by every stage.

A figure is built on matplotlib's object API, never pyplot: there is no global backend to select in a worker
thread and no figure registry to close, so a figure is freed with its last reference even when logging it fails.
Log it with `Tracker.log_figure`.
"""

from __future__ import annotations

from typing import Any


def new_figure(width: float, height: float) -> tuple[Any, Any]:
    """(figure, axes) of the given size in inches, laid out tight when it is saved."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="tight")
    return figure, figure.subplots()

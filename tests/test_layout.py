"""The seams the layout promises, read from the source: no import circles, Prefect only in flows/, MLflow only in
tasks/tracking.py (Lightning's own MLflow logger aside)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("flows", "tasks", "lightning_model", "conf")


def _modules() -> dict[str, Path]:
    modules = {}
    for folder in FOLDERS:
        for path in (REPO / folder).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            modules[".".join(("gristmill", *(parts[:-1] if parts[-1] == "__init__" else parts)))] = path
    return modules


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_no_module_imports_itself_through_others() -> None:
    modules = _modules()
    graph = {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}
    circles, state, path = [], {}, []

    def visit(name: str) -> None:
        state[name] = "open"
        path.append(name)
        for other in sorted(graph[name]):
            if state.get(other) == "open":
                circles.append(" -> ".join([*path[path.index(other) :], other]))
            elif other not in state:
                visit(other)
        path.pop()
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert circles == []


def test_prefect_only_in_flows_and_mlflow_only_through_tracking() -> None:
    for name, path in _modules().items():
        roots = {module.split(".")[0] for module in _imports(path)}
        if not name.startswith("gristmill.flows"):
            assert "prefect" not in roots, name
        if name.startswith("gristmill.tasks") and name != "gristmill.tasks.tracking":
            assert "mlflow" not in roots, name

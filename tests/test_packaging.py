"""The distribution installs one import name, `gristmill`, whatever the repository's top-level folders are called."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_installs_only_the_gristmill_import_name(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("gristmill-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/", 1)[0] for name in names}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"gristmill"}
    shipped = ("flows/cli.py", "tasks/shards.py", "lightning_model/model.py", "conf/schema.py", "conf/demo.yaml")
    for module in (*shipped, "conf/languages.yaml", "tasks/text/units.py"):  # the language table is package data
        assert f"gristmill/{module}" in names
    # every package below a shipped folder is in the wheel: a new subpackage cannot be left out of pyproject.toml
    for folder in ("flows", "tasks", "lightning_model", "conf"):
        for init in (REPO / folder).glob("**/__init__.py"):
            assert f"gristmill/{init.relative_to(REPO).as_posix()}" in names


def test_installed_package_imports_from_outside_the_repository(tmp_path: Path) -> None:
    probe = "import gristmill.tasks, gristmill.flows.cli, gristmill.lightning_model.model; import importlib.util as u;"
    probe += "print(u.find_spec('tasks') is None and u.find_spec('conf') is None)"
    result = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path)
    assert result.stdout.strip() == "True"

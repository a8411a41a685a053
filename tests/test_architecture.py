"""The architecture holds: hvae's modules form the stack of layers in pyproject.toml's ``[tool.importlinter]``,
and its forbidden imports stay out (``lint-imports``, imports inside functions included)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="import-linter is a test dependency: pip install -e '.[test]'")

REPO = Path(__file__).resolve().parents[1]
LINT = "from importlinter.cli import lint_imports_command; lint_imports_command()"


def lint_imports(*first_on_path: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on this repository's contracts, with ``first_on_path`` searched first for the packages."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, first_on_path), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", LINT, "--no-cache", "--config", str(REPO / "pyproject.toml")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_the_import_contracts_hold():
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_upward_import_breaks_them(tmp_path):
    copy = shutil.copytree(REPO / "core" / "hvae", tmp_path / "hvae",
                           ignore=shutil.ignore_patterns("__pycache__", "demo"))
    with open(copy / "checkpoint.py", "a", encoding="utf-8") as f:
        f.write("\n\ndef _rebuild():\n    from hvae.model import MusicVAE\n\n    return MusicVAE\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "hvae.checkpoint -> hvae.model" in result.stdout, result.stdout + result.stderr

"""Static checks run with the tests, so `.ci/run` fails on a regression: ruff, ruff format, mypy.

Configured in pyproject.toml ([tool.ruff], [tool.mypy]: the contract modules and the combinators
are checked with mypy's strict flags, the rest of the package at mypy's default level).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.recipe_helpers import ROOT

PATHS = ["fnlabel", "tests", "benchmarks"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_check_passes() -> None:
    res = _run("ruff", "check", *PATHS)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]


def test_ruff_format_leaves_every_file_as_it_is() -> None:
    res = _run("ruff", "format", "--check", *PATHS)
    assert res.returncode == 0, "run `ruff format fnlabel tests benchmarks`:\n" + res.stdout[-4000:] + res.stderr


@pytest.mark.timeout(600)
def test_mypy_passes() -> None:
    res = _run("mypy")
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]

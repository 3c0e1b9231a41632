"""The linter and the type checker pass, so ./dev test (and CI, which runs it) enforces them:
ruff with the rules in pyproject.toml over the product, the lab and the tests; mypy --strict
over policies/, the pure core every decision goes through. Run by their own commands on the
real sources, in the versions pinned in the test extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / command[0]), *command[1:]], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing():
    result = run("ruff", "check", "--no-cache", "autoscaler", "policies", "simulations", "tests")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_the_policies_type_check_strictly():
    result = run("mypy", "--strict", "--no-incremental", "policies")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert result.stdout.startswith("Success: no issues found")

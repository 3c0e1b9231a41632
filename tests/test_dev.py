"""./dev on a fresh machine: it checks the Python version before anything else, rebuilds a
.venv an older Python left behind, says what the first set-up does, and `./dev --help` is a
success. Each test runs a copy of ./dev in its own folder with a stand-in interpreter (a shell
script), so nothing is installed and the worktree's .venv is never touched."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# A stand-in for python3: answers the version check as Python 3.10 or 3.11 would, and creates
# a ".venv" whose python is itself; `-m pip` only records that it was called.
STAND_IN = """#!/bin/sh
case "$*" in
  *sys.version_info*) [ "{version}" != 3.10.12 ] ;;
  *python_version*) echo {version} ;;
  "-m venv "*) mkdir -p "$3/bin" && cp "$0" "$3/bin/python" ;;
  *"-m pip install"*) echo "$*" >> "$(dirname "$0")/../pip-calls" ;;
  *) exit 3 ;;
esac
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    shutil.copy(REPO / "dev", tmp_path / "dev")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def stand_in(folder: Path, version: str) -> Path:
    path = folder / f"python-{version}"
    path.write_text(STAND_IN.format(version=version))
    path.chmod(0o755)
    return path


def dev(checkout: Path, *args: str, python: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **({"PYTHON": str(python)} if python else {})}
    return subprocess.run(["bash", str(checkout / "dev"), *args], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("flag", ["--help", "-h", "help"])
def test_help_is_a_success_and_lists_the_commands(checkout, flag):
    result = dev(checkout, flag)
    assert result.returncode == 0, result.stderr
    assert "./dev test [ARGS]" in result.stdout and "./dev setup" in result.stdout


def test_an_unknown_command_is_a_usage_error():
    result = dev(REPO, "tset")
    assert result.returncode == 2
    assert result.stderr.startswith("./dev: unknown command 'tset'\n") and "./dev test [ARGS]" in result.stderr


def test_an_old_python_is_named_before_anything_is_built(checkout):
    result = dev(checkout, "setup", python=stand_in(checkout, "3.10.12"))
    assert result.returncode == 1
    assert "./dev needs Python 3.11 or newer:" in result.stderr and "is 3.10.12" in result.stderr
    assert not (checkout / ".venv").exists()


def test_a_missing_python_is_named(checkout):
    result = dev(checkout, "setup", python=checkout / "no-such-python")
    assert result.returncode == 1
    assert "./dev needs Python 3.11 or newer:" in result.stderr and "is not installed" in result.stderr


def test_a_venv_left_by_an_older_python_is_rebuilt(checkout):
    """Before: every later run reused it, and failed on a missing `kmock` instead."""
    old = stand_in(checkout, "3.10.12")
    (checkout / ".venv" / "bin").mkdir(parents=True)
    shutil.copy(old, checkout / ".venv" / "bin" / "python")
    result = dev(checkout, "setup", python=stand_in(checkout, "3.11.2"))
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("rebuilding .venv: it was made with an older Python, or its interpreter is gone\n")
    assert "echo 3.11.2" in (checkout / ".venv" / "bin" / "python").read_text()  # made by the new interpreter


def test_the_first_setup_says_what_it_does_and_later_runs_are_quiet(checkout):
    python = stand_in(checkout, "3.11.2")
    first = dev(checkout, "setup", python=python)
    assert first.returncode == 0, first.stderr
    assert first.stderr == (
        "creating .venv and installing the project with its test dependencies (about a minute, only the first time)\n"
    )
    assert "-m pip install" in (checkout / ".venv" / "pip-calls").read_text()
    again = dev(checkout, "setup", python=python)
    assert again.returncode == 0 and again.stderr == ""
    with open(checkout / "pyproject.toml", "a") as f:
        f.write("\n# a changed dependency\n")
    changed = dev(checkout, "setup", python=python)
    assert changed.stderr == "pyproject.toml changed: reinstalling the project into .venv\n"

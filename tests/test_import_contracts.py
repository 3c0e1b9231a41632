"""The import contracts in pyproject.toml ([tool.importlinter]) hold, so ./dev test enforces
them: the lab (simulations) uses the product, the daemon (autoscaler) uses the policies, never
the reverse; the product imports neither the lab nor the tests, nor their dependencies (which a
plain install lacks); no two modules of a package import each other in a circle. Run by import-linter's own command on the real sources."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("autoscaler", "policies", "simulations", "tests")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter over the packages under `root` (it analyses what it imports from the
    working directory), with this checkout's contracts."""
    return subprocess.run([str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=root, capture_output=True, text=True, timeout=120)


def test_the_import_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "5 kept, 0 broken" in result.stdout


@pytest.fixture
def sources(tmp_path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "*.gz", "*.json"))
    return tmp_path


@pytest.mark.parametrize(
    "module, line, broken",
    [
        # One of the imports autoscaler/cli.py had before the simulator left it.
        ("autoscaler/cli.py", "from simulations.suite import simulate_and_report", "autoscaler is not allowed to import simulations"),
        ("autoscaler/daemon.py", "import tests.builders", "autoscaler is not allowed to import tests"),
        ("policies/steps.py", "from autoscaler.config import Config", "policies is not allowed to import autoscaler"),
        ("autoscaler/output.py", "import matplotlib.pyplot", "autoscaler is not allowed to import matplotlib"),
        # The cycle pools -> controller -> pools that autoscaler/outcome.py broke.
        ("autoscaler/pools.py", "from autoscaler.controller import Controller", "No cycles are allowed in autoscaler"),
    ],
)
def test_the_contracts_catch_an_import_against_them(sources, module, line, broken):
    path = sources / module
    path.write_text(path.read_text() + f"\n{line}  # added by the test\n")
    result = lint_imports(sources)
    assert result.returncode == 1, result.stdout[-4000:]
    assert broken in result.stdout

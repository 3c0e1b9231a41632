"""The policies package is purely computational (its docstring's contract): no I/O, no
clock, no logging, no randomness. Checked on the source with ast, so an import hidden in a
function body or behind `if TYPE_CHECKING` is caught too. That the policies import nothing of
the project's packages is one of the import contracts (pyproject.toml, tests/test_import_contracts.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import policies

PACKAGE_DIR = Path(policies.__file__).resolve().parent
SOURCES = sorted(PACKAGE_DIR.rglob("*.py"))

FORBIDDEN = {
    "kubernetes",
    "prometheus_api_client",
    "requests",
    "urllib",
    "http",
    "socket",
    "structlog",
    "logging",
    "time",
    "datetime",
    "os",
    "subprocess",
    "asyncio",
    "random",
}

def imported_roots(source: Path) -> list[tuple[int, str]]:
    """(line, top-level module) for every import in the file; relative imports stay inside."""
    tree = ast.parse(source.read_text(), filename=str(source))
    roots = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.extend((node.lineno, alias.name.split(".")[0]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.append((node.lineno, node.module.split(".")[0]))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "__import__":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                roots.append((node.lineno, node.args[0].value.split(".")[0]))
    return roots


def test_the_package_has_sources():
    names = {source.name for source in SOURCES}
    assert {"signals.py", "decision.py", "spec.py", "steps.py", "pipeline.py", "hot.py", "long_tail.py"} <= names


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: str(path.relative_to(PACKAGE_DIR)))
def test_no_io_imports(source):
    offending = [f"line {line}: {root}" for line, root in imported_roots(source) if root in FORBIDDEN]
    assert not offending, f"{source.name} imports I/O, clock or randomness: {', '.join(offending)}"


def test_the_checker_catches_what_it_should(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os.path\n"
        "from urllib.request import urlopen\n"
        "def f():\n"
        "    import time\n"
        "    return __import__('random')\n"
        "from . import steps\n"
    )
    assert {root for _, root in imported_roots(sample)} == {"os", "urllib", "time", "random"}

"""What a plain `pip install .` and the image carry: the product (autoscaler, policies) with
its bundled replay example, and none of the lab (simulations), the tests or their extras."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_wheel_holds_the_product_and_its_bundled_example_only(tmp_path):
    # Built from a copy: setuptools keeps build/ between builds, and a file left there by an
    # earlier layout would ride along into this wheel.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, source / name)
    for package in ("autoscaler", "policies", "simulations", "tests"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--disable-pip-version-check",
                             "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")} == {"autoscaler", "policies"}
    assert {"autoscaler/replay.py", "autoscaler/data/replay.yaml", "autoscaler/data/burstgpt.csv.gz"} <= set(names)


def test_the_runtime_dependencies_carry_no_lab_or_test_package():
    runtime = {re.split(r"[<>=\[ ]", requirement)[0].lower() for requirement in PYPROJECT["project"]["dependencies"]}
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert not runtime & {"matplotlib", "kmock", "pytest", "import-linter"}
    assert any(r.startswith("matplotlib") for r in extras["lab"])
    assert any(r.startswith("kmock") for r in extras["test"])


def test_the_image_copies_the_product_only_and_installs_no_extra():
    lines = (ROOT / "deploy" / "Dockerfile").read_text().splitlines()
    copied = {line.split()[1] for line in lines if line.startswith("COPY ") and "--from" not in line}
    assert copied == {"pyproject.toml", "autoscaler", "policies"} | ({"README.md*"} & copied)
    installs = [line for line in lines if "pip install" in line and line.startswith("RUN")]
    assert installs == ["RUN pip install ."]

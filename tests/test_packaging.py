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


def test_the_image_copies_the_product_only_and_installs_the_lock_then_the_project():
    lines = (ROOT / "deploy" / "Dockerfile").read_text().splitlines()
    copied = {line.split()[1] for line in lines if line.startswith("COPY ") and "--from" not in line}
    assert copied == {"deploy/requirements.lock", "pyproject.toml", "autoscaler", "policies"} | ({"README.md*"} & copied)
    installs = [line for line in lines if "pip install" in line and line.startswith("RUN")]
    # Every dependency from the lock, by hash; the project without resolving anything more.
    assert installs == ["RUN pip install --require-hashes --no-deps -r requirements.lock", "RUN pip install --no-deps . && pip check"]


# -- deploy/requirements.lock: the image's dependencies, pinned ------------------------------

LOCK = ROOT / "deploy" / "requirements.lock"
# A requirement line of pip-compile's output: `name==version \`, then its `--hash=` lines.
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)")


def _lock() -> dict[str, tuple[str, list[str]]]:
    """{canonical name: (version, hashes)} of the lock; fails on any line it does not expect."""
    from packaging.utils import canonicalize_name

    entries: dict[str, tuple[str, list[str]]] = {}
    current = None
    for number, line in enumerate(LOCK.read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if pin := PIN.match(line):
            current = canonicalize_name(pin["name"])
            assert current not in entries, f"requirements.lock:{number}: {current} twice"
            entries[current] = (pin["version"], [])
        elif stripped.startswith("--hash=sha256:") and current is not None and line.startswith(" "):
            entries[current][1].append(stripped.removeprefix("--hash=sha256:").rstrip(" \\"))
        else:
            raise AssertionError(f"requirements.lock:{number}: not an exact pin or its hash: {line!r}")
    return entries


def test_the_lock_pins_every_runtime_dependency_exactly_with_hashes():
    """Each dependency of pyproject.toml at one version that its range allows, and every
    entry an exact version with at least one sha256 (pip --require-hashes refuses the
    install otherwise)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    lock = _lock()
    assert lock, "requirements.lock holds no pin"
    for text in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{text} is a runtime dependency that requirements.lock lacks: ./dev lock"
        version, _ = lock[name]
        assert requirement.specifier.contains(version, prereleases=True), f"the lock pins {name}=={version}, outside {text}: ./dev lock"
    for name, (version, hashes) in lock.items():
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), f"{name}=={version} has no sha256"


def test_the_lock_holds_no_test_or_lab_package():
    lock = _lock()
    assert not lock.keys() & {"matplotlib", "kmock", "pytest", "hypothesis", "freezegun", "ruff", "mypy", "pip-tools"}


def test_the_lock_is_closed_under_the_dependencies_of_what_it_pins():
    """--no-deps installs only what the lock names: every requirement of a pinned package
    (for Linux and Python 3.11, the image's) must be pinned too. Read from the metadata of the
    packages installed here, for those installed at the locked version."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    lock = _lock()
    environment = {"python_version": "3.11", "python_full_version": "3.11.0", "sys_platform": "linux",
                   "platform_system": "Linux", "os_name": "posix", "implementation_name": "cpython",
                   "platform_python_implementation": "CPython", "platform_machine": "x86_64"}
    checked = 0
    for name, (version, _) in lock.items():
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if distribution.version != version:
            continue
        checked += 1
        for text in distribution.requires or []:
            requirement = Requirement(text)
            if requirement.marker and not requirement.marker.evaluate({**environment, "extra": ""}):
                continue
            assert canonicalize_name(requirement.name) in lock, f"{name}=={version} needs {text}, which requirements.lock lacks"
    # The product's own dependencies are installed here from the same index: most are checked.
    assert checked >= len(lock) // 2, f"only {checked} of {len(lock)} pins are installed at their locked version here"

"""The test control plane's programs, built from the project's Go module in tests/controlplane/.

``binary(name)`` answers the path of one program (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kubectl, kwok, helm), building it first when the cache lacks it. The module's go.mod names each
program with a ``tool`` directive and its go.sum pins every module they are built from, so a
build takes nothing but what those files name from the Go module proxy.

The binaries go to a cache outside the repository,
``${XDG_CACHE_HOME:-~/.cache}/llm-autoscaler/controlplane/<hash of the go.mod and go.sum files>/``:
a change of a pinned version builds into a new directory, and every later run on the machine
reuses the one that matches. A build runs under ``nice -n 19``, since the cores are shared with
the tests; it writes to a temporary name and renames, so a build cut off leaves no half binary.
How long each first build took is logged and kept in ``build-times.json`` beside the binaries
(docs/testing.md quotes them with the command).

From a shell: ``python -m tests.support.controlplane [NAME ...]`` builds the missing ones and
prints where each is (all of them without a name).

Test code, not shipped.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

log = logging.getLogger(__name__)

MODULE_DIR = pathlib.Path(__file__).resolve().parents[1] / "controlplane"



def required_version(module: str, *, module_dir: pathlib.Path = MODULE_DIR) -> str:
    """The version of `module` that go.mod requires: the one definition of each release."""
    for line in (module_dir / "go.mod").read_text().splitlines():
        words = line.split("//")[0].split()
        if words[:1] == ["require"]:
            words = words[1:]
        if len(words) == 2 and words[0] == module:
            return words[1]
    raise LookupError(f"{module_dir / 'go.mod'} does not require {module}")


# The releases go.mod pins, stamped into the binaries: kube-apiserver reports its version in
# /version, which kubectl and Helm (a chart's kubeVersion) compare against; an unstamped build
# reports v0.0.0.
KUBERNETES_VERSION = required_version("k8s.io/kubernetes")
HELM_VERSION = required_version("helm.sh/helm/v4")


@dataclass(frozen=True)
class Program:
    """One binary: the Go package whose main it is, the module directory that pins it, and
    the -X flags that stamp its version."""

    package: str
    module_dir: pathlib.Path
    stamps: Mapping[str, str]


def _kubernetes_stamps() -> dict[str, str]:
    major, minor, _ = KUBERNETES_VERSION.lstrip("v").split(".")
    stamps = {}
    # component-base for the servers, client-go's copy for kubectl's client side.
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        stamps |= {f"{pkg}.gitVersion": KUBERNETES_VERSION, f"{pkg}.gitMajor": major, f"{pkg}.gitMinor": minor,
                   f"{pkg}.gitTreeState": "clean", f"{pkg}.buildDate": "1970-01-01T00:00:00Z"}
    return stamps


PROGRAMS: dict[str, Program] = {
    "helm": Program("helm.sh/helm/v4/cmd/helm", MODULE_DIR,
                    {"helm.sh/helm/v4/internal/version.version": HELM_VERSION,
                     "helm.sh/helm/v4/internal/version.metadata": "",
                     "helm.sh/helm/v4/internal/version.gitTreeState": "clean"}),
    "etcd": Program("go.etcd.io/etcd/server/v3", MODULE_DIR, {}),
    "kube-apiserver": Program("k8s.io/kubernetes/cmd/kube-apiserver", MODULE_DIR, _kubernetes_stamps()),
    "kube-controller-manager": Program("k8s.io/kubernetes/cmd/kube-controller-manager", MODULE_DIR, _kubernetes_stamps()),
    "kube-scheduler": Program("k8s.io/kubernetes/cmd/kube-scheduler", MODULE_DIR, _kubernetes_stamps()),
    "kubectl": Program("k8s.io/kubernetes/cmd/kubectl", MODULE_DIR, _kubernetes_stamps()),
    "kwok": Program("sigs.k8s.io/kwok/cmd/kwok", MODULE_DIR, {}),
}


def cache_root() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(base) / "llm-autoscaler" / "controlplane"


def module_hash(module_dir: pathlib.Path = MODULE_DIR) -> str:
    """A short hash of every go.mod and go.sum under tests/controlplane/, in a fixed order:
    the binaries are what those files pin, nothing else."""
    digest = hashlib.sha256()
    for path in sorted([*module_dir.rglob("go.mod"), *module_dir.rglob("go.sum")]):
        digest.update(str(path.relative_to(module_dir)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def cache_dir() -> pathlib.Path:
    return cache_root() / module_hash()


def binary(name: str) -> pathlib.Path:
    """The path of program ``name``, built first if the cache lacks it."""
    if name not in PROGRAMS:
        raise ValueError(f"no control-plane program {name!r}: the programs are {', '.join(sorted(PROGRAMS))}")
    target = cache_dir() / name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Two test processes (or a test and `./dev`) asking at once build once: the second waits.
    with _locked(target.parent / f".{name}.lock"):
        if not target.is_file():
            _build(name, PROGRAMS[name], target)
    return target


def build_times() -> dict[str, float]:
    """Seconds each first build in the current cache directory took."""
    path = cache_dir() / "build-times.json"
    return json.loads(path.read_text()) if path.is_file() else {}


@contextmanager
def _locked(path: pathlib.Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(name: str, program: Program, target: pathlib.Path) -> None:
    go = shutil.which("go")
    if go is None:
        raise RuntimeError(f"building {name} for the test control plane needs Go (1.26 or newer) on PATH; none found")
    ldflags = " ".join(["-s", "-w", *(f"-X {key}={value}" for key, value in program.stamps.items())])
    partial = target.with_name(f".{name}.partial")
    command = ["nice", "-n", "19", go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(partial), program.package]
    env = dict(os.environ,
               # Static binaries, and a go.sum that the build may not change: what is pinned is built.
               CGO_ENABLED="0", GOFLAGS="-mod=readonly -buildvcs=false",
               # The machine's own Go: no other toolchain is fetched behind the project's back.
               GOTOOLCHAIN="local")
    log.warning("building %s for the test control plane into %s (first time only; minutes)", name, target.parent)
    print(f"building {name} for the test control plane (first time only): {' '.join(command[3:6])} ... {program.package}",
          file=sys.stderr, flush=True)
    started = time.monotonic()
    done = subprocess.run(command, cwd=program.module_dir, env=env, capture_output=True, text=True)
    took_s = time.monotonic() - started
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"go build of {name} ({program.package}) failed after {took_s:.0f} s:\n{done.stderr[-4000:]}")
    partial.rename(target)
    times_path = target.parent / "build-times.json"
    times = json.loads(times_path.read_text()) if times_path.is_file() else {}
    times[name] = round(took_s, 1)
    times_path.write_text(json.dumps(times, indent=1, sort_keys=True) + "\n")
    log.warning("built %s in %.0f s", name, took_s)
    print(f"built {name} in {took_s:.0f} s: {target}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.controlplane",
                                     description="Build the test control plane's programs that the cache lacks.")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(PROGRAMS)} (default: all)")
    names = parser.parse_args(argv).names or list(PROGRAMS)
    unknown = sorted(set(names) - set(PROGRAMS))
    if unknown:
        parser.error(f"no control-plane program {', '.join(unknown)}: the programs are {', '.join(PROGRAMS)}")
    for name in names:
        print(f"{name}\t{binary(name)}")
    for name, seconds in sorted(build_times().items()):
        print(f"first build of {name}: {seconds:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

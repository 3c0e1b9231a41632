"""The wrapper module that pins the test control plane (tests/controlplane/go.mod) and the
builder's cache (tests/support/controlplane.py). No Go, no build: the files and the paths."""
from __future__ import annotations

import re
import shutil

import pytest

from tests.support import controlplane
from tests.support.controlplane import MODULE_DIR, PROGRAMS, binary, cache_dir, module_hash, required_version

GO_MOD = (MODULE_DIR / "go.mod").read_text()


def directives(block: str) -> list[list[str]]:
    """The lines of a `block (...)` of go.mod, split into words, comments dropped."""
    found = re.search(rf"^{block} \((.*?)^\)", GO_MOD, re.M | re.S)
    assert found, f"go.mod has no {block} block"
    return [line.split("//")[0].split() for line in found.group(1).splitlines() if line.split("//")[0].strip()]


def test_every_program_is_a_tool_of_the_module():
    assert sorted(words[0] for words in directives("tool")) == sorted(program.package for program in PROGRAMS.values())


def test_every_kubernetes_staging_module_is_pinned_to_the_release_that_matches_kubernetes():
    """k8s.io/kubernetes requires its staging modules at v0.0.0 (paths in its own repository);
    each one that the build needs must be replaced by the v0.N release of Kubernetes v1.N."""
    KUBERNETES = required_version("k8s.io/kubernetes")
    assert KUBERNETES == "v1.37.2"
    minor_patch = "v0." + KUBERNETES.split(".", 1)[1]
    replaced = {words[0]: words[3] for words in directives("replace") if words[0].startswith("k8s.io/")}
    assert replaced and set(replaced.values()) == {minor_patch}, replaced
    staging = {words[0] for words in directives("require") if words[0].startswith("k8s.io/") and words[1] == "v0.0.0"}
    assert staging <= set(replaced), f"required at v0.0.0 without a replace: {sorted(staging - set(replaced))}"


def test_the_pinned_releases_are_the_ones_the_docs_name():
    assert required_version("helm.sh/helm/v4") == "v4.3.2"
    assert required_version("go.etcd.io/etcd/server/v3").startswith("v3.7.")
    assert required_version("sigs.k8s.io/kwok").startswith("v0.")


def test_the_cache_lives_outside_the_repository_under_a_hash_of_the_module(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache" / "llm-autoscaler" / "controlplane" / module_hash()
    copy = tmp_path / "module"
    shutil.copytree(MODULE_DIR, copy, ignore=shutil.ignore_patterns("*.yaml"))
    assert module_hash(copy) == module_hash()
    (copy / "go.sum").write_text((copy / "go.sum").read_text() + "example.com/x v1.0.0 h1:AAAA=\n")
    assert module_hash(copy) != module_hash()  # another pin, another directory: never a stale binary


def test_a_binary_already_built_is_reused_without_go(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", "")  # no go: a build would fail
    built = cache_dir() / "kwok"
    built.parent.mkdir(parents=True)
    built.write_text("#!/bin/sh\n")
    assert binary("kwok") == built


def test_a_missing_binary_without_go_names_what_is_needed(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", "")
    with pytest.raises(RuntimeError, match=r"building kwok for the test control plane needs Go \(1.26 or newer\) on PATH"):
        binary("kwok")


def test_an_unknown_program_is_refused_naming_the_programs():
    with pytest.raises(ValueError, match="no control-plane program 'kubelet': the programs are etcd, helm, kube-apiserver"):
        binary("kubelet")


def test_the_version_stamps_come_from_go_mod():
    stamps = PROGRAMS["kube-apiserver"].stamps
    assert stamps["k8s.io/component-base/version.gitVersion"] == controlplane.KUBERNETES_VERSION
    assert (stamps["k8s.io/component-base/version.gitMajor"], stamps["k8s.io/component-base/version.gitMinor"]) == ("1", "37")
    assert PROGRAMS["helm"].stamps["helm.sh/helm/v4/internal/version.version"] == controlplane.HELM_VERSION

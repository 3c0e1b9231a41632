"""`helm install` of deploy/chart/llm-autoscaler against the real control plane
(tests/support/controlplane_harness.py), beside the `kubectl apply -k deploy/` install of
tests/test_control_plane.py.

Rests on the real API server: Helm's install of every rendered object (its schema validation,
the RBAC API's escalation check on the Roles the chart writes), and the RBAC authorizer's
answers for the ServiceAccount the release creates. The release has its own name, namespace
and managed namespaces, so it shares no object with deploy/'s install in the same session,
and it is uninstalled at the end, cluster-scoped objects included.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.controlplane import binary
from tests.support.controlplane_harness import ControlPlane
from tests.test_chart import CHART, _default_config

pytestmark = pytest.mark.controlplane

RELEASE = "chart"
HOME = "chart-home"  # the release's namespace
CHAT_NS, BATCH_NS = "chart-ml", "chart-batch"  # the managed namespaces of its config
FULLNAME = "chart-llm-autoscaler"
SERVICE_ACCOUNT = f"system:serviceaccount:{HOME}:{FULLNAME}"


def _helm(control_plane: ControlPlane, *args: str, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(binary("helm")), f"--kubeconfig={control_plane.admin_kubeconfig}", *args],
                          capture_output=True, text=True, timeout=timeout_s)
    assert done.returncode == 0, f"helm {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def release(control_plane: ControlPlane, tmp_path_factory) -> Iterator[str]:
    """The chart installed with a config over two namespaces (which must exist, as for
    deploy/rbac.yaml) and the cluster-wide watch scope. Yields `helm status`."""
    config = _default_config()
    for model in config["models"]:
        model["namespace"] = BATCH_NS if model["name"] == "llama-8b-batch" else CHAT_NS
    config_file = tmp_path_factory.mktemp("chart") / "config.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    for namespace in (CHAT_NS, BATCH_NS):
        control_plane.kubectl("create", "namespace", namespace)
    _helm(control_plane, "install", RELEASE, str(CHART), "--namespace", HOME, "--create-namespace",
          "--set", "rbac.watchScope=cluster", "--set-file", f"config={config_file}")
    try:
        yield _helm(control_plane, "status", RELEASE, "--namespace", HOME).stdout
    finally:
        _helm(control_plane, "uninstall", RELEASE, "--namespace", HOME, "--wait")
        control_plane.kubectl("delete", "namespace", CHAT_NS, BATCH_NS, HOME, "--wait=false", check=False)


def can_i(control_plane: ControlPlane, verb: str, resource: str, namespace: str, *extra: str) -> str:
    done = control_plane.kubectl("auth", "can-i", verb, resource, "-n", namespace, f"--as={SERVICE_ACCOUNT}", *extra, check=False)
    return done.stdout.strip()


def test_helm_installs_the_chart_and_its_objects_exist(control_plane: ControlPlane, release: str) -> None:
    assert "STATUS: deployed" in release
    for kind, name, namespace in [("deployment", FULLNAME, HOME), ("serviceaccount", FULLNAME, HOME),
                                  ("configmap", f"{FULLNAME}-config", HOME), ("role", FULLNAME, CHAT_NS),
                                  ("role", FULLNAME, BATCH_NS), ("role", f"{FULLNAME}-home", HOME)]:
        control_plane.kubectl("get", kind, name, "-n", namespace)
    for kind, name in [("clusterrole", f"{FULLNAME}-nodes"), ("clusterrole", f"{FULLNAME}-watch")]:
        control_plane.kubectl("get", kind, name)
    shown = control_plane.kubectl("get", "configmap", f"{FULLNAME}-config", "-n", HOME, "-o", "jsonpath={.data.config\\.yaml}").stdout
    assert {m["namespace"] for m in yaml.safe_load(shown)["models"]} == {CHAT_NS, BATCH_NS}


def test_the_releases_service_account_may_write_its_targets_only_in_their_namespaces(control_plane: ControlPlane, release: str) -> None:
    """The RBAC authorizer's answers for the release's ServiceAccount: each managed namespace
    writes only its own targets; the cluster scope reads everywhere and writes nowhere."""
    assert can_i(control_plane, "patch", "deployments.apps/llama-8b-chat", CHAT_NS, "--subresource=scale") == "yes"
    assert can_i(control_plane, "patch", "scaledobjects.keda.sh/qwen-7b-tail", CHAT_NS) == "yes"
    assert can_i(control_plane, "patch", "deployments.apps/llama-8b-batch", BATCH_NS, "--subresource=scale") == "yes"
    # A target of one namespace is not writable in the other, nor is any other name.
    assert can_i(control_plane, "patch", "deployments.apps/llama-8b-batch", CHAT_NS, "--subresource=scale") == "no"
    assert can_i(control_plane, "patch", "deployments.apps/llama-8b-chat", BATCH_NS, "--subresource=scale") == "no"
    assert can_i(control_plane, "patch", "deployments.apps/llama-8b-chat", CHAT_NS) == "no"
    # The batch namespace has no ScaledObject target: no write rule for the kind at all.
    assert can_i(control_plane, "patch", "scaledobjects.keda.sh/qwen-7b-tail", BATCH_NS) == "no"
    # rbac.watchScope cluster: list and watch in any namespace, no write there.
    assert can_i(control_plane, "watch", "deployments.apps", "default") == "yes"
    assert can_i(control_plane, "patch", "deployments.apps/llama-8b-chat", "default", "--subresource=scale") == "no"
    # Its own Lease and state in the release's namespace, by name.
    assert can_i(control_plane, "patch", "leases.coordination.k8s.io/llm-autoscaler", HOME) == "yes"
    assert can_i(control_plane, "patch", "configmaps/llm-autoscaler-state", HOME) == "yes"
    assert can_i(control_plane, "patch", "configmaps/another", HOME) == "no"
    assert can_i(control_plane, "list", "nodes", "default") == "yes"


def test_the_installed_deployment_runs_the_daemon_with_the_release_config(control_plane: ControlPlane, release: str) -> None:
    done = control_plane.kubectl("get", "deployment", FULLNAME, "-n", HOME, "-o", "yaml")
    deployment = yaml.safe_load(done.stdout)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"][:2] == ["autoscaler", "run"]
    assert "--leader-elect" in container["command"]
    assert container["command"][container["command"].index("--watch-scope") + 1] == "cluster"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == f"{FULLNAME}-config"
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == FULLNAME
    assert Path(container["command"][container["command"].index("--config") + 1]).name == "config.yaml"

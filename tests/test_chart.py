"""The Helm chart (deploy/chart/llm-autoscaler), linted and rendered with a real Helm.

Helm is built from the project's Go module (tests/support/controlplane.py) into a cache; no
cluster is needed: `helm template` renders offline. What rests on what:
- that the chart's default output is the plain manifests of deploy/ (one install, two ways),
  on Helm's renderer and kubectl's kustomize;
- that every rendered built-in object is valid, on the Kubernetes OpenAPI schemas that
  kubernetes-validate bundles (as tests/test_deploy.py does for deploy/);
- that the Roles are autoscaler/rbac.py's for the same config, and that the rendered config
  loads, on the daemon's own CLI (`autoscaler rbac`, `autoscaler check-config`).
Installing the chart against a real API server is the control plane's test.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.support.controlplane import binary
from tests.test_deploy import DEPLOY, KUBERNETES_VERSION, _kustomize

CHART = DEPLOY / "chart" / "llm-autoscaler"
RELEASE = "llm-autoscaler"
NAMESPACE = "llm-autoscaler"
# The labels Helm's conventions add to every object's metadata (templates/_helpers.tpl); the
# plain manifests carry only app.kubernetes.io/name, the one the selectors use.
HELM_LABELS = {"app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "helm.sh/chart"}

Object = dict[str, Any]


@pytest.fixture(scope="session")
def helm() -> Path:
    return binary("helm")


def _render(helm: Path, tmp_path: Path, values: dict | None = None, *, release: str = RELEASE,
            namespace: str = NAMESPACE) -> list[Object]:
    command = [str(helm), "template", release, str(CHART), "--namespace", namespace]
    if values is not None:
        path = tmp_path / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        command += ["--values", str(path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def _render_fails(helm: Path, tmp_path: Path, values: dict) -> str:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    done = subprocess.run([str(helm), "template", RELEASE, str(CHART), "-n", NAMESPACE, "--values", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0, f"rendered without an error:\n{done.stdout[:2000]}"
    return done.stderr


def _key(obj: Object) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def _by_key(objects: list[Object]) -> dict[tuple[str, str, str], Object]:
    keyed = {_key(o): o for o in objects}
    assert len(keyed) == len(objects), "two objects share a kind, namespace and name"
    return keyed


def _plain(obj: Object) -> Object:
    """The object as deploy/ writes it: without Helm's labels. The config stays text, its
    comments included: the chart's default is deploy/configmap.yaml's, line for line."""
    obj = copy.deepcopy(obj)
    labels = obj["metadata"].get("labels", {})
    for label in HELM_LABELS:
        labels.pop(label, None)
    return obj


def _config_values(config: dict) -> dict:
    """A release's values with its own config: YAML text, as --set-file config=FILE gives."""
    return {"config": yaml.safe_dump(config, sort_keys=False)}


def _default_config() -> dict:
    return yaml.safe_load(yaml.safe_load((CHART / "values.yaml").read_text())["config"])


def _two_namespace_config() -> dict:
    """The shipped config with its batch model moved to a second namespace, `batch`."""
    config = _default_config()
    for model in config["models"]:
        if model["name"] == "llama-8b-batch":
            model["namespace"] = "batch"
    return config


def _pod(objects: list[Object]) -> Object:
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    return deployment["spec"]["template"]


def _validate(objects: list[Object]) -> None:
    for obj in objects:
        group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
        if "." in group and not group.endswith(".k8s.io"):
            continue  # a CRD's object (the ServiceMonitor): checked by hand where rendered
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def _check_config(configmap: Object, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "configmap.yaml"
    path.write_text(yaml.safe_dump(configmap))
    return subprocess.run([sys.executable, "-m", "autoscaler.cli", "check-config", str(path)],
                          capture_output=True, text=True, timeout=60)


# -- lint -----------------------------------------------------------------------------------


@pytest.mark.parametrize("values", [
    None,
    {"rbac": {"watchScope": "cluster"}, "prometheus": {"operator": {"serviceMonitor": {"enabled": True}}}},
], ids=["default", "cluster-scope-and-servicemonitor"])
def test_helm_lint_passes_strictly(helm: Path, tmp_path: Path, values: dict | None) -> None:
    command = [str(helm), "lint", "--strict", str(CHART)]
    if values is not None:
        (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
        command += ["--values", str(tmp_path / "values.yaml")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


# -- the default output is deploy/ ----------------------------------------------------------


def test_the_default_output_is_the_kustomization_but_the_namespace(helm: Path, tmp_path: Path) -> None:
    """`helm install` with the defaults and `kubectl apply -k deploy/` create the same objects,
    field for field once Helm's four labels are set aside; the Namespace is Helm's own
    (--create-namespace), not the chart's."""
    chart = _by_key([_plain(o) for o in _render(helm, tmp_path)])
    plain = _by_key([_plain(o) for o in _kustomize(DEPLOY) if o["kind"] != "Namespace"])
    assert sorted(chart) == sorted(plain)
    for key, obj in plain.items():
        assert chart[key] == obj, f"{key}: the chart and deploy/ differ"


def test_every_default_object_carries_helms_labels(helm: Path, tmp_path: Path) -> None:
    for obj in _render(helm, tmp_path):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm", _key(obj)
        assert labels["app.kubernetes.io/name"] == "llm-autoscaler", _key(obj)


def test_cluster_scope_renders_deploys_cluster_watch_rbac_and_passes_the_flag(helm: Path, tmp_path: Path) -> None:
    objects = _render(helm, tmp_path, {"rbac": {"watchScope": "cluster"}})
    _validate(objects)
    chart = _by_key([_plain(o) for o in objects])
    opt_in = [_plain(o) for o in yaml.safe_load_all((DEPLOY / "rbac-cluster-watch.yaml").read_text()) if o]
    for obj in opt_in:
        assert chart[_key(obj)] == obj
    command = _pod(objects)["spec"]["containers"][0]["command"]
    assert command[command.index("--watch-scope") + 1] == "cluster"
    default = _render(helm, tmp_path)
    assert "--watch-scope" not in _pod(default)["spec"]["containers"][0]["command"]
    assert not [o for o in default if o["metadata"]["name"].endswith("-watch")]


def test_service_monitor_on_scrapes_the_pods_metrics_port(helm: Path, tmp_path: Path) -> None:
    objects = _render(helm, tmp_path, {"prometheus": {"operator": {"serviceMonitor": {
        "enabled": True, "interval": "15s", "additionalLabels": {"release": "prometheus"}}}}})
    _validate(objects)
    (service,) = [o for o in objects if o["kind"] == "Service"]
    (monitor,) = [o for o in objects if o["kind"] == "ServiceMonitor"]
    pod = _pod(objects)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    # ServiceMonitor -> Service -> pods, each by labels, and the port by name.
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {"port": "metrics", "path": "/metrics", "interval": "15s"}
    (port,) = service["spec"]["ports"]
    assert port["name"] == "metrics"
    assert port["targetPort"] in {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
    assert not [o for o in _render(helm, tmp_path) if o["kind"] in ("Service", "ServiceMonitor")]


# -- managed namespaces ---------------------------------------------------------------------


def test_two_namespaces_get_the_roles_autoscaler_rbac_prints(helm: Path, tmp_path: Path) -> None:
    """One definition of a managed namespace's rights (autoscaler/rbac.py): the chart's Roles
    for a config over two namespaces are the ones `autoscaler rbac` prints for it, each
    writing only that namespace's targets, and bound to the release's ServiceAccount."""
    config = _two_namespace_config()
    objects = _render(helm, tmp_path, _config_values(config), release="ops", namespace="platform")
    _validate(objects)
    managed = [_plain(o) for o in objects if o["kind"] in ("Role", "RoleBinding") and not o["metadata"]["name"].endswith("-home")]
    assert sorted({o["metadata"]["namespace"] for o in managed}) == ["batch", "ml"]

    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    out = subprocess.run([sys.executable, "-m", "autoscaler.cli", "rbac", str(tmp_path / "config.yaml")],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    printed = [d for d in yaml.safe_load_all(out) if d]
    # autoscaler rbac names the objects and the subject after the plain install's defaults.
    for obj in printed:
        obj["metadata"]["name"] = "ops-llm-autoscaler"
        if obj["kind"] == "RoleBinding":
            obj["roleRef"]["name"] = "ops-llm-autoscaler"
            obj["subjects"] = [{"kind": "ServiceAccount", "name": "ops-llm-autoscaler", "namespace": "platform"}]
    assert sorted(managed, key=_key) == sorted(printed, key=_key)

    roles = {o["metadata"]["namespace"]: o for o in managed if o["kind"] == "Role"}
    writes = {ns: sorted(n for r in role["rules"] for n in r.get("resourceNames", [])) for ns, role in roles.items()}
    assert writes == {"batch": ["llama-8b-batch"], "ml": ["llama-8b-chat", "qwen-7b-tail"]}
    (home,) = [o for o in objects if o["kind"] == "RoleBinding" and o["metadata"]["name"].endswith("-home")]
    assert home["metadata"]["namespace"] == "platform"
    assert home["subjects"] == [{"kind": "ServiceAccount", "name": "ops-llm-autoscaler", "namespace": "platform"}]


def test_no_node_selector_pool_no_nodes_clusterrole(helm: Path, tmp_path: Path) -> None:
    config = _default_config()
    config.pop("pools")
    for model in config["models"]:
        model.pop("pool", None)
    objects = _render(helm, tmp_path, _config_values(config))
    assert not [o for o in objects if o["kind"].startswith("Cluster")]
    assert [o for o in _render(helm, tmp_path) if o["kind"] == "ClusterRole"]


# -- the config as values -------------------------------------------------------------------


@pytest.mark.parametrize("config", [_default_config(), _two_namespace_config()], ids=["default", "two-namespaces"])
def test_the_rendered_configmap_passes_check_config(helm: Path, tmp_path: Path, config: dict) -> None:
    (configmap,) = [o for o in _render(helm, tmp_path, _config_values(config)) if o["kind"] == "ConfigMap"]
    done = _check_config(configmap, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    for model in config["models"]:
        assert model["name"] in done.stdout


def test_a_bad_config_in_values_renders_and_check_config_names_the_field(helm: Path, tmp_path: Path) -> None:
    """Helm does not know the daemon's schema; check-config on the rendered ConfigMap does,
    before the daemon rejects it at its next tick."""
    config = _default_config()
    config["models"][0]["policy"]["max_replicas"] = -1
    (configmap,) = [o for o in _render(helm, tmp_path, _config_values(config)) if o["kind"] == "ConfigMap"]
    done = _check_config(configmap, tmp_path)
    assert done.returncode != 0
    assert "max_replicas" in done.stdout + done.stderr


# -- the other values -----------------------------------------------------------------------


def test_image_replicas_resources_and_security_come_from_values(helm: Path, tmp_path: Path) -> None:
    objects = _render(helm, tmp_path, {
        "image": {"repository": "registry.example.com/llm-autoscaler", "tag": "1.2.3", "pullPolicy": "Always"},
        "replicaCount": 3,
        "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                            "runAsUser": 20000, "capabilities": {"drop": ["ALL"]}},
        "metricsPort": 9100,
        "nodeSelector": {"kubernetes.io/os": "linux"},
    })
    _validate(objects)
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert deployment["spec"]["replicas"] == 3
    assert container["image"] == "registry.example.com/llm-autoscaler:1.2.3"
    assert container["imagePullPolicy"] == "Always"
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "512Mi"}
    assert container["securityContext"]["runAsUser"] == 20000
    assert container["ports"] == [{"name": "metrics", "containerPort": 9100}]
    assert container["command"][container["command"].index("--metrics-port") + 1] == "9100"
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9100"
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}


def test_one_replica_without_leader_election_runs_without_the_flag(helm: Path, tmp_path: Path) -> None:
    objects = _render(helm, tmp_path, {"replicaCount": 1, "leaderElection": {"enabled": False}})
    assert "--leader-elect" not in _pod(objects)["spec"]["containers"][0]["command"]


@pytest.mark.parametrize(("values", "message"), [
    ({"replicaCount": 2, "leaderElection": {"enabled": False}}, "replicaCount 2 needs leaderElection.enabled"),
    # values.schema.json: a value of the wrong kind, or a misspelt key, is named by its path.
    ({"rbac": {"watchScope": "everywhere"}}, "at '/rbac/watchScope': value must be one of 'namespaces', 'cluster'"),
    ({"replicaCnt": 3}, "additional properties 'replicaCnt' not allowed"),
    ({"metricsPort": 99999}, "at '/metricsPort'"),
    ({"config": {"models": []}}, "at '/config': got object, want string"),
    # The templates: what a schema cannot say.
    ({"serviceAccount": {"create": False}}, "serviceAccount.name"),
    ({"config": "models: [\n"}, "config: not a YAML mapping"),
], ids=["replicas-without-leader-election", "unknown-watch-scope", "misspelt-key", "port-out-of-range", "config-as-a-map",
        "no-service-account-name", "config-not-yaml"])
def test_values_that_cannot_work_fail_to_render_naming_the_value(helm: Path, tmp_path: Path, values: dict, message: str) -> None:
    assert message in _render_fails(helm, tmp_path, values)


def test_an_existing_service_account_is_used_and_not_created(helm: Path, tmp_path: Path) -> None:
    objects = _render(helm, tmp_path, {"serviceAccount": {"create": False, "name": "mine"}})
    assert not [o for o in objects if o["kind"] == "ServiceAccount"]
    assert _pod(objects)["spec"]["serviceAccountName"] == "mine"
    for binding in (o for o in objects if o["kind"].endswith("RoleBinding")):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "mine", "namespace": NAMESPACE}]

"""The shipped manifests are fixtures (STYLE.md, habit 7). Every YAML document under deploy/
loads; every built-in object validates against the Kubernetes OpenAPI schema bundled with
kubernetes-validate (offline); and the pieces agree with each other and with the daemon: the
ConfigMap's config parses, its targets exist in deploy/examples, and RBAC grants exactly the
calls autoscaler/targets/kubernetes.py makes, in exactly the configured namespaces.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from autoscaler.config import Config, parse_config
from autoscaler.metrics.promql import build_queries
from tests.support.prom_harness import find_binary

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
EXAMPLES = DEPLOY / "examples"
DASHBOARD = DEPLOY / "dashboards" / "llm-autoscaler.json"
# Manifests of deploy/ that `kubectl apply -k deploy/` leaves out on purpose (kustomization.yaml
# says why): the cluster-wide watch RBAC, only for --watch-scope cluster, and the examples.
OPT_IN = {"rbac-cluster-watch.yaml"}

# The Kubernetes minor whose schemas the built-in objects must satisfy. kubernetes-validate
# ships one schema set per minor (1.37.0 of the package: up to 1.37); 1.34 is a recent release
# that current managed clusters offer. strict=True also rejects fields the API does not know,
# so a misspelt or misplaced key fails here instead of being dropped by the API server.
KUBERNETES_VERSION = "1.34"

DAEMON_NAMESPACE = "llm-autoscaler"
DAEMON_NAME = "llm-autoscaler"
CONFIGMAP_NAME = "llm-autoscaler-config"
CONFIG_KEY = "config.yaml"

# What the daemon may do in a managed namespace, and nothing more: a rule added or widened in
# rbac.yaml fails test_role_grants_exactly_the_expected_rules until it is added here too.
# (group, resource, verb, resourceNames); an empty resourceNames is every name.
# Writes only by name: the targets of deploy/configmap.yaml (autoscaler/rbac.py).
EXPECTED_RULES = frozenset(
    {("apps", "deployments", verb, ()) for verb in ("list", "watch")}
    | {("apps", "replicasets", "list", ())}
    | {("apps", "deployments/scale", verb, ("llama-8b-batch", "llama-8b-chat")) for verb in ("get", "patch")}
    | {("keda.sh", "scaledobjects", verb, ()) for verb in ("list", "watch")}
    | {("keda.sh", "scaledobjects", verb, ("qwen-7b-tail",)) for verb in ("get", "patch")}
    | {("autoscaling", "horizontalpodautoscalers", verb, ()) for verb in ("list", "watch")}
    | {("", "events", "create", ())}
)
# In the daemon's own namespace: its Lease and its state ConfigMap, by name.
HOME_RULES = frozenset(
    {("coordination.k8s.io", "leases", "create", ()), ("", "configmaps", "create", ())}
    | {("coordination.k8s.io", "leases", verb, ("llm-autoscaler",)) for verb in ("get", "patch")}
    | {("", "configmaps", verb, ("llm-autoscaler-state",)) for verb in ("get", "patch")}
)
HOME_ROLE = "llm-autoscaler-home"
# Cluster-wide, by ClusterRole: GPU pools with a node_selector list the nodes (autoscaler/nodes.py,
# rbac.yaml); and, only with --watch-scope cluster, the watch cache lists and watches the three
# kinds it reads in every namespace (rbac-cluster-watch.yaml).
EXPECTED_CLUSTER_RULES = {
    "llm-autoscaler-nodes": frozenset({("", "nodes", "list", ())}),
    "llm-autoscaler-watch": frozenset(
        {("apps", "deployments", verb, ()) for verb in ("list", "watch")}
        | {("keda.sh", "scaledobjects", verb, ()) for verb in ("list", "watch")}
        | {("autoscaling", "horizontalpodautoscalers", verb, ()) for verb in ("list", "watch")}
    ),
}

# Fields of a ScaledObject's spec (KEDA 2.x, keda.sh/v1alpha1): the CRD is not among the
# bundled schemas, so a typo would otherwise go unnoticed until `kubectl apply`.
SCALEDOBJECT_SPEC_FIELDS = {
    "scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod", "idleReplicaCount",
    "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers",
}


@dataclass(frozen=True)
class Document:
    path: Path
    index: int
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.body.get("kind", "")

    @property
    def name(self) -> str:
        return self.body.get("metadata", {}).get("name", "")

    @property
    def namespace(self) -> str | None:
        return self.body.get("metadata", {}).get("namespace")

    @property
    def in_examples(self) -> bool:
        return EXAMPLES in self.path.parents

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(DEPLOY)}#{self.index}:{self.kind}/{self.name}"


CHART = DEPLOY / "chart"


def _yaml_files() -> list[Path]:
    """Every manifest under deploy/: the YAML files but kustomize's own and the Helm chart's
    (templates, not manifests: tests/test_chart.py renders and checks them)."""
    return sorted(
        p for p in DEPLOY.rglob("*")
        if p.suffix in (".yaml", ".yml") and p.is_file() and p.name != "kustomization.yaml" and CHART not in p.parents
    )


def _documents() -> list[Document]:
    """Every non-empty document of every file that parses; test_yaml_file_loads reports the
    others, so one broken file does not stop the rest from being checked."""
    documents = []
    for path in _yaml_files():
        try:
            bodies = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError:
            continue
        documents += [Document(path, i, body) for i, body in enumerate(bodies) if body is not None]
    return documents


DOCUMENTS = _documents()


def _is_built_in(body: dict[str, Any]) -> bool:
    """The core group (apiVersion v1) and the groups Kubernetes serves itself: apps, batch,
    policy, *.k8s.io. A group with a dot outside k8s.io belongs to a CRD."""
    api_version = body.get("apiVersion", "")
    if "/" not in api_version:
        return True
    group = api_version.split("/", 1)[0]
    return "." not in group or group.endswith(".k8s.io")


def _find(kind: str, *, examples: bool | None = None) -> list[Document]:
    return [d for d in DOCUMENTS if d.kind == kind and (examples is None or d.in_examples == examples)]


def _one(kind: str, name: str, namespace: str, *, examples: bool | None = None) -> Document:
    found = [d for d in _find(kind, examples=examples) if d.name == name and d.namespace == namespace]
    assert len(found) == 1, f"expected one {kind} {namespace}/{name} under deploy/, found {[d.id for d in found]}"
    return found[0]


@pytest.fixture(scope="module")
def config() -> Config:
    configmap = _one("ConfigMap", CONFIGMAP_NAME, DAEMON_NAMESPACE, examples=False)
    return parse_config(yaml.safe_load(configmap.body["data"][CONFIG_KEY]), source=f"{configmap.id} data.{CONFIG_KEY}")


@pytest.fixture(scope="module")
def daemon_pod() -> dict[str, Any]:
    return _one("Deployment", DAEMON_NAME, DAEMON_NAMESPACE, examples=False).body["spec"]["template"]["spec"]


def _walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


# -- every document loads and validates ---------------------------------------------------


def test_deploy_holds_the_expected_files() -> None:
    """Guards the globbing below: a wrong path would make every parametrized test vacuous."""
    names = {str(p.relative_to(DEPLOY)) for p in _yaml_files()}
    expected = {
        "namespace.yaml", "serviceaccount.yaml", "rbac.yaml", "rbac-cluster-watch.yaml", "configmap.yaml", "deployment.yaml",
        "examples/vllm-deployment.yaml", "examples/keda-scaledobject.yaml",
    }
    assert expected <= names
    assert (DEPLOY / "Dockerfile").is_file()


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_file_loads(path: Path) -> None:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert documents, f"{path} holds no document"
    for document in documents:
        assert isinstance(document, dict), f"{path}: a document is a {type(document).__name__}, not a mapping"
        assert {"apiVersion", "kind", "metadata"} <= document.keys(), f"{path}: {document.get('kind')} lacks apiVersion/kind/metadata"


@pytest.mark.parametrize("document", [d for d in DOCUMENTS if _is_built_in(d.body)], ids=lambda d: d.id)
def test_built_in_object_validates_against_the_kubernetes_schema(document: Document) -> None:
    try:
        version = kubernetes_validate.validate(document.body, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        # Reported outside the except block: the chained error would print the whole schema.
        error = err
    else:
        assert version == KUBERNETES_VERSION
        return
    where = ".".join(str(part) for part in error.path) or "(top level)"
    pytest.fail(f"{document.id} is not a valid Kubernetes {KUBERNETES_VERSION} object: {where}: {error.message}")


def test_every_custom_resource_is_checked_by_hand() -> None:
    """The schema test skips CRDs; the only one shipped is the ScaledObject, checked below."""
    custom = {(d.body["apiVersion"], d.kind) for d in DOCUMENTS if not _is_built_in(d.body)}
    assert custom == {("keda.sh/v1alpha1", "ScaledObject")}


@pytest.mark.parametrize("document", _find("ScaledObject"), ids=lambda d: d.id)
def test_scaled_object_shape(document: Document, config: Config) -> None:
    body = document.body
    assert body["apiVersion"] == "keda.sh/v1alpha1"
    assert document.name and document.namespace, "a ScaledObject is namespaced and named"
    spec = body["spec"]
    assert set(spec) <= SCALEDOBJECT_SPEC_FIELDS, f"unknown spec fields: {sorted(set(spec) - SCALEDOBJECT_SPEC_FIELDS)}"

    ref = spec["scaleTargetRef"]
    assert ref.get("kind", "Deployment") == "Deployment"
    assert ref.get("apiVersion", "apps/v1") == "apps/v1"
    _one("Deployment", ref["name"], document.namespace, examples=True)

    minimum, maximum = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
    assert isinstance(minimum, int) and isinstance(maximum, int) and 0 <= minimum <= maximum

    triggers = spec["triggers"]
    assert isinstance(triggers, list) and triggers, "a ScaledObject needs at least one trigger"
    for trigger in triggers:
        metadata = trigger["metadata"]
        assert trigger["type"] and isinstance(metadata, dict)
        # KEDA's trigger metadata is map[string]string: a bare 5 fails the CRD's validation.
        for key in ("threshold", "activationThreshold"):
            if key in metadata:
                assert isinstance(metadata[key], str), f"{key} must be a quoted string, got {metadata[key]!r}"
        if trigger["type"] == "prometheus":
            assert metadata["threshold"] and metadata["query"]
            assert metadata["serverAddress"] == config.prometheus.url, "KEDA and the daemon read different Prometheus servers"


# -- the config and its targets -----------------------------------------------------------


def test_configmap_config_parses(config: Config) -> None:
    assert config.models


def test_every_model_target_is_defined_in_the_examples(config: Config) -> None:
    for model in config.models:
        _one(model.target.kind, model.target.name, model.namespace, examples=True)


def test_no_deployment_target_is_owned_by_a_scaled_object(config: Config) -> None:
    """The daemon refuses to scale such a Deployment: KEDA's HPA would undo the write."""
    owned = {(d.namespace, d.body["spec"]["scaleTargetRef"]["name"]) for d in _find("ScaledObject")}
    for model in config.models:
        if model.target.kind == "Deployment":
            assert (model.namespace, model.target.name) not in owned, f"{model.name}: target it through its ScaledObject"


def test_vllm_serves_each_model_under_its_label(config: Config) -> None:
    """The daemon matches vLLM's series by model_name, which vLLM sets from --served-model-name."""
    for model in config.models:
        deployment = _one(model.target.kind, model.target.name, model.namespace, examples=True)
        if deployment.kind == "ScaledObject":
            ref = deployment.body["spec"]["scaleTargetRef"]["name"]
            deployment = _one("Deployment", ref, model.namespace, examples=True)
        args = [a for c in deployment.body["spec"]["template"]["spec"]["containers"] for a in c.get("args", [])]
        assert f"--served-model-name={model.label_value}" in args, f"{model.name}: vLLM would label its series differently"


def test_every_shipped_promql_query_parses(config: Config, tmp_path: Path) -> None:
    """The queries the daemon builds from the config (which embed its saturation and wake
    queries) and the KEDA triggers' queries, parsed by promtool as recording rules: a PromQL
    typo would otherwise surface only as "missing data" in the daemon's log, every tick."""
    promtool = find_binary("promtool")  # raises with install advice; ./dev test installs it
    queries = {f"daemon_{q.signal}": q.promql for q in build_queries(config)}
    for document in _find("ScaledObject"):
        for i, trigger in enumerate(document.body["spec"]["triggers"]):
            if trigger["type"] == "prometheus":
                queries[f"keda_{document.name.replace('-', '_')}_{i}"] = trigger["metadata"]["query"]
    rules = {"groups": [{"name": "deploy", "rules": [{"record": name, "expr": expr} for name, expr in queries.items()]}]}
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    checked = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


# -- the daemon's Deployment --------------------------------------------------------------


def test_daemon_runs_non_root_with_a_read_only_root(daemon_pod: dict[str, Any]) -> None:
    pod_security = daemon_pod.get("securityContext", {})
    for container in daemon_pod["containers"]:
        security = {**pod_security, **container.get("securityContext", {})}
        assert security.get("runAsNonRoot") is True
        assert security.get("runAsUser") == 10001
        assert security.get("readOnlyRootFilesystem") is True
        assert security.get("allowPrivilegeEscalation") is False
        assert security.get("privileged", False) is False
        assert security.get("capabilities", {}).get("drop") == ["ALL"]
        assert not security.get("capabilities", {}).get("add")
        assert security.get("seccompProfile", {}).get("type") == "RuntimeDefault"


def test_daemon_has_requests_and_limits(daemon_pod: dict[str, Any]) -> None:
    for container in daemon_pod["containers"]:
        resources = container.get("resources", {})
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= resources.get(bound, {}).keys(), f"{container['name']}: {bound} lacks cpu or memory"


def test_daemon_reads_its_config_from_the_configmap(daemon_pod: dict[str, Any]) -> None:
    volumes = {v["name"]: v for v in daemon_pod["volumes"]}
    (container,) = daemon_pod["containers"]
    command = container["command"] + container.get("args", [])
    config_path = Path(command[command.index("--config") + 1])
    mounts = [m for m in container["volumeMounts"] if volumes[m["name"]].get("configMap", {}).get("name") == CONFIGMAP_NAME]
    assert len(mounts) == 1, "the ConfigMap must be mounted once"
    assert config_path.parent == Path(mounts[0]["mountPath"])
    assert config_path.name == CONFIG_KEY
    assert CONFIG_KEY in _one("ConfigMap", CONFIGMAP_NAME, DAEMON_NAMESPACE).body["data"]
    assert command[:2] == ["autoscaler", "run"]


def test_daemon_runs_two_replicas_that_elect_a_leader(daemon_pod: dict[str, Any]) -> None:
    """Two copies act safely only through the Lease: --leader-elect, and each pod's own name as
    its identity (two pods sharing one would both believe they lead)."""
    deployment = _one("Deployment", DAEMON_NAME, DAEMON_NAMESPACE, examples=False).body["spec"]
    assert deployment["replicas"] == 2
    container = daemon_pod["containers"][0]
    assert "--leader-elect" in container["command"]
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in container["env"]}
    assert env["POD_NAME"] == "metadata.name" and env["POD_NAMESPACE"] == "metadata.namespace"
    assert daemon_pod["serviceAccountName"] == DAEMON_NAME
    assert daemon_pod["automountServiceAccountToken"] is True
    _one("ServiceAccount", DAEMON_NAME, DAEMON_NAMESPACE, examples=False)
    _one("Namespace", DAEMON_NAMESPACE, None, examples=False)


def test_image_user_matches_the_pod(daemon_pod: dict[str, Any]) -> None:
    users = [line.split()[1] for line in (DEPLOY / "Dockerfile").read_text().splitlines() if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] == str(daemon_pod["securityContext"]["runAsUser"])


# -- RBAC: least privilege, namespace-scoped ------------------------------------------------


def _rules(role: Document) -> set[tuple[str, str, str, tuple[str, ...]]]:
    granted = set()
    for rule in role.body.get("rules", []):
        assert not rule.get("nonResourceURLs"), f"{role.id}: nonResourceURLs are cluster-scoped"
        names = tuple(sorted(rule.get("resourceNames", [])))
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for verb in rule.get("verbs", []):
                    granted.add((group, resource, verb, names))
    return granted


def test_cluster_wide_rbac_lists_nodes_and_with_cluster_scope_reads_the_two_kinds_watched() -> None:
    roles = {role.name: role for role in _find("ClusterRole")}
    assert set(roles) == set(EXPECTED_CLUSTER_RULES)
    for name, role in roles.items():
        assert _rules(role) == EXPECTED_CLUSTER_RULES[name], f"{role.id}: {sorted(_rules(role))}"
    assert (DEPLOY / "rbac-cluster-watch.yaml") == roles["llm-autoscaler-watch"].path  # apart: only with that scope
    bindings = {binding.name: binding for binding in _find("ClusterRoleBinding")}
    assert set(bindings) == set(roles)
    for name, binding in bindings.items():
        assert binding.body["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name}
        assert binding.body["subjects"] == [{"kind": "ServiceAccount", "name": DAEMON_NAME, "namespace": DAEMON_NAMESPACE}]


def test_no_wildcards_in_rbac() -> None:
    for document in _find("Role") + _find("RoleBinding") + _find("ClusterRole") + _find("ClusterRoleBinding"):
        wild = [v for v in _walk(document.body) if isinstance(v, str) and "*" in v]
        assert not wild, f"{document.id}: {wild}"


@pytest.mark.parametrize("role", _find("Role"), ids=lambda d: d.id)
def test_role_grants_exactly_the_expected_rules(role: Document) -> None:
    granted = _rules(role)
    expected = HOME_RULES if role.name == HOME_ROLE else EXPECTED_RULES
    assert granted == expected, f"{role.id}: extra {sorted(granted - expected)}, missing {sorted(expected - granted)}"


def test_the_home_role_is_bound_in_the_daemons_namespace_only() -> None:
    role = _one("Role", HOME_ROLE, DAEMON_NAMESPACE, examples=False)
    binding = _one("RoleBinding", HOME_ROLE, DAEMON_NAMESPACE, examples=False).body
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role.name}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": DAEMON_NAME, "namespace": DAEMON_NAMESPACE}]


def test_rbac_exists_exactly_in_the_configured_namespaces(config: Config) -> None:
    roles = {d.namespace: d for d in _find("Role", examples=False) if d.name != HOME_ROLE}
    bindings = {d.namespace: d for d in _find("RoleBinding", examples=False) if d.name != HOME_ROLE}
    assert set(roles) == set(config.namespaces), "a Role per namespace that models live in, and nowhere else"
    assert set(bindings) == set(config.namespaces)
    for namespace in config.namespaces:
        binding = bindings[namespace].body
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": roles[namespace].name
        }
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": DAEMON_NAME, "namespace": DAEMON_NAMESPACE}]


def test_the_managed_roles_are_what_autoscaler_rbac_prints_for_the_shipped_config(config: Config) -> None:
    """One definition: the Roles of rbac.yaml are autoscaler/rbac.py's for configmap.yaml."""
    shipped = [d.body for d in _find("Role", examples=False) + _find("RoleBinding", examples=False) if d.name != HOME_ROLE]
    out = subprocess.run([sys.executable, "-m", "autoscaler.cli", "rbac", str(DEPLOY / "configmap.yaml")],
                         capture_output=True, text=True, check=True).stdout
    printed = [d for d in yaml.safe_load_all(out) if d]
    key = lambda d: (d["kind"], d["metadata"]["namespace"])  # noqa: E731
    assert sorted(shipped, key=key) == sorted(printed, key=key)


def test_the_grafana_dashboard_queries_only_metrics_the_daemon_exports() -> None:
    """Every llm_autoscaler_* series a panel queries exists in the daemon's registry, so a
    renamed metric cannot leave a panel silently empty."""
    import json
    import re

    from autoscaler.clock import ManualClock
    from autoscaler.telemetry import Telemetry

    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    expressions += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    queried = {name for expr in expressions for name in re.findall(r"llm_autoscaler_\w+", expr)}
    registry = Telemetry(clock=ManualClock(), interval_s=10.0).registry
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}
    exported = {family.name + suffix for family in registry.collect() for suffix in suffixes[family.type]}
    assert queried and queried <= exported, f"not exported: {sorted(queried - exported)}"
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


# -- kubectl apply -k deploy/ -----------------------------------------------------------------


def _kustomization(folder: Path) -> dict[str, Any]:
    return yaml.safe_load((folder / "kustomization.yaml").read_text())


def test_the_kustomization_lists_every_manifest_of_deploy_but_the_opt_in_ones() -> None:
    """`kubectl apply -k deploy/` installs the daemon: each listed file exists, and each manifest
    beside it is listed or named in OPT_IN, so a new manifest cannot be left out unnoticed."""
    kustomization = _kustomization(DEPLOY)
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and kustomization["kind"] == "Kustomization"
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    assert all((DEPLOY / name).is_file() for name in listed), [name for name in listed if not (DEPLOY / name).is_file()]
    beside = {str(p.relative_to(DEPLOY)) for p in _yaml_files() if p.parent == DEPLOY}
    assert set(listed) == beside - OPT_IN
    assert OPT_IN <= beside
    # Nothing that is not a manifest in the folder kustomize reads: a JSON file there once made
    # `kubectl apply -f deploy/` fail.
    # The image's files beside them are not manifests, and kubectl reads only .yaml, .yml and .json.
    assert {p.name for p in DEPLOY.iterdir() if p.is_file()} == beside | {"kustomization.yaml", "Dockerfile", "requirements.lock"}


def _kubectl() -> str:
    import shutil

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise RuntimeError("kubectl not found on PATH; ./dev test installs Debian's kubernetes-client when it is missing")
    return kubectl


def _kustomize(folder: Path) -> list[dict[str, Any]]:
    built = subprocess.run([_kubectl(), "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    return [d for d in yaml.safe_load_all(built.stdout) if d is not None]


def _key(body: dict[str, Any]) -> tuple[str, str | None, str]:
    return body["kind"], body["metadata"].get("namespace"), body["metadata"]["name"]


def test_kubectl_kustomize_renders_exactly_the_listed_manifests() -> None:
    """kubectl's own kustomize (no cluster needed) builds deploy/ into the objects of the
    listed files, unchanged, the Namespace first; so the tests above, which read the files,
    check what `kubectl apply -k deploy/` sends."""
    rendered = _kustomize(DEPLOY)
    listed = [d.body for d in DOCUMENTS if d.path.parent == DEPLOY and d.path.name in _kustomization(DEPLOY)["resources"]]
    assert sorted(map(_key, rendered)) == sorted(map(_key, listed))
    assert {_key(d): d for d in rendered} == {_key(d): d for d in listed}
    assert rendered[0]["kind"] == "Namespace"


def test_the_dashboard_kustomization_wraps_the_dashboard_for_grafanas_sidecar() -> None:
    (configmap,) = _kustomize(DASHBOARD.parent)
    assert _key(configmap) == ("ConfigMap", "monitoring", "llm-autoscaler-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["data"] == {DASHBOARD.name: DASHBOARD.read_text()}


def test_the_shipped_configmap_is_a_config_the_cli_reads_as_it_is(tmp_path: Path) -> None:
    """The README's `run --config` and `check-config` examples use deploy/configmap.yaml: the
    loader reads its data.config.yaml, the same config the daemon gets mounted."""
    from autoscaler.config import load_config

    configmap = _one("ConfigMap", CONFIGMAP_NAME, DAEMON_NAMESPACE, examples=False)
    assert load_config(configmap.path) == parse_config(yaml.safe_load(configmap.body["data"][CONFIG_KEY]))
    checked = subprocess.run(
        [sys.executable, "-m", "autoscaler.cli", "check-config", str(configmap.path)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith(f"# {configmap.path} data.{CONFIG_KEY}: valid, 3 model(s)")

"""deploy/rbac.yaml, and the Roles `autoscaler rbac` prints (autoscaler/rbac.py), against the
calls the daemon really makes. The daemon runs as a process with
leader election and state, against the real Prometheus and the kmock API emulator, with a
Deployment target and ScaledObject targets in pin and bounds mode, all in a GPU pool read from
the nodes, one of them mid-rollout; the conflict paths that re-read an object run in-process. Every request kmock received is mapped to the RBAC check the
API server would make, and must be allowed by the Roles (the home Role of rbac.yaml, and the
managed namespace's Role for this test's config, narrowed to its targets); every rule must be
used by a call.

kmock enforces no RBAC itself: this test is the check."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import yaml

from autoscaler.config import Config
from autoscaler.controller import Controller
from autoscaler.metrics.prometheus import PrometheusSource
from autoscaler.targets.events import EventSender
from autoscaler.rbac import managed_rules
from autoscaler.targets.kubernetes import KubernetesTargets
from autoscaler.settings import WatchSettings
from autoscaler.targets.watching import WatchCache
from tests.builders import config, deployment, kubeconfig, model, node, scaled_object
from tests.support.kmock_harness import DEPLOYMENTS, SCALEDOBJECTS
from tests.support.prom_harness import unique_name, vllm_labels

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
HOME = "llm-autoscaler"
MANAGED_EXAMPLE = "ml"  # rbac.yaml's Role for managed namespaces is written for ml, and copied per namespace


class Check(NamedTuple):
    """What the API server authorizes: verb, group, resource[/subresource], name, namespace."""

    namespace: str
    group: str
    resource: str
    verb: str
    name: str | None


def check_of(request) -> Check:
    resource = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
    method = str(request.method).rsplit(".", 1)[-1].upper()
    if method == "GET":
        verb = "get" if request.name else ("watch" if request.params.get("watch") in ("true", "1") else "list")
    else:
        verb = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}[method]
    return Check(request.namespace, request.resource.group, resource, verb, request.name if verb != "create" else None)


def roles(file: str = "rbac.yaml") -> dict[str | None, list[dict]]:
    """The rules of deploy/rbac.yaml by namespace (the managed one under MANAGED_EXAMPLE), and
    the ClusterRoles' under None."""
    found: dict[str | None, list[dict]] = {}
    for document in yaml.safe_load_all((DEPLOY / file).read_text()):
        if document and document["kind"] in ("Role", "ClusterRole"):
            namespace = document["metadata"]["namespace"] if document["kind"] == "Role" else None
            found.setdefault(namespace, []).extend(document["rules"])
    return found


def allowing_rule(check: Check, rules: list[dict]) -> tuple | None:
    for rule in rules:
        names = rule.get("resourceNames")
        if (check.group in rule["apiGroups"] and check.resource in rule["resources"] and check.verb in rule["verbs"]
                and (not names or check.name in names)):
            return (check.group, check.resource, check.verb, tuple(names or ()))
    return None


def exercise(prometheus_stack, kmock_cluster, tmp_path: Path) -> tuple[str, Config]:
    """Run the daemon until it has done every kind of call; returns the managed namespace and
    the config."""
    exporter, prometheus = prometheus_stack
    ns = unique_name("ns")
    for name in ("chat", "pinned", "bounded"):
        exporter.set("vllm:num_requests_waiting", vllm_labels(name, ns), 30)
        exporter.set("vllm:num_requests_running", vllm_labels(name, ns), 16)
        kmock_cluster.put(deployment(name, namespace=ns, replicas=1))
    for name in ("pinned", "bounded"):
        kmock_cluster.put(scaled_object(f"{name}-so", deployment=name, namespace=ns))
    for index in range(2):
        kmock_cluster.put(node(f"gpu-{index}", gpus=8, labels={"pool": "a100"}))
    rolling = deployment("chat", namespace=ns, replicas=1)  # a new revision that no pod runs yet
    rolling["status"]["updatedReplicas"] = 0
    kmock_cluster.put(rolling)
    prometheus.wait_for(f'vllm:num_requests_running{{namespace="{ns}"}}', lambda r: len(r) == 3)
    models = [
        model("chat", namespace=ns, pool="a100"),
        model("pinned", namespace=ns, pool="a100", target={"kind": "ScaledObject", "name": "pinned-so", "mode": "pin"}),
        model("bounded", namespace=ns, pool="a100", target={"kind": "ScaledObject", "name": "bounded-so", "mode": "bounds"}),
    ]
    pools = [{"name": "a100", "node_selector": {"pool": "a100"}}]
    cfg_file, kube = tmp_path / "config.yaml", tmp_path / "kubeconfig"
    cfg_file.write_text(yaml.safe_dump({"prometheus": {"url": prometheus.url}, "tick_interval_s": 1, "models": models, "pools": pools}))
    kube.write_text(yaml.safe_dump(kubeconfig(kmock_cluster.url)))
    daemon = subprocess.Popen(
        [sys.executable, "-m", "autoscaler.cli", "run", "--config", str(cfg_file), "--kubeconfig", str(kube),
         "--metrics-port", "0", "--namespace", HOME, "--leader-elect", "--lease-duration-s", "3",
         "--renew-deadline-s", "2", "--retry-period-s", "0.5", "--api-connect-timeout-s", "0.3", "--api-read-timeout-s", "0.6"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not (kmock_cluster.requests("post", f"/api/v1/namespaces/{HOME}/configmaps")
                   and kmock_cluster.requests("patch", f"/apis/coordination.k8s.io/v1/namespaces/{HOME}/leases/*")
                   and kmock_cluster.requests("patch", f"/apis/keda.sh/v1alpha1/namespaces/{ns}/scaledobjects/*")
                   and kmock_cluster.requests("patch", f"/apis/apps/v1/namespaces/{ns}/deployments/*/scale")):
            assert time.monotonic() < deadline and daemon.poll() is None, "the daemon did not make every kind of call"
            time.sleep(0.1)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    finally:
        daemon.kill()

    # The paths that re-read an object after a 409 conflict, in-process.
    cfg = config(*models, prometheus={"url": prometheus.url}, pools=pools)
    kmock_cluster.put({**kmock_cluster.get(DEPLOYMENTS, ns, "chat"), "spec": {**kmock_cluster.get(DEPLOYMENTS, ns, "chat")["spec"], "replicas": 1}})
    pinned = kmock_cluster.get(SCALEDOBJECTS, ns, "pinned-so")
    kmock_cluster.put({**pinned, "metadata": {**pinned["metadata"], "annotations": {}}})
    kmock_cluster.fail_next("patch", f"/apis/apps/v1/namespaces/{ns}/deployments/chat/scale", 409)
    kmock_cluster.fail_next("patch", f"/apis/keda.sh/v1alpha1/namespaces/{ns}/scaledobjects/pinned-so", 409)
    cache = WatchCache(kmock_cluster.api_client)
    cache.follow(cfg.namespaces)
    try:
        assert cache.wait_synced(timeout_s=10)
        events = EventSender(kmock_cluster.api_client)
        targets = KubernetesTargets(cfg, kmock_cluster.api_client, cache=cache, events=events)
        Controller(cfg, metrics=PrometheusSource(cfg), targets=targets).tick(now=time.time())
        events.stop(timeout_s=5)
    finally:
        cache.stop()
    return ns, cfg


def test_every_call_the_daemon_makes_is_granted_and_every_grant_is_used(prometheus_stack, kmock_cluster, tmp_path):
    ns, cfg = exercise(prometheus_stack, kmock_cluster, tmp_path)
    granted = roles()
    granted[MANAGED_EXAMPLE] = managed_rules(cfg, ns)
    checks = {check_of(r) for r in kmock_cluster.requests()}
    used, denied = set(), []
    for check in sorted(checks, key=str):
        where = {HOME: HOME, ns: MANAGED_EXAMPLE, None: None}.get(check.namespace, "elsewhere")
        rule = allowing_rule(check, granted.get(where, []))
        if rule is None:
            denied.append(check)
        else:
            used.add((where, rule))
    assert not denied, f"calls the Roles do not allow: {denied}"
    every = {
        (namespace, (group, resource, verb, tuple(rule.get("resourceNames", ()))))
        for namespace, rules in granted.items()
        for rule in rules for group in rule["apiGroups"] for resource in rule["resources"] for verb in rule["verbs"]
    }
    assert every - used == set(), f"granted but never called: {sorted(every - used)}"
    # The run did reach every path it was meant to: a sanity floor for the two checks above.
    verbs = {(c.resource, c.verb) for c in checks}
    assert {("deployments/scale", "get"), ("scaledobjects", "get"), ("events", "create"), ("leases", "create"),
            ("nodes", "list"), ("replicasets", "list"), ("horizontalpodautoscalers", "watch")} <= verbs
    # Narrowed: another workload of the namespace is neither scaled nor repointed.
    rules = granted[MANAGED_EXAMPLE]
    assert allowing_rule(Check(ns, "keda.sh", "scaledobjects", "patch", "someone-elses-so"), rules) is None
    assert allowing_rule(Check(ns, "apps", "deployments/scale", "patch", "someone-else"), rules) is None
    assert allowing_rule(Check(ns, "keda.sh", "scaledobjects", "patch", "pinned-so"), rules) is not None


def test_the_cluster_watch_scope_makes_exactly_the_calls_of_its_cluster_role(kmock_cluster):
    """--watch-scope cluster: the cache's lists and watches are cluster-wide, all of them
    granted by deploy/rbac-cluster-watch.yaml, and all of its rules used. (The writes are the
    same in either scope, and checked above.)"""
    ns = unique_name("ns")
    kmock_cluster.put(deployment("chat", namespace=ns))
    kmock_cluster.put(scaled_object("tail-so", deployment="tail", namespace=ns))
    cache = WatchCache(kmock_cluster.api_client, settings=WatchSettings(watch_scope="cluster"))
    try:
        cache.follow([ns, "another"])
        assert cache.wait_synced(timeout_s=10)
        deadline = time.monotonic() + 10  # the watches start after the lists
        while len(kmock_cluster.requests("GET")) < 6:
            assert time.monotonic() < deadline, "the cache did not start its three watches"
            time.sleep(0.02)
    finally:
        cache.stop()
    (rules,) = roles("rbac-cluster-watch.yaml").values()
    checks = {check_of(r) for r in kmock_cluster.requests()}
    assert {c.namespace for c in checks} == {None}, "cluster-wide calls only"
    assert [c for c in checks if allowing_rule(c, rules) is None] == []
    granted = {(g, res, v) for rule in rules for g in rule["apiGroups"] for res in rule["resources"] for v in rule["verbs"]}
    assert granted == {(c.group, c.resource, c.verb) for c in checks}

"""Small builders shared by tests: configs, Deployments and ScaledObjects as the API serves them."""

from __future__ import annotations

from typing import Any

from autoscaler.config import Config, parse_config


def model(name: str, *, namespace: str = "ml", kind: str = "hot", target: dict | None = None, **extra: Any) -> dict:
    policy = {"kind": kind, "max_replicas": 10, "target_waiting_per_replica": 4, "target_running_per_replica": 16}
    policy.update(extra.pop("policy", {}))
    entry = {"name": name, "namespace": namespace, "target": target or {"kind": "Deployment", "name": name}, "policy": policy}
    if kind == "long-tail" and policy.get("min_replicas", 0) == 0:
        entry["wake_query"] = f'sum(rate(gateway_requests_total{{model="{name}"}}[1m]))'
    entry.update(extra)
    return entry


def config(*models: dict, **top: Any) -> Config:
    return parse_config({"models": list(models), **top})


def deployment(name: str, *, namespace: str = "ml", replicas: int = 1, ready: int | None = None, gpus: int = 1) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {"name": "vllm", "image": "vllm/vllm-openai", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}
                    ]
                },
            },
        },
        "status": {"replicas": replicas, "readyReplicas": replicas if ready is None else ready},
    }


def scaled_object(name: str, *, deployment: str, namespace: str = "ml", annotations: dict | None = None) -> dict:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
        "spec": {
            "scaleTargetRef": {"name": deployment},
            "minReplicaCount": 0,
            "maxReplicaCount": 10,
            "triggers": [{"type": "prometheus", "metadata": {"query": "sum(vllm:num_requests_waiting)", "threshold": "5"}}],
        },
    }


def horizontal_pod_autoscaler(name: str, *, deployment: str, namespace: str = "ml", made_by_keda_for: str | None = None) -> dict:
    """An autoscaling/v2 HPA on a Deployment; `made_by_keda_for` names the ScaledObject that
    owns it, as KEDA's own HPA (keda-hpa-<name>) is owned."""
    owners = [{"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": made_by_keda_for, "uid": "1",
               "controller": True}] if made_by_keda_for else []
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": namespace, "ownerReferences": owners},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
            "minReplicas": 1,
            "maxReplicas": 10,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}],
        },
    }


def kubeconfig(server: str, *, token: str | None = None) -> dict:
    """A kubeconfig that points the official client at `server` (the kmock emulator)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": server}}],
        "users": [{"name": "test", "user": {"token": token} if token else {}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "test"}}],
        "current-context": "kmock",
    }


def node(name: str, *, gpus: int | str | None = 8, labels: dict | None = None, ready: bool = True,
         unschedulable: bool = False) -> dict:
    """A Node as the API serves it, with the device plugin's allocatable nvidia.com/gpu."""
    allocatable = {"cpu": "94", "memory": "1000Gi"}
    if gpus is not None:
        allocatable["nvidia.com/gpu"] = str(gpus)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {"unschedulable": True} if unschedulable else {},
        "status": {
            "allocatable": allocatable,
            "capacity": allocatable,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }

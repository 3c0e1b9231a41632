"""Exporter -> real Prometheus -> one daemon tick -> the kmock Deployment's replicas change;
the same in dry-run changes nothing; and `autoscaler run --dry-run --once` prints decisions
with their reasons for a hot and a long-tail model."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import yaml

from autoscaler.controller import Controller
from autoscaler.metrics.prometheus import PrometheusSource
from autoscaler.targets.events import EventSender
from autoscaler.targets.kubernetes import KubernetesTargets
from autoscaler.targets.recording import DryRunTargets
from autoscaler.targets.watching import WatchCache
from tests.builders import config, deployment, kubeconfig, model
from tests.support.kmock_harness import DEPLOYMENTS
from tests.support.prom_harness import unique_name, vllm_labels

WAITING, RUNNING = "vllm:num_requests_waiting", "vllm:num_requests_running"


def busy_model(exporter, prometheus, namespace: str) -> None:
    exporter.set(WAITING, vllm_labels("chat", namespace), 40)
    exporter.set(RUNNING, vllm_labels("chat", namespace), 32)
    prometheus.wait_for(f'{RUNNING}{{namespace="{namespace}"}}')


def hot_config(namespace: str, url: str):
    return config(model("chat", namespace=namespace), prometheus={"url": url})


@pytest.fixture
def cache(kmock_cluster):
    cache = WatchCache(kmock_cluster.api_client)
    yield cache
    cache.stop()


def synced_targets(cfg, cluster, cache: WatchCache, events: EventSender) -> KubernetesTargets:
    cache.follow(cfg.namespaces)
    assert cache.wait_synced(timeout_s=10)
    return KubernetesTargets(cfg, cluster.api_client, cache=cache, events=events)


def test_one_tick_scales_the_deployment(prometheus_stack, kmock_cluster, cache, events):
    exporter, prometheus = prometheus_stack
    ns = unique_name("ns")
    busy_model(exporter, prometheus, ns)
    kmock_cluster.put(deployment("chat", namespace=ns, replicas=2))
    cfg = hot_config(ns, prometheus.url)
    controller = Controller(cfg, metrics=PrometheusSource(cfg), targets=synced_targets(cfg, kmock_cluster, cache, events))

    (outcome,) = controller.tick(now=time.time())

    # 40 waiting at 4 per replica asks for 10; one step adds at most max(4, 100% of 2) = 4.
    assert (outcome.decision.current_replicas, outcome.decision.desired_replicas) == (2, 6)
    assert outcome.action.outcome == "patched"
    assert kmock_cluster.get(DEPLOYMENTS, ns, "chat")["spec"]["replicas"] == 6


def test_dry_run_decides_the_same_and_writes_nothing(prometheus_stack, kmock_cluster, cache, events):
    exporter, prometheus = prometheus_stack
    ns = unique_name("ns")
    busy_model(exporter, prometheus, ns)
    kmock_cluster.put(deployment("chat", namespace=ns, replicas=2))
    cfg = hot_config(ns, prometheus.url)
    targets = DryRunTargets(synced_targets(cfg, kmock_cluster, cache, events))
    controller = Controller(cfg, metrics=PrometheusSource(cfg), targets=targets)

    (outcome,) = controller.tick(now=time.time())

    assert outcome.decision.desired_replicas == 6
    assert outcome.action.outcome == "recorded" and outcome.action.detail == "would scale from 2 to 6"
    assert not kmock_cluster.requests("PATCH")
    assert kmock_cluster.get(DEPLOYMENTS, ns, "chat")["spec"]["replicas"] == 2


def test_cli_dry_run_prints_decisions_with_reasons_for_hot_and_long_tail(prometheus_stack, kmock_cluster, tmp_path):
    exporter, prometheus = prometheus_stack
    ns = unique_name("ns")
    busy_model(exporter, prometheus, ns)
    exporter.set("gateway_requests_waiting", {"model": f"{ns}-tail"}, 3)
    prometheus.wait_for(f'gateway_requests_waiting{{model="{ns}-tail"}}')
    kmock_cluster.put(deployment("chat", namespace=ns, replicas=2))
    kmock_cluster.put(deployment("tail", namespace=ns, replicas=0))
    cfg = {
        "prometheus": {"url": prometheus.url},
        "models": [
            model("chat", namespace=ns),
            model("tail", namespace=ns, kind="long-tail", wake_query=f'gateway_requests_waiting{{model="{ns}-tail"}}'),
        ],
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kubeconfig(kmock_cluster.url, token="secret-token-value")))
    result = subprocess.run(
        [sys.executable, "-m", "autoscaler.cli", "run", "--config", str(tmp_path / "config.yaml"),
         "--kubeconfig", str(tmp_path / "kubeconfig"), "--dry-run", "--once", "--metrics-port", "0"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    chat = next(line for line in lines if " chat " in line)
    tail = next(line for line in lines if " tail " in line)
    assert "2->6" in chat and "Recommendation: 40 waiting / 4 per replica -> 10" in chat and "ScaleUpLimit" in chat
    assert "0->1" in tail and "Wake: wake signal 3 > 0: waking to 1" in tail
    assert not kmock_cluster.requests("PATCH")
    assert "secret-token-value" not in result.stdout + result.stderr
    print(result.stdout)

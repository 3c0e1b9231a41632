"""Lost pods and a lost guard input, through the real Prometheus adapter (issue 19, items 2
and 10).

What rests on which server: the pod count and the sums come from a real Prometheus 2.42
(Debian's package) scraping exporters the test serves, through PrometheusSource, the
daemon's own adapter; a failed scrape is a real one (the exporter answers 503, Prometheus
marks that target's series stale). The replica counts come from InMemoryTargets, the
in-memory scale target the package ships for replay and dry-run: the fault under test is in
what the metrics say, not in the Kubernetes API (tests/test_fault_matrix.py has those).
"""

from __future__ import annotations

import time

import pytest

from autoscaler.controller import Controller
from autoscaler.metrics.prometheus import PrometheusSource
from autoscaler.targets.recording import InMemoryTargets
from policies import PolicyState
from tests.builders import config, model
from tests.support.prom_harness import MetricsExporter, run_prometheus, unique_name, vllm_labels

WAITING, RUNNING, KV = "vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc"
# The sizes the issue was found with: 32 in flight per replica, no scale-down window.
POLICY = {"target_running_per_replica": 32, "scale_down_stabilization_s": 0}


@pytest.fixture(scope="module")
def two_targets():
    """Two scrape targets, as pods are in a cluster: `kept` serves most pods' series, `lost`
    serves the pods whose scrape the test makes fail."""
    with MetricsExporter() as kept, MetricsExporter() as lost, run_prometheus([kept, lost], scrape_interval="1s") as prometheus:
        prometheus.wait_for("up == 1", lambda result: len(result) == 2)
        yield kept, lost, prometheus


def controller_for(prometheus, cfg, initial):
    cfg = cfg.model_copy(update={"prometheus": cfg.prometheus.model_copy(update={"url": prometheus.url})})
    targets = InMemoryTargets({m.name: m for m in cfg.models}, initial=initial)
    source = PrometheusSource(cfg)
    return Controller(cfg, metrics=source, targets=targets), targets, source


def export(exporter, ns, name, pod, *, running, waiting=0.0, kv=0.1):
    labels = vllm_labels(name, ns, pod=f"{name}-{pod}")
    exporter.set(WAITING, labels, waiting)
    exporter.set(RUNNING, labels, running)
    exporter.set(KV, labels, kv)


def test_a_pod_whose_scrape_fails_holds_the_scale_down_and_never_goes_to_zero(two_targets):
    """Item 2. A hot model at 4 with 112 in flight, 72 of them on the pod whose scrape fails,
    read 40 in flight and went 4 -> 2; a long-tail model at 2, idle on one pod and 5 running
    on the other, read idle and went 2 -> 0. Now the adapter counts the pods that reported
    (one batched query for all models), and fewer than ready holds."""
    kept, lost, prometheus = two_targets
    ns = unique_name("ns")
    for pod, running in enumerate((10, 15, 15)):
        export(kept, ns, "chat", pod, running=running)
    export(lost, ns, "chat", 3, running=72)
    export(kept, ns, "tail", 0, running=0)
    export(lost, ns, "tail", 1, running=5)
    prometheus.wait_for(f'{RUNNING}{{namespace="{ns}"}}', lambda result: len(result) == 6)
    cfg = config(
        model("chat", namespace=ns, policy=POLICY),
        model("tail", namespace=ns, kind="long-tail", policy={**POLICY, "idle_timeout_s": 60}),
    )
    controller, targets, source = controller_for(prometheus, cfg, {"chat": 4, "tail": 2})
    seen = source.fetch_signals(now=time.time())
    assert [seen.for_model(name).reporting_pods.value for name in ("chat", "tail")] == [4, 2]  # the control

    lost.fail(503)
    try:
        prometheus.wait_for(f'up{{instance="{lost.target}"}} == 0')
        prometheus.wait_absent(f'{RUNNING}{{namespace="{ns}",pod=~"chat-3|tail-1"}}')
        # The long-tail model has looked idle for an hour: on today's code it went to zero here.
        controller.states["tail"] = PolicyState(idle_since=time.time() - 3600, first_seen=(time.time() - 3600, 2))
        outcomes = {o.model: o for o in controller.tick(now=time.time())}
    finally:
        lost.recover()

    chat, tail = outcomes["chat"], outcomes["tail"]
    assert chat.observation.running.value == 40, "the lost pod's load is missing from the sum"
    assert chat.decision.desired_replicas == 4, chat.decision.explain()
    assert "PartialData" in chat.decision.reason_codes
    assert "3 of 4 pods reported" in chat.decision.explain()
    assert tail.decision.desired_replicas == 2, tail.decision.explain()
    assert "1 of 2 pods reported" in tail.decision.explain()
    states = targets.read_states(now=time.time())
    assert (states["chat"].spec_replicas, states["tail"].spec_replicas) == (4, 2)

    # Recovered: every pod reports again and the model is decided on whole data.
    prometheus.wait_for(f'{RUNNING}{{namespace="{ns}"}}', lambda result: len(result) == 6)
    outcomes = {o.model: o for o in controller.tick(now=time.time())}
    assert outcomes["chat"].observation.running.value == 112
    assert all("PartialData" not in o.decision.reason_codes for o in outcomes.values())


def test_a_partial_count_still_lets_a_queue_scale_up(two_targets):
    """Sums over some pods are a floor of the load: a queue they show is real, so the model
    scales up on it (the HPA does the same on partial metrics)."""
    kept, lost, prometheus = two_targets
    ns = unique_name("ns")
    export(kept, ns, "chat", 0, running=32, waiting=40)
    export(lost, ns, "chat", 1, running=32)
    prometheus.wait_for(f'{RUNNING}{{namespace="{ns}"}}', lambda result: len(result) == 2)
    controller, _, _ = controller_for(prometheus, config(model("chat", namespace=ns, policy=POLICY)), {"chat": 2})
    lost.fail(503)
    try:
        prometheus.wait_absent(f'{RUNNING}{{namespace="{ns}",pod="chat-1"}}')
        [outcome] = controller.tick(now=time.time())
    finally:
        lost.recover()
    assert outcome.observation.reporting_pods.value == 1
    assert outcome.decision.direction == "up", outcome.decision.explain()


def test_the_kv_cache_guard_holds_when_its_reading_is_lost(prometheus_stack):
    """Item 10. 8 replicas with little in flight and the KV cache at 97% hold; once the KV
    series are gone, the guard switched off and they went 8 -> 4. A guard without its input
    now holds, and says so."""
    exporter, prometheus = prometheus_stack
    ns = unique_name("ns")
    for pod in range(8):
        export(exporter, ns, "chat", pod, running=5, kv=0.97 if pod == 0 else 0.5)
    prometheus.wait_for(f'{KV}{{namespace="{ns}"}}', lambda result: len(result) == 8)
    controller, targets, _ = controller_for(prometheus, config(model("chat", namespace=ns, policy=POLICY)), {"chat": 8})

    [outcome] = controller.tick(now=time.time())
    assert outcome.decision.desired_replicas == 8 and "KVCacheFull" in outcome.decision.reason_codes

    for pod in range(8):
        exporter.remove(KV, vllm_labels("chat", ns, pod=f"chat-{pod}"))
    prometheus.wait_absent(f'{KV}{{namespace="{ns}"}}')
    [outcome] = controller.tick(now=time.time())
    assert not outcome.observation.kv_cache_usage.usable
    assert outcome.observation.reporting_pods.value == 8, "every pod reported: the KV guard alone holds"
    assert outcome.decision.desired_replicas == 8, outcome.decision.explain()
    assert "GuardInputMissing" in outcome.decision.reason_codes
    assert targets.read_states(now=time.time())["chat"].spec_replicas == 8

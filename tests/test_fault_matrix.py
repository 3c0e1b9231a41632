"""The fault matrix: one row per way Prometheus or the API server can misbehave, each run
through the daemon's real adapters against the real Prometheus and the kmock API emulator
(through a FaultyProxy where the fault is the server's own: down, slow, 5xx).

Every row asserts the same four things:
  1. nothing unsafe: a model whose data is missing holds its count (never a scale-down), no
     hot model at zero, every desired count within its bounds, nothing half-written;
  2. a clear log line says what happened;
  3. the daemon's own error counter (/metrics) moves;
  4. the next good tick recovers: the model is decided from data and written again.

The scenario: `chat` and `other`, both hot, at 4 replicas with a queue of 40 each, so a good
tick scales both up. Their scale-down window is 0, so a missing reading misread as zero would
show at once as a scale-down. README's fault table points here, row by row.

Rows not here, tested where their machinery lives: SIGTERM mid-tick (tests/test_daemon.py),
a lease lost mid-tick and a leader cut off from the API (tests/test_failover.py,
tests/test_leader.py), TLS failures (tests/test_prometheus_tls.py).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from kubernetes import client as k8s
from structlog.testing import capture_logs

from autoscaler.clock import SystemClock
from autoscaler.controller import Controller, Outcome
from autoscaler.metrics.prometheus import PrometheusSource
from autoscaler.settings import ApiSettings
from autoscaler.targets.events import EventSender
from autoscaler.targets.kubernetes import KubernetesTargets
from autoscaler.targets.watching import WatchCache
from autoscaler.telemetry import Telemetry
from tests.builders import config, deployment, model
from tests.support.faulty_proxy import FaultyProxy
from tests.support.kmock_harness import DEPLOYMENTS
from tests.support.prom_harness import unique_name, vllm_labels

WAITING, RUNNING = "vllm:num_requests_waiting", "vllm:num_requests_running"
MODELS = ("chat", "other")
START_REPLICAS = 4
QUERY_TIMEOUT_S = 0.5
API_SETTINGS = ApiSettings(api_connect_timeout_s=0.5, api_read_timeout_s=0.5)
STALE_AFTER_S = 3.0


@dataclass
class Rig:
    exporter: object
    prometheus: object
    cluster: object
    prometheus_proxy: FaultyProxy
    api_proxy: FaultyProxy
    ns: str
    telemetry: Telemetry = field(init=False)
    controller: Controller = field(init=False)
    cache: WatchCache = field(init=False)
    events: EventSender = field(init=False)

    def connect(self) -> None:
        """The daemon's adapters. Its reads come from a watch on kmock itself: FaultyProxy
        answers whole responses only, so a watch cannot stream through it. API faults here are
        the writes' (the cache's own, broken watches and relists, are in tests/test_watching.py)."""
        cfg = config(
            *(model(name, namespace=self.ns, policy={"min_replicas": 1, "scale_down_stabilization_s": 0}) for name in MODELS),
            prometheus={"url": self.prometheus_proxy.url, "timeout_s": QUERY_TIMEOUT_S, "stale_after_s": STALE_AFTER_S},
        )
        self.telemetry = Telemetry(clock=SystemClock(), interval_s=5)
        api = k8s.ApiClient(k8s.Configuration(host=self.api_proxy.url))
        self.cache = WatchCache(self.cluster.api_client)
        self.cache.follow(cfg.namespaces)
        assert self.cache.wait_synced(timeout_s=10)
        self.events = EventSender(api)
        self.controller = Controller(
            cfg, metrics=PrometheusSource(cfg, on_error=self.telemetry.prometheus_error),
            # The adapter waits up to 3 s for an answer; the matrix waits 0.5 s.
            targets=KubernetesTargets(cfg, api, cache=self.cache, events=self.events, api=API_SETTINGS),
        )

    def labels(self, name: str) -> dict:
        return vllm_labels(name, self.ns)

    def load(self, name: str, *, explicit_timestamp: bool = False) -> None:
        self.exporter.set(WAITING, self.labels(name), 40, explicit_timestamp=explicit_timestamp)
        self.exporter.set(RUNNING, self.labels(name), 32, explicit_timestamp=explicit_timestamp)

    def wait_for_load(self, name: str) -> None:
        for metric in (WAITING, RUNNING):
            self.prometheus.wait_for(f'{metric}{{namespace="{self.ns}",model_name="{name}"}} == 40 or '
                                     f'{metric}{{namespace="{self.ns}",model_name="{name}"}} == 32')

    def replicas(self, name: str) -> int:
        return self.cluster.get(DEPLOYMENTS, self.ns, name)["spec"]["replicas"]

    def reset(self, name: str, replicas: int = START_REPLICAS) -> None:
        """Through the API (put() sends no watch event), then until the cache has seen it."""
        apps = k8s.AppsV1Api(self.cluster.api_client)
        try:
            apps.patch_namespaced_deployment(
                name, self.ns, {"spec": {"replicas": replicas}, "status": {"replicas": replicas, "readyReplicas": replicas}}
            )
        except k8s.ApiException as err:
            if err.status != 404:
                raise
            apps.create_namespaced_deployment(self.ns, deployment(name, namespace=self.ns, replicas=replicas))
        if getattr(self, "cache", None) is not None:
            deadline = time.monotonic() + 5
            while (view := self.cache.view(self.ns, now=time.time())) is None or view.deployments.get(name) is None \
                    or view.deployments[name].spec_replicas != replicas:
                assert time.monotonic() < deadline, f"the cache did not see {name} at {replicas}"
                time.sleep(0.01)

    def tick(self) -> dict[str, Outcome]:
        outcomes = self.controller.tick(now=time.time())
        self.events.flush(timeout_s=5)  # a tick's Events are its own, not the next fault's
        self.telemetry.record_tick(outcomes, duration_s=0.0)
        return {o.model: o for o in outcomes}

    def count(self, metric: str, **labels: str) -> float:
        return self.telemetry.registry.get_sample_value(metric, labels) or 0.0


def prometheus_errors(kind: str) -> tuple[str, dict]:
    return "llm_autoscaler_prometheus_errors_total", {"signal": "waiting", "kind": kind}


def kubernetes_errors(kind: str) -> tuple[str, dict]:
    return "llm_autoscaler_kubernetes_errors_total", {"kind": kind}


def held(model_name: str, reason: str) -> tuple[str, dict]:
    return "llm_autoscaler_decisions_total", {"model": model_name, "direction": "hold", "reason": reason}


def scale_path(rig: Rig, name: str = "chat") -> str:
    return f"/apis/apps/v1/namespaces/{rig.ns}/deployments/{name}/scale"


def remove_load(rig: Rig, name: str) -> None:
    for metric in (WAITING, RUNNING):
        rig.exporter.remove(metric, rig.labels(name))
    rig.prometheus.wait_absent(f'{WAITING}{{namespace="{rig.ns}",model_name="{name}"}}')


def restore_load(rig: Rig, name: str, **kw) -> None:
    rig.load(name, **kw)
    rig.wait_for_load(name)


def freeze_load(rig: Rig) -> None:
    at = time.time()
    for metric in (WAITING, RUNNING):
        rig.exporter.freeze(metric, rig.labels("chat"), at=at)
    # Stale once the frozen sample is older than stale_after_s; Prometheus still returns it.
    rig.prometheus.wait_for(f'time() - timestamp({WAITING}{{namespace="{rig.ns}",model_name="chat"}}) > {STALE_AFTER_S + 0.5}',
                            timeout=STALE_AFTER_S + 10)


def thaw_load(rig: Rig) -> None:
    rig.load("chat", explicit_timestamp=True)
    for metric in (WAITING, RUNNING):
        rig.prometheus.wait_for(f'time() - timestamp({metric}{{namespace="{rig.ns}",model_name="chat"}}) < 2')


def delete_target(rig: Rig) -> None:
    k8s.AppsV1Api(rig.cluster.api_client).delete_namespaced_deployment("chat", rig.ns)


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Callable[[Rig], None]
    heal: Callable[[Rig], None]
    log_event: str
    counter: tuple[str, dict]
    holds: tuple[str, ...] = ()  # models that must hold on the fault tick (data missing)
    not_written: tuple[str, ...] = ()  # models whose write must fail, leaving the cluster as it was
    timed_out: tuple[str, ...] = ()  # writes given up on: failed here, though the server may apply them late
    unread: tuple[str, ...] = ()  # models that cannot be read at all: skipped, no decision
    explicit_timestamps: bool = False


def heal_proxy(rig: Rig) -> None:
    rig.prometheus_proxy.heal()
    rig.api_proxy.heal()


FAULTS = [
    Fault("prometheus down", lambda r: r.prometheus_proxy.down(), heal_proxy,
          "prometheus query failed; its readings are missing this tick", prometheus_errors("connection"), holds=MODELS),
    Fault("prometheus slower than timeout_s", lambda r: setattr(r.prometheus_proxy, "delay_s", QUERY_TIMEOUT_S + 0.5),
          heal_proxy, "prometheus query failed; its readings are missing this tick", prometheus_errors("timeout"), holds=MODELS),
    Fault("prometheus answers 503", lambda r: setattr(r.prometheus_proxy, "status", 503), heal_proxy,
          "prometheus query failed; its readings are missing this tick", prometheus_errors("http"), holds=MODELS),
    Fault("empty result", lambda r: [remove_load(r, m) for m in MODELS], lambda r: [restore_load(r, m) for m in MODELS],
          "held without load data", held("chat", "MissingData"), holds=MODELS),
    Fault("NaN sample", lambda r: (r.exporter.set(WAITING, r.labels("chat"), float("nan")),
                                   r.prometheus.wait_for(f'{WAITING}{{namespace="{r.ns}",model_name="chat"}} != 40')),
          lambda r: restore_load(r, "chat"),
          "rejected a sample; the reading is missing this tick", prometheus_errors("rejected"), holds=("chat",)),
    Fault("stale series", freeze_load, thaw_load,
          "held without load data", held("chat", "MissingData"), holds=("chat",), explicit_timestamps=True),
    Fault("one model's series vanish", lambda r: remove_load(r, "other"), lambda r: restore_load(r, "other"),
          "held without load data", held("other", "MissingData"), holds=("other",)),
    Fault("API 409 on every retry", lambda r: r.cluster.fail_next("patch", scale_path(r), 409, times=3), lambda r: None,
          "gave up after conflicts", kubernetes_errors("failed"), not_written=("chat",)),
    Fault("API 404 on write", lambda r: r.cluster.fail_next("patch", scale_path(r), 404), lambda r: None,
          "target not found; skipping", kubernetes_errors("missing"), not_written=("chat",)),
    Fault("API 403 on write", lambda r: r.cluster.fail_next("patch", scale_path(r), 403), lambda r: None,
          "forbidden by RBAC", kubernetes_errors("forbidden"), not_written=("chat",)),
    Fault("API 500 on write", lambda r: r.cluster.fail_next("patch", scale_path(r), 500), lambda r: None,
          "Kubernetes API error", kubernetes_errors("failed"), not_written=("chat",)),
    Fault("API slower than the request timeout", lambda r: setattr(r.api_proxy, "delay_s", 1.0), heal_proxy,
          "Kubernetes API unreachable", kubernetes_errors("failed"), timed_out=MODELS),
    Fault("target deleted mid-run", delete_target, lambda r: r.reset("chat"),
          "Deployment not found; skipping this model", kubernetes_errors("unreadable"), unread=("chat",)),
]


@pytest.fixture
def make_rig(prometheus_stack, kmock_cluster):
    """Builds the scenario. `explicit_timestamps`: the stale row needs series that carry their
    own timestamps from their first scrape, so that freezing them ages them in Prometheus
    instead of ending them (see tests/support/prom_harness.py)."""
    exporter, prometheus = prometheus_stack
    with contextlib.ExitStack() as stack:
        def make(*, explicit_timestamps: bool = False) -> Rig:
            prometheus_proxy = stack.enter_context(FaultyProxy(prometheus.url))
            api_proxy = stack.enter_context(FaultyProxy(kmock_cluster.url))
            rig = Rig(exporter, prometheus, kmock_cluster, prometheus_proxy, api_proxy, unique_name("ns"))
            for name in MODELS:
                rig.reset(name)
                rig.load(name, explicit_timestamp=explicit_timestamps)
                rig.wait_for_load(name)
            rig.connect()
            stack.callback(rig.cache.stop)
            stack.callback(rig.events.stop)
            return rig

        yield make


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_fault(fault: Fault, make_rig):
    rig = make_rig(explicit_timestamps=fault.explicit_timestamps)
    metric, labels = fault.counter
    before = rig.count(metric, **labels)
    patches_before = {name: len(rig.cluster.requests("patch", scale_path(rig, name))) for name in MODELS}

    fault.inject(rig)
    with capture_logs() as logs:
        outcomes = rig.tick()

    # 1. Nothing unsafe.
    for name in MODELS:
        outcome = outcomes[name]
        if name in fault.unread:
            assert outcome.decision is None and outcome.skipped, f"{name}: an unreadable target is skipped"
            assert len(rig.cluster.requests("patch", scale_path(rig, name))) == patches_before[name], "no blind write"
            continue
        decision = outcome.decision
        assert 1 <= decision.desired_replicas <= 10, f"{name}: out of bounds"
        if name in fault.holds:
            assert decision.direction == "hold" and "MissingData" in decision.reason_codes, f"{name}: {decision.explain()}"
            assert rig.replicas(name) == START_REPLICAS
        if name in fault.not_written:
            assert outcome.action.outcome in ("failed", "missing", "forbidden")
            assert rig.replicas(name) == START_REPLICAS, "a failed write must leave the cluster as it was"
        if name in fault.timed_out:
            assert outcome.action.outcome == "failed"
            assert rig.replicas(name) in (START_REPLICAS, decision.desired_replicas), "nothing but the decided count"
    # 2. A clear log line (a hold on missing data says so in its reasons, which the log carries).
    events = [entry["event"] for entry in logs]
    if fault.log_event == "held without load data":
        assert all("MissingData" in outcomes[m].decision.reason_codes for m in fault.holds)
    else:
        assert fault.log_event in events, events
    # 3. The error counter moved.
    assert rig.count(metric, **labels) > before, logs

    # 4. The next good tick recovers.
    fault.heal(rig)
    recovered = rig.tick()
    for name in MODELS:
        decision = recovered[name].decision
        assert decision is not None and "MissingData" not in decision.reason_codes, f"{name} did not recover"
        assert recovered[name].action.outcome in ("patched", "unchanged")
        assert rig.replicas(name) > START_REPLICAS, f"{name}: the good tick scales up"


def test_replicas_changed_by_someone_else_between_ticks_are_taken_as_the_new_count(make_rig):
    rig = make_rig()
    rig.tick()
    rig.reset("chat", replicas=7)  # kubectl scale, or a person in a hurry
    with capture_logs():
        outcome = rig.tick()["chat"]
    assert outcome.decision.current_replicas == 7
    assert rig.count("llm_autoscaler_current_replicas", model="chat") == 7
    assert outcome.decision.desired_replicas >= 7  # decided from 7, the queue still calls for more

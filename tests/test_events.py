"""The Event sender (autoscaler/targets/events.py) against kmock through the official client:
Events are posted in order after the caller has moved on, a full queue drops and counts, and
stop() sends what is queued within its time, then drops and counts the rest. A slow API is a
FaultyProxy in front of kmock that answers late."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s
from structlog.testing import capture_logs

from autoscaler.clock import ManualClock
from autoscaler.targets.events import EventSender
from autoscaler.targets.kubernetes import KubernetesTargets
from autoscaler.targets.watching import WatchCache
from autoscaler.telemetry import Telemetry
from policies import Decision, Reason, ReasonCode
from tests.builders import config, deployment, model
from tests.support.faulty_proxy import FaultyProxy

EVENTS = "/api/v1/namespaces/ml/events"
DELAY_S = 1.0


def event(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": "ml"}, "reason": "ScaledUp",
            "involvedObject": {"kind": "Deployment", "name": "chat", "namespace": "ml"}, "message": name}


@pytest.fixture
def slow_api(kmock_cluster) -> Iterator[k8s.ApiClient]:
    """An ApiClient whose every request reaches kmock DELAY_S late."""
    with FaultyProxy(kmock_cluster.url) as proxy:
        proxy.delay_s = DELAY_S
        api = k8s.ApiClient(k8s.Configuration(host=proxy.url))
        yield api
        api.close()


def posted(kmock_cluster) -> list[str]:
    return [r.data["metadata"]["name"] for r in kmock_cluster.requests("POST", EVENTS)]


def test_events_are_posted_in_the_order_sent(kmock_cluster, events):
    for index in range(5):
        assert events.send(event(f"e{index}"), model="chat")
    assert events.flush(timeout_s=5)
    assert posted(kmock_cluster) == ["e0", "e1", "e2", "e3", "e4"]


def test_a_scaling_does_not_wait_for_its_event(kmock_cluster, slow_api):
    """The patch goes straight to kmock; the Event goes through the slow proxy. apply()
    returns with the patch, well before the Event could have been answered."""
    kmock_cluster.put(deployment("chat", replicas=1))
    cfg = config(model("chat"))
    cache = WatchCache(kmock_cluster.api_client)
    sender = EventSender(slow_api)
    try:
        cache.follow(cfg.namespaces)
        assert cache.wait_synced(timeout_s=10)
        targets = KubernetesTargets(cfg, kmock_cluster.api_client, cache=cache, events=sender)
        started = time.monotonic()
        action = targets.apply(cfg.models[0], Decision(1, 3, 1, 10, (Reason(ReasonCode.Recommendation, "wants 3"),)), now=0.0)
        took_s = time.monotonic() - started
        assert action.outcome == "patched" and took_s < DELAY_S / 2
        assert posted(kmock_cluster) == []  # still on its way
        assert sender.flush(timeout_s=5)
        assert len(posted(kmock_cluster)) == 1
    finally:
        sender.stop(timeout_s=5)
        cache.stop()


def test_a_ticks_events_go_out_after_all_its_writes(kmock_cluster, events):
    """As `autoscaler run` ticks: the Events queued inside `held()` wait for its end, so at the
    API server every PATCH of the tick comes before the first Event, and all Events follow."""
    names = [f"m{index}" for index in range(6)]
    for name in names:
        kmock_cluster.put(deployment(name, replicas=1))
    cfg = config(*[model(name) for name in names])
    cache = WatchCache(kmock_cluster.api_client)
    try:
        cache.follow(cfg.namespaces)
        assert cache.wait_synced(timeout_s=10)
        targets = KubernetesTargets(cfg, kmock_cluster.api_client, cache=cache, events=events)
        wants_3 = Decision(1, 3, 1, 10, (Reason(ReasonCode.Recommendation, "wants 3"),))
        with events.held():
            actions = [targets.apply(m, wants_3, now=0.0) for m in cfg.models]
            assert not events.flush(timeout_s=0.3)  # held: nothing goes out, however long it waits
        assert events.flush(timeout_s=5)
    finally:
        cache.stop()
    assert [a.outcome for a in actions] == ["patched"] * len(names)
    methods = [r.method.upper() for r in kmock_cluster.requests() if r.method.upper() in ("PATCH", "POST")]
    assert methods == ["PATCH"] * len(names) + ["POST"] * len(names)


def test_a_full_queue_drops_the_event_logs_it_and_counts_it(kmock_cluster, slow_api):
    """Capacity 1, and the first post holds the thread for DELAY_S: of five sent at once, one
    is in flight or queued, one more at most is queued, the rest are dropped."""
    telemetry = Telemetry(clock=ManualClock(), interval_s=10)
    sender = EventSender(slow_api, capacity=1, on_dropped=telemetry.event_dropped)
    with capture_logs() as logs:
        sent = [sender.send(event(f"e{index}"), model="chat") for index in range(5)]
    assert sent[0] and sent.count(False) >= 3
    dropped = telemetry.registry.get_sample_value("llm_autoscaler_events_dropped_total", {"reason": "queue_full"})
    assert dropped == sent.count(False)
    assert [e["model"] for e in logs if e["event"] == "Event dropped: the queue is full"] == ["chat"] * sent.count(False)
    sender.stop(timeout_s=5)
    assert posted(kmock_cluster) == [f"e{i}" for i, ok in enumerate(sent) if ok]


def test_stop_sends_what_is_queued(kmock_cluster, events):
    for index in range(3):
        events.send(event(f"e{index}"), model="chat")
    events.stop(timeout_s=5)
    assert posted(kmock_cluster) == ["e0", "e1", "e2"]


def test_stop_drops_and_counts_what_it_could_not_send_in_time(kmock_cluster, slow_api):
    telemetry = Telemetry(clock=ManualClock(), interval_s=10)
    sender = EventSender(slow_api, on_dropped=telemetry.event_dropped)
    for index in range(3):
        sender.send(event(f"e{index}"), model="chat")
    with capture_logs() as logs:
        sender.stop(timeout_s=0.2)  # the first post alone takes DELAY_S
        assert not sender.send(event("late"), model="chat")  # a stopped sender takes no more
    left = telemetry.registry.get_sample_value("llm_autoscaler_events_dropped_total", {"reason": "shutdown"})
    assert left == 3  # e1 and e2 never left the queue; "late" came after stop
    assert any(e["event"] == "Events not sent before shutdown" and e["dropped"] == 2 for e in logs)


def test_capacity_below_one_is_refused():
    with pytest.raises(ValueError, match="capacity: 0 is not allowed"):
        EventSender(k8s.ApiClient(), capacity=0)

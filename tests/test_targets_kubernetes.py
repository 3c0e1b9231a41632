"""The Kubernetes actuators against kmock, an HTTP Kubernetes API emulator, through the official
client. kmock enforces neither resourceVersion conflicts nor RBAC, so 409, 403 and 404 on
writes are injected responses (tests/support/kmock_harness.py), as the real API would send them.
Reads come from a WatchCache (tests/test_watching.py), synced before each test reads."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client as k8s
from structlog.testing import capture_logs

from autoscaler.config import Config
from autoscaler.controller import Controller
from autoscaler.metrics import ModelSignals, Signals
from autoscaler.targets import Fence, unfenced
from autoscaler.targets.kubernetes import PAUSED_REPLICAS, KubernetesTargets
from autoscaler.targets.watching import WatchCache
from policies import Decision, Reading, Reason
from tests.builders import config, deployment, horizontal_pod_autoscaler, model, scaled_object
from tests.support.faulty_proxy import FaultyProxy
from tests.support.kmock_harness import DEPLOYMENTS, SCALEDOBJECTS, status_body

SCALE = "/apis/apps/v1/namespaces/ml/deployments/{}/scale"


def decided(current: int, desired: int, *, floor: int = 1, cap: int = 10) -> Decision:
    return Decision(current, desired, floor, cap, (Reason("Recommendation", f"test wants {desired}"),))


@pytest.fixture
def make_targets(kmock_cluster, events) -> Iterator[Callable[..., KubernetesTargets]]:
    """KubernetesTargets over a cache that has listed the config's namespaces (or given up
    on those it cannot list within `sync_s`), sending Events through the `events` fixture."""
    caches = []

    def make(cfg: Config, *, api_client=None, sync_s: float = 10.0, fence: Fence = unfenced) -> KubernetesTargets:
        api_client = api_client or kmock_cluster.api_client
        cache = WatchCache(api_client)
        caches.append(cache)
        cache.follow(cfg.namespaces)
        cache.wait_synced(timeout_s=sync_s)
        return KubernetesTargets(cfg, api_client, cache=cache, events=events, fence=fence)

    yield make
    for cache in caches:
        cache.stop()


def read_and_apply(make_targets, cfg, desired: int, name: str = "chat", **kw):
    targets = make_targets(cfg)
    states = targets.read_states(now=0.0)
    model_cfg = next(m for m in cfg.models if m.name == name)
    current = states[name].spec_replicas
    return targets.apply(model_cfg, decided(current, desired, **kw), now=0.0)


def test_reads_replicas_ready_and_gpus_per_replica(kmock_cluster, make_targets):
    kmock_cluster.put(deployment("chat", replicas=3, ready=2, gpus=2))
    states = make_targets(config(model("chat"))).read_states(now=0.0)
    assert states["chat"].spec_replicas == 3
    assert states["chat"].ready_replicas == 2
    assert states["chat"].gpus_per_replica == 2


def test_scale_up_patches_the_scale_subresource_with_reasons(kmock_cluster, make_targets):
    kmock_cluster.put(deployment("chat", replicas=2))
    action = read_and_apply(make_targets, config(model("chat")), 4)
    assert action.outcome == "patched"
    assert "from 2 to 4 because Recommendation: test wants 4" in action.detail
    assert kmock_cluster.get(DEPLOYMENTS, "ml", "chat")["spec"]["replicas"] == 4
    (patch,) = kmock_cluster.requests("PATCH")
    assert patch.url.path == SCALE.format("chat")
    assert patch.params.get("fieldManager") == "llm-autoscaler"


def test_a_read_and_a_hold_send_no_request(kmock_cluster, make_targets):
    kmock_cluster.put(deployment("chat", replicas=2))
    cfg = config(model("chat"))
    targets = make_targets(cfg)
    before = len(kmock_cluster.requests())
    states = targets.read_states(now=0.0)
    action = targets.apply(cfg.models[0], decided(states["chat"].spec_replicas, 2), now=0.0)
    assert action.outcome == "unchanged"
    # The cache answered the read; its watches (started just after the first list) aside,
    # nothing was asked of the API.
    assert [r for r in kmock_cluster.requests()[before:] if r.params.get("watch") != "true"] == []


def test_conflict_rereads_and_retries(kmock_cluster, make_targets):
    kmock_cluster.put(deployment("chat", replicas=2))
    kmock_cluster.fail_next("PATCH", SCALE.format("chat"), 409, status_body(409, "the object has been modified"))
    action = read_and_apply(make_targets, config(model("chat")), 5)
    assert action.outcome == "patched"
    assert kmock_cluster.get(DEPLOYMENTS, "ml", "chat")["spec"]["replicas"] == 5
    assert len(kmock_cluster.requests("PATCH", SCALE.format("chat"))) == 2
    assert len(kmock_cluster.requests("GET", SCALE.format("chat"))) == 1  # the re-read


def test_conflict_resolved_by_someone_else_needs_no_second_patch(kmock_cluster, make_targets):
    kmock_cluster.put(deployment("chat", replicas=2))
    targets = make_targets(config(model("chat")))
    targets.read_states(now=0.0)
    kmock_cluster.fail_next("PATCH", SCALE.format("chat"), 409)
    # Between our read and our patch another writer set the count we want.
    kmock_cluster.put(deployment("chat", replicas=5))
    action = targets.apply(config(model("chat")).models[0], decided(2, 5), now=0.0)
    assert action.outcome == "unchanged"
    assert len(kmock_cluster.requests("PATCH")) == 1


def test_endless_conflicts_give_up_without_raising(kmock_cluster, make_targets):
    kmock_cluster.put(deployment("chat", replicas=2))
    kmock_cluster.fail_next("PATCH", SCALE.format("chat"), 409, times=3)
    action = read_and_apply(make_targets, config(model("chat")), 5)
    assert action.outcome == "failed"
    assert "3 attempts" in action.detail
    assert kmock_cluster.get(DEPLOYMENTS, "ml", "chat")["spec"]["replicas"] == 2


def versioned(obj: dict, version: str) -> dict:
    """kmock keeps no resourceVersion of its own: the test sets one, as the API server would."""
    obj["metadata"]["resourceVersion"] = version
    return obj


def test_every_patch_carries_the_resource_version_it_was_planned_from(kmock_cluster, make_targets):
    """Issue 19, item 5: a scale patch without a precondition lands over anyone's write,
    a new leader's included. The first patch carries the version the watch cache read; after
    a 409 the one re-read. (That the API server answers a stale one 409 is its contract, which
    kmock does not keep: the 409 is injected here.)"""
    kmock_cluster.put(versioned(deployment("chat", replicas=2), "41"))
    targets = make_targets(config(model("chat")))
    targets.read_states(now=0.0)
    kmock_cluster.fail_next("PATCH", SCALE.format("chat"), 409, status_body(409, "the object has been modified"))
    kmock_cluster.put(versioned(deployment("chat", replicas=3), "42"))  # a write in between
    action = targets.apply(config(model("chat")).models[0], decided(2, 5), now=0.0)
    assert action.outcome == "patched"
    first, second = kmock_cluster.requests("PATCH", SCALE.format("chat"))
    assert first.data == {"spec": {"replicas": 5}, "metadata": {"resourceVersion": "41"}}
    assert second.data == {"spec": {"replicas": 5}, "metadata": {"resourceVersion": "42"}}


def test_a_scaled_object_patch_carries_its_resource_version(kmock_cluster, make_targets):
    kmock_cluster.put(deployment("tail", replicas=2))
    kmock_cluster.put(versioned(scaled_object("tail-so", deployment="tail"), "7"))
    cfg = config(model("tail", target={"kind": "ScaledObject", "name": "tail-so", "mode": "pin"}))
    assert read_and_apply(make_targets, cfg, 0, name="tail", floor=0).outcome == "patched"
    (patch,) = kmock_cluster.requests("PATCH")
    assert patch.data == {"metadata": {"annotations": {PAUSED_REPLICAS: "0"}, "resourceVersion": "7"}}


def test_a_retry_after_a_conflict_asks_the_fence_again_and_a_lost_lease_sends_nothing(kmock_cluster, make_targets):
    """Issue 19, item 5: `apply` used to check leadership once, then retry conflicts: a write
    could go out seconds after the Lease was lost. The fence is asked before each request."""
    kmock_cluster.put(deployment("chat", replicas=2))
    answers = iter([True, False])
    targets = make_targets(config(model("chat")), fence=lambda: next(answers))
    targets.read_states(now=0.0)
    kmock_cluster.fail_next("PATCH", SCALE.format("chat"), 409)
    action = targets.apply(config(model("chat")).models[0], decided(2, 5), now=0.0)
    assert action.outcome == "standby", action.detail
    assert len(kmock_cluster.requests("PATCH", SCALE.format("chat"))) == 1
    assert kmock_cluster.get(DEPLOYMENTS, "ml", "chat")["spec"]["replicas"] == 2


def test_not_found_skips_that_model_and_the_others_go_on(kmock_cluster, make_targets):
    kmock_cluster.put(deployment("chat", replicas=1))
    kmock_cluster.put(deployment("code", replicas=1))
    cfg = config(model("chat"), model("code"))
    targets = make_targets(cfg)
    targets.read_states(now=0.0)
    kmock_cluster.fail_next("PATCH", SCALE.format("chat"), 404, status_body(404, 'deployments.apps "chat" not found'))
    first = targets.apply(cfg.models[0], decided(1, 3), now=0.0)
    second = targets.apply(cfg.models[1], decided(1, 3), now=0.0)
    assert first.outcome == "missing" and "not found" in first.detail
    assert second.outcome == "patched"
    assert kmock_cluster.get(DEPLOYMENTS, "ml", "code")["spec"]["replicas"] == 3


def test_forbidden_names_the_missing_rbac_rule(kmock_cluster, make_targets):
    kmock_cluster.put(deployment("chat", replicas=1))
    kmock_cluster.fail_next(
        "PATCH",
        SCALE.format("chat"),
        403,
        status_body(403, 'deployments.apps "chat" is forbidden: User "system:serviceaccount:x:y" cannot patch resource "deployments/scale"'),
    )
    action = read_and_apply(make_targets, config(model("chat")), 3)
    assert action.outcome == "forbidden"
    assert "apiGroups [apps], resources [deployments/scale], verbs [patch] in namespace ml" in action.detail
    assert kmock_cluster.get(DEPLOYMENTS, "ml", "chat")["spec"]["replicas"] == 1


def test_a_forbidden_reread_after_a_conflict_names_the_get_it_needs(kmock_cluster, make_targets):
    """The rule named is the one of the call refused: after a 409 the scale is read again, and
    a Role that grants patch but not get is told to add get, not patch."""
    kmock_cluster.put(deployment("chat", replicas=1))
    kmock_cluster.fail_next("PATCH", SCALE.format("chat"), 409)
    kmock_cluster.fail_next("GET", SCALE.format("chat"), 403, status_body(403, "cannot get resource deployments/scale"))
    action = read_and_apply(make_targets, config(model("chat")), 3)
    assert action.outcome == "forbidden"
    assert ("forbidden: the service account needs RBAC: apiGroups [apps], resources [deployments/scale], verbs [get] "
            "in namespace ml (cannot get resource deployments/scale)") == action.detail


def test_forbidden_list_leaves_that_namespace_unread(kmock_cluster, make_targets):
    kmock_cluster.put(deployment("chat", replicas=1))
    kmock_cluster.put(deployment("other", namespace="team-b", replicas=1))
    kmock_cluster.fail_next("GET", "/apis/apps/v1/namespaces/ml/deployments", 403, times=1_000)
    cfg = config(model("chat"), model("other", namespace="team-b"))
    with capture_logs() as logs:
        states = make_targets(cfg, sync_s=1.0).read_states(now=0.0)
    assert set(states) == {"other"}
    forbidden = [e for e in logs if e["event"].startswith("forbidden by RBAC")]
    assert "resources [deployments], verbs [list, watch] in namespace ml" in forbidden[0]["error"]


def test_deleted_target_is_absent_from_the_read(kmock_cluster, make_targets):
    kmock_cluster.put(deployment("code", replicas=1))
    states = make_targets(config(model("chat"), model("code"))).read_states(now=0.0)
    assert set(states) == {"code"}


def test_pin_mode_sets_paused_replicas_and_never_touches_the_deployment(kmock_cluster, make_targets, events):
    kmock_cluster.put(deployment("tail", replicas=2))
    kmock_cluster.put(scaled_object("tail-so", deployment="tail"))
    cfg = config(model("tail", target={"kind": "ScaledObject", "name": "tail-so", "mode": "pin"}))
    action = read_and_apply(make_targets, cfg, 0, name="tail", floor=0)
    assert action.outcome == "patched"
    assert kmock_cluster.get(SCALEDOBJECTS, "ml", "tail-so")["metadata"]["annotations"][PAUSED_REPLICAS] == "0"
    assert kmock_cluster.get(DEPLOYMENTS, "ml", "tail")["spec"]["replicas"] == 2
    assert events.flush(timeout_s=5)
    (event,) = kmock_cluster.requests("POST", "/api/v1/namespaces/ml/events")
    assert event.data["reason"] == "ScaledDown" and event.data["involvedObject"]["kind"] == "ScaledObject"
    assert all("/deployments/" not in r.url.path for r in kmock_cluster.requests("PATCH"))


def test_pin_mode_reads_the_pinned_count_as_current(kmock_cluster, make_targets):
    kmock_cluster.put(deployment("tail", replicas=2))
    kmock_cluster.put(scaled_object("tail-so", deployment="tail", annotations={PAUSED_REPLICAS: "3"}))
    cfg = config(model("tail", target={"kind": "ScaledObject", "name": "tail-so", "mode": "pin"}))
    states = make_targets(cfg).read_states(now=0.0)
    assert states["tail"].spec_replicas == 3
    action = read_and_apply(make_targets, cfg, 3, name="tail")
    assert action.outcome == "unchanged" and not kmock_cluster.requests("PATCH")


def test_bounds_mode_patches_min_and_max_only(kmock_cluster, make_targets, events):
    kmock_cluster.put(deployment("tail", replicas=2))
    kmock_cluster.put(scaled_object("tail-so", deployment="tail"))
    cfg = config(model("tail", target={"kind": "ScaledObject", "name": "tail-so", "mode": "bounds"}))
    action = read_and_apply(make_targets, cfg, 2, name="tail", floor=1, cap=2)
    assert action.outcome == "patched"
    spec = kmock_cluster.get(SCALEDOBJECTS, "ml", "tail-so")["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 2)
    assert spec["triggers"][0]["metadata"]["threshold"] == "5"  # the rest of the object is untouched
    (patch,) = kmock_cluster.requests("PATCH")
    assert patch.data == {"spec": {"minReplicaCount": 1, "maxReplicaCount": 2}}
    assert events.flush(timeout_s=5)
    (event,) = kmock_cluster.requests("POST", "/api/v1/namespaces/ml/events")
    assert event.data["reason"] == "BoundsChanged"


def test_refuses_to_write_a_deployment_that_keda_owns(kmock_cluster, make_targets):
    kmock_cluster.put(deployment("chat", replicas=1))
    kmock_cluster.put(scaled_object("chat-so", deployment="chat"))
    action = read_and_apply(make_targets, config(model("chat")), 3)
    assert action.outcome == "refused"
    assert "ScaledObject chat-so" in action.detail
    assert not kmock_cluster.requests("PATCH")
    assert kmock_cluster.get(DEPLOYMENTS, "ml", "chat")["spec"]["replicas"] == 1


def test_refuses_to_write_a_deployment_that_a_plain_hpa_scales_naming_the_hpa(kmock_cluster, make_targets):
    """The HPA controller sets a Deployment's count back to its own within 15 s: writing it
    would fight the HPA, as writing a KEDA-owned Deployment would fight KEDA's. kmock serves
    the HPA through the watch cache's list, as the API server would."""
    kmock_cluster.put(deployment("chat", replicas=1))
    kmock_cluster.put(horizontal_pod_autoscaler("chat-cpu", deployment="chat"))
    kmock_cluster.put(horizontal_pod_autoscaler("other-cpu", deployment="other"))
    with capture_logs() as logs:
        action = read_and_apply(make_targets, config(model("chat")), 3)
    assert action.outcome == "refused"
    assert "HorizontalPodAutoscaler chat-cpu" in action.detail and "other-cpu" not in action.detail
    (refusal,) = [e for e in logs if e["event"] == "refusing to scale a Deployment that an HPA scales"]
    assert "chat-cpu" in refusal["detail"] and refusal["model"] == "chat"
    assert not kmock_cluster.requests("PATCH")
    assert kmock_cluster.get(DEPLOYMENTS, "ml", "chat")["spec"]["replicas"] == 1


def test_an_hpa_created_later_is_seen_by_the_watch_and_refused(kmock_cluster, events):
    kmock_cluster.put(deployment("chat", replicas=1))
    cfg = config(model("chat"))
    cache = WatchCache(kmock_cluster.api_client)
    try:
        cache.follow(cfg.namespaces)
        assert cache.wait_synced(timeout_s=10)
        targets = KubernetesTargets(cfg, kmock_cluster.api_client, cache=cache, events=events)
        k8s.AutoscalingV2Api(kmock_cluster.api_client).create_namespaced_horizontal_pod_autoscaler(
            "ml", horizontal_pod_autoscaler("chat-cpu", deployment="chat")
        )
        deadline = time.monotonic() + 10
        while not cache.view("ml", now=0.0).autoscalers:  # the watch's ADDED event
            assert time.monotonic() < deadline, "the watch did not see the HPA"
            time.sleep(0.02)
        targets.read_states(now=0.0)
        action = targets.apply(cfg.models[0], decided(1, 3), now=0.0)
    finally:
        cache.stop()
    assert action.outcome == "refused" and "HorizontalPodAutoscaler chat-cpu" in action.detail
    assert kmock_cluster.get(DEPLOYMENTS, "ml", "chat")["spec"]["replicas"] == 1


def test_kedas_own_hpa_does_not_block_its_scaled_object(kmock_cluster, make_targets):
    """KEDA makes an HPA for each ScaledObject; writing through the ScaledObject is the way in."""
    kmock_cluster.put(deployment("tail", replicas=2))
    kmock_cluster.put(scaled_object("tail-so", deployment="tail"))
    kmock_cluster.put(horizontal_pod_autoscaler("keda-hpa-tail-so", deployment="tail", made_by_keda_for="tail-so"))
    cfg = config(model("tail", target={"kind": "ScaledObject", "name": "tail-so", "mode": "pin"}))
    action = read_and_apply(make_targets, cfg, 3, name="tail")
    assert action.outcome == "patched"


def test_a_namespace_whose_hpas_cannot_be_listed_is_not_read(kmock_cluster, make_targets):
    """Missing is not zero: a namespace where nobody can say whether an HPA scales a target is
    skipped, its 403 naming the rule to grant."""
    kmock_cluster.put(deployment("chat", replicas=1))
    kmock_cluster.fail_next("GET", "/apis/autoscaling/v2/namespaces/ml/horizontalpodautoscalers", 403, times=1_000)
    with capture_logs() as logs:
        states = make_targets(config(model("chat")), sync_s=1.0).read_states(now=0.0)
    assert states == {}
    forbidden = [e for e in logs if e["event"].startswith("forbidden by RBAC")]
    assert ("the service account needs RBAC: apiGroups [autoscaling], resources [horizontalpodautoscalers], "
            "verbs [list, watch] in namespace ml") in forbidden[0]["error"]


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_fail_the_action_without_raising(kmock_cluster, make_targets, status):
    kmock_cluster.put(deployment("chat", replicas=1))
    kmock_cluster.fail_next("PATCH", SCALE.format("chat"), status)
    action = read_and_apply(make_targets, config(model("chat")), 3)
    assert action.outcome == "failed" and str(status) in action.detail


def test_an_unreachable_api_server_skips_the_tick_without_raising(make_targets):
    from kubernetes import client as k8s

    unreachable = k8s.ApiClient(k8s.Configuration(host="http://127.0.0.1:9"))
    cfg = config(model("chat"))
    targets = make_targets(cfg, api_client=unreachable, sync_s=0.5)
    assert targets.read_states(now=0.0) == {}
    action = targets.apply(cfg.models[0], decided(1, 3), now=0.0)
    assert action.outcome == "failed" and "unreachable" in action.detail


EVENTS = "/api/v1/namespaces/ml/events"


def test_each_scaling_records_an_event_with_its_reasons(kmock_cluster, make_targets, events):
    kmock_cluster.put(deployment("chat", replicas=2))
    read_and_apply(make_targets, config(model("chat")), 4)
    assert events.flush(timeout_s=5)
    (event,) = kmock_cluster.requests("POST", EVENTS)
    body = event.data
    assert body["involvedObject"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "chat", "namespace": "ml"}
    assert body["reason"] == "ScaledUp" and body["type"] == "Normal"
    assert body["message"] == "deployments/chat replicas from 2 to 4 because Recommendation: test wants 4"
    assert body["reportingComponent"] == "llm-autoscaler"


def test_a_hold_records_no_event(kmock_cluster, make_targets, events):
    kmock_cluster.put(deployment("chat", replicas=2))
    read_and_apply(make_targets, config(model("chat")), 2)
    assert events.flush(timeout_s=5)
    assert not kmock_cluster.requests("POST", EVENTS)


def test_an_event_that_cannot_be_recorded_does_not_fail_the_scaling(kmock_cluster, make_targets, events):
    kmock_cluster.put(deployment("chat", replicas=2))
    kmock_cluster.fail_next("POST", EVENTS, 403)
    with capture_logs() as logs:
        action = read_and_apply(make_targets, config(model("chat")), 1)
        assert events.flush(timeout_s=5)
    assert action.outcome == "patched"
    assert kmock_cluster.get(DEPLOYMENTS, "ml", "chat")["spec"]["replicas"] == 1
    (warning,) = [e for e in logs if e["event"] == "could not record an Event for a scaling"]
    assert warning["hint"] == 'the service account needs RBAC: apiGroups [""], resources [events], verbs [create] in namespace ml'


def test_parallel_writers_overlap_their_waits_on_a_slow_api_and_each_model_is_written_once(kmock_cluster, events):
    """Six counts to change through an API that answers 0.3 s late: one at a time that is
    1.8 s at least; three writers take two rounds."""
    class Busy:
        def fetch_signals(self, *, now: float) -> Signals:
            busy, zero = Reading.of(40.0), Reading.of(0.0)
            return Signals(models={m.name: ModelSignals(waiting=busy, running=busy, kv_cache_usage=zero, gpu_utilization=Reading.of(95.0),
                                                        completion_rate=zero, wake=zero) for m in cfg.models})

    cfg = config(*(model(f"m{i}") for i in range(6)))
    for m in cfg.models:
        kmock_cluster.put(deployment(m.name, replicas=1))
    cache = WatchCache(kmock_cluster.api_client)
    with FaultyProxy(kmock_cluster.url) as proxy:
        slow = k8s.ApiClient(k8s.Configuration(host=proxy.url))
        try:
            cache.follow(cfg.namespaces)
            assert cache.wait_synced(timeout_s=10)
            targets = KubernetesTargets(cfg, slow, cache=cache, events=events)
            controller = Controller(cfg, metrics=Busy(), targets=targets, write_workers=3)
            proxy.delay_s = 0.3
            started = time.monotonic()
            outcomes = controller.tick(now=0.0)
            took_s = time.monotonic() - started
        finally:
            cache.stop()
            slow.close()
    assert [o.model for o in outcomes] == [m.name for m in cfg.models]
    assert {o.action.outcome for o in outcomes} == {"patched"}
    assert took_s < 1.2, took_s
    patched = sorted(r.url.path.split("/")[-2] for r in kmock_cluster.requests("PATCH"))
    assert patched == [m.name for m in cfg.models]  # once each

"""The daemon's Kubernetes adapters against a real control plane (tests/support/controlplane_harness.py):
etcd, kube-apiserver with ServiceAccount tokens and RBAC, the Deployment and ReplicaSet
controllers, the scheduler, KWOK nodes with nvidia.com/gpu, and the project's ScaledObject CRD.

The daemon's calls carry a token of the ServiceAccount that `kubectl apply -k deploy/` creates,
bound to exactly the Roles of deploy/rbac.yaml: a rule missing there is a 403 here, from the
API server's RBAC authorizer, not an injected answer. What kmock cannot show rests on this
server: optimistic concurrency (409 for a stale resourceVersion), RBAC, schema validation of
ScaledObject writes, watch expiry after an etcd compaction (410), and the scale subresource
turning into pods that become Ready after a cold start. The faults that need injecting (5xx,
slowness, a torn stream) stay on kmock (tests/test_targets_kubernetes.py, tests/test_watching.py).
"""
from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from structlog.testing import capture_logs

from autoscaler.config import Config
from autoscaler.controller import Controller
from autoscaler.metrics.prometheus import PrometheusSource
from autoscaler.kube_errors import Rule, rbac_hint
from autoscaler.leader import LeaseElector
from autoscaler.settings import LeaderSettings, WatchSettings
from autoscaler.state_store import ConfigMapStateStore, StateTaken, StateUnavailable, record_of
from autoscaler.targets.events import EventSender
from autoscaler.targets.kubernetes import PAUSED_REPLICAS, KubernetesTargets
from autoscaler.targets.watching import KEDA, WatchCache
from policies import Decision, PolicyState, Reason
from tests.builders import config, deployment, model, scaled_object
from tests.support.controlplane_harness import READY_DELAY, REPO, ControlPlane, gpu_node
from tests.support.prom_harness import unique_name, vllm_labels
from tests.support.tcp_relay import TcpRelay

pytestmark = pytest.mark.controlplane

HOME = "llm-autoscaler"  # the daemon's namespace, with its ServiceAccount, Lease and state ConfigMap
SERVICE_ACCOUNT = f"system:serviceaccount:{HOME}:llm-autoscaler"
LEASE = "llm-autoscaler"  # the one Lease name deploy/rbac.yaml lets it get and patch
STATE = "llm-autoscaler-state"  # likewise the one ConfigMap
TIMINGS = LeaderSettings(lease_duration_s=15, renew_deadline_s=10, retry_period_s=2)
# The targets of deploy/configmap.yaml, the only names deploy/rbac.yaml lets the daemon write
# (resourceNames): tests that write create these in `ml` and delete them after.
CHAT, BATCH, TAIL = "llama-8b-chat", "llama-8b-batch", "qwen-7b-tail"


def eventually(predicate: Callable[[], object], *, timeout_s: float = 30.0, what: str = "condition", every_s: float = 0.05) -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true within {timeout_s:.0f} s")
        time.sleep(every_s)  # a poll interval


def name(prefix: str) -> str:
    return unique_name(prefix).lower()


def decided(current: int, desired: int, *, floor: int = 1, cap: int = 10) -> Decision:
    return Decision(current, desired, floor, cap, (Reason("Recommendation", f"test wants {desired}"),))


def workload(deployment_name: str, *, namespace: str = "ml", replicas: int = 1, gpus: int = 1, ready_delay: str = "0s") -> dict:
    """A Deployment as tests/builders.py writes it, without the status a create ignores, whose
    pods KWOK makes Ready `ready_delay` after they are bound to a node."""
    body = deployment(deployment_name, namespace=namespace, replicas=replicas, gpus=gpus)
    body.pop("status")
    body["spec"]["template"]["metadata"]["annotations"] = {READY_DELAY: ready_delay}
    return body


# -- the install, and the daemon's identity ----------------------------------------------------------


@pytest.fixture(scope="session")
def installed(control_plane: ControlPlane) -> str:
    """`kubectl apply -k deploy/` on the real API server, after the models' namespace `ml`
    that deploy/rbac.yaml expects to exist. Returns kubectl's output."""
    control_plane.kubectl("create", "namespace", "ml")
    return control_plane.kubectl("apply", "-k", str(REPO / "deploy")).stdout


@pytest.fixture(scope="session")
def daemon_token(control_plane: ControlPlane, installed: str) -> str:
    return control_plane.service_account_token(HOME, "llm-autoscaler")


@pytest.fixture
def daemon(control_plane: ControlPlane, daemon_token: str) -> k8s.ApiClient:
    """An ApiClient with the daemon's ServiceAccount token: deploy/rbac.yaml's rights, no more."""
    return control_plane.token_client(daemon_token)


@pytest.fixture
def admin(control_plane: ControlPlane) -> k8s.ApiClient:
    return control_plane.admin_client()


@pytest.fixture
def daemon_events(daemon) -> Iterator[EventSender]:
    """The actuator's Event sender with the ServiceAccount's token; `flush(5)` before looking."""
    sender = EventSender(daemon)
    yield sender
    sender.stop(timeout_s=5)


@pytest.fixture
def make_targets(daemon, daemon_events) -> Iterator[Callable[..., KubernetesTargets]]:
    """KubernetesTargets as the daemon builds them, over a cache that lists and watches with
    the ServiceAccount's token."""
    caches: list[WatchCache] = []

    def make(cfg: Config, *, sync_s: float = 15.0) -> KubernetesTargets:
        cache = WatchCache(daemon)
        caches.append(cache)
        cache.follow(cfg.namespaces)
        cache.wait_synced(timeout_s=sync_s)
        return KubernetesTargets(cfg, daemon, cache=cache, events=daemon_events)

    yield make
    for cache in caches:
        cache.stop()


@pytest.fixture
def owned(admin) -> Iterator[Callable[[dict], str]]:
    """Create a Deployment (or a ScaledObject) in `ml` for one test, deleted after it: the
    writable names are few and shared by the tests."""
    made: list[dict] = []

    def create(body: dict) -> str:
        if body["kind"] == "Deployment":
            k8s.AppsV1Api(admin).create_namespaced_deployment("ml", body)
        else:
            k8s.CustomObjectsApi(admin).create_namespaced_custom_object(body=body, namespace="ml", **KEDA)
        made.append(body)
        return body["metadata"]["name"]

    yield create
    for body in reversed(made):
        name_ = body["metadata"]["name"]
        if body["kind"] == "Deployment":
            k8s.AppsV1Api(admin).delete_namespaced_deployment(name_, "ml")
        else:
            k8s.CustomObjectsApi(admin).delete_namespaced_custom_object(name=name_, namespace="ml", **KEDA)


def can_i(control_plane: ControlPlane, verb: str, resource: str, namespace: str, *extra: str) -> str:
    done = control_plane.kubectl("auth", "can-i", verb, resource, "-n", namespace, f"--as={SERVICE_ACCOUNT}", *extra, check=False)
    return done.stdout.strip()


def test_deploy_applies_with_kubectl_and_grants_the_service_account_what_rbac_yaml_says(control_plane, installed):
    """Rests on the real API server: kubectl's apply of deploy/'s kustomization (schema
    validation of every object, the RBAC API's escalation check on the Roles), and the RBAC
    authorizer's answers for the ServiceAccount the install creates."""
    for created in ("namespace/llm-autoscaler", "serviceaccount/llm-autoscaler", "role.rbac.authorization.k8s.io/llm-autoscaler",
                    "rolebinding.rbac.authorization.k8s.io/llm-autoscaler-home", "deployment.apps/llm-autoscaler"):
        assert created in installed, installed
    assert can_i(control_plane, "patch", f"deployments.apps/{CHAT}", "ml", "--subresource=scale") == "yes"
    assert can_i(control_plane, "patch", f"scaledobjects.keda.sh/{TAIL}", "ml") == "yes"
    assert can_i(control_plane, "watch", "deployments.apps", "ml") == "yes"
    # Deliberately absent in deploy/rbac.yaml: the Deployment itself is never written, nor
    # one that is not a configured target, nor anything outside the Roles' namespaces.
    assert can_i(control_plane, "patch", f"deployments.apps/{CHAT}", "ml") == "no"
    assert can_i(control_plane, "patch", "deployments.apps/another", "ml", "--subresource=scale") == "no"
    assert can_i(control_plane, "patch", f"deployments.apps/{CHAT}", "default", "--subresource=scale") == "no"
    assert can_i(control_plane, "get", f"leases.coordination.k8s.io/{LEASE}", HOME) == "yes"
    assert can_i(control_plane, "get", "leases.coordination.k8s.io/another", HOME) == "no"
    assert can_i(control_plane, "list", "nodes", "default") == "yes"


def test_the_shipped_examples_pass_the_real_api_servers_validation_and_the_scaledobject_schema(control_plane, installed):
    """Rests on the real API server: a server-side dry run validates every object of
    deploy/examples/ against the built-in schemas and the project's ScaledObject CRD."""
    done = control_plane.kubectl("apply", "--dry-run=server", "-f", str(REPO / "deploy" / "examples"))
    assert "scaledobject.keda.sh/" in done.stdout and "deployment.apps/" in done.stdout, done.stdout


# -- the actuator --------------------------------------------------------------------------------------


def test_scaling_a_real_deployment_brings_up_pods_that_turn_ready_after_the_cold_start(admin, owned, make_targets, daemon_events):
    """Rests on the real control plane: the scale subresource's PATCH (with the ServiceAccount's
    rights only), the Deployment and ReplicaSet controllers making pods, the scheduler binding
    them to GPU nodes, KWOK making them Ready after the template's 3 s delay, and the watch
    bringing each change to the cache the next read uses."""
    apps = k8s.AppsV1Api(admin)
    chat = owned(workload(CHAT, replicas=1, ready_delay="3s"))
    eventually(lambda: (apps.read_namespaced_deployment(chat, "ml").status.ready_replicas or 0) == 1, what="first pod Ready")
    cfg = config(model(chat))
    targets = make_targets(cfg)
    state = eventually(lambda: (s := targets.read_states(now=time.time()).get(chat)) and s.ready_replicas == 1 and s, what="cache sees it")
    assert (state.spec_replicas, state.gpus_per_replica) == (1, 1)

    action = targets.apply(cfg.models[0], decided(1, 3), now=time.time())
    patched_at = time.monotonic()
    assert action.outcome == "patched", action.detail
    assert "from 1 to 3 because Recommendation: test wants 3" in action.detail
    assert apps.read_namespaced_deployment_scale(chat, "ml").spec.replicas == 3
    seen = []

    def all_ready() -> bool:
        state = targets.read_states(now=time.time())[chat]
        seen.append((state.spec_replicas, state.ready_replicas))
        return state.ready_replicas == 3

    eventually(all_ready, what="three pods Ready")
    took_s = time.monotonic() - patched_at
    # The two new pods were asked for, then not Ready for the cold start, then Ready.
    assert (3, 1) in seen, seen
    assert took_s >= 2.5, f"Ready {took_s:.1f} s after the scale, before the 3 s cold start"
    pods = k8s.CoreV1Api(admin).list_namespaced_pod("ml", label_selector=f"app={chat}").items
    assert len(pods) == 3 and all(p.spec.node_name and p.spec.node_name.startswith("kwok-gpu-") for p in pods)
    # The Event with the reasons, posted with the Role's `create events`.
    daemon_events.flush(5)
    events = k8s.CoreV1Api(admin).list_namespaced_event("ml", field_selector=f"involvedObject.name={chat}").items
    assert any(e.reason == "ScaledUp" and "test wants 3" in e.message for e in events), [(e.reason, e.message) for e in events]


def test_the_controller_scales_from_real_prometheus_and_sees_the_cold_start_through(prometheus_stack, admin, owned, make_targets):
    """End to end, each part real: queue depth from an exporter through a real Prometheus, the
    controller's ticks, the scale PATCH with the ServiceAccount's rights, the controllers and
    the scheduler making pods, KWOK making them Ready after a 3 s cold start, and the watch
    showing each tick the replicas that are ready, not only those asked for."""
    exporter, prometheus = prometheus_stack
    exporter.set("vllm:num_requests_waiting", vllm_labels(CHAT, "ml"), 40)
    exporter.set("vllm:num_requests_running", vllm_labels(CHAT, "ml"), 32)
    prometheus.wait_for(f'vllm:num_requests_running{{model_name="{CHAT}",namespace="ml"}}')
    try:
        owned(workload(CHAT, replicas=1, ready_delay="3s"))
        cfg = config(model(CHAT), prometheus={"url": prometheus.url})
        targets = make_targets(cfg)
        eventually(lambda: (s := targets.read_states(now=time.time()).get(CHAT)) and s.ready_replicas == 1, what="first pod Ready")
        controller = Controller(cfg, metrics=PrometheusSource(cfg), targets=targets)

        (first,) = controller.tick(now=time.time())
        assert first.action.outcome == "patched", first.action.detail
        # 40 waiting at 4 per replica asks for 10; one step adds at most max(4, 100% of 1) = 4.
        assert (first.decision.current_replicas, first.decision.desired_replicas) == (1, 5)
        seen = []

        def ticked_until_ready() -> bool:
            (outcome,) = controller.tick(now=time.time())
            state = targets.read_states(now=time.time())[CHAT]
            seen.append((state.spec_replicas, state.ready_replicas, outcome.action.outcome))
            return state.ready_replicas >= 5

        eventually(ticked_until_ready, timeout_s=60, what="five pods Ready", every_s=0.5)  # a tick each 0.5 s
        assert any(ready < spec for spec, ready, _ in seen), seen  # the cold start, seen by the ticks
    finally:
        exporter.set("vllm:num_requests_waiting", vllm_labels(CHAT, "ml"), 0)
        exporter.set("vllm:num_requests_running", vllm_labels(CHAT, "ml"), 0)


def test_a_scale_planned_from_a_stale_read_is_answered_409_then_read_again_and_written(admin, owned, make_targets):
    """Rests on the real API server's optimistic concurrency, which kmock does not enforce: the
    scale patch carries the resourceVersion the cache read, another writer's change in
    between makes the server answer 409, and the actuator reads /scale again and writes."""
    apps = k8s.AppsV1Api(admin)
    owned(workload(CHAT, replicas=1))
    cfg = config(model(CHAT))
    targets = make_targets(cfg)

    def settled() -> bool:  # the controllers done writing its status, the cache caught up
        live = apps.read_namespaced_deployment(CHAT, "ml")
        state = targets.read_states(now=time.time()).get(CHAT)
        return (live.status.ready_replicas or 0) == 1 and state is not None and state.ready_replicas == 1

    eventually(settled, what="the Deployment settled")
    targets.read_states(now=time.time())  # the read the write is planned from
    apps.patch_namespaced_deployment(CHAT, "ml", {"metadata": {"labels": {"touched": "by-another-writer"}}})
    with capture_logs() as logs:
        action = targets.apply(cfg.models[0], decided(1, 2), now=time.time())
    assert action.outcome == "patched", action.detail
    assert any(entry["event"] == "conflict; re-reading and retrying" for entry in logs)
    assert apps.read_namespaced_deployment_scale(CHAT, "ml").spec.replicas == 2


def test_more_gpus_than_the_nodes_have_leave_pods_pending_and_not_ready(control_plane, admin, owned, make_targets):
    """Rests on the real scheduler: two KWOK nodes of 8 nvidia.com/gpu, kept for this test by a
    taint, hold four 4-GPU pods; the fifth stays Pending, so ready stays below spec, as on a
    full GPU pool."""
    core = k8s.CoreV1Api(admin)
    pool = name("pool")
    nodes = [gpu_node(f"{pool}-{index}", gpus=8) for index in range(2)]
    for node in nodes:
        node["metadata"]["labels"]["pool"] = pool
        node["spec"] = {"taints": [{"key": "pool", "value": pool, "effect": "NoSchedule"}]}
    control_plane.add_nodes(nodes)
    body = workload(BATCH, replicas=1, gpus=4)
    body["spec"]["template"]["spec"] |= {"nodeSelector": {"pool": pool},
                                         "tolerations": [{"key": "pool", "value": pool, "effect": "NoSchedule"}]}
    owned(body)
    try:
        cfg = config(model(BATCH))
        targets = make_targets(cfg)
        eventually(lambda: (s := targets.read_states(now=time.time()).get(BATCH)) and s.ready_replicas == 1, what="first pod Ready")
        assert targets.apply(cfg.models[0], decided(1, 5), now=time.time()).outcome == "patched"
        eventually(lambda: targets.read_states(now=time.time())[BATCH].ready_replicas == 4, what="four pods Ready")
        pods = core.list_namespaced_pod("ml", label_selector=f"app={BATCH}").items
        assert sorted(p.status.phase for p in pods) == ["Pending", "Running", "Running", "Running", "Running"]
        pending = next(p for p in pods if p.status.phase == "Pending")
        eventually(lambda: any(c.type == "PodScheduled" and c.status == "False" and "nvidia.com/gpu" in (c.message or "")
                               for c in core.read_namespaced_pod(pending.metadata.name, "ml").status.conditions or []),
                   what="the scheduler's reason")
        assert targets.read_states(now=time.time())[BATCH].spec_replicas == 5
    finally:
        for node in nodes:
            core.delete_node(node["metadata"]["name"])


def test_a_namespace_outside_the_roles_answers_403_and_the_error_names_the_rule(admin, make_targets):
    """Rests on the real RBAC authorizer: deploy/rbac.yaml has no Role in this namespace, so
    the cache's list and the actuator's scale PATCH are refused with the server's own 403,
    and both name the rule to add."""
    outside = name("outside")
    k8s.CoreV1Api(admin).create_namespace({"metadata": {"name": outside}})
    apps = k8s.AppsV1Api(admin)
    apps.create_namespaced_deployment(outside, workload("chat", namespace=outside))
    cfg = config(model("chat", namespace=outside))
    with capture_logs() as logs:
        targets = make_targets(cfg, sync_s=3)
        action = targets.apply(cfg.models[0], decided(1, 3), now=time.time())
        states = targets.read_states(now=time.time())
    assert states == {}  # not listed, so not read: its model is skipped, not scaled from nothing
    assert action.outcome == "forbidden"
    assert rbac_hint(Rule("apps", "deployments/scale", ("patch",), outside)) in action.detail
    assert f'cannot patch resource "deployments/scale" in API group "apps" in the namespace "{outside}"' in action.detail
    watch_refusals = [entry for entry in logs if entry["event"].startswith("forbidden by RBAC") and entry.get("kind") == "Deployment"]
    assert watch_refusals and rbac_hint(Rule("apps", "deployments", ("list", "watch"), outside)) in watch_refusals[0]["error"]
    assert apps.read_namespaced_deployment_scale("chat", outside).spec.replicas == 1


# -- the ScaledObject modes, through the project's CRD -----------------------------------------------


def test_scaledobject_pin_and_bounds_are_written_and_read_back_through_the_crd(admin, owned, make_targets):
    """Rests on the real API server and the project's ScaledObject CRD: the merge patches of the
    paused-replicas annotation and of min/maxReplicaCount pass its structural schema, are
    stored, and come back through the watch."""
    custom = k8s.CustomObjectsApi(admin)
    tail = owned(workload(name("tail"), replicas=1))
    owned(scaled_object(TAIL, deployment=tail))

    pin = config(model(tail, target={"kind": "ScaledObject", "name": TAIL, "mode": "pin"}))
    targets = make_targets(pin)
    eventually(lambda: tail in targets.read_states(now=time.time()), what="the ScaledObject in the cache")
    assert targets.apply(pin.models[0], decided(1, 3), now=time.time()).outcome == "patched"
    stored = custom.get_namespaced_custom_object(name=TAIL, namespace="ml", **KEDA)
    assert stored["metadata"]["annotations"][PAUSED_REPLICAS] == "3"
    eventually(lambda: targets.read_states(now=time.time())[tail].spec_replicas == 3, what="the pin read back")

    bounds = config(model(tail, target={"kind": "ScaledObject", "name": TAIL, "mode": "bounds"}))
    targets = make_targets(bounds)
    eventually(lambda: tail in targets.read_states(now=time.time()), what="the ScaledObject in the cache")
    action = targets.apply(bounds.models[0], decided(1, 4, floor=2, cap=6), now=time.time())
    assert action.outcome == "patched", action.detail
    stored = custom.get_namespaced_custom_object(name=TAIL, namespace="ml", **KEDA)
    assert (stored["spec"]["minReplicaCount"], stored["spec"]["maxReplicaCount"]) == (2, 6)
    # Read back through the watch: the next tick sees the bounds it wrote and writes nothing.
    def read_back() -> bool:
        targets.read_states(now=time.time())
        return targets.apply(bounds.models[0], decided(1, 4, floor=2, cap=6), now=time.time()).outcome == "unchanged"
    eventually(read_back, what="the bounds read back")


def test_the_scaledobject_schema_refuses_what_keda_would(admin):
    """Rests on the real API server's validation against the project's CRD: a negative
    maxReplicaCount and a ScaledObject without triggers are refused (422), naming the field."""
    custom = k8s.CustomObjectsApi(admin)
    body = scaled_object(name("bad"), deployment="x")
    body["spec"]["maxReplicaCount"] = -1
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object(body=body, namespace="ml", **KEDA)
    assert refused.value.status == 422 and "spec.maxReplicaCount" in refused.value.body
    body = scaled_object(name("bad"), deployment="x")
    del body["spec"]["triggers"]
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object(body=body, namespace="ml", **KEDA)
    assert refused.value.status == 422 and "spec.triggers" in refused.value.body


# -- the Lease and the state ConfigMap ----------------------------------------------------------------


@pytest.fixture
def no_lease(admin, installed) -> None:
    """The one Lease the Roles allow, deleted: each election test starts from none."""
    try:
        k8s.CoordinationV1Api(admin).delete_namespaced_lease(LEASE, HOME)
    except ApiException as err:
        if err.status != 404:
            raise


def elector(api_client: k8s.ApiClient, identity: str) -> LeaseElector:
    return LeaseElector(api_client, namespace=HOME, name=LEASE, identity=identity, timings=TIMINGS)


def test_two_electors_on_a_real_lease_one_leads_and_the_standby_takes_over_after_expiry(admin, daemon, no_lease):
    """Rests on the real API server: the Lease's create (the Role's unnamed `create`), get and
    patch by name, and the resourceVersion each write carries."""
    a, b = elector(daemon, "a"), elector(daemon, "b")
    assert a.try_acquire_or_renew(now=0.0)
    assert not b.try_acquire_or_renew(now=0.5)
    stored = k8s.CoordinationV1Api(admin).read_namespaced_lease(LEASE, HOME).spec
    assert (stored.holder_identity, stored.lease_duration_seconds) == ("a", 15)
    now = 0.5
    while not b.try_acquire_or_renew(now=now):  # a is gone: only b keeps its rounds
        now += TIMINGS.retry_period_s
        assert now < 60
    assert TIMINGS.lease_duration_s <= now <= TIMINGS.lease_duration_s + 2 * TIMINGS.retry_period_s
    stored = k8s.CoordinationV1Api(admin).read_namespaced_lease(LEASE, HOME).spec
    assert (stored.holder_identity, stored.lease_transitions) == ("b", 1)


class ReadThen(k8s.ApiClient):
    """An ApiClient that runs `then()` once, right after its next GET of a Lease answers: the
    interleaving of two replicas in which the other writes between this one's read and write."""

    then: Callable[[], object] | None = None

    def call_api(self, method, url, *args, **kwargs):
        answer = super().call_api(method, url, *args, **kwargs)
        if method == "GET" and "/leases/" in url and self.then is not None:
            then, self.then = self.then, None
            then()
        return answer


def test_a_write_with_a_stale_resource_version_is_answered_409_and_the_loser_stands_by(admin, daemon, no_lease):
    """Rests on the real API server's optimistic concurrency, which kmock does not enforce: of
    two standbys racing for an expired Lease, the one whose merge patch carries the
    resourceVersion it read before the other's write is answered 409 Conflict."""
    a, b = elector(daemon, "a"), elector(daemon, "b")
    racing = ReadThen(copy.deepcopy(daemon.configuration))
    c = elector(racing, "c")
    assert a.try_acquire_or_renew(now=0.0)
    assert not b.try_acquire_or_renew(now=0.0) and not c.try_acquire_or_renew(now=0.0)
    # Both saw a's record at 0 s (dated on receipt, a few ms later): at 16 s it has expired.
    racing.then = lambda: b.try_acquire_or_renew(now=16.0)  # b writes between c's read and c's write
    with capture_logs() as logs:
        assert not c.try_acquire_or_renew(now=16.0)
    assert any(entry["event"] == "lost the race for the lease" and entry["identity"] == "c" for entry in logs)
    assert k8s.CoordinationV1Api(admin).read_namespaced_lease(LEASE, HOME).spec.holder_identity == "b"
    assert b.is_leader(now=16.5) and not c.is_leader(now=16.5)
    racing.close()


@pytest.fixture
def no_state(admin, installed) -> None:
    """The one state ConfigMap the Roles allow, deleted: each state test starts from none."""
    try:
        k8s.CoreV1Api(admin).delete_namespaced_config_map(STATE, HOME)
    except ApiException as err:
        if err.status != 404:
            raise


def test_the_state_configmap_is_created_merged_and_read_with_the_roles_rights_only(admin, daemon, no_state):
    """Rests on the real API server: the Role's unnamed `create` of the ConfigMap, `get` and
    `patch` on its one name, a JSON merge patch that sets and deletes single keys (a null
    removes one), and a 403 for any other name, with the hint."""
    core = k8s.CoreV1Api(admin)
    first = ConfigMapStateStore(daemon, namespace=HOME, name=STATE)
    assert first.load() == {}
    first.save({"chat": record_of("chat", PolicyState(), desired=3, now=1000.0)})
    second = ConfigMapStateStore(daemon, namespace=HOME, name=STATE)  # the standby, after a failover
    assert second.load()["chat"]["desired"] == 3
    second.save({"code": record_of("code", PolicyState(), desired=2, now=1010.0)})
    data = core.read_namespaced_config_map(STATE, HOME).data
    assert set(data) == {"code"} and json.loads(data["code"])["desired"] == 2
    with pytest.raises(StateUnavailable, match=r"HTTP 403 .*resources \[configmaps\], verbs \[get\] in namespace llm-autoscaler"):
        ConfigMapStateStore(daemon, namespace=HOME, name="another").load()


def test_a_deposed_leaders_state_save_is_answered_409_and_overwrites_nothing(admin, daemon, no_state):
    """Rests on the real API server's optimistic concurrency: each save carries the
    ConfigMap's resourceVersion as its writer last saw it, so the old leader's save after the
    new leader's is answered 409 (StateTaken) and the new leader's record stands."""
    core = k8s.CoreV1Api(admin)
    old = ConfigMapStateStore(daemon, namespace=HOME, name=STATE)
    old.save({"chat": record_of("chat", PolicyState(), desired=3, now=1000.0)})
    new = ConfigMapStateStore(daemon, namespace=HOME, name=STATE)
    assert new.load()["chat"]["desired"] == 3
    new.save({"chat": record_of("chat", PolicyState(), desired=5, now=1010.0)})
    with pytest.raises(StateTaken, match="written by another process"):
        old.save({"chat": record_of("chat", PolicyState(), desired=1, now=1020.0)})
    assert json.loads(core.read_namespaced_config_map(STATE, HOME).data["chat"])["desired"] == 5


# -- watch expiry ------------------------------------------------------------------------------------


def test_a_watch_from_a_compacted_resource_version_is_answered_410_and_the_cache_lists_again(control_plane, admin, daemon_token):
    """Rests on the real API server and etcd: once etcd has compacted the revision a watch
    resumes from, the API server answers 410 Gone (Deployments are watched from etcd itself,
    see the harness), and the cache lists again and shows the change it missed.

    A relay holds the cache's requests while a watch ends (every `watch_timeout_s`), the
    Deployment is scaled and etcd compacted; released, the resumed watch asks for a revision
    that no longer exists."""
    apps = k8s.AppsV1Api(admin)
    web = name("web")
    apps.create_namespaced_deployment("ml", workload(web, replicas=1))
    with TcpRelay(int(control_plane.url.rsplit(":", 1)[1])) as relay:
        through_relay = control_plane.token_client(daemon_token, url=f"https://127.0.0.1:{relay.port}")
        cache = WatchCache(through_relay, settings=WatchSettings(watch_timeout_s=4))
        try:
            cache.follow(["ml"])
            assert cache.wait_synced(timeout_s=15)
            eventually(lambda: (view := cache.view("ml", now=time.time())) is not None and web in view.deployments, what="listed")
            with capture_logs() as logs:
                relay.hold()
                eventually(lambda: relay.held_chunks >= 3, timeout_s=15, what="the three watches resumed, held")
                apps.patch_namespaced_deployment_scale(web, "ml", {"spec": {"replicas": 4}})
                k8s.CoreV1Api(admin).create_namespaced_config_map("ml", {"metadata": {"name": name("rev")}})
                compacted = control_plane.compact_etcd()
                relay.release()
                # Between the 410 and the relist the namespace has no view (None): nothing is
                # decided on the snapshot that missed the scale.
                eventually(lambda: (view := cache.view("ml", now=time.time())) is not None
                           and view.deployments[web].spec_replicas == 4, what="the relist")
            gone = [entry for entry in logs if entry["event"] == "watch expired (410 Gone); listing again"]
            assert any(entry["kind"] == "Deployment" for entry in gone), (compacted, logs)
        finally:
            cache.stop()

"""The watch-backed cache against kmock, an HTTP Kubernetes API emulator, through the official
client: the first list, changes seen by the watch, a watch that ends and resumes, 410 Gone and
its relist, a namespace not yet listed, and a watch broken for too long.

kmock ignores timeoutSeconds and resourceVersion: its watches never end by themselves, and each
one starts by replaying every stored object as ADDED. The cache is given a 0.5 s watch timeout
so that its read timeout (1 s) ends them, and a deletion is made "lost" (tests/support) to tell
a relist, which drops it, from a resumed watch, which would not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client as k8s

from autoscaler.clock import ManualClock
from autoscaler.settings import WatchSettings
from autoscaler.targets.watching import WatchCache
from tests.builders import deployment, scaled_object
from tests.support.kmock_harness import DEPLOYMENTS, status_body

LIST = "/apis/apps/v1/namespaces/ml/deployments"
WATCH_TIMEOUT_S = 0.5  # kmock ignores timeoutSeconds; the client's read timeout ends it at 1 s


def eventually(predicate: Callable[[], object], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout_s} s")
        time.sleep(0.02)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=1_000_000.0)


@pytest.fixture
def cache(kmock_cluster, clock) -> Iterator[WatchCache]:
    cache = WatchCache(kmock_cluster.api_client, clock=clock, settings=WatchSettings(watch_timeout_s=WATCH_TIMEOUT_S))
    yield cache
    cache.stop()


def replicas(cache: WatchCache, clock: ManualClock, name: str, namespace: str = "ml") -> int | None:
    view = cache.view(namespace, now=clock.now())
    facts = view.deployments.get(name) if view else None
    return facts.spec_replicas if facts else None


def gets(cluster, *, watch: bool) -> list:
    return [r for r in cluster.requests("GET", LIST) if (r.params.get("watch") == "true") == watch]


def test_first_list_gives_the_fields_the_daemon_reads(kmock_cluster, cache, clock):
    kmock_cluster.put(deployment("chat", replicas=3, ready=2, gpus=2))
    kmock_cluster.put(scaled_object("tail-so", deployment="tail", annotations={"autoscaling.keda.sh/paused-replicas": "4"}))
    cache.follow(["ml"])
    assert cache.wait_synced(timeout_s=10)
    view = cache.view("ml", now=clock.now())
    chat = view.deployments["chat"]
    assert (chat.spec_replicas, chat.ready_replicas, chat.gpus_per_replica) == (3, 2, 2)
    so = view.scaled_objects["tail-so"]
    assert (so.target_kind, so.target_name, so.paused_replicas) == ("Deployment", "tail", "4")
    assert (so.min_replica_count, so.max_replica_count) == (0, 10)
    assert len(gets(kmock_cluster, watch=False)) == 1  # one list, then only the watch


def test_a_namespace_not_listed_yet_has_no_view(kmock_cluster, cache, clock):
    kmock_cluster.put(deployment("chat"))
    kmock_cluster.fail_next("GET", LIST, 503, times=1_000)  # the first list never succeeds
    cache.follow(["ml"])
    eventually(lambda: kmock_cluster.requests("GET", LIST))
    assert not cache.wait_synced(timeout_s=0.2)
    assert cache.view("ml", now=clock.now()) is None
    assert cache.view("other", now=clock.now()) is None  # not followed at all


def test_updates_additions_and_deletions_arrive_by_the_watch(kmock_cluster, cache, clock):
    kmock_cluster.put(deployment("chat", replicas=1))
    cache.follow(["ml"])
    assert cache.wait_synced(timeout_s=10)
    apps = k8s.AppsV1Api(kmock_cluster.api_client)

    apps.patch_namespaced_deployment("chat", "ml", {"spec": {"replicas": 5}})
    eventually(lambda: replicas(cache, clock, "chat") == 5)

    apps.create_namespaced_deployment("ml", deployment("code", replicas=2))
    eventually(lambda: replicas(cache, clock, "code") == 2)

    apps.delete_namespaced_deployment("chat", "ml")
    eventually(lambda: replicas(cache, clock, "chat") is None)
    assert len(gets(kmock_cluster, watch=False)) == 1  # all of it without a second list


def test_a_watch_that_ends_resumes_from_its_last_resource_version_without_a_list(kmock_cluster, cache, clock):
    kmock_cluster.put(deployment("chat", replicas=1))
    cache.follow(["ml"])
    assert cache.wait_synced(timeout_s=10)
    # A finite watch: one event, then the server ends it. "code" exists only in that event,
    # so a list (which replaces the namespace) would drop it again; a resumed watch keeps it.
    added = deployment("code", replicas=7)
    added["metadata"]["resourceVersion"] = "42"
    reaction = kmock_cluster.stream_next(LIST, {"type": "ADDED", "object": added})

    eventually(lambda: len(reaction) == 1 and replicas(cache, clock, "code") == 7)
    eventually(lambda: any(r.params.get("resourceVersion") == "42" for r in gets(kmock_cluster, watch=True)))
    assert replicas(cache, clock, "code") == 7
    assert len(gets(kmock_cluster, watch=False)) == 1


@pytest.mark.parametrize("gone", ["an ERROR event", "an HTTP status"])
def test_410_gone_lists_again(kmock_cluster, cache, clock, gone):
    kmock_cluster.put(deployment("chat", replicas=1))
    kmock_cluster.put(deployment("code", replicas=1))
    cache.follow(["ml"])
    assert cache.wait_synced(timeout_s=10)
    # A deletion whose event is lost: a resumed watch would keep "code"; only a list drops it.
    kmock_cluster.forget(DEPLOYMENTS, "ml", "code")
    expired = status_body(410, "too old resource version: 1 (2)", reason="Expired")
    if gone == "an ERROR event":  # what a real API server sends on a watch
        kmock_cluster.stream_next(LIST, {"type": "ERROR", "object": expired})
    else:
        kmock_cluster.fail_next("GET", LIST, 410, expired)

    eventually(lambda: len(gets(kmock_cluster, watch=False)) == 2)
    eventually(lambda: replicas(cache, clock, "code") is None)
    assert replicas(cache, clock, "chat") == 1


def test_after_a_410_the_namespace_is_not_served_until_the_relist_is_done(kmock_cluster, cache, clock):
    """A 410 says events were missed: the snapshot may hold an object since deleted. Until the
    list that replaces it has come back, the namespace has no view (its models are skipped),
    rather than serving what may be stale, however short the break (issue 18)."""
    kmock_cluster.put(deployment("chat", replicas=1))
    kmock_cluster.put(deployment("code", replicas=1))
    cache.follow(["ml"])
    assert cache.wait_synced(timeout_s=10)
    kmock_cluster.forget(DEPLOYMENTS, "ml", "code")  # its DELETED event lost
    expired = status_body(410, "too old resource version: 1 (2)", reason="Expired")
    gone = kmock_cluster.stream_next(LIST, {"type": "ERROR", "object": expired})
    kmock_cluster.fail_next("GET", LIST, 503, times=3)  # the relists fail for a few seconds

    eventually(lambda: cache.view("ml", now=clock.now()) is None)
    assert len(gone) == 1, "no view only once the 410 came"
    eventually(lambda: cache.view("ml", now=clock.now()) is not None)
    assert replicas(cache, clock, "code") is None and replicas(cache, clock, "chat") == 1


def test_a_watch_broken_for_longer_than_the_bound_makes_the_namespace_unreadable(kmock_cluster, cache, clock):
    kmock_cluster.put(deployment("chat", replicas=2))
    cache.follow(["ml"])
    assert cache.wait_synced(timeout_s=10)
    kmock_cluster.fail_next("GET", LIST, 503, times=1_000)  # every reconnect and relist fails
    broken_at = clock.now()
    # Until the break is noticed, a view far in the future is still served.
    eventually(lambda: cache.view("ml", now=broken_at + WatchSettings().watch_max_stale_s + 1) is None)

    assert replicas(cache, clock, "chat") == 2  # a short break: the last counts still serve
    clock.advance(WatchSettings().watch_max_stale_s + 1)
    assert cache.view("ml", now=clock.now()) is None


def test_a_missing_keda_crd_reads_as_no_scaled_objects(kmock_cluster, cache, clock):
    kmock_cluster.put(deployment("chat"))
    kmock_cluster.fail_next("GET", "/apis/keda.sh/v1alpha1/namespaces/ml/scaledobjects", 404)
    cache.follow(["ml"])
    assert cache.wait_synced(timeout_s=10)
    view = cache.view("ml", now=clock.now())
    assert view.scaled_objects == {} and "chat" in view.deployments


def test_following_fewer_namespaces_stops_their_watches(kmock_cluster, cache, clock):
    kmock_cluster.put(deployment("chat"))
    kmock_cluster.put(deployment("other", namespace="team-b"))
    cache.follow(["ml", "team-b"])
    assert cache.wait_synced(timeout_s=10)
    cache.follow(["ml"])
    assert cache.view("team-b", now=clock.now()) is None
    assert replicas(cache, clock, "chat") == 1


def test_stop_ends_every_watch_promptly(kmock_cluster, clock):
    cache = WatchCache(kmock_cluster.api_client, clock=clock)  # the production 300 s watch timeout
    cache.follow([f"ns-{i}" for i in range(5)])
    assert cache.wait_synced(timeout_s=10)
    started = time.monotonic()
    cache.stop()
    assert time.monotonic() - started < 2.0


def test_an_object_the_cache_cannot_read_breaks_the_watch_instead_of_killing_it(kmock_cluster, cache, clock):
    kmock_cluster.put(deployment("chat", replicas=1))
    cache.follow(["ml"])
    assert cache.wait_synced(timeout_s=10)
    nameless = deployment("code", replicas=2)
    del nameless["metadata"]["name"]
    kmock_cluster.stream_next(LIST, {"type": "MODIFIED", "object": nameless})
    # The stream notices, lists again and goes on watching: a later change still arrives.
    eventually(lambda: len(gets(kmock_cluster, watch=False)) == 2)
    k8s.AppsV1Api(kmock_cluster.api_client).patch_namespaced_deployment("chat", "ml", {"spec": {"replicas": 4}})
    eventually(lambda: replicas(cache, clock, "chat") == 4)


def test_a_watch_silent_past_its_timeout_counts_as_broken_since_it_last_spoke(kmock_cluster, cache, clock):
    """kmock never ends a watch: like a dead connection, it says nothing past timeoutSeconds.
    Once the read timeout notices and the watch cannot be resumed, the namespace is out of
    sync since the last word, not since the failure was noticed."""
    kmock_cluster.put(deployment("chat", replicas=2))
    cache.follow(["ml"])
    assert cache.wait_synced(timeout_s=10)
    eventually(lambda: gets(kmock_cluster, watch=True))  # the watch is open: it spoke at t0
    t0 = clock.now()
    kmock_cluster.fail_next("GET", LIST, 503, times=1_000)  # the resume and every relist fail
    clock.advance(50)  # 50 s of silence (the read timeout, scaled down, fires within 1 s)
    eventually(lambda: cache.view("ml", now=t0 + 2 * WatchSettings().watch_max_stale_s) is None)
    # Noticed at t0 + 50, but out of sync since t0: unreadable from t0 + WatchSettings().watch_max_stale_s on.
    assert cache.view("ml", now=t0 + WatchSettings().watch_max_stale_s + 1) is None


# -- watch scope "cluster": one list and watch per kind, across namespaces ---------------------

ALL_DEPLOYMENTS, ALL_SCALEDOBJECTS = "/apis/apps/v1/deployments", "/apis/keda.sh/v1alpha1/scaledobjects"
ALL_AUTOSCALERS = "/apis/autoscaling/v2/horizontalpodautoscalers"


@pytest.fixture
def cluster_cache(kmock_cluster, clock) -> Iterator[WatchCache]:
    cache = WatchCache(kmock_cluster.api_client, clock=clock, settings=WatchSettings(watch_timeout_s=WATCH_TIMEOUT_S, watch_scope="cluster"))
    yield cache
    cache.stop()


def test_cluster_scope_lists_and_watches_each_kind_once_for_every_namespace(kmock_cluster, cluster_cache, clock):
    for namespace in ("ml", "nlp", "elsewhere"):
        kmock_cluster.put(deployment("chat", namespace=namespace, replicas=2))
    kmock_cluster.put(scaled_object("tail-so", deployment="tail", namespace="nlp"))
    cluster_cache.follow(["ml", "nlp"])
    assert cluster_cache.wait_synced(timeout_s=10)
    eventually(lambda: len(kmock_cluster.requests("GET")) >= 6)  # the watches start after the lists
    paths = sorted({(r.url.path, r.params.get("watch") == "true") for r in kmock_cluster.requests("GET")})
    assert paths == sorted((path, watch) for path in (ALL_DEPLOYMENTS, ALL_SCALEDOBJECTS, ALL_AUTOSCALERS) for watch in (False, True))
    assert len(kmock_cluster.requests("GET")) == 6  # a list and a watch of each kind, whatever the namespaces
    # Kept apart by namespace, and only the followed ones are seen.
    assert replicas(cluster_cache, clock, "chat", "ml") == 2
    assert set(cluster_cache.view("nlp", now=clock.now()).scaled_objects) == {"tail-so"}
    assert cluster_cache.view("ml", now=clock.now()).scaled_objects == {}
    assert cluster_cache.view("elsewhere", now=clock.now()) is None


def test_cluster_scope_sees_a_change_in_its_namespace(kmock_cluster, cluster_cache, clock):
    for namespace in ("ml", "nlp"):
        kmock_cluster.put(deployment("chat", namespace=namespace, replicas=1))
    cluster_cache.follow(["ml", "nlp"])
    assert cluster_cache.wait_synced(timeout_s=10)
    k8s.AppsV1Api(kmock_cluster.api_client).patch_namespaced_deployment_scale("chat", "nlp", {"spec": {"replicas": 3}})
    eventually(lambda: replicas(cluster_cache, clock, "chat", "nlp") == 3)
    assert replicas(cluster_cache, clock, "chat", "ml") == 1
    # A reloaded config that follows one more namespace needs no new request to see it.
    before = len(kmock_cluster.requests("GET"))
    cluster_cache.follow(["ml", "nlp", "more"])
    assert cluster_cache.view("more", now=clock.now()).deployments == {}
    assert len(kmock_cluster.requests("GET")) == before


def test_cluster_scope_forbidden_names_the_cluster_role_it_needs(kmock_cluster, cluster_cache, clock):
    from structlog.testing import capture_logs

    kmock_cluster.fail_next("GET", ALL_DEPLOYMENTS, 403, status_body(403, "deployments.apps is forbidden"), times=1_000)
    with capture_logs() as logs:
        cluster_cache.follow(["ml"])
        eventually(lambda: any(e["event"].startswith("forbidden by RBAC") for e in logs))
    assert cluster_cache.view("ml", now=clock.now()) is None
    error = next(e for e in logs if e["event"].startswith("forbidden by RBAC"))["error"]
    assert "apiGroups [apps], resources [deployments], verbs [list, watch] cluster-wide (a ClusterRole)" in error


def test_an_unknown_watch_scope_is_refused_naming_the_allowed_ones():
    with pytest.raises(ValueError, match=r"watch_scope\n  Input should be 'namespaces' or 'cluster'"):
        WatchSettings(watch_scope="global")

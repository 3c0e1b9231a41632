"""A watch-backed cache of the Deployments, ScaledObjects and HorizontalPodAutoscalers in the
configured namespaces.

HPAs are kept only to know which Deployments one scales: a Deployment target that a plain HPA
also scales would be fought over (the HPA sets its count back within 15 s), so the actuator
refuses it, as it refuses a Deployment that a ScaledObject owns.

Why a watch: listing every namespace every tick costs one request per kind and namespace per
tick, each returning whole objects: 150 requests a tick at 50 namespaces, most of them saying
nothing new. A watch lists once, then receives only the changes, on one long request per
namespace and kind that the API server ends every `watch_timeout_s` and the cache resumes at
once.

Scope (`autoscaler run --watch-scope`):
- "namespaces" (the default, least privilege): one list and watch per namespace and kind, so
  a Role in each configured namespace suffices (deploy/rbac.yaml);
- "cluster": one list and watch per kind over all namespaces, kept for the followed ones only,
  as controller-runtime's default cache does. 3 streams instead of 3 per namespace (150 at 50
  namespaces, and as many reconnects a minute), for a ClusterRole that may list and watch
  Deployments, ScaledObjects and HPAs everywhere (deploy/rbac-cluster-watch.yaml). Its list
  carries every Deployment of the cluster, of which only four numbers each are kept.

Lifecycle: `follow(namespaces)` starts the threads (one per stream) and stops those of
namespaces no longer followed (a reloaded config); `wait_synced` blocks until each has listed
once (the daemon calls it before its first tick); `stop()` ends them all.

Each thread lists, then watches from the list's resourceVersion:
- a watch that ends (timeoutSeconds, or a read timeout on a server that ignores it) resumes
  from the last resourceVersion seen, without a list;
- 410 Gone (the resourceVersion is older than the API server keeps) lists again, and the
  namespace has no view until that list is back: events were missed;
- any other error is logged, and the thread lists again after a backoff (0.5 s doubling to
  30 s): a relist cannot miss an event that happened during the break.

Only the fields the daemon reads are kept (`DeploymentFacts`, `ScaledObjectFacts`,
`AutoscalerFacts`), not whole objects: a Deployment's pod template alone is kilobytes.

Missing is not zero: a namespace that has not listed yet, or whose watch has been broken for
longer than `max_stale_s`, has no view, and its models are skipped by the controller rather
than scaled from counts nobody is keeping current.
"""

from __future__ import annotations

import copy
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import structlog
import urllib3
from kubernetes import client as k8s
from kubernetes.watch.watch import iter_resp_lines

from autoscaler.clock import Clock, SystemClock
from autoscaler.kube_errors import Failed, Forbidden, Gone, NotFound, Rule, Unreachable, failure, translated
from autoscaler.settings import ApiSettings, WatchSettings

log = structlog.get_logger(__name__)

PAUSED_REPLICAS = "autoscaling.keda.sh/paused-replicas"
KEDA = {"group": "keda.sh", "version": "v1alpha1", "plural": "scaledobjects"}


@dataclass(frozen=True, slots=True)
class DeploymentFacts:
    spec_replicas: int  # the API's default, 1, when the Deployment leaves it unset
    ready_replicas: int
    gpus_per_replica: int
    rolling_out: bool = False
    # As read: a write carries it as a precondition (kubernetes.py), so that it fails with 409
    # if anyone wrote the object since, a new leader among them.
    resource_version: str | None = None


@dataclass(frozen=True, slots=True)
class ScaledObjectFacts:
    target_kind: str
    target_name: str | None
    paused_replicas: str | None  # the annotation as written, e.g. "3"
    min_replica_count: int | None
    max_replica_count: int | None
    resource_version: str | None = None  # as for DeploymentFacts


@dataclass(frozen=True, slots=True)
class AutoscalerFacts:
    """A HorizontalPodAutoscaler: what it scales, and whether KEDA made it for a ScaledObject."""

    target_kind: str | None
    target_name: str | None
    made_by_keda: bool


@dataclass(frozen=True, slots=True)
class NamespaceView:
    """One namespace as of the last event: Deployments, ScaledObjects and HPAs by name."""

    deployments: Mapping[str, DeploymentFacts]
    scaled_objects: Mapping[str, ScaledObjectFacts]
    autoscalers: Mapping[str, AutoscalerFacts]


def deployment_facts(raw: Mapping) -> DeploymentFacts:
    spec = raw.get("spec") or {}
    replicas = spec.get("replicas")
    wanted = 1 if replicas is None else int(replicas)
    status = raw.get("status") or {}
    return DeploymentFacts(
        spec_replicas=wanted,
        ready_replicas=int(status.get("readyReplicas") or 0),
        gpus_per_replica=gpus_per_replica(spec),
        rolling_out=_rolling_out(raw, wanted),
        resource_version=(raw.get("metadata") or {}).get("resourceVersion"),
    )


def _rolling_out(raw: Mapping, wanted: int) -> bool:
    """A new template not yet observed, replicas not yet on it, or old pods still up (surge)."""
    status = raw.get("status")
    if not status:
        return False
    generation, observed = (raw.get("metadata") or {}).get("generation"), status.get("observedGeneration")
    updated, replicas = status.get("updatedReplicas"), status.get("replicas")
    return bool(
        (generation is not None and observed is not None and generation > observed)
        or (updated is not None and updated < wanted)
        or (replicas is not None and replicas > wanted)
    )


def scaled_object_facts(raw: Mapping) -> ScaledObjectFacts:
    spec = raw.get("spec") or {}
    target = spec.get("scaleTargetRef") or {}
    return ScaledObjectFacts(
        target_kind=target.get("kind", "Deployment"),
        target_name=target.get("name"),
        paused_replicas=((raw.get("metadata") or {}).get("annotations") or {}).get(PAUSED_REPLICAS),
        min_replica_count=spec.get("minReplicaCount"),
        max_replica_count=spec.get("maxReplicaCount"),
        resource_version=(raw.get("metadata") or {}).get("resourceVersion"),
    )


def autoscaler_facts(raw: Mapping) -> AutoscalerFacts:
    target = (raw.get("spec") or {}).get("scaleTargetRef") or {}
    owners = (raw.get("metadata") or {}).get("ownerReferences") or []
    return AutoscalerFacts(
        target_kind=target.get("kind"),
        target_name=target.get("name"),
        made_by_keda=any(o.get("kind") == "ScaledObject" for o in owners),
    )


def gpus_per_replica(spec: Mapping) -> int:
    """Sum of the containers' nvidia.com/gpu limits in the pod template of a Deployment's or
    ReplicaSet's spec, as the API serves it."""
    total = 0
    for container in ((spec.get("template") or {}).get("spec") or {}).get("containers") or []:
        value = ((container.get("resources") or {}).get("limits") or {}).get("nvidia.com/gpu")
        if value is not None and str(value).isdigit():
            total += int(value)
    return total


class _Stream:
    """One (namespace, kind), or one kind in all namespaces (`namespace` None): a thread that
    lists, then watches, into items by namespace and name."""

    def __init__(
        self,
        *,
        namespace: str | None,
        kind: str,
        call: Callable[..., urllib3.HTTPResponse],
        facts: Callable[[Mapping], object],
        clock: Clock,
        settings: WatchSettings,
        connect_timeout_s: float,
        optional: bool,
    ) -> None:
        self.namespace, self.kind = namespace, kind
        group, resource = {
            "Deployment": ("apps", "deployments"),
            "ScaledObject": ("keda.sh", "scaledobjects"),
            "HorizontalPodAutoscaler": ("autoscaling", "horizontalpodautoscalers"),
        }[kind]
        self._rule = Rule(group, resource, ("list", "watch"), namespace)
        self._call, self._facts, self._clock = call, facts, clock
        self._settings = settings
        self._connect_timeout_s = connect_timeout_s
        self._optional = optional  # a 404 on the list means "none exist" (KEDA not installed)
        self._lock = threading.Lock()
        self._items: dict[str, dict[str, object]] = {}  # namespace -> name -> facts
        self.synced = threading.Event()
        self.broken_since: float | None = None
        self._stopping = threading.Event()
        self._response: urllib3.HTTPResponse | None = None
        self._thread = threading.Thread(target=self._run, name=f"watch-{kind}-{namespace or 'all'}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        # A watch blocks in recv() until the server sends something; shutting the socket down
        # wakes it at once (closing it from another thread would not).
        response = self._response
        sock = getattr(getattr(response, "connection", None), "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)

    def snapshot(self, namespace: str) -> dict[str, object]:
        with self._lock:
            return dict(self._items.get(namespace) or {})

    def _run(self) -> None:
        backoff_s = self._settings.watch_backoff_first_s
        version: str | None = None
        while not self._stopping.is_set():
            try:
                if version is None:
                    version = self._list()
                version = self._watch(version)
                backoff_s = self._settings.watch_backoff_first_s
            except Gone:  # as an ERROR event in the stream, or as the answer's status
                # Events were missed: what the snapshot holds may be gone. Not served until
                # the list that replaces it is back (no decision on a stale cache).
                self.synced.clear()
                log.info("watch expired (410 Gone); listing again", namespace=self.namespace, kind=self.kind)
                version = None
            except Failed as err:
                if self._stopping.is_set():
                    break
                if isinstance(err, NotFound) and self._optional:
                    self._replace({})
                    self._stopping.wait(self._settings.crd_recheck_s)
                    version = None
                    continue
                if isinstance(err, Forbidden):  # the same words as the actuator's, for the same alert
                    self._broken(err.hint, event="forbidden by RBAC")
                else:
                    self._broken(str(err))
                version = None
                self._stopping.wait(backoff_s)
                backoff_s = min(backoff_s * 2, self._settings.watch_backoff_max_s)
            except Exception as err:  # noqa: BLE001  a thread that died would leave its counts frozen but trusted
                if self._stopping.is_set():
                    break
                expected = isinstance(err, (Unreachable, urllib3.exceptions.HTTPError, OSError, ValueError))
                if not expected:
                    log.exception("unexpected error in a watch", namespace=self.namespace, kind=self.kind)
                self._broken(f"{type(err).__name__}: {err}")
                version = None
                self._stopping.wait(backoff_s)
                backoff_s = min(backoff_s * 2, self._settings.watch_backoff_max_s)

    def _list(self) -> str | None:
        with translated(self._rule):
            response = self._call(_request_timeout=(self._connect_timeout_s, self._settings.watch_list_timeout_s))
        try:
            body = json.loads(response.data)
        finally:
            response.release_conn()
        items: dict[str, dict[str, object]] = {}
        for item in body.get("items") or []:
            meta = item["metadata"]
            items.setdefault(meta.get("namespace", self.namespace), {})[meta["name"]] = self._facts(item)
        self._replace(items)
        return (body.get("metadata") or {}).get("resourceVersion")

    def _replace(self, items: dict[str, dict[str, object]]) -> None:
        with self._lock:
            self._items = items
            self.broken_since = None
        self.synced.set()

    def _watch(self, version: str | None) -> str | None:
        """Apply events until the watch ends; returns the resourceVersion to resume from."""
        kwargs = {"resource_version": version} if version else {}
        watch_timeout_s = self._settings.watch_timeout_s
        with translated(self._rule):
            response = self._call(
                watch=True,
                allow_watch_bookmarks=True,
                timeout_seconds=max(round(watch_timeout_s), 1),  # 0 would mean no timeout
                # A server that ignores timeoutSeconds, or a connection that died without a word (a
                # half-open TCP connection), is caught this much later; the namespace then counts
                # as out of sync since the last word it heard.
                _request_timeout=(self._connect_timeout_s, watch_timeout_s + min(10.0, watch_timeout_s)),
                **kwargs,
            )
        # stop() sets the flag, then shuts the socket of `_response`; set first, check second,
        # so whichever comes last sees the other, and no watch is left blocking.
        self._response = response
        heard_at = self._clock.now()
        with self._lock:
            self.broken_since = None
        try:
            if self._stopping.is_set():
                return version
            for line in iter_resp_lines(response):
                if self._stopping.is_set():
                    break
                heard_at = self._clock.now()
                if line:
                    version = self._apply(json.loads(line)) or version
        except urllib3.exceptions.ReadTimeoutError:
            # The server did not end the watch when asked: the connection may have been dead
            # since it last spoke. Resume; until that works, the namespace is out of sync
            # since then. (kmock ignores timeoutSeconds, so there this is the normal end.)
            with self._lock:
                self.broken_since = heard_at
        except urllib3.exceptions.ProtocolError:
            if not self._stopping.is_set():
                raise
        finally:
            self._response = None
            response.close()  # unread bytes of a stopped stream must not go back to the pool
            response.release_conn()
        return version

    def _apply(self, event: Mapping) -> str | None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":  # a Status object
            raise failure(obj.get("code"), obj.get("reason"), obj.get("message"), rule=self._rule)
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace", self.namespace)
        if kind in ("ADDED", "MODIFIED"):
            facts = self._facts(obj)
            with self._lock:
                self._items.setdefault(namespace, {})[meta["name"]] = facts
        elif kind == "DELETED":
            with self._lock:
                self._items.get(namespace, {}).pop(meta.get("name"), None)
        return meta.get("resourceVersion")

    def _broken(self, error: str, *, event: str = "watch broken") -> None:
        with self._lock:
            if self.broken_since is None:
                self.broken_since = self._clock.now()
        log.warning(f"{event}; listing again after a backoff", namespace=self.namespace, kind=self.kind, error=error[:300])


class WatchCache:
    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        clock: Clock | None = None,
        settings: WatchSettings = WatchSettings(),
        api: ApiSettings = ApiSettings(),
    ) -> None:
        # Every stream holds a connection for as long as it watches. The client's default pool
        # (5 per core) would discard and re-open connections beyond that, with a warning each
        # time, so the cache has a client of its own with a pool for 512 namespaces (two
        # streams each). The pool only bounds idle connections kept; it allocates none.
        configuration = copy.deepcopy(api_client.configuration)
        configuration.connection_pool_maxsize = 1024
        self._client = k8s.ApiClient(configuration)
        self._apps = k8s.AppsV1Api(self._client)
        self._custom = k8s.CustomObjectsApi(self._client)
        self._autoscaling = k8s.AutoscalingV2Api(self._client)
        self._clock = clock or SystemClock()
        self._settings = settings
        self._connect_timeout_s = api.api_connect_timeout_s
        self._scope = settings.watch_scope
        # By namespace, one stream per kind; in cluster scope one set under None, whatever the
        # namespaces followed.
        self._streams: dict[str | None, tuple[_Stream, _Stream, _Stream]] = {}
        self._followed: frozenset[str] = frozenset()

    def follow(self, namespaces: Iterable[str]) -> None:
        self._followed = frozenset(namespaces)
        wanted: set[str | None] = {None} if self._scope == "cluster" else set(self._followed)
        for namespace in sorted(set(self._streams) - wanted, key=str):
            for stream in self._streams.pop(namespace):
                stream.stop()
        for namespace in sorted(wanted - set(self._streams), key=str):
            kinds = (
                self._stream(namespace, "Deployment", self._deployments(namespace), deployment_facts, optional=False),
                self._stream(namespace, "ScaledObject", self._scaled_objects(namespace), scaled_object_facts, optional=True),
                # Not optional: without them a Deployment that an HPA scales would be written
                # against it, so a namespace whose HPAs cannot be listed is not in sync.
                self._stream(namespace, "HorizontalPodAutoscaler", self._autoscalers(namespace), autoscaler_facts, optional=False),
            )
            self._streams[namespace] = kinds
            for stream in kinds:
                stream.start()

    def wait_synced(self, timeout_s: float) -> bool:
        """True when every followed namespace has listed once within `timeout_s`."""
        # A timeout, not a decision's time: monotonic, outside the Clock.
        deadline = time.monotonic() + timeout_s
        for kinds in list(self._streams.values()):
            for stream in kinds:
                if not stream.synced.wait(max(deadline - time.monotonic(), 0.0)):
                    return False
        return True

    def view(self, namespace: str, *, now: float) -> NamespaceView | None:
        """The namespace as cached, or None when it cannot be trusted: not listed yet, or its
        watch broken for longer than max_stale_s (measured on the clock, against `now`)."""
        if namespace not in self._followed:
            return None
        kinds = self._streams.get(None if self._scope == "cluster" else namespace)
        if kinds is None:
            return None
        for stream in kinds:
            if not stream.synced.is_set():
                return None
            broken_since = stream.broken_since
            if broken_since is not None and now - broken_since > self._settings.watch_max_stale_s:
                return None
        deployments, scaled_objects, autoscalers = (stream.snapshot(namespace) for stream in kinds)
        return NamespaceView(deployments=deployments, scaled_objects=scaled_objects, autoscalers=autoscalers)

    def stop(self, timeout_s: float = 5.0) -> None:
        streams = [stream for kinds in self._streams.values() for stream in kinds]
        self._streams.clear()
        for stream in streams:
            stream.stop()
        for stream in streams:
            stream.join(timeout_s)
        self._client.close()

    def _stream(self, namespace: str | None, kind: str, call, facts, *, optional: bool) -> _Stream:
        return _Stream(
            namespace=namespace,
            kind=kind,
            call=call,
            facts=facts,
            clock=self._clock,
            settings=self._settings,
            connect_timeout_s=self._connect_timeout_s,
            optional=optional,
        )

    def _deployments(self, namespace: str | None) -> Callable[..., urllib3.HTTPResponse]:
        # Raw JSON, not the client's models: deserializing a V1Deployment costs about a
        # millisecond, and the cache keeps four numbers of it.
        if namespace is None:
            return lambda **kw: self._apps.list_deployment_for_all_namespaces(_preload_content=False, **kw)
        return lambda **kw: self._apps.list_namespaced_deployment(namespace, _preload_content=False, **kw)

    def _scaled_objects(self, namespace: str | None) -> Callable[..., urllib3.HTTPResponse]:
        if namespace is None:
            return lambda **kw: self._custom.list_cluster_custom_object(_preload_content=False, **KEDA, **kw)
        return lambda **kw: self._custom.list_namespaced_custom_object(namespace=namespace, _preload_content=False, **KEDA, **kw)

    def _autoscalers(self, namespace: str | None) -> Callable[..., urllib3.HTTPResponse]:
        if namespace is None:
            return lambda **kw: self._autoscaling.list_horizontal_pod_autoscaler_for_all_namespaces(_preload_content=False, **kw)
        return lambda **kw: self._autoscaling.list_namespaced_horizontal_pod_autoscaler(namespace, _preload_content=False, **kw)

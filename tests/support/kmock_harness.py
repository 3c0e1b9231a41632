"""A kmock-backed fake Kubernetes API for tests of synchronous client code.

Why this exists
---------------
kmock's ``KubernetesEmulator`` is an in-memory "database over HTTP" that speaks
the Kubernetes REST conventions (paths, Status errors, list/get/patch/delete).
It is asyncio/aiohttp based, and kmock's own ``kmock`` pytest fixture is an
async fixture. Our adapter uses the *synchronous* official ``kubernetes``
client, which must not run on the event loop thread that serves its requests
(it would deadlock). So this module runs the emulator with ``asyncio.run()``
in a dedicated thread and hands the test an ordinary ``ApiClient``. Tests stay
plain ``def test_...()``; no pytest-asyncio configuration is needed.

Things kmock does not do on its own, and how this harness handles them:

* Subresources are ignored: ``GET .../deployments/x/scale`` returns the whole
  Deployment (which fails ``V1Scale`` validation), and a PATCH to ``/scale``
  is merged into the parent as-is. The harness serves a synthetic
  ``autoscaling/v1`` Scale for ``/scale`` GET/PATCH. Because Scale's
  ``spec.replicas`` and the Deployment's ``spec.replicas`` are the same path,
  kmock's merge of the patch body into the parent is the propagation we want.
* Writes are stored even if a test reaction answered them with an error (kmock
  updates its store *before* it picks a reaction). A real API server does not
  store a rejected write, so writes matched by :meth:`KmockCluster.fail_next`
  skip the store.
* Every request costs kmock time in proportion to the requests it has logged:
  to pick a reaction it asks, for each reaction in turn, whether the request is
  among those the reaction's view selects, and a view answers by filtering the
  whole request log (``View.__contains__`` in kmock/_internal/dsl.py). After
  1,000 requests a PATCH of /scale costs about 45 ms and an Event POST 200 ms,
  against 3 and 15 ms on a fresh emulator. ``KmockCluster(forget_served=True)``
  (the scale benchmark's) takes each request out of that log once answered, and
  a watch once it starts streaming: an open watch left in the log made every
  later request filter it again, once per reaction tried. At 1,000 models over
  50 namespaces (100 watches open), kmock's handling of a PATCH of /scale went
  from 2.9-3.5 ms (median) to 1.0-1.2 ms, and of an Event POST from 16-26 ms to
  3 ms; a real API server routes a request by its path, not by the requests
  before it. :meth:`KmockCluster.requests` then
  lists every request from a log of the harness's own, unfiltered; ``fail_next``
  and ``stream_next``, which count kmock's log, are not available.

Test code, not shipped: the tests and the scale benchmark (simulations/bench_scale.py, lab
code run from a checkout with the test extra) import it from here. kmock is a test dependency
(`pip install -e ".[test]"`, which ./dev setup does).

Usage (the pytest fixture ``kmock_cluster`` is at the end of this module)::

    from tests.support.kmock_harness import kmock_cluster  # in conftest.py

    def test_scale(kmock_cluster):
        kmock_cluster.put(deployment_dict)
        AppsV1Api(kmock_cluster.api_client).patch_namespaced_deployment_scale(...)
        assert kmock_cluster.get(DEPLOYMENTS, 'ml', 'llama')['spec']['replicas'] == 3
"""
from __future__ import annotations

import asyncio
import copy
import threading
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, TypeVar

import attrs
import kmock
import kubernetes.client
import pytest

T = TypeVar('T')

DEPLOYMENTS = 'apps/v1/deployments'
SCALEDOBJECTS = 'keda.sh/v1alpha1/scaledobjects'
NODES = 'v1/nodes'  # cluster-scoped: put() stores them with namespace None
REPLICASETS = 'apps/v1/replicasets'
AUTOSCALERS = 'autoscaling/v2/horizontalpodautoscalers'

# Plurals for put() when only apiVersion+kind are known (kmock addresses objects by plural).
_PLURALS = {('apps/v1', 'Deployment'): DEPLOYMENTS, ('keda.sh/v1alpha1', 'ScaledObject'): SCALEDOBJECTS,
            ('v1', 'Node'): NODES, ('apps/v1', 'ReplicaSet'): REPLICASETS,
            ('autoscaling/v2', 'HorizontalPodAutoscaler'): AUTOSCALERS}

_REASONS = {400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound',
            409: 'Conflict', 422: 'Invalid', 429: 'TooManyRequests', 500: 'InternalError',
            503: 'ServiceUnavailable'}


def status_body(code: int, message: str = '', reason: str | None = None) -> dict[str, Any]:
    """A ``kind: Status`` failure body like the real API server sends (and the client parses)."""
    return {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure',
            'message': message or f'injected HTTP {code}', 'reason': reason or _REASONS.get(code, ''),
            'details': {}, 'code': code}


@attrs.define(kw_only=True)
class _Emulator(kmock.KubernetesEmulator):
    """KubernetesEmulator that does not persist writes answered by an injected fault."""

    faults: list[kmock.View] = attrs.field(factory=list, init=False)
    forget_served: bool = False
    served: list[kmock.Request] = attrs.field(factory=list, init=False)  # with forget_served: every request

    async def _handle(self, request: kmock.Request) -> Any:
        if not self.forget_served:
            return await self._serve(request)
        self.served.append(request)
        try:
            return await self._serve(request)
        finally:  # answered; kmock's matching of later requests no longer scans it
            self._forget(request)

    async def _serve(self, request: kmock.Request) -> Any:
        if any(request in view for view in self.faults):
            # Skip KubernetesEmulator._handle (the store update); only serve the reactions.
            return await kmock.KubernetesScaffold._handle(self, request)
        return await super()._handle(request)

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        # kmock's own watch, as the fallback reaction it registers (a bound method, so this
        # override is the one served). Its reaction has been picked by now: with forget_served
        # the watch leaves the log while it streams, as an answered request does at its end.
        if self.forget_served:
            self._forget(request)
        async for event in super()._serve_watch(request):
            yield event

    def _forget(self, request: kmock.Request) -> None:
        index = next((i for i, r in enumerate(self._requests) if r is request), None)
        if index is not None:
            del self._requests[index]


class KmockCluster:
    """A running kmock emulator (background thread) plus a sync ``ApiClient`` pointed at it.

    Use as a context manager or via the ``kmock_cluster`` fixture. Attributes:
    ``url``, ``api_client``, and ``emulator`` (the raw kmock object for advanced DSL;
    mutate it only between requests, or via :meth:`call`).
    """

    def __init__(self, *, scale_subresource: bool = True, forget_served: bool = False) -> None:
        self.scale_subresource = scale_subresource  # False = raw kmock behaviour for /scale
        self.forget_served = forget_served  # see the module's docstring
        self.url: str = ''
        self.emulator: _Emulator
        self.api_client: kubernetes.client.ApiClient
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._fault_slots: dict[str, int] = {}

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> KmockCluster:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(self._serve(started))
            except BaseException as e:  # surface startup errors in the test thread
                failure.append(e)
                started.set()

        self._thread = threading.Thread(target=run, name='kmock-emulator', daemon=True)
        self._thread.start()
        if not started.wait(timeout=10) or failure:
            self._thread.join(timeout=5)
            raise RuntimeError('kmock emulator failed to start') from (failure[0] if failure else None)
        self.api_client = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=self.url))
        return self

    def __exit__(self, *exc: object) -> None:
        self.api_client.close()
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive():
                raise RuntimeError('kmock emulator thread did not stop')

    async def _serve(self, started: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with _Emulator(forget_served=self.forget_served) as emulator, kmock.Server(emulator) as server:
            self.emulator = emulator
            self.url = str(server.url).rstrip('/')
            # Known resource types: listing an undeclared type with no objects gives 404.
            with warnings.catch_warnings():  # kmock 0.8 uses deprecated importlib.resources API
                warnings.simplefilter('ignore', DeprecationWarning)
                emulator.resources.load_bundled()  # built-ins (apps/v1/deployments, v1/pods, ...)
            emulator.resources[SCALEDOBJECTS] = kmock.ResourceInfo(
                namespaced=True, kind='ScaledObject', singular='scaledobject',
                shortnames={'so'}, subresources={'status'})
            if self.scale_subresource:
                scale = (emulator ** -1)[kmock.subresource('scale')]  # above kmock's fallbacks (-inf)
                scale['get'] << self._serve_scale
                scale['patch'] << self._serve_scale
            started.set()
            await self._stop.wait()

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the emulator's loop thread, so it cannot race an in-flight request."""
        async def _run() -> T:
            return fn()
        assert self._loop is not None, 'not started'
        return asyncio.run_coroutine_threadsafe(_run(), self._loop).result(timeout=10)

    # -- state -----------------------------------------------------------------------------------

    def put(self, obj: Mapping[str, Any], resource: str | None = None) -> None:
        """Store (or replace) an object as if it already existed in the cluster.

        ``resource`` is ``group/version/plural`` and defaults to a guess from apiVersion+kind.
        Direct puts emit no watch events and add no entry to :meth:`requests`.
        """
        resource = resource or _PLURALS.get((obj['apiVersion'], obj['kind']))
        if resource is None:
            raise ValueError(f"Pass resource='group/version/plural' for {obj['kind']}")
        meta = obj['metadata']
        key = (resource, meta.get('namespace'), meta['name'])
        raw = copy.deepcopy(dict(obj))
        self.call(lambda: self.emulator.objects.__setitem__(key, raw))

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any]:
        """The stored object as a plain dict (a copy). KeyError if absent or deleted."""
        def _get() -> dict[str, Any]:
            obj = self.emulator.objects[resource, namespace, name]
            if obj.deleted:
                raise KeyError((resource, namespace, name))
            return copy.deepcopy(obj.raw)
        return self.call(_get)

    # -- fault injection & request log -----------------------------------------------------------

    def fail_next(self, method: str, path: str, status: int, body: Mapping[str, Any] | None = None,
                  *, times: int = 1) -> kmock.Reaction:
        """Answer the next ``times`` requests matching ``METHOD path`` with ``status``.

        ``path`` is the URL path without query (fnmatch globs allowed). Successive calls for the
        same method+path queue up: ``fail_next(.., 409); fail_next(.., 404)`` → 409, then 404,
        then normal service. Matching writes are not stored (like a real API server).

        kmock DSL used: ``kmock['patch /path']`` filters requests, ``[n:n+times]`` keeps only
        the n-th.. matches counted over the whole test (hence n = requests seen so far + already
        queued faults), ``.override`` beats every other reaction, ``<< 409 << {...}`` sets the
        status and JSON body. Returns the reaction; ``len(reaction)`` = how many it answered.
        """
        if self.forget_served:
            raise ValueError('fail_next counts kmock\'s request log, which forget_served empties')
        criteria = f'{method.lower()} {path}'
        payload = dict(body) if body is not None else status_body(status)

        def _inject() -> kmock.Reaction:
            matching = self.emulator[criteria]
            start = max(len(matching), self._fault_slots.get(criteria, 0))
            self._fault_slots[criteria] = start + times
            view = matching[start:start + times]
            self.emulator.faults.append(view)
            return view.override << status << payload
        return self.call(_inject)

    def stream_next(self, path: str, *events: Mapping[str, Any]) -> kmock.Reaction:
        """Answer the next ``GET path`` (a watch: the query is not matched) with ``events`` as a
        finite watch stream, one JSON line each, after which the server ends the response, as a
        real API server does at ``timeoutSeconds``. kmock's own watches never end by themselves.

        kmock DSL used: a tuple payload is served as a stream of JSON lines.
        """
        if self.forget_served:
            raise ValueError('stream_next counts kmock\'s request log, which forget_served empties')
        criteria = f'get {path}'
        stream = tuple(dict(event) for event in events)

        def _inject() -> kmock.Reaction:
            matching = self.emulator[criteria]
            start = max(len(matching), self._fault_slots.get(criteria, 0))
            self._fault_slots[criteria] = start + 1
            return matching[start:start + 1].override << stream
        return self.call(_inject)

    def forget(self, resource: str, namespace: str | None, name: str) -> None:
        """Delete an object *without* a watch event, as if the DELETED event had been lost:
        only a fresh list can tell a watcher it is gone."""
        self.call(lambda: self.emulator.objects[resource, namespace, name].delete())

    def requests(self, method: str | None = None, path: str | None = None) -> list[kmock.Request]:
        """Requests received so far, oldest first, optionally filtered by method and/or path glob.

        Each ``kmock.Request`` has ``.method``, ``.url`` (``.url.path``), ``.params`` (query),
        ``.headers``, ``.data`` (parsed JSON body), ``.action``, ``.subresource``...
        """
        criteria = ' '.join(part for part in (method and method.lower(), path) if part)
        if self.forget_served:
            if criteria:
                raise ValueError('with forget_served, requests() lists all requests, unfiltered')
            return self.call(lambda: list(self.emulator.served))
        return self.call(lambda: list(self.emulator[criteria] if criteria else self.emulator))

    # -- internals -------------------------------------------------------------------------------

    def _serve_scale(self, request: kmock.Request) -> dict[str, Any]:
        # Runs on the loop thread. For PATCH, kmock has already merged the body into the parent.
        key = (request.resource, request.namespace, request.name)
        if key not in self.emulator.objects or self.emulator.objects[key].deleted:
            raise kmock.KubernetesObjectNotFoundError()
        parent = self.emulator.objects[key].raw
        meta = parent.get('metadata', {})
        labels = parent.get('spec', {}).get('selector', {}).get('matchLabels', {})
        return {
            'apiVersion': 'autoscaling/v1', 'kind': 'Scale',
            'metadata': {k: meta[k] for k in ('name', 'namespace', 'uid', 'resourceVersion') if k in meta},
            'spec': {'replicas': parent.get('spec', {}).get('replicas', 1)},
            'status': {'replicas': parent.get('status', {}).get('replicas', 0),
                       'selector': ','.join(f'{k}={v}' for k, v in labels.items())},
        }


@pytest.fixture
def kmock_cluster() -> Iterator[KmockCluster]:
    """A fresh emulator + ApiClient per test; the thread and loop are gone after the test."""
    with KmockCluster() as cluster:
        yield cluster

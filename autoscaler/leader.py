"""Leader election on a coordination.k8s.io/v1 Lease, so that two replicas of the daemon never
both act. client-go's algorithm (tools/leaderelection), with its default timings:

* Every `retry_period_s` each replica reads the Lease. A replica takes it when it is free or
  when its holder has not renewed it for `lease_duration_s`, and the leader renews it.
* Expiry is judged by *when this replica last saw the record change*, on its own clock, never
  by the renewTime written in the Lease: clocks on two nodes may disagree, elapsed time on one
  does not. What it saw is dated on receipt of the answer, not at the start of the round (as
  client-go's observedTime): a read answered 3 s late would otherwise date the record 3 s
  early and let a standby take over 3 s before the lease ran out.
* A leader that cannot renew stops acting `renew_deadline_s` after its last renewal, before
  the `lease_duration_s` a standby waits. With 15 s and 10 s, a leader cut off from the API at
  t=0 acts until t=10 at most; no standby takes over before t=15.
* Writes carry the resourceVersion that was read, so of two standbys racing for an expired
  Lease the API server lets one win and answers the other 409.

Time is passed in (`now`, seconds since the epoch from autoscaler.clock); `run` is the thread
that reads the clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import structlog
from kubernetes import client as k8s

from autoscaler.clock import Clock
from autoscaler.kube_errors import Conflict, Failed, KubernetesError, NotFound, Rule, Unreachable, translated
from autoscaler.settings import ApiSettings, LeaderSettings

log = structlog.get_logger(__name__)

@dataclass(frozen=True, slots=True)
class _Record:
    holder: str
    resource_version: str | None
    renew_time: datetime | None


class LeaseElector:
    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        timings: LeaderSettings = LeaderSettings(),
        api: ApiSettings = ApiSettings(),
        on_change: Callable[[bool], None] = lambda leading: None,
    ) -> None:
        self._api = k8s.CoordinationV1Api(api_client)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.timings = timings
        self._request_timeout_s = api.request_timeout_s
        self._on_change = on_change
        self._observed: _Record | None = None
        self._observed_at: float | None = None
        self._renewed_at: float | None = None  # our last successful write of the Lease
        self._lock = threading.Lock()
        self._was_leading = False
        self.first_round = threading.Event()  # set once the election thread has run a round
        self._duration_field = max(1, round(timings.lease_duration_s))  # the field is whole seconds

    def is_leader(self, *, now: float) -> bool:
        """True while the last renewal is younger than the renew deadline."""
        with self._lock:
            return self._renewed_at is not None and now - self._renewed_at < self.timings.renew_deadline_s

    def try_acquire_or_renew(self, *, now: float) -> bool:
        """One round: read the Lease, take or renew it if allowed. Returns whether this
        replica leads after the round. Never raises for an API failure: that is logged, and
        leadership then lapses by itself at the renew deadline."""
        try:
            leading = self._round(now)
        except Failed as err:
            log.warning("lease round failed", lease=self.name, namespace=self.namespace, status=err.status, reason=err.reason)
            leading = self.is_leader(now=now)
        except Unreachable as err:
            log.warning("lease round failed: Kubernetes API unreachable", lease=self.name, error=str(err))
            leading = self.is_leader(now=now)
        self._report(leading)
        return leading

    def release(self, *, now: float) -> None:
        """On a clean stop, hand the Lease over at once rather than after lease_duration_s:
        client-go's ReleaseOnCancel. Only a Lease we hold is touched."""
        if not self.is_leader(now=now):
            return
        with self._lock:
            self._renewed_at = None
        try:
            lease = self._read()
            if lease.spec.holder_identity != self.identity:
                return
            self._patch(lease.metadata.resource_version, {"holderIdentity": None, "leaseDurationSeconds": 1, "renewTime": _stamp(now)})
            log.info("lease released", lease=self.name, identity=self.identity)
        except KubernetesError as err:
            log.warning("could not release the lease; a standby takes it when it expires", lease=self.name, error=str(err))
        self._report(False)

    def run(self, *, clock: Clock, stop: threading.Event) -> None:
        """The election thread: a round every retry_period_s until `stop`, then release."""
        while not stop.is_set():
            self.try_acquire_or_renew(now=clock.now())
            self.first_round.set()
            stop.wait(self.timings.retry_period_s)
        self.release(now=clock.now())

    # -- one round -------------------------------------------------------------------------

    def _round(self, now: float) -> bool:
        # `now` is the round's start; the time the answer came is `now` plus the read's own
        # duration, measured on the monotonic clock within this process.
        sent = time.monotonic()
        try:
            lease = self._read()
        except NotFound:
            return self._create(now)
        received = now + (time.monotonic() - sent)
        spec = lease.spec
        record = _Record(spec.holder_identity or "", lease.metadata.resource_version, spec.renew_time)
        if record != self._observed:
            self._observed, self._observed_at = record, received
        held_by_other = record.holder not in ("", self.identity)
        if held_by_other and now - self._observed_at < self.timings.lease_duration_s:
            with self._lock:
                self._renewed_at = None
            return False
        taking = record.holder != self.identity
        fields = {"holderIdentity": self.identity, "leaseDurationSeconds": self._duration_field, "renewTime": _stamp(now)}
        if taking:
            fields |= {"acquireTime": fields["renewTime"], "leaseTransitions": (spec.lease_transitions or 0) + 1}
        try:
            self._patch(record.resource_version, fields)
        except Conflict:  # the Lease changed since it was read: another replica wrote first
            log.info("lost the race for the lease", lease=self.name, identity=self.identity)
            with self._lock:
                self._renewed_at = None
            return False
        with self._lock:
            self._renewed_at = now
        if taking:
            log.info("took the lease", lease=self.name, identity=self.identity, previous=record.holder or None)
        return True

    def _create(self, now: float) -> bool:
        stamp = _stamp(now)
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self._duration_field,
                "acquireTime": stamp,
                "renewTime": stamp,
                "leaseTransitions": 0,
            },
        }
        try:
            with translated(Rule("coordination.k8s.io", "leases", ("create",), self.namespace)):
                self._api.create_namespaced_lease(self.namespace, body, _request_timeout=self._request_timeout_s)
        except Conflict:  # created by another replica in between
            return False
        with self._lock:
            self._renewed_at = now
        log.info("created and took the lease", lease=self.name, identity=self.identity)
        return True

    def _read(self) -> k8s.V1Lease:
        with translated(Rule("coordination.k8s.io", "leases", ("get",), self.namespace)):
            return self._api.read_namespaced_lease(self.name, self.namespace, _request_timeout=self._request_timeout_s)

    def _patch(self, resource_version: str | None, fields: dict) -> None:
        # A merge patch that carries metadata.resourceVersion fails with 409 if the Lease
        # changed since it was read: optimistic concurrency without PUT.
        metadata = {"resourceVersion": resource_version} if resource_version else {}
        with translated(Rule("coordination.k8s.io", "leases", ("patch",), self.namespace)):
            self._api.patch_namespaced_lease(
                self.name, self.namespace, {"metadata": metadata, "spec": fields}, _request_timeout=self._request_timeout_s
            )

    def _report(self, leading: bool) -> None:
        if leading != self._was_leading:
            self._was_leading = leading
            log.info("leadership changed", lease=self.name, identity=self.identity, leading=leading)
            self._on_change(leading)


def _stamp(now: float) -> str:
    # A Lease's times are MicroTime. Only for humans and other tools: expiry is judged locally.
    # Never on a whole second: the client turns a created Lease into its V1Lease model and
    # writes the times back with isoformat(), which drops the fraction of a whole second
    # ("1970-01-01T00:00:00+00:00"), and the API server refuses that as MicroTime (400 Bad
    # Request; tests/test_control_plane.py found it). A microsecond later reads the same.
    at = datetime.fromtimestamp(now, tz=timezone.utc)
    if at.microsecond == 0:
        at += timedelta(microseconds=1)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

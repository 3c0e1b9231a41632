"""The daemon's own metrics and health: /metrics, /healthz, /readyz on one port.

/metrics (prometheus_client's classic text format):
  llm_autoscaler_decisions_total{model,direction,reason}  every reason of every decision; `reason` is one
                                                           of policies.reasons.ReasonCode (docs/reasons.md)
  llm_autoscaler_desired_replicas{model}, llm_autoscaler_current_replicas{model}
  llm_autoscaler_tick_duration_seconds                     histogram of one tick
  llm_autoscaler_prometheus_errors_total{signal,kind}      failed queries (tls, timeout, connection, http, malformed,
                                                           too_large; a refused keyed query once, then each failing term) and rejected
                                                           samples; an unreachable server once a tick, under the first query
  llm_autoscaler_kubernetes_errors_total{kind}             missing, forbidden, failed, refused, unreadable
  llm_autoscaler_config_rejections_total                   changed config files rejected as invalid
  llm_autoscaler_events_dropped_total{reason}              Events not sent: queue_full (1,000 waiting) or shutdown
  llm_autoscaler_state_refusals_total{field,kind}          stored policy state not restored at takeover
                                                           (autoscaler.state_store.Refusal lists the kinds)
  llm_autoscaler_leader                                    1 while this replica acts (holds the Lease)
/readyz: 200 once a tick has completed that could read Prometheus and the cluster; 503, with
what the last tick could not do, before that or while it cannot (an outage outside the pod:
restarting it would not help, so liveness does not change). /healthz: 200 while ticks keep
completing; 503 when the last one is older than three tick intervals plus a grace (a stuck
loop: restart it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from autoscaler.clock import Clock
from autoscaler.controller import Outcome
from autoscaler.settings import Settings

API_ERROR_OUTCOMES = frozenset({"missing", "forbidden", "failed", "refused"})
# Failures of Prometheus itself, not of one query's answer (malformed, too_large, rejected):
# with one of these, no signal was read.
PROMETHEUS_DOWN = frozenset({"connection", "tls", "timeout", "http"})


class Telemetry:
    def __init__(
        self, *, clock: Clock, interval_s: float, health_grace_s: float = Settings().health_grace_s, registry: CollectorRegistry | None = None
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self._clock = clock
        self._interval_s = interval_s
        self._health_grace_s = health_grace_s
        self._started_at = clock.now()
        self.last_tick_at: float | None = None
        # What the last tick could not do, in words (empty: it read and wrote what it needed).
        self.last_tick_problems: tuple[str, ...] = ("no tick has completed yet",)
        self._prometheus_down: set[str] = set()  # kinds reported since the last tick ended
        self.decisions = Counter(
            "llm_autoscaler_decisions", "Decisions, once per reason they carry.", ["model", "direction", "reason"],
            registry=self.registry,
        )
        self.desired = Gauge("llm_autoscaler_desired_replicas", "Replicas the policy wants.", ["model"], registry=self.registry)
        self.current = Gauge("llm_autoscaler_current_replicas", "Replicas the target asks for now.", ["model"], registry=self.registry)
        self.tick_seconds = Histogram(
            "llm_autoscaler_tick_duration_seconds", "Wall time of one tick (observe, decide, act).",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0), registry=self.registry,
        )
        self.prometheus_errors = Counter(
            "llm_autoscaler_prometheus_errors", "Failed Prometheus queries and rejected samples.", ["signal", "kind"],
            registry=self.registry,
        )
        self.kubernetes_errors = Counter(
            "llm_autoscaler_kubernetes_errors", "Kubernetes API errors and unreadable targets.", ["kind"],
            registry=self.registry,
        )
        self.config_rejections = Counter(
            "llm_autoscaler_config_rejections", "Changed config files rejected as invalid.", registry=self.registry
        )
        self.events_dropped = Counter(
            "llm_autoscaler_events_dropped", "Kubernetes Events dropped unsent: queue full, or left at shutdown.", ["reason"],
            registry=self.registry,
        )
        self.state_refusals = Counter(
            "llm_autoscaler_state_refusals", "Stored policy state values refused or restarted at takeover.",
            ["field", "kind"], registry=self.registry,
        )
        self.leader = Gauge("llm_autoscaler_leader", "1 while this replica acts on the cluster.", registry=self.registry)
        self.leader.set(1)  # without --leader-elect this replica always acts; the election sets it otherwise

    def record_tick(self, outcomes: Iterable[Outcome], *, duration_s: float) -> None:
        self.tick_seconds.observe(duration_s)
        outcomes = list(outcomes)
        unread = failed = 0
        for outcome in outcomes:
            if outcome.decision is None:
                self.kubernetes_errors.labels(kind="unreadable").inc()
                unread += 1
                continue
            decision = outcome.decision
            for code in decision.reason_codes:
                # The code's value, the label that docs/reasons.md lists.
                self.decisions.labels(model=outcome.model, direction=decision.direction, reason=code.value).inc()
            self.desired.labels(model=outcome.model).set(decision.desired_replicas)
            self.current.labels(model=outcome.model).set(decision.current_replicas)
            if outcome.action is not None and outcome.action.outcome in API_ERROR_OUTCOMES:
                self.kubernetes_errors.labels(kind=outcome.action.outcome).inc()
                failed += outcome.action.outcome == "failed"
        problems = []
        if self._prometheus_down:
            problems.append(f"Prometheus could not be read ({', '.join(sorted(self._prometheus_down))})")
        if unread:
            problems.append(f"the cluster: {unread} of {len(outcomes)} models' targets could not be read")
        if failed:
            problems.append(f"the cluster: {failed} of {len(outcomes)} models' writes failed")
        self._prometheus_down = set()
        self.last_tick_problems = tuple(problems)
        self.last_tick_at = self._clock.now()

    def prometheus_error(self, signal: str, kind: str) -> None:
        self.prometheus_errors.labels(signal=signal, kind=kind).inc()
        if kind in PROMETHEUS_DOWN:
            self._prometheus_down.add(kind)

    def state_refused(self, field: str, kind: str) -> None:
        self.state_refusals.labels(field=field, kind=kind).inc()

    def event_dropped(self, reason: str, count: int) -> None:
        self.events_dropped.labels(reason=reason).inc(count)

    @property
    def ready(self) -> bool:
        return self.last_tick_at is not None and not self.last_tick_problems

    def healthy(self) -> bool:
        since = self.last_tick_at if self.last_tick_at is not None else self._started_at
        return self._clock.now() - since <= 3 * self._interval_s + self._health_grace_s


def wsgi_app(telemetry: Telemetry) -> Callable:
    metrics = make_wsgi_app(telemetry.registry)

    def app(environ: dict, start_response: Callable) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in ("/healthz", "/readyz"):
            ok = telemetry.healthy() if path == "/healthz" else telemetry.ready
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            if ok:
                return [b"ok\n"]
            why = ["the loop has not completed a tick for too long"] if path == "/healthz" else telemetry.last_tick_problems
            return [("not ok: " + "; ".join(why) + "\n").encode()]
        return metrics(environ, start_response)

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # probes every few seconds: no access log
        pass


def serve(telemetry: Telemetry, *, port: int, host: str = "0.0.0.0", read_timeout_s: float = 5.0) -> ThreadingWSGIServer:
    """Serve /metrics, /healthz and /readyz from a daemon thread; `server.server_port` is the
    port bound (useful with port 0). Stop with server.shutdown().

    Each connection gets `read_timeout_s` for every read of its request: the server starts a
    thread per connection, and without a timeout a client that sends half a request holds its
    thread for good (200 such clients held 200 threads for as long as they stayed). A probe or a
    scrape sends its whole request at once, so 5 s is far above what a real one needs."""
    handler = type("_TimedHandler", (_QuietHandler,), {"timeout": read_timeout_s})
    server = make_server(host, port, wsgi_app(telemetry), ThreadingWSGIServer, handler_class=handler)
    threading.Thread(target=server.serve_forever, name="telemetry-http", daemon=True).start()
    return server

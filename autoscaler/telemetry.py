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
  llm_autoscaler_leader                                    1 while this replica acts (holds the Lease)
/readyz: 200 once a tick has completed. /healthz: 200 while ticks keep completing; 503 when
the last one is older than three tick intervals plus a grace (a stuck loop: restart it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from autoscaler.clock import Clock
from autoscaler.controller import Outcome

API_ERROR_OUTCOMES = frozenset({"missing", "forbidden", "failed", "refused"})
HEALTH_GRACE_S = 30.0


class Telemetry:
    def __init__(self, *, clock: Clock, interval_s: float, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._clock = clock
        self._interval_s = interval_s
        self._started_at = clock.now()
        self.last_tick_at: float | None = None
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
        self.leader = Gauge("llm_autoscaler_leader", "1 while this replica acts on the cluster.", registry=self.registry)
        self.leader.set(1)  # without --leader-elect this replica always acts; the election sets it otherwise

    def record_tick(self, outcomes: Iterable[Outcome], *, duration_s: float) -> None:
        self.tick_seconds.observe(duration_s)
        for outcome in outcomes:
            if outcome.decision is None:
                self.kubernetes_errors.labels(kind="unreadable").inc()
                continue
            decision = outcome.decision
            for code in decision.reason_codes:
                # The code's value, the label that docs/reasons.md lists.
                self.decisions.labels(model=outcome.model, direction=decision.direction, reason=code.value).inc()
            self.desired.labels(model=outcome.model).set(decision.desired_replicas)
            self.current.labels(model=outcome.model).set(decision.current_replicas)
            if outcome.action is not None and outcome.action.outcome in API_ERROR_OUTCOMES:
                self.kubernetes_errors.labels(kind=outcome.action.outcome).inc()
        self.last_tick_at = self._clock.now()

    def prometheus_error(self, signal: str, kind: str) -> None:
        self.prometheus_errors.labels(signal=signal, kind=kind).inc()

    def event_dropped(self, reason: str, count: int) -> None:
        self.events_dropped.labels(reason=reason).inc(count)

    @property
    def ready(self) -> bool:
        return self.last_tick_at is not None

    def healthy(self) -> bool:
        since = self.last_tick_at if self.last_tick_at is not None else self._started_at
        return self._clock.now() - since <= 3 * self._interval_s + HEALTH_GRACE_S


def wsgi_app(telemetry: Telemetry) -> Callable:
    metrics = make_wsgi_app(telemetry.registry)

    def app(environ: dict, start_response: Callable) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in ("/healthz", "/readyz"):
            ok = telemetry.healthy() if path == "/healthz" else telemetry.ready
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"ok\n" if ok else b"not ok\n"]
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

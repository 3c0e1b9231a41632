"""Signals from a live Prometheus: the batched queries of promql.py, evaluated at `now`.

Evaluating at an explicit instant makes the same adapter serve the live loop (now) and replay
over a past range (each past tick). A failed query costs its signal for this tick, never the
others: its readings are "no data", which the policies hold on.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import structlog
import urllib3
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from autoscaler.config import Config, PrometheusConfig
from autoscaler.metrics import ModelSignals, Signals
from autoscaler.metrics.promql import KEY, STAT, SignalQuery, build_queries
from policies.signals import Reading

log = structlog.get_logger(__name__)


def connect(settings: PrometheusConfig) -> PrometheusConnect:
    """A client that fails fast: no retries (the next tick is the retry), the configured
    timeout, and the CA bundle, if any, for TLS."""
    session = requests.Session()
    if settings.auth.ca_bundle is not None:
        session.verify = str(settings.auth.ca_bundle)
    return PrometheusConnect(url=settings.url, session=session, retry=Retry(total=0), timeout=settings.timeout_s)


class PrometheusSource:
    """`on_error(signal, kind)` is told of every failed query (kind: tls, timeout,
    connection, http) and rejected sample (kind: rejected), for the daemon's error counters."""

    def __init__(
        self,
        config: Config,
        *,
        client: PrometheusConnect | None = None,
        on_error: Callable[[str, str], None] = lambda signal, kind: None,
    ) -> None:
        self._config = config
        self._on_error = on_error
        self._client = client or connect(config.prometheus)
        self._queries = build_queries(config)
        self._model_by_label = {(m.namespace, m.label_value): m.name for m in config.models}

    @property
    def queries(self) -> list[SignalQuery]:
        return list(self._queries)

    def fetch_signals(self, *, now: float) -> Signals:
        per_model: dict[str, dict[str, Reading]] = defaultdict(dict)
        dependencies: dict[str, Reading] = {}
        # The token is re-read every tick, so a rotated one is picked up without a restart.
        self._client.headers = _auth_headers(self._config.prometheus.auth.bearer_token_file) or None
        answers = self._ask_all(now)
        for query, (result, err) in zip(self._queries, answers):
            if err is not None:
                continue
            if query.keyed:
                readings = self._keyed_readings(query, result)
                if query.signal == "wake":
                    for model, reading in readings.items():
                        per_model[model]["wake"] = reading
                else:
                    dependencies.update(readings)
            else:
                for model, reading in self._pod_readings(query, result, now=now).items():
                    per_model[model][query.signal] = reading
        return Signals(
            models={model: ModelSignals(**readings) for model, readings in per_model.items()},
            dependencies=dependencies,
        )

    def _ask_all(self, now: float) -> list[tuple[list[dict], Exception | None]]:
        """Every query at once, each answer with its error (None: answered). Prometheus
        evaluates each query on one core, so one after another the tick waited for their sum:
        at 1,000 models, observing took 237-274 ms a tick that way and 203-241 at once (README,
        Scale). A server that is down or slow costs one timeout, not one per query; one that is
        overloaded gets them all at once. A failed query costs its signal, never the others."""

        def ask(query: SignalQuery) -> tuple[list[dict], Exception | None]:
            try:
                return self._client.custom_query(query.promql, params={"time": f"{now:.3f}"}), None
            except (requests.RequestException, PrometheusApiClientException) as err:
                return [], err

        # One client from several threads: a query only reads its state (its headers are set
        # before), and requests' Session and urllib3's pool (10 connections) serve threads.
        with ThreadPoolExecutor(max_workers=len(self._queries), thread_name_prefix="promql") as pool:
            answers = list(pool.map(ask, self._queries))
        # A server down fails every query the same way: one line says so, not one per query.
        failures: dict[tuple[str, str], list[str]] = {}
        for query, (_, err) in zip(self._queries, answers):
            if err is not None:
                kind = _error_kind(err)
                self._on_error(query.signal, kind)
                failures.setdefault((kind, _short(err)), []).append(query.signal)
        for (_, error), signals in failures.items():
            log.warning("prometheus query failed; its readings are missing this tick", signals=signals, error=error)
        return answers

    def _pod_readings(self, query: SignalQuery, result: list[dict], *, now: float) -> dict[str, Reading]:
        labels = self._config.labels
        values: dict[str, str] = {}
        stamps: dict[str, float] = {}
        for item in result:
            metric = item.get("metric", {})
            model = self._model_by_label.get((metric.get(labels.namespace), metric.get(labels.model)))
            if model is None:
                continue  # a model this daemon does not manage
            if metric.get(STAT) == "timestamp":
                stamps[model] = float(item["value"][1])
            else:
                values[model] = item["value"][1]
        readings = {}
        for model, raw in values.items():
            age_s = max(now - stamps.get(model, now), 0.0)
            reading = _reading(query.signal, model, raw, age_s=age_s, stale_after_s=self._config.prometheus.stale_after_s)
            if reading is None:
                self._on_error(query.signal, "rejected")
            else:
                readings[model] = reading
        return readings

    def _keyed_readings(self, query: SignalQuery, result: list[dict]) -> dict[str, Reading]:
        readings = {}
        for item in result:
            key = item.get("metric", {}).get(KEY)
            names = query.keys.get(key, ())
            if not names:
                continue
            reading = _reading(query.signal, names[0], item["value"][1], age_s=0.0, stale_after_s=math.inf)
            if reading is None:
                self._on_error(query.signal, "rejected")
            else:
                readings.update(dict.fromkeys(names, reading))
        return readings


def _reading(signal: str, key: str, raw: str, *, age_s: float, stale_after_s: float) -> Reading | None:
    """A finite, non-negative value, or None (missing) with a logged reason."""
    try:
        value = float(raw)
        if signal == "kv_cache_usage" and value > 1:
            raise ValueError(f"value {value!r} is above 1, the most a fraction of the KV cache can be")
        if age_s > stale_after_s:
            return Reading.stale(value, age_s=age_s)
        return Reading.of(value, age_s=age_s)
    except ValueError as err:
        log.warning("rejected a sample; the reading is missing this tick", signal=signal, key=key, value=raw, reason=str(err))
        return None


def _auth_headers(token_file: Path | None) -> dict[str, str]:
    if token_file is None:
        return {}
    try:
        token = token_file.read_text().strip()
    except OSError as err:
        log.error("cannot read the Prometheus bearer token file", path=str(token_file), error=err.strerror)
        return {}
    return {"Authorization": f"Bearer {token}"}


def _error_kind(err: Exception) -> str:
    if isinstance(err, requests.exceptions.SSLError):
        return "tls"
    # With retries off, requests reports a read timeout as a ConnectionError around urllib3's
    # MaxRetryError(reason=ReadTimeoutError): the kind is in the reason.
    # (urllib3 makes a refused connection a ConnectTimeoutError too: test for that first.)
    reason = getattr(err.args[0], "reason", None) if err.args else None
    if isinstance(reason, urllib3.exceptions.NewConnectionError):
        return "connection"
    if isinstance(err, requests.Timeout) or isinstance(reason, urllib3.exceptions.TimeoutError):
        return "timeout"
    if isinstance(err, requests.ConnectionError):
        return "connection"
    return "http"


def _short(err: Exception) -> str:
    """The cause of a failed query, short. A connection error's own text leads with the URL,
    whose query string is the whole PromQL: the cause (refused, timed out, a certificate that
    does not verify) is urllib3's `reason` inside it. An HTTP error's text carries the
    response body, which can be long."""
    reason = getattr(err.args[0], "reason", None) if err.args else None
    text = f"{type(err).__name__}: {reason}" if reason is not None else str(err)
    return text if len(text) <= 300 else text[:300] + "..."

"""Signals from a live Prometheus: the batched queries of promql.py, evaluated at `now`.

Evaluating at an explicit instant makes the same adapter serve the live loop (now) and replay
over a past range (each past tick). A failed query costs its signal for this tick, never the
others: its readings are "no data", which the policies hold on.

Each query is bounded three ways: a deadline for the whole of it (timeout_s: connecting,
evaluation, reading), a size (max_answer_bytes, counted while the answer streams in, so an
answer too large is never held whole), and a shape (answers.py: anything but an instant
vector is refused whole, as "malformed").
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import requests
import structlog
import urllib3

from autoscaler.config import Config, PrometheusConfig, redacted_url
from autoscaler.metrics import ModelSignals, Signals
from autoscaler.metrics.answers import MalformedAnswer, Sample, parse_vector
from autoscaler.metrics.promql import KEY, STAT, SignalQuery, build_queries
from policies.signals import Reading

log = structlog.get_logger(__name__)

_CHUNK_BYTES = 64 * 2**10
# Prometheus rejects an expression it cannot parse with 400 and one it cannot evaluate with
# 422 (e.g. many-to-many matching once a second gateway pod appears): those are the failures
# one term can cause for all, and the only ones worth asking the terms one by one. A server
# down or slow fails them all alike, and asking more would only add load.
_EXPRESSION_ERRORS = frozenset({400, 422})
_FALLBACK_WORKERS = 8
# How history_problem words each kind of failure, for a user who typed the URL.
_PROBE_FAILURES = {"connection": "cannot connect", "tls": "TLS failed", "timeout": "no answer in time",
                   "http": "not a Prometheus query API there", "malformed": "not a Prometheus query API there"}
_warned_plain_http: set[str] = set()


class QueryError(Exception):
    """A query that gave no usable answer. `kind` is the error counter's label: tls, timeout,
    connection, http, malformed, too_large; `status` the HTTP status where there was one."""

    def __init__(self, kind: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.kind, self.status = kind, status


@dataclass(frozen=True, slots=True)
class _Answer:
    samples: list[Sample]
    error: QueryError | None = None


def connect(settings: PrometheusConfig) -> requests.Session:
    """A session with the CA bundle, if any, for TLS. No retries: the next tick is the retry."""
    session = requests.Session()
    if settings.auth.ca_bundle is not None:
        session.verify = str(settings.auth.ca_bundle)
    return session


class PrometheusSource:
    """`on_error(signal, kind)` is told of every failed query (kind: tls, timeout, connection,
    http, malformed, too_large) and rejected sample (kind: rejected), for the daemon's error
    counters. `count_pods=False` (replay over history, autoscaler/replay.py says why) asks no
    pod count and says so (reporting_pods None); otherwise a count that fails is no data,
    which holds every scale-down."""

    def __init__(
        self,
        config: Config,
        *,
        session: requests.Session | None = None,
        on_error: Callable[[str, str], None] = lambda signal, kind: None,
        count_pods: bool = True,
    ) -> None:
        self._config = config
        self._settings = config.prometheus
        self._on_error = on_error
        self._session = session or connect(config.prometheus)
        self._queries = [q for q in build_queries(config) if count_pods or q.signal != "reporting_pods"]
        self._uncounted = {} if count_pods else {"reporting_pods": None}
        self._model_by_label = {(m.namespace, m.label_value): m.name for m in config.models}
        url = self._settings.url
        if self._settings.auth.bearer_token_file is not None and url.startswith("http://") and url not in _warned_plain_http:
            _warned_plain_http.add(url)  # once a process: a reload builds a new source
            log.warning(
                "the Prometheus bearer token is sent over plain http://: anyone on the path can read it; use https://",
                url=redacted_url(url),
            )

    @property
    def url(self) -> str:
        return self._settings.url

    @property
    def queries(self) -> list[SignalQuery]:
        return list(self._queries)

    def fetch_signals(self, *, now: float) -> Signals:
        per_model: dict[str, dict[str, Reading]] = defaultdict(dict)
        dependencies: dict[str, Reading] = {}
        # The token is re-read every tick, so a rotated one is picked up without a restart.
        headers = _auth_headers(self._settings.auth.bearer_token_file)
        answers = self._ask([q.promql for q in self._queries], now=now, headers=headers, workers=len(self._queries))
        self._report_failures([q.signal for q in self._queries], answers)
        answers = self._fall_back_to_terms(answers, now=now, headers=headers)
        for query, answer in zip(self._queries, answers):
            if query.keyed:
                readings = self._keyed_readings(query, answer.samples)
                if query.signal == "wake":
                    for model, reading in readings.items():
                        per_model[model]["wake"] = reading
                else:
                    dependencies.update(readings)
            elif answer.error is None:
                for model, reading in self._pod_readings(query, answer.samples, now=now).items():
                    per_model[model][query.signal] = reading
        return Signals(
            models={model: ModelSignals(**readings, **self._uncounted) for model, readings in per_model.items()},
            dependencies=dependencies,
        )

    def history_problem(self, *, start_s: float, end_s: float) -> str | None:
        """Why replaying start_s..end_s from this Prometheus would replay nothing, asked once
        before the first tick: it cannot be reached or answers as no Prometheus does, or no
        series of the running-requests metric has a sample in the span. None when it has.
        Otherwise a replay would tick through every instant, a warning each, and print a
        summary of holds that looks like a result."""
        metric = self._config.metrics.running
        span_s = max(math.ceil(end_s - start_s), 1)
        promql = f"count(last_over_time({metric}[{span_s}s]))"
        headers = _auth_headers(self._settings.auth.bearer_token_file)
        try:
            samples = self._query(promql, now=end_s, headers=headers, deadline=time.monotonic() + self._settings.timeout_s)
        except QueryError as err:
            said = " ".join(str(err).split())  # an HTML error page on one line
            return f"{_PROBE_FAILURES.get(err.kind, err.kind)}: {said[:300]}"
        if not samples:
            return f"it holds no sample of {metric} between the start and the end: nothing to replay"
        return None

    def _ask(self, queries: Sequence[str], *, now: float, headers: dict[str, str], workers: int) -> list[_Answer]:
        """Every query at once, each with its answer or error. Prometheus evaluates each query
        on one core, so one after another the tick waited for their sum: at 1,000 models,
        observing took 237-274 ms a tick that way and 203-241 at once (README, Scale). A
        server that is down or slow costs one timeout, not one per query; one that is
        overloaded gets them all at once. A failed query costs its signal, never the others.

        The deadline is kept here as well as in each query: a query stuck where no read
        returns in time (headers sent one byte at a time) is given up at the deadline; its
        thread stops at its next read."""
        deadline = time.monotonic() + self._settings.timeout_s
        # One session from several threads: each request only reads its state, and urllib3's
        # pool (10 connections, more made and dropped past that) serves threads.
        pool = ThreadPoolExecutor(max_workers=max(workers, 1), thread_name_prefix="promql")
        try:
            futures: list[Future] = [pool.submit(self._query, promql, now=now, headers=headers, deadline=deadline) for promql in queries]
            wait(futures, timeout=max(deadline - time.monotonic(), 0.0) + 0.05)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        answers = []
        for future in futures:
            if future.done() and not future.cancelled():
                try:
                    answers.append(_Answer(future.result()))
                except QueryError as err:
                    answers.append(_Answer([], err))
            else:
                answers.append(_Answer([], QueryError("timeout", _timed_out(self._settings))))
        return answers

    def _report_failures(self, signals: list[str], answers: list[_Answer]) -> None:
        # A server down fails every query the same way: one line says so, not one per query.
        failures: dict[tuple[str, str], list[str]] = {}
        for signal, answer in zip(signals, answers):
            if answer.error is not None:
                self._on_error(signal, answer.error.kind)
                failures.setdefault((answer.error.kind, _short(str(answer.error))), []).append(signal)
        for (kind, error), failed in failures.items():
            log.warning("prometheus query failed; its readings are missing this tick", signals=failed, kind=kind, error=error)

    def _fall_back_to_terms(self, answers: list[_Answer], *, now: float, headers: dict[str, str]) -> list[_Answer]:
        """A keyed query that Prometheus refused (400, 422) is asked again term by term, one
        query per distinct term and only on that failure, so the models whose terms answer
        keep their readings; the others' stay missing, each failing term logged with its
        models. Only then: a tick with no failure sends its usual queries and no more."""
        answers = list(answers)
        for index, (query, answer) in enumerate(zip(self._queries, answers)):
            if not (query.keyed and answer.error is not None and answer.error.status in _EXPRESSION_ERRORS and len(query.terms) > 1):
                continue
            parts = self._ask([term.promql for term in query.terms], now=now, headers=headers, workers=min(len(query.terms), _FALLBACK_WORKERS))
            samples: list[Sample] = []
            for term, part in zip(query.terms, parts):
                if part.error is None:
                    samples.extend(part.samples)
                    continue
                self._on_error(query.signal, part.error.kind)
                names = sorted({name for names in term.keys.values() for name in names})
                log.warning(
                    "a term of the combined query failed alone; its readings are missing this tick",
                    signal=query.signal, names=names, kind=part.error.kind, error=_short(str(part.error)),
                )
            answers[index] = _Answer(samples)
        return answers

    def _query(self, promql: str, *, now: float, headers: dict[str, str], deadline: float) -> list[Sample]:
        return parse_or_raise(self._read(promql, now=now, headers=headers, deadline=deadline))

    def _read(self, promql: str, *, now: float, headers: dict[str, str], deadline: float) -> bytes:
        """The answer's body, read as it streams in: stopped at the deadline or past the size
        cap, whichever comes first, before the rest is read."""
        settings = self._settings
        cap = settings.max_answer_bytes
        too_large = QueryError("too_large", f"the answer is larger than max_answer_bytes ({cap} bytes); the rest was not read")
        late = QueryError("timeout", _timed_out(settings))
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise late
        try:
            with self._session.get(
                f"{settings.url}/api/v1/query",
                params={"query": promql, "time": f"{now:.3f}"},
                headers=headers,
                # Said again here: requests lets REQUESTS_CA_BUNDLE override the session's own.
                verify=self._session.verify,
                timeout=remaining,  # for each wait on the socket; the deadline bounds their sum
                stream=True,
            ) as response:
                length = response.headers.get("Content-Length", "")
                if length.isdigit() and int(length) > cap:
                    raise too_large
                body = bytearray()
                while chunk := response.raw.read1(_CHUNK_BYTES, decode_content=True):
                    body += chunk
                    if len(body) > cap:
                        raise too_large
                    if time.monotonic() > deadline:
                        raise late
        except requests.RequestException as err:
            # One text for every timeout, whichever wait ran out, so a slow server is one line.
            kind = _error_kind(err)
            raise (late if kind == "timeout" else QueryError(kind, _cause(err))) from None
        except urllib3.exceptions.HTTPError as err:  # raised by the raw stream while reading
            if isinstance(err, urllib3.exceptions.TimeoutError):
                raise late from None
            raise QueryError("connection", f"{type(err).__name__}: {err}") from None
        if response.status_code >= 400:
            raise QueryError("http", f"HTTP {response.status_code}: {_error_text(bytes(body))}", status=response.status_code)
        return bytes(body)

    def _pod_readings(self, query: SignalQuery, samples: list[Sample], *, now: float) -> dict[str, Reading]:
        labels = self._config.labels
        values: dict[str, list[str]] = defaultdict(list)
        stamps: dict[str, list[str]] = defaultdict(list)
        for sample in samples:
            metric = sample.metric
            model = self._model_by_label.get((metric.get(labels.namespace), metric.get(labels.model)))
            if model is None or (query.models is not None and model not in query.models):
                continue  # a model this daemon does not manage, or one another query reads
            if metric.get(STAT) == "timestamp":
                stamps[model].append(sample.value)
            elif metric.get(STAT) == "value":
                values[model].append(sample.value)
        readings = {}
        for model, raws in values.items():
            reading = self._pod_reading(query.signal, model, raws, stamps.get(model, []), now=now)
            if reading is None:
                self._on_error(query.signal, "rejected")
            else:
                readings[model] = reading
        return readings

    def _pod_reading(self, signal: str, model: str, raws: list[str], stamps: list[str], *, now: float) -> Reading | None:
        """A model's one value with its one timestamp, or None (missing) with a logged reason.
        Two series for one model are refused, not resolved by their order: which one is
        right cannot be told, and summing them could double the load."""
        if len(raws) > 1 or len(stamps) > 1:
            return _rejected(signal, model, raws, f"{len(raws)} value and {len(stamps)} timestamp series for one model, not one of each")
        if not stamps:
            return _rejected(signal, model, raws, "no timestamp series: the sample's age is unknown")
        stamp = float(stamps[0])
        if not math.isfinite(stamp):
            return _rejected(signal, model, raws, f"its timestamp {stamps[0]!r} is not finite: the sample's age is unknown")
        age_s = max(now - stamp, 0.0)
        return _reading(signal, model, raws[0], age_s=age_s, stale_after_s=self._settings.stale_after_s)

    def _keyed_readings(self, query: SignalQuery, samples: list[Sample]) -> dict[str, Reading]:
        by_key: dict[str, list[str]] = defaultdict(list)
        for sample in samples:
            key = sample.metric.get(KEY)
            if key in query.keys:
                by_key[key].append(sample.value)
        readings = {}
        for key, raws in by_key.items():
            names = query.keys[key]
            if len(raws) > 1:
                reading = _rejected(query.signal, names[0], raws, f"{len(raws)} series for one key, not one")
            else:
                reading = _reading(query.signal, names[0], raws[0], age_s=0.0, stale_after_s=math.inf)
            if reading is None:
                self._on_error(query.signal, "rejected")
            else:
                readings.update(dict.fromkeys(names, reading))
        return readings


def parse_or_raise(body: bytes) -> list[Sample]:
    try:
        return parse_vector(body)
    except MalformedAnswer as err:
        raise QueryError("malformed", f"malformed answer: {err}") from None


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
        return _rejected(signal, key, raw, str(err))


def _rejected(signal: str, key: str, value: object, reason: str) -> None:
    log.warning("rejected a sample; the reading is missing this tick", signal=signal, key=key, value=value, reason=reason)
    return None


# RFC 6750's b64token: what a bearer token may hold.
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=")


def _auth_headers(token_file: Path | None) -> dict[str, str]:
    if token_file is None:
        return {}
    try:
        token = token_file.read_text().strip()
    except OSError as err:
        log.error("cannot read the Prometheus bearer token file", path=str(token_file), error=err.strerror)
        return {}
    if not token or not set(token) <= _TOKEN_CHARS:
        # Never the token itself, nor requests' error about the header, which quotes it.
        bad = sorted({repr(c) for c in token if c not in _TOKEN_CHARS})
        log.error(
            "the Prometheus bearer token file does not hold one token; sending none",
            path=str(token_file), length=len(token), not_allowed=bad or "the file is empty",
        )
        return {}
    return {"Authorization": f"Bearer {token}"}


def _timed_out(settings: PrometheusConfig) -> str:
    return f"timed out: no whole answer within timeout_s ({settings.timeout_s:g} s)"


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


def _cause(err: Exception) -> str:
    """The cause of a failed request. A connection error's own text leads with the URL, whose
    query string is the whole PromQL: the cause (refused, timed out, a certificate that does
    not verify) is urllib3's `reason` inside it."""
    reason = getattr(err.args[0], "reason", None) if err.args else None
    return f"{type(err).__name__}: {reason}" if reason is not None else f"{type(err).__name__}: {err}"


def _error_text(body: bytes) -> str:
    """Prometheus's own error of a refused query (`errorType: error`), else the body's start."""
    try:
        answer = json.loads(body)
        return f"{answer['errorType']}: {answer['error']}"
    except (ValueError, KeyError, TypeError):
        return body[:200].decode("utf-8", "replace")


def _short(text: str) -> str:
    return text if len(text) <= 300 else text[:300] + "..."

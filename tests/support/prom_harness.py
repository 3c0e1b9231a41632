"""Test harness for running the autoscaler against a *real* Prometheus.

Test code, not shipped: the tests and the scale benchmark (simulations/bench_scale.py, lab
code run from a checkout) import it from here.

Two building blocks, both plain context managers so that pytest fixtures and
standalone benchmark scripts can share them:

* :class:`MetricsExporter` -- a tiny HTTP server on ``127.0.0.1:<ephemeral>``
  whose ``/metrics`` body the test mutates at runtime (set a gauge per label
  set, set NaN, remove a series, freeze a series, make the whole target fail).
* :func:`run_prometheus` -- starts the ``prometheus`` binary (found on PATH) on
  a free port with a throw-away TSDB directory and a generated config that
  scrapes the given targets, optionally after backfilling recorded history with
  ``promtool tsdb create-blocks-from openmetrics``.

Why a hand-rendered exposition instead of ``prometheus_client``:

* Prometheus asks for OpenMetrics in its ``Accept`` header. prometheus_client
  then answers in OpenMetrics, whose naming rules can rewrite names such as
  ``vllm:num_requests_waiting`` and which we do not want in the loop. This
  exporter *always* answers ``text/plain; version=0.0.4`` (the classic text
  format), whatever the ``Accept`` header says.
* prometheus_client cannot attach an explicit timestamp to a gauge sample, and
  explicit timestamps are the only way to make Prometheus hold a sample that
  is old but still inside the lookback window (see :meth:`MetricsExporter.freeze`).

Staleness semantics you can produce (verified against Prometheus 2.42):

* ``remove()`` -- the series disappears from the next scrape; Prometheus writes
  a staleness marker at once, so instant queries stop returning it after the
  next scrape (no waiting for ``--query.lookback-delta``).
* ``fail()`` -- every scrape returns an HTTP error; ``up == 0`` and Prometheus
  writes staleness markers for *all* series of the target.
* ``freeze()`` / ``set(..., timestamp=t)`` -- the series keeps being exported
  with a fixed explicit timestamp. Prometheus does not track staleness for
  samples with explicit timestamps, so the series stays queryable until
  ``lookback_delta`` after that timestamp while ``timestamp(series)`` ages.
  Caveat: switching a series that was exported *without* a timestamp over to
  an explicit one makes Prometheus write a staleness marker at that scrape
  (the series is no longer "seen" by the staleness tracker), so ``freeze()``
  only gives an ageing series if the series carried explicit timestamps from
  its first scrape (``set(..., explicit_timestamp=True)`` or ``timestamp=``).

Startup cost: Prometheus 2.42 is ready in well under a second, but the first
scrape only happens after its discovery/scrape-manager 5 s reload tickers
fire, so the first sample is visible ~5-6 s after start. Start one Prometheus
per session, register all exporters before starting it, and give each test
its own label values (e.g. a unique ``model_name``) so tests don't interfere.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import requests

__all__ = [
    "CLASSIC_CONTENT_TYPE",
    "PrometheusNotInstalledError",
    "PrometheusStartError",
    "MetricsExporter",
    "OpenMetricsHistory",
    "PrometheusServer",
    "run_prometheus",
    "backfill_openmetrics",
    "find_binary",
    "free_port",
    "vllm_labels",
    "dcgm_labels",
    "by_labels",
    "fast_retry",
    "sample_value",
    "unique_name",
]

CLASSIC_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = Mapping[str, str]
_Key = tuple  # tuple of (label, value) pairs in the caller's order


class PrometheusNotInstalledError(RuntimeError):
    """``prometheus`` / ``promtool`` is not on PATH."""


class PrometheusStartError(RuntimeError):
    """Prometheus exited early or never became ready (log tail included)."""


def find_binary(name: str) -> str:
    """Return the absolute path of ``name`` on PATH or raise a clear error."""
    path = shutil.which(name)
    if path is None:
        raise PrometheusNotInstalledError(
            f"{name!r} not found on PATH. Install it (Debian/Ubuntu: "
            f"`apt-get install -y prometheus`, which ships prometheus and promtool) "
            f"or put the upstream release binaries on PATH."
        )
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the kernel for a currently free TCP port (small race, caller retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


_unique_counter = 0
_unique_lock = threading.Lock()


def unique_name(prefix: str = "m") -> str:
    """A label value unique within this process, so tests sharing one
    Prometheus never see each other's series."""
    global _unique_counter
    with _unique_lock:
        _unique_counter += 1
        return f"{prefix}-{os.getpid()}-{_unique_counter}"


def vllm_labels(model_name: str, namespace: str = "default", pod: str | None = None,
                engine: str = "0") -> dict[str, str]:
    """Label set used by vLLM gauges such as ``vllm:num_requests_waiting``."""
    return {"model_name": model_name, "namespace": namespace,
            "pod": pod or f"{model_name}-0", "engine": engine}


def dcgm_labels(pod: str, namespace: str = "default", gpu: str = "0",
                uuid: str | None = None, model: str = "NVIDIA H100 80GB HBM3",
                hostname: str = "node-1", exported: bool = True) -> dict[str, str]:
    """Label set of ``DCGM_FI_DEV_GPU_UTIL``. ``exported=True`` uses the
    ``exported_pod``/``exported_namespace`` spelling (dcgm-exporter scraped
    with honor_labels=false), otherwise plain ``pod``/``namespace``."""
    p, n = ("exported_pod", "exported_namespace") if exported else ("pod", "namespace")
    return {"gpu": gpu, "UUID": uuid or f"GPU-{pod}-{gpu}", "modelName": model,
            "Hostname": hostname, p: pod, n: namespace}


# ---------------------------------------------------------------------------
# Exposition formatting
# ---------------------------------------------------------------------------

def _fmt_value(v: float) -> str:
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


def _esc_label(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _esc_help(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n")


def _fmt_labels(key: _Key) -> str:
    if not key:
        return ""
    return "{" + ",".join(f'{k}="{_esc_label(v)}"' for k, v in key) + "}"


def _key(labels: Labels | None) -> _Key:
    return tuple((str(k), str(v)) for k, v in (labels or {}).items())


def _norm(key: _Key) -> frozenset:
    return frozenset(key)


@dataclass
class _Series:
    key: _Key
    value: float
    timestamp: float | None = None      # seconds; None -> Prometheus uses scrape time
    explicit_now: bool = False           # render with timestamp = "now" at scrape


@dataclass
class _Family:
    name: str
    type: str = "gauge"
    help: str = ""
    series: dict[frozenset, _Series] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# Exporter
# ---------------------------------------------------------------------------

class MetricsExporter:
    """An in-process scrape target whose metrics the test controls.

    Usage::

        with MetricsExporter() as exp:
            exp.set("vllm:num_requests_waiting", vllm_labels("m1"), 3)
            exp.set("vllm:num_requests_waiting", vllm_labels("m1"), float("nan"))
            exp.remove("vllm:num_requests_waiting", vllm_labels("m1"))
            exp.fail(503); exp.recover()
            exp.target   # "127.0.0.1:<port>" for the scrape config

    Label sets are matched order-insensitively; rendering keeps the order of
    the first ``set``. Always serves the classic text format 0.0.4.
    All methods are thread-safe.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self._families: dict[str, _Family] = {}
        self._fail_status: int | None = None
        self._scrapes = 0
        self._scrape_cv = threading.Condition(self._lock)
        self.last_accept: str | None = None   # Accept header of the last scrape
        self._host, self._req_port = host, port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> "MetricsExporter":
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                status, body = exporter._handle(self.path, self.headers.get("Accept"))
                data = body.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", CLASSIC_CONTENT_TYPE)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

        self._server = ThreadingHTTPServer((self._host, self._req_port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="metrics-exporter", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "MetricsExporter":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "exporter not started"
        return self._server.server_address[1]

    @property
    def target(self) -> str:
        """``host:port`` for a Prometheus static_config."""
        return f"{self._host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.target}/metrics"

    # -- mutation ------------------------------------------------------------
    def declare(self, name: str, type: str = "gauge", help: str = "") -> None:
        """Set # TYPE / # HELP for a family (optional; ``set`` auto-declares gauges)."""
        with self._lock:
            fam = self._families.setdefault(name, _Family(name))
            fam.type, fam.help = type, help

    def set(self, name: str, labels: Labels | None, value: float, *,
            timestamp: float | None = None, explicit_timestamp: bool = False) -> None:
        """Set one sample. ``value`` may be ``float('nan')`` (exported as NaN).

        ``timestamp`` (unix seconds) exports a fixed explicit timestamp, e.g.
        ``time.time() - 60`` for a series that is already 60 s old.
        ``explicit_timestamp=True`` exports "now" as explicit timestamp on every
        scrape, which keeps the series fresh but opts it out of Prometheus's
        staleness tracking so that a later :meth:`freeze` produces an ageing
        (not vanished) series. Default: no timestamp (normal exporter).
        """
        key = _key(labels)
        with self._lock:
            fam = self._families.setdefault(name, _Family(name))
            nk = _norm(key)
            old = fam.series.get(nk)
            fam.series[nk] = _Series(key=old.key if old else key, value=float(value),
                                     timestamp=timestamp, explicit_now=explicit_timestamp)

    def remove(self, name: str, labels: Labels | None = None) -> bool:
        """Stop exporting a series -> staleness marker -> it vanishes from
        instant queries right after the next scrape. ``labels=None`` removes
        the whole family. Returns whether something was removed."""
        with self._lock:
            fam = self._families.get(name)
            if fam is None:
                return False
            if labels is None:
                del self._families[name]
                return True
            return fam.series.pop(_norm(_key(labels)), None) is not None

    def clear(self) -> None:
        """Remove every series of every family."""
        with self._lock:
            self._families.clear()

    def freeze(self, name: str, labels: Labels | None, at: float | None = None) -> float:
        """Keep exporting the series' current value with a fixed explicit
        timestamp (``at``, default now). Prometheus ingests the sample once and
        then ignores the identical duplicates, so ``timestamp(series)`` stops
        advancing and the series stays visible until ``lookback_delta`` after
        ``at``. See the module docstring for the explicit-timestamp caveat.
        ``at`` must not be older than the last exported sample (Prometheus
        drops out-of-order samples). Undo with :meth:`set`. Returns ``at``."""
        at = time.time() if at is None else at
        with self._lock:
            s = self._families[name].series[_norm(_key(labels))]
            s.timestamp, s.explicit_now = at, False
        return at

    def get(self, name: str, labels: Labels | None) -> float | None:
        with self._lock:
            fam = self._families.get(name)
            s = fam.series.get(_norm(_key(labels))) if fam else None
            return None if s is None else s.value

    def fail(self, status: int = 503) -> None:
        """Make every scrape answer ``status`` -> ``up == 0`` and staleness
        markers for all of this target's series."""
        with self._lock:
            self._fail_status = status

    def recover(self) -> None:
        with self._lock:
            self._fail_status = None

    # -- observation ---------------------------------------------------------
    @property
    def scrape_count(self) -> int:
        with self._lock:
            return self._scrapes

    def wait_for_scrapes(self, n: int = 1, timeout: float = 15.0) -> None:
        """Block until ``n`` more scrapes have been *served* (not necessarily
        committed in Prometheus yet -- prefer ``PrometheusServer.wait_for``)."""
        deadline = time.monotonic() + timeout
        with self._scrape_cv:
            goal = self._scrapes + n
            while self._scrapes < goal:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"exporter {self.target}: no scrape within {timeout}s")
                self._scrape_cv.wait(left)

    def render(self) -> str:
        """The classic text-format body (what a scrape returns)."""
        now_ms = int(time.time() * 1000)
        out: list[str] = []
        with self._lock:
            for fam in self._families.values():
                if not fam.series:
                    continue
                if fam.help:
                    out.append(f"# HELP {fam.name} {_esc_help(fam.help)}")
                out.append(f"# TYPE {fam.name} {fam.type}")
                for s in fam.series.values():
                    line = f"{fam.name}{_fmt_labels(s.key)} {_fmt_value(s.value)}"
                    if s.timestamp is not None:
                        line += f" {int(s.timestamp * 1000)}"
                    elif s.explicit_now:
                        line += f" {now_ms}"
                    out.append(line)
        return "\n".join(out) + "\n" if out else ""

    def _handle(self, path: str, accept: str | None) -> tuple[int, str]:
        if path.split("?", 1)[0] != "/metrics":
            return 404, "not found\n"
        with self._scrape_cv:
            self.last_accept = accept
            status = self._fail_status
        body = f"exporter failing with {status}\n" if status else self.render()
        with self._scrape_cv:
            self._scrapes += 1
            self._scrape_cv.notify_all()
        return (status or 200), body


# ---------------------------------------------------------------------------
# Backfill
# ---------------------------------------------------------------------------

class OpenMetricsHistory:
    """Builds OpenMetrics text for ``promtool tsdb create-blocks-from openmetrics``.

    OpenMetrics differs from the classic format in ways that bite: timestamps
    are *seconds* (float), the text must end with ``# EOF``, each family must
    be contiguous with a single ``# TYPE``. Colons in metric names are legal.
    Samples are emitted grouped by family, then series, in time order (promtool
    rejects out-of-order samples of a series within a block).
    """

    def __init__(self) -> None:
        self._fam: dict[str, tuple[str, dict[frozenset, tuple[_Key, dict[float, float]]]]] = {}

    def add(self, name: str, labels: Labels | None, ts: float, value: float,
            type: str = "gauge") -> "OpenMetricsHistory":
        key = _key(labels)
        _, series = self._fam.setdefault(name, (type, {}))
        series.setdefault(_norm(key), (key, {}))[1][float(ts)] = float(value)
        return self

    def add_series(self, name: str, labels: Labels | None,
                   points: Iterable[tuple[float, float]], type: str = "gauge") -> "OpenMetricsHistory":
        for ts, v in points:
            self.add(name, labels, ts, v, type)
        return self

    def render(self) -> str:
        out: list[str] = []
        for name, (type_, series) in self._fam.items():
            out.append(f"# TYPE {name} {type_}")
            for key, pts in series.values():
                for ts in sorted(pts):
                    out.append(f"{name}{_fmt_labels(key)} {_fmt_value(pts[ts])} {ts:.3f}")
        out.append("# EOF")
        return "\n".join(out) + "\n"


def backfill_openmetrics(text: str, storage_dir: str | os.PathLike, *,
                         workdir: str | os.PathLike | None = None) -> list[Path]:
    """Write OpenMetrics ``text`` as TSDB blocks into ``storage_dir`` with
    ``promtool tsdb create-blocks-from openmetrics``. Must run *before*
    Prometheus opens that directory. Appends ``# EOF`` if missing.
    Returns the created block directories.

    Gotchas (verified with 2.42):
    * Blocks are cut at 2h-aligned boundaries (one block per 2h window touched).
    * On open, Prometheus only accepts new samples newer than the newest
      block's last sample (no out-of-order ingestion by default). History
      that reaches into the future blocks *all* scraping (even ``up``) as
      "out of bounds"; history ending at T rejects exporter samples with
      explicit timestamps < T. End history a few minutes before "now".
    * Backfilled series carry only the labels you wrote: no ``job`` /
      ``instance``. To continue a live series, write those labels too.
    * Time retention is measured from the newest block's end, not wall clock:
      blocks older than that minus ``--storage.tsdb.retention.time`` are
      deleted at startup ("Deleting obsolete block" in the log).
    * Timestamps are seconds (not ms as in the classic format).
    """
    promtool = find_binary("promtool")
    storage_dir = Path(storage_dir)
    storage_dir.mkdir(parents=True, exist_ok=True)
    if not text.rstrip().endswith("# EOF"):
        text = text.rstrip("\n") + "\n# EOF\n"
    before = {p.name for p in storage_dir.iterdir()}
    with tempfile.NamedTemporaryFile("w", suffix=".om", dir=workdir, delete=False) as f:
        f.write(text)
        src = f.name
    try:
        proc = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics",
                               src, str(storage_dir)], capture_output=True, text=True)
    finally:
        os.unlink(src)
    if proc.returncode != 0:
        raise RuntimeError(f"promtool backfill failed ({proc.returncode}):\n"
                           f"{proc.stdout}\n{proc.stderr}")
    return sorted(p for p in storage_dir.iterdir()
                  if p.is_dir() and p.name not in before and (p / "meta.json").exists())


# ---------------------------------------------------------------------------
# Prometheus process
# ---------------------------------------------------------------------------

def fast_retry(retries: int = 0):
    """urllib3 ``Retry`` for PrometheusConnect(retry=...) in tests: never
    retries reads (so timeouts surface as ``requests.ReadTimeout`` instead of
    ``ConnectionError``), never retries on status (non-200 surfaces as
    ``PrometheusApiClientException``), no backoff."""
    from urllib3.util.retry import Retry
    return Retry(total=retries, read=False, backoff_factor=0,
                 status_forcelist=[], raise_on_status=False)


def by_labels(result: Sequence[Mapping[str, Any]], *keys: str) -> dict[tuple, float]:
    """``{(label values...): float(value)}`` for an instant-vector result."""
    return {tuple(r["metric"].get(k) for k in keys): float(r["value"][1]) for r in result}


def sample_value(item: Mapping[str, Any]) -> float:
    """float of one instant-vector item; ``"NaN"`` -> nan, ``"+Inf"`` -> inf."""
    return float(item["value"][1])


@dataclass
class PrometheusServer:
    """A running Prometheus. ``url`` is what the autoscaler should be given."""

    url: str
    port: int
    workdir: Path
    storage_dir: Path
    config_path: Path
    log_path: Path
    process: subprocess.Popen
    scrape_interval: str
    _http: requests.Session = field(default_factory=requests.Session, repr=False)

    def client(self, *, timeout: float = 5.0, retries: int = 0, **kw: Any):
        """A ``prometheus_api_client.PrometheusConnect`` for this server.

        Defaults differ from the library's on purpose: by default the library
        retries 3x with backoff (0+2+4 s) on connection errors, read timeouts
        and 408/429/500/502/503/504, has no timeout, and then raises
        ``requests.ConnectionError`` (also for read timeouts) or
        ``requests.exceptions.RetryError`` (for 5xx). With this client:
        refused -> ``requests.ConnectionError``; timeout ->
        ``requests.ReadTimeout`` (``requests.Timeout``); any non-200 ->
        ``PrometheusApiClientException`` immediately."""
        from prometheus_api_client import PrometheusConnect
        return PrometheusConnect(url=self.url, disable_ssl=True, timeout=timeout,
                                 retry=kw.pop("retry", None) or fast_retry(retries), **kw)

    def query(self, promql: str, at: float | None = None, timeout: float = 5.0) -> list:
        """Instant query -> ``data.result`` (raises on non-success)."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        r = self._http.get(f"{self.url}/api/v1/query", params=params, timeout=timeout)
        body = r.json()
        if r.status_code != 200 or body.get("status") != "success":
            raise RuntimeError(f"query {promql!r} failed: HTTP {r.status_code} {body}")
        return body["data"]["result"]

    def wait_for(self, promql: str, predicate: Callable[[list], bool] | None = None,
                 timeout: float = 20.0, interval: float = 0.1) -> list:
        """Poll an instant query until ``predicate(result)`` is true (default:
        non-empty result) and return that result. Raises ``TimeoutError``
        including the last result. Never use fixed sleeps instead of this."""
        predicate = predicate or (lambda res: len(res) > 0)
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                last = self.query(promql)
                if predicate(last):
                    return last
            except (requests.RequestException, ValueError, RuntimeError) as e:
                last = e
            if time.monotonic() >= deadline:
                raise TimeoutError(f"wait_for({promql!r}) timed out after {timeout}s; "
                                   f"last result: {last!r}")
            time.sleep(interval)

    def wait_absent(self, promql: str, timeout: float = 20.0) -> None:
        """Poll until the query returns an empty vector."""
        self.wait_for(promql, lambda res: len(res) == 0, timeout)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def _write_config(path: Path, targets: Sequence[str], scrape_interval: str,
                  job_name: str, honor_labels: bool, extra_scrape_config: Mapping | None) -> None:
    job: dict[str, Any] = {
        "job_name": job_name,
        "honor_labels": honor_labels,
        "static_configs": [{"targets": list(targets)}] if targets else [],
    }
    job.update(extra_scrape_config or {})
    cfg = {
        "global": {
            "scrape_interval": scrape_interval,
            # must be <= scrape_interval (default 10s would fail config load)
            "scrape_timeout": scrape_interval,
            "evaluation_interval": scrape_interval,
        },
        "scrape_configs": [job] if targets else [],
    }
    path.write_text(json.dumps(cfg, indent=2))  # JSON is valid YAML


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def run_prometheus(
    targets: Iterable[str | MetricsExporter] = (),
    *,
    scrape_interval: str = "1s",
    backfill: str | None = None,
    lookback_delta: str | None = None,
    retention: str = "10y",
    job_name: str = "harness",
    honor_labels: bool = False,
    extra_scrape_config: Mapping[str, Any] | None = None,
    extra_args: Sequence[str] = (),
    startup_timeout: float = 30.0,
    keep_dir: bool = False,
) -> Iterator[PrometheusServer]:
    """Run a throw-away Prometheus on ``127.0.0.1:<free port>``.

    targets          -- ``"host:port"`` strings or started MetricsExporters,
                        all in one job (series get ``job``/``instance`` labels).
    scrape_interval  -- also used as scrape_timeout and evaluation_interval.
    backfill         -- OpenMetrics text written into the TSDB with promtool
                        before start (see :class:`OpenMetricsHistory`).
    lookback_delta   -- ``--query.lookback-delta`` (default Prometheus: 5m):
                        how long a sample without a staleness marker stays
                        visible to instant queries.
    retention        -- ``--storage.tsdb.retention.time``; generous so that
                        backfilled history is not deleted on startup (time
                        retention is measured from the newest block's end).

    Yields a :class:`PrometheusServer` once ``/-/ready`` answers 200 (polled,
    no fixed sleeps). Scraped samples appear ~5-6 s later (use ``wait_for``).
    """
    binary = find_binary("prometheus")
    addrs = [t.target if isinstance(t, MetricsExporter) else str(t) for t in targets]
    workdir = Path(tempfile.mkdtemp(prefix="promtest-"))
    storage = workdir / "data"
    storage.mkdir()
    config = workdir / "prometheus.yml"
    log_path = workdir / "prometheus.log"
    _write_config(config, addrs, scrape_interval, job_name, honor_labels, extra_scrape_config)
    if backfill is not None:
        backfill_openmetrics(backfill, storage, workdir=workdir)

    server: PrometheusServer | None = None
    try:
        for _attempt in range(3):  # retry on the rare free-port race
            port = free_port()
            args = [binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={storage}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    f"--storage.tsdb.retention.time={retention}",
                    "--log.level=info"]
            if lookback_delta:
                args.append(f"--query.lookback-delta={lookback_delta}")
            args.extend(extra_args)
            log = open(log_path, "ab")
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=workdir)
            log.close()
            server = PrometheusServer(url=f"http://127.0.0.1:{port}", port=port,
                                      workdir=workdir, storage_dir=storage,
                                      config_path=config, log_path=log_path,
                                      process=proc, scrape_interval=scrape_interval)
            if _wait_ready(server, startup_timeout):
                break
            _stop(proc)
            if "address already in use" not in server.log_tail().lower():
                raise PrometheusStartError(
                    f"prometheus did not become ready in {startup_timeout}s "
                    f"(exit code {proc.returncode}). Log tail:\n{server.log_tail()}")
        else:
            raise PrometheusStartError(f"could not bind a port. Log tail:\n{server.log_tail()}")
        yield server
    finally:
        if server is not None:
            _stop(server.process)
            server._http.close()
        if not keep_dir:
            shutil.rmtree(workdir, ignore_errors=True)


def _wait_ready(server: PrometheusServer, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            if server._http.get(f"{server.url}/-/ready", timeout=1).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.02)
    return False

"""The daemon at scale: what one tick costs, in time, PromQL queries, API requests and memory,
for 10, 100 and 1,000 models, against a real Prometheus and kmock (an HTTP Kubernetes API
emulator), with the open-loop replay speed beside it. Figures, not a timed test.

    ./dev bench-scale            (python -m simulations.bench_scale --help)

The fleet is long-tail-heavy: one model in ten is hot and busy; the rest are long-tail models,
a third at zero replicas (a few woken by gateway demand), a third warm with a trickle of
requests, a third warm and idle. They are spread over up to 50 namespaces, one in seven
long-tail models behind a KEDA ScaledObject (mode pin). An exporter serves every model's vLLM
and DCGM series and the gateway's wake gauges in the classic text format; Prometheus (Debian's
binary) scrapes it; kmock holds the Deployments and ScaledObjects. Each size has namespaces
of its own, so one Prometheus and one kmock serve all three.

The daemon part (PrometheusSource, KubernetesTargets over a WatchCache, Controller) runs in a
child process, so that the resident memory reported is the daemon's own: the exporter, kmock
and this bookkeeping stay in this process, Prometheus in its own. Between two ticks the child
waits for this process, which meanwhile counts what the tick asked of the servers:
- PromQL queries on Prometheus's side (prometheus_http_requests_total{handler="/api/v1/query"})
  and on the adapter's (a requests hook);
- API requests on kmock's side, by verb; a watch (GET ?watch=true) counts as WATCH.

kmock takes longer over every request for each request it has logged (it filters its whole log
to pick a reaction: tests/support/kmock_harness.py), so the 1,000-model fleet's first tick would
pay for the 10- and 100-model runs before it, and for its own earlier writes. By default the
harness takes answered requests out of kmock's log (`--kmock-log forget`), and watches once they
stream; what a watch still costs kmock is waking on every write of its kind. `--kmock-log keep`
measures as before.

Lab code, run from a checkout (`pip install -e ".[test,lab]"`, which ./dev setup does, and the
repository root on sys.path, as `python -m` from the root gives): the Prometheus and kmock
harnesses it runs against are test code and come from `tests.support` (prom_harness.py,
kmock_harness.py), shared with the adapter tests; nothing shipped imports them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import typing
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

from autoscaler.settings import WatchSettings

WAITING, RUNNING = "vllm:num_requests_waiting", "vllm:num_requests_running"
KV_CACHE, COMPLETIONS, GPU = "vllm:kv_cache_usage_perc", "vllm:request_success_total", "DCGM_FI_DEV_GPU_UTIL"
WAKE, SATURATION = "gateway_requests_waiting", "vectordb_saturation"
PAUSED_REPLICAS = "autoscaling.keda.sh/paused-replicas"


# -- the fleet ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetModel:
    name: str
    namespace: str
    kind: str  # hot | long-tail
    replicas: int
    waiting: float
    running: float
    wake: float | None  # the gateway's demand; long-tail models only
    keda: bool
    completions_per_s: float

    @property
    def pod(self) -> str:
        return f"{self.name}-0"


@dataclass(frozen=True)
class Fleet:
    prefix: str
    models: tuple[FleetModel, ...]

    @property
    def namespaces(self) -> list[str]:
        return sorted({m.namespace for m in self.models})


def fleet(size: int, *, prefix: str, namespaces: int = 50) -> Fleet:
    """Deterministic by index, so every run measures the same fleet. Hot models start at 2
    replicas with 12 waiting and 40 running: they ask for 4 at the first tick (at 16 in flight
    per replica) and then hold while the new replicas start, so later ticks change nothing."""
    spread = min(namespaces, size)
    models = []
    for i in range(size):
        namespace = f"{prefix}-ns-{i % spread}"
        name = f"m{i:04d}"
        if i % 10 == 0:
            models.append(FleetModel(name, namespace, "hot", 2, 12, 40, None, False, 4.0))
        elif i % 3 == 0:  # at zero; one in ten of these has gateway demand and wakes
            models.append(FleetModel(name, namespace, "long-tail", 0, 0, 0, 2.0 if i % 20 == 3 else 0.0, i % 7 == 1, 0.0))
        elif i % 3 == 1:  # warm, a trickle
            models.append(FleetModel(name, namespace, "long-tail", 1, 0, 2, 0.5, i % 7 == 1, 0.2))
        else:  # warm, idle
            models.append(FleetModel(name, namespace, "long-tail", 1, 0, 0, 0.0, i % 7 == 1, 0.0))
    return Fleet(prefix, tuple(models))


def config_for(fleet: Fleet, *, prometheus_url: str) -> dict:
    entries = []
    for m in fleet.models:
        target = {"kind": "ScaledObject", "name": f"{m.name}-so", "mode": "pin"} if m.keda else {"kind": "Deployment", "name": m.name}
        entry = {"name": m.name, "namespace": m.namespace, "target": target}
        if m.kind == "hot":
            entry["policy"] = {"kind": "hot", "max_replicas": 20, "target_waiting_per_replica": 4, "target_running_per_replica": 16}
            entry["dependencies"] = ["vector-db"]
        else:
            entry["policy"] = {"kind": "long-tail", "max_replicas": 4, "target_waiting_per_replica": 4, "target_running_per_replica": 16}
            entry["wake_query"] = f'{WAKE}{{model="{fleet.prefix}-{m.name}"}}'
        entries.append(entry)
    return {
        "prometheus": {"url": prometheus_url, "timeout_s": 30},
        "dependencies": [{"name": "vector-db", "saturation_query": f'{SATURATION}{{fleet="{fleet.prefix}"}}', "saturated_at": 0.9}],
        "models": entries,
    }


def publish(fleet: Fleet, *, exporter, cluster) -> None:
    """The fleet's series into the exporter and its objects into kmock."""
    exporter.declare(COMPLETIONS, type="counter")
    exporter.set(SATURATION, {"fleet": fleet.prefix}, 0.3)
    for m in fleet.models:
        if m.wake is not None:
            exporter.set(WAKE, {"model": f"{fleet.prefix}-{m.name}"}, m.wake)
        if m.replicas:
            vllm = {"model_name": m.name, "namespace": m.namespace, "pod": m.pod, "engine": "0"}
            exporter.set(WAITING, vllm, m.waiting)
            exporter.set(RUNNING, vllm, m.running)
            exporter.set(KV_CACHE, vllm, 0.3)
            exporter.set(COMPLETIONS, vllm, 0.0)
            exporter.set(GPU, {"gpu": "0", "exported_pod": m.pod, "exported_namespace": m.namespace}, 90.0 if m.kind == "hot" else 40.0)
        cluster.put(_deployment(m))
        if m.keda:
            cluster.put(_scaled_object(m))


@contextmanager
def counters_advancing(exporter, fleets: list[Fleet], *, every_s: float = 1.0) -> Iterator[None]:
    """vllm:request_success_total grows at each model's rate, so rate() has something to show."""
    stop = threading.Event()
    started = time.time()

    def advance() -> None:
        while not stop.wait(every_s):
            elapsed = time.time() - started
            for f in fleets:
                for m in f.models:
                    if m.replicas:
                        vllm = {"model_name": m.name, "namespace": m.namespace, "pod": m.pod, "engine": "0"}
                        exporter.set(COMPLETIONS, vllm, round(m.completions_per_s * elapsed))

    thread = threading.Thread(target=advance, name="counters", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def wait_until_scraped(prometheus, fleets: list[Fleet], *, timeout_s: float = 60.0) -> None:
    """Every warm model's series are in, and rate() has two samples of every counter."""
    warm = sum(1 for f in fleets for m in f.models if m.replicas)
    prefixes = "|".join(f.prefix for f in fleets)
    selector = f'{{namespace=~"({prefixes})-ns-.*"}}'
    prometheus.wait_for(f"count({RUNNING}{selector}) >= {warm}", timeout=timeout_s, interval=0.5)
    prometheus.wait_for(f"count(rate({COMPLETIONS}{selector}[1m])) >= {warm}", timeout=timeout_s, interval=0.5)


def _deployment(m: FleetModel) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": m.name, "namespace": m.namespace},
        "spec": {
            "replicas": m.replicas,
            "selector": {"matchLabels": {"app": m.name}},
            "template": {
                "metadata": {"labels": {"app": m.name}},
                "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
            },
        },
        "status": {"replicas": m.replicas, "readyReplicas": m.replicas},
    }


def _scaled_object(m: FleetModel) -> dict:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": f"{m.name}-so", "namespace": m.namespace, "annotations": {PAUSED_REPLICAS: str(m.replicas)}},
        "spec": {"scaleTargetRef": {"name": m.name}, "minReplicaCount": 0, "maxReplicaCount": 4, "triggers": []},
    }


# -- the daemon's side --------------------------------------------------------------------------


class _Timed:
    """Wraps the metrics source and the scale target to split a tick into observe and act.
    Observe is the sum of its calls; act, whose calls may run in several threads, is the span
    from the first one's start to the last one's end (`act_from`, `act_to`)."""

    def __init__(self, inner, seconds: Counter) -> None:
        self._inner, self._seconds = inner, seconds
        self._lock = threading.Lock()

    def fetch_signals(self, *, now: float):
        return self._timed("observe", lambda: self._inner.fetch_signals(now=now))

    def read_states(self, *, now: float):
        return self._timed("observe", lambda: self._inner.read_states(now=now))

    def apply(self, model, decision, *, now: float):
        started = time.perf_counter()
        try:
            return self._inner.apply(model, decision, now=now)
        finally:
            ended = time.perf_counter()
            with self._lock:
                self._seconds["act_from"] = min(self._seconds.get("act_from", started), started)
                self._seconds["act_to"] = max(self._seconds.get("act_to", ended), ended)

    def _timed(self, phase: str, call: Callable):
        started = time.perf_counter()
        try:
            return call()
        finally:
            self._seconds[phase] += time.perf_counter() - started


def run_daemon(
    config_data: dict,
    *,
    kube_url: str,
    ticks: int,
    between: Callable[[str, dict], None],
    watch_scope: str = "namespaces",
    write_workers: int = 1,
) -> None:
    """The daemon's pipeline, as `autoscaler run` builds it, for `ticks` ticks. `between(event,
    figures)` is called once the cache has synced ("synced") and after each tick ("tick"); the
    benchmark counts the servers' requests there."""
    from kubernetes import client as k8s
    from autoscaler.config import parse_config
    from autoscaler.controller import Controller
    from autoscaler.metrics.prometheus import PrometheusSource
    from autoscaler.targets.events import EventSender
    from autoscaler.targets.kubernetes import KubernetesTargets
    from autoscaler.targets.watching import WatchCache

    config = parse_config(config_data)
    queries = [0]
    counting = threading.Lock()  # the hook runs in the threads of a tick's queries

    def count(response, *args, **kwargs) -> None:
        with counting:
            queries[0] += 1

    session = requests.Session()
    session.hooks["response"].append(count)
    api_client = k8s.ApiClient(k8s.Configuration(host=kube_url))
    cache = WatchCache(api_client, settings=WatchSettings(watch_scope=watch_scope))
    started = time.perf_counter()
    cache.follow(config.namespaces)
    synced = cache.wait_synced(timeout_s=120)
    seconds: Counter = Counter()
    metrics = _Timed(PrometheusSource(config, session=session), seconds)
    events = EventSender(api_client)
    targets = _Timed(KubernetesTargets(config, api_client, cache=cache, events=events), seconds)
    controller = Controller(config, metrics=metrics, targets=targets, write_workers=write_workers)
    try:
        between("synced", {"synced": synced, "sync_s": time.perf_counter() - started})
        for _ in range(ticks):
            seconds.clear()
            before = queries[0]
            started, cpu_started = time.perf_counter(), time.process_time()
            with events.held():  # as `autoscaler run` ticks: a tick's Events go out after its writes
                outcomes = controller.tick(now=time.time())
            wall_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
            # The tick does not wait for its Events; the count of requests below does, so that
            # each tick's requests are its own.
            events.flush(timeout_s=300)
            events_s = time.perf_counter() - started - wall_s
            between(
                "tick",
                {
                    "wall_s": wall_s,
                    "cpu_s": cpu_s,  # the daemon's own, all threads: the rest of wall_s is waiting on servers
                    "observe_s": seconds["observe"],
                    "act_s": seconds["act_to"] - seconds["act_from"],
                    "events_s": events_s,
                    "decide_s": wall_s - seconds["observe"] - (seconds["act_to"] - seconds["act_from"]),
                    "promql": queries[0] - before,
                    "models": len(outcomes),
                    "skipped": sum(o.skipped is not None for o in outcomes),
                    "changes": sum(o.decision is not None and o.decision.direction != "hold" for o in outcomes),
                    "actions": dict(Counter(o.action.outcome for o in outcomes if o.action is not None)),
                },
            )
    finally:
        events.stop(timeout_s=10)
        cache.stop()
        api_client.close()


def _peak_rss_mb() -> float:
    """VmHWM: the most resident memory the process has had (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child_main(config_path: str, kube_url: str, ticks: int, watch_scope: str, write_workers: int) -> None:
    """The child's end of the pipe: a JSON line per event, then wait for "go"."""
    from autoscaler.logs import configure_logging

    configure_logging(level="error")  # the tick's own logs would time the terminal

    def between(event: str, figures: dict) -> None:
        figures["rss_mb"] = _peak_rss_mb()
        print(json.dumps({"event": event, **figures}), flush=True)
        if sys.stdin.readline().strip() != "go":
            raise SystemExit("the benchmark went away")

    run_daemon(yaml.safe_load(Path(config_path).read_text()), kube_url=kube_url, ticks=ticks, between=between, watch_scope=watch_scope,
               write_workers=write_workers)


# -- this side: counting ------------------------------------------------------------------------


def prometheus_queries(url: str) -> int:
    """Instant queries Prometheus has answered, by its own count."""
    total = 0
    for line in requests.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/query"' in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def _verb(request) -> str:
    if request.params.get("watch") == "true":
        return "WATCH"
    method = request.method.upper()
    if method == "GET":
        return "GET" if request.name else "LIST"
    return method


@dataclass
class Measurement:
    """One size: the child's figures per tick and what the servers saw between the marks."""

    models: int
    namespaces: int
    sync: dict = field(default_factory=dict)
    sync_requests: Counter = field(default_factory=Counter)
    ticks: list[dict] = field(default_factory=list)
    rss_mb: float = float("nan")


class Recorder:
    def __init__(self, measurement: Measurement, *, cluster, prometheus_url: str) -> None:
        self.measurement = measurement
        self._cluster, self._url = cluster, prometheus_url
        self._mark = self._counts()

    def record(self, event: str, figures: dict) -> None:
        seen, queries = self._counts()
        requests_by_verb = Counter(_verb(r) for r in self._cluster.requests()[self._mark[0]:seen])
        if event == "synced":
            self.measurement.sync, self.measurement.sync_requests = figures, requests_by_verb
        else:
            self.measurement.ticks.append({**figures, "api": requests_by_verb, "promql_server": queries - self._mark[1]})
        if "rss_mb" in figures:
            self.measurement.rss_mb = figures["rss_mb"]
        self._mark = self._counts()

    def _counts(self) -> tuple[int, int]:
        return len(self._cluster.requests()), prometheus_queries(self._url)


def measure_in_child(
    f: Fleet, *, cluster, prometheus_url: str, ticks: int, workdir: Path, watch_scope: str, write_workers: int
) -> Measurement:
    path = workdir / f"{f.prefix}.yaml"
    path.write_text(yaml.safe_dump(config_for(f, prometheus_url=prometheus_url)))
    measurement = Measurement(models=len(f.models), namespaces=len(f.namespaces))
    recorder = Recorder(measurement, cluster=cluster, prometheus_url=prometheus_url)
    command = [sys.executable, "-m", "simulations.bench_scale", "--child", str(path), cluster.url, str(ticks), watch_scope,
               str(write_workers)]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1) as child:
        for line in child.stdout:
            figures = json.loads(line)
            recorder.record(figures.pop("event"), figures)
            child.stdin.write("go\n")
            child.stdin.flush()
        child.stdin.close()
        if child.wait() != 0:
            raise RuntimeError(f"the daemon's process failed with exit code {child.returncode}")
    return measurement


def measure_in_process(f: Fleet, *, cluster, prometheus_url: str, ticks: int, watch_scope: str = "namespaces") -> Measurement:
    """The same, without the child process (no memory figure of the daemon's own): for tests."""
    measurement = Measurement(models=len(f.models), namespaces=len(f.namespaces))
    recorder = Recorder(measurement, cluster=cluster, prometheus_url=prometheus_url)
    run_daemon(config_for(f, prometheus_url=prometheus_url), kube_url=cluster.url, ticks=ticks, between=recorder.record,
               watch_scope=watch_scope)
    return measurement


def steady_ticks(m: Measurement) -> list[dict]:
    """Ticks on which no decision changed a count."""
    return [t for t in m.ticks if t["changes"] == 0]


# -- replay -------------------------------------------------------------------------------------


def replay_speed(models: int, ticks: int) -> tuple[float, float]:
    """Model-ticks per second of open-loop replay (the whole controller) and of the policy
    alone, on the bundled trace's two models copied to `models`."""
    from autoscaler.bundled import load_bundled
    from simulations.bench_replay import bench_controller, bench_policy, fleet as copies

    config, trace = load_bundled()
    cfg, tr = copies(config, trace, max(models // 2, 1))
    n, replay_s = bench_controller(cfg, tr, 10.0, ticks=ticks)
    m, policy_s = bench_policy(cfg, tr, 10.0, ticks=ticks)
    return n / replay_s, m / policy_s


# -- the report ---------------------------------------------------------------------------------


def report(measurements: list[Measurement], replay: dict[int, tuple[float, float]]) -> str:
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, value: Callable[[Measurement], str]) -> None:
        rows.append((label, [value(m) for m in measurements]))

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:.0f}"

    def per_tick(ticks: list[dict], verb: str) -> str:
        counts = sorted({t["api"].get(verb, 0) for t in ticks})
        return "-" if not ticks else "/".join(str(c) for c in counts)

    row("models", lambda m: f"{m.models}")
    row("namespaces", lambda m: f"{m.namespaces}")
    row("ticks measured (of which steady)", lambda m: f"{len(m.ticks)} ({len(steady_ticks(m))})")
    row("tick wall time, median ms", lambda m: ms([t["wall_s"] for t in m.ticks]))
    row("tick wall time, max ms", lambda m: f"{max(t['wall_s'] for t in m.ticks) * 1000:.0f}")
    row("  observe, median ms", lambda m: ms([t["observe_s"] for t in m.ticks]))
    row("  decide, median ms", lambda m: ms([t["decide_s"] for t in m.ticks]))
    row("  act, median ms", lambda m: ms([t["act_s"] for t in m.ticks]))
    row("  act on the first tick, ms", lambda m: f"{m.ticks[0]['act_s'] * 1000:.0f}")
    row("  act per PATCH on it, ms", lambda m: f"{m.ticks[0]['act_s'] * 1000 / max(m.ticks[0]['api'].get('PATCH', 0), 1):.1f}")
    row("Events posted after the first tick, s", lambda m: f"{m.ticks[0].get('events_s', 0.0):.1f}")
    row("daemon CPU per tick, median ms", lambda m: ms([t["cpu_s"] for t in m.ticks]))
    row("daemon CPU on the first tick, ms", lambda m: f"{m.ticks[0]['cpu_s'] * 1000:.0f}")
    row("PromQL queries per tick (Prometheus)", lambda m: "/".join(str(c) for c in sorted({t["promql_server"] for t in m.ticks})))
    row("PromQL queries per tick (adapter)", lambda m: "/".join(str(c) for c in sorted({t["promql"] for t in m.ticks})))
    row("count changes, first tick", lambda m: f"{m.ticks[0]['changes']}")
    row("PATCH on the first tick", lambda m: f"{m.ticks[0]['api'].get('PATCH', 0)}")
    row("other API requests, first tick", lambda m: " ".join(f"{v} {k}" for k, v in sorted(m.ticks[0]["api"].items()) if k != "PATCH") or "0")
    row("PATCH per steady tick", lambda m: per_tick(steady_ticks(m), "PATCH"))
    row("API requests per steady tick", lambda m: "/".join(str(c) for c in sorted({sum(t["api"].values()) for t in steady_ticks(m)})) or "-")
    row("models skipped, any tick", lambda m: f"{max(t['skipped'] for t in m.ticks)}")
    row("start: cache sync, s", lambda m: f"{m.sync.get('sync_s', float('nan')):.2f}")
    row("start: LIST + WATCH requests", lambda m: f"{m.sync_requests.get('LIST', 0)} + {m.sync_requests.get('WATCH', 0)}")
    row("daemon peak RSS, MB", lambda m: f"{m.rss_mb:.0f}")
    rows.append(("replay model-ticks/s, controller", [f"{replay[m.models][0]:,.0f}" for m in measurements]))
    rows.append(("replay model-ticks/s, policy alone", [f"{replay[m.models][1]:,.0f}" for m in measurements]))
    width = max(len(label) for label, _ in rows)
    lines = [f"{label:<{width}}  " + "".join(f"{v:>14}" for v in values) for label, values in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="The daemon's cost per tick at 10, 100 and 1,000 models.")
    parser.add_argument("--child", nargs=5, metavar=("CONFIG", "KUBE_URL", "TICKS", "SCOPE", "WORKERS"), help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--namespaces", type=int, default=50)
    parser.add_argument("--ticks", type=int, default=6, help="ticks measured per size (the first one changes counts)")
    parser.add_argument("--replay-ticks", type=int, default=150, help="ticks of the bundled trace replayed per size")
    parser.add_argument("--scrape-interval", default="2s")
    parser.add_argument("--kmock-log", choices=["forget", "keep"], default="forget",
                        help="keep: kmock keeps every request it served, and each request then costs it time in "
                             "proportion to them (tests/support/kmock_harness.py); forget: answered requests leave its log")
    parser.add_argument("--write-workers", type=int, default=5, help="the daemon's --write-workers")
    parser.add_argument("--watch-scope", choices=typing.get_args(WatchSettings.model_fields["watch_scope"].annotation), default="namespaces",
                        help="the daemon's --watch-scope: a watch per namespace and kind, or one per kind")
    args = parser.parse_args()
    if args.child:
        child_main(args.child[0], args.child[1], int(args.child[2]), args.child[3], int(args.child[4]))
        return

    from autoscaler.logs import configure_logging
    from tests.support.kmock_harness import KmockCluster
    from tests.support.prom_harness import MetricsExporter, run_prometheus

    configure_logging(level="error")
    fleets = [fleet(size, prefix=f"s{size}", namespaces=args.namespaces) for size in args.sizes]
    started = time.perf_counter()
    measurements = []
    with tempfile.TemporaryDirectory() as workdir, MetricsExporter() as exporter, \
            KmockCluster(forget_served=args.kmock_log == "forget") as cluster:
        for f in fleets:
            publish(f, exporter=exporter, cluster=cluster)
        with run_prometheus([exporter], scrape_interval=args.scrape_interval) as prometheus, counters_advancing(exporter, fleets):
            wait_until_scraped(prometheus, fleets)
            print(f"stack ready in {time.perf_counter() - started:.0f} s: Prometheus {prometheus.url}, kmock {cluster.url}", file=sys.stderr)
            for f in fleets:
                measurements.append(measure_in_child(f, cluster=cluster, prometheus_url=prometheus.url, ticks=args.ticks, workdir=Path(workdir),
                                                 watch_scope=args.watch_scope, write_workers=args.write_workers))
                print(f"{len(f.models)} models measured", file=sys.stderr)
    replay = {size: replay_speed(size, args.replay_ticks) for size in args.sizes}
    print(f"one tick (observe, decide, act) of the daemon against Prometheus {_prometheus_version()} and kmock, "
          f"{os.cpu_count()} cores; replay: {args.replay_ticks} ticks of the bundled trace")
    print(report(measurements, replay))
    print(f"(benchmark took {time.perf_counter() - started:.0f} s)", file=sys.stderr)


def _prometheus_version() -> str:
    from tests.support.prom_harness import find_binary

    out = subprocess.run([find_binary("prometheus"), "--version"], capture_output=True, text=True).stdout
    return out.split()[2] if len(out.split()) > 2 else "?"


if __name__ == "__main__":
    main()

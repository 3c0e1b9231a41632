"""The Prometheus adapter against a real Prometheus (Debian's package) scraping an exporter the
test serves, through prometheus-api-client."""

from __future__ import annotations

import http.server
import json
import math
import threading
import time
import urllib.parse

import pytest
import requests
from structlog.testing import capture_logs

from autoscaler.metrics.prometheus import PrometheusSource
from policies import Freshness
from tests.builders import config, model
from tests.support.faulty_proxy import FaultyProxy
from tests.support.prom_harness import dcgm_labels, unique_name, vllm_labels

WAITING, RUNNING, KV, GPU = "vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc", "DCGM_FI_DEV_GPU_UTIL"


class CountingSession(requests.Session):
    """A real session, counting the queries it sends."""

    queries = 0

    def get(self, *args, **kwargs):
        self.queries += 1
        return super().get(*args, **kwargs)


def source_for(prometheus, cfg, **kwargs):
    cfg = cfg.model_copy(update={"prometheus": cfg.prometheus.model_copy(update={"url": prometheus.url})})
    return PrometheusSource(cfg, session=CountingSession(), **kwargs)


def export_model(exporter, namespace, model_name, *, pods, waiting, running, kv, gpu):
    for index in range(pods):
        pod = f"{model_name}-{index}"
        for engine in ("0", "1"):  # data parallel: one series per engine
            labels = vllm_labels(model_name, namespace, pod, engine=engine)
            exporter.set(WAITING, labels, waiting / pods / 2)
            exporter.set(RUNNING, labels, running / pods / 2)
            exporter.set(KV, labels, kv[index])
        exporter.set(GPU, dcgm_labels(pod, namespace, gpu="0"), gpu[index])


def test_reads_every_signal_of_several_models_in_one_query_per_signal(prometheus_stack):
    exporter, prometheus = prometheus_stack
    ns = unique_name("ns")
    export_model(exporter, ns, "chat", pods=2, waiting=12, running=40, kv=[0.3, 0.7], gpu=[90, 70])
    export_model(exporter, ns, "code", pods=1, waiting=0, running=3, kv=[0.1], gpu=[20])
    export_model(exporter, ns, "unmanaged", pods=1, waiting=99, running=99, kv=[0.9], gpu=[99])
    exporter.set("gateway_queue", {"model": f"{ns}-code"}, 4)
    exporter.set("vdb_saturation", {"instance_name": ns}, 0.93)
    cfg = config(
        model("chat", namespace=ns, dependencies=["vector-db"]),
        model("code", namespace=ns, kind="long-tail", wake_query=f'gateway_queue{{model="{ns}-code"}}'),
        dependencies=[{"name": "vector-db", "saturation_query": f'vdb_saturation{{instance_name="{ns}"}}', "saturated_at": 0.9}],
    )
    prometheus.wait_for(f'vdb_saturation{{instance_name="{ns}"}}')
    prometheus.wait_for(f'{GPU}{{exported_namespace="{ns}"}}', lambda r: len(r) == 4)
    source = source_for(prometheus, cfg)
    signals = source.fetch_signals(now=time.time())

    chat, code = signals.for_model("chat"), signals.for_model("code")
    assert (chat.waiting.value, chat.running.value) == (12, 40)
    assert chat.kv_cache_usage.value == 0.7  # the fullest pod
    assert chat.gpu_utilization.value == 80  # mean over the model's GPUs, joined by pod
    assert (code.waiting.value, code.running.value, code.gpu_utilization.value) == (0, 3, 20)
    assert code.wake.value == 4
    assert not chat.wake.usable  # no wake query configured
    assert signals.for_dependency("vector-db").value == pytest.approx(0.93)
    assert "unmanaged" not in signals.models
    assert all(r.freshness is Freshness.OK for r in (chat.waiting, chat.running, chat.kv_cache_usage, chat.gpu_utilization))
    # Pods, not series: each pod exports one series per engine.
    assert (chat.reporting_pods.value, code.reporting_pods.value) == (2, 1)
    assert source._session.queries == len(source.queries) == 8


def test_wake_queries_alike_read_as_one_family_with_each_models_own_value(prometheus_stack):
    """Models whose wake queries differ only in one label's value are read by one selector
    (autoscaler/metrics/families.py): each reads what its own query gives alone, a model with
    no series stays missing, and a value's dot matches only a dot."""
    exporter, prometheus = prometheus_stack
    ns = unique_name("ns")
    gateway = {f"{ns}-a.1": 3, f"{ns}-b": 0, f"{ns}-axb": 7}  # -axb: what an unescaped "a.1" would not match, "a.b" would
    for value, waiting in gateway.items():
        exporter.set("gw_waiting", {"model": value, "zone": "z1"}, waiting)
        exporter.set("gw_waiting", {"model": value, "zone": "z2"}, 1)
    exporter.set("gw_queue", {"fleet": ns}, 5)
    prometheus.wait_for(f'gw_waiting{{model=~"{ns}-.*"}}', lambda r: len(r) == 6)
    prometheus.wait_for(f'gw_queue{{fleet="{ns}"}}')
    wake = {
        "a": f'sum(gw_waiting{{model="{ns}-a.1"}})',
        "b": f'sum(gw_waiting{{model="{ns}-b"}})',
        "c": f'sum(gw_waiting{{model="{ns}-c"}})',  # no series
        "d": f'sum(gw_waiting{{model="{ns}-a.b"}})',  # no series either: "." is not a wildcard
        "e": f'sum(gw_queue{{fleet="{ns}"}})',
        "f": f'sum(gw_queue{{fleet="{ns}"}})',  # the same expression: one term for both
        "g": f'max(gw_waiting{{model="{ns}-axb"}})',  # not a family: a term of its own
    }
    cfg = config(*[model(name, namespace=ns, kind="long-tail", wake_query=query) for name, query in wake.items()])
    source = source_for(prometheus, cfg)
    [wake_query] = [q for q in source.queries if q.signal == "wake"]
    assert wake_query.promql.count("gw_waiting{") == 2  # the family's one selector, and g's

    signals = source.fetch_signals(now=time.time())

    alone = {name: prometheus.query(query) for name, query in wake.items()}
    for name in wake:
        reading = signals.for_model(name).wake
        if alone[name]:
            assert reading.value == float(alone[name][0]["value"][1]), name
        else:
            assert not reading.usable, name
    assert [signals.for_model(name).wake.value for name in "abefg"] == [4, 1, 5, 5, 7]
    assert source._session.queries == len(source.queries)


def test_completion_rate_is_the_rate_of_the_success_counter(prometheus_stack):
    exporter, prometheus = prometheus_stack
    ns = unique_name("ns")
    labels = vllm_labels("chat", ns)
    exporter.declare("vllm:request_success_total", type="counter")
    started = time.monotonic()
    exporter.set("vllm:request_success_total", labels, 0.0)
    # 10 requests finish per second for a while: the counter climbs, Prometheus scrapes it.
    prometheus.wait_for(f'vllm:request_success_total{{namespace="{ns}"}}')
    while time.monotonic() - started < 6:
        exporter.set("vllm:request_success_total", labels, 10.0 * (time.monotonic() - started))
        time.sleep(0.1)
    signals = source_for(prometheus, config(model("chat", namespace=ns))).fetch_signals(now=time.time())
    # The counter is ~60 now. rate(...[1m]) spreads a series' increase over the whole minute
    # while the series is younger than that: ~60 over 60 s, so about 1/s, not the 10/s to come.
    assert 0.5 < signals.for_model("chat").completion_rate.value < 2.0


def test_query_count_does_not_grow_with_models(prometheus_stack):
    _, prometheus = prometheus_stack
    few = config(*[model(f"m{i}", namespace="a") for i in range(2)])
    many = config(*[model(f"m{i}", namespace=f"ns{i % 7}") for i in range(200)])
    assert len(source_for(prometheus, few).queries) == len(source_for(prometheus, many).queries) == 6


def test_nan_is_rejected_with_a_logged_reason(prometheus_stack):
    exporter, prometheus = prometheus_stack
    ns = unique_name("ns")
    exporter.set(WAITING, vllm_labels("chat", ns), math.nan)
    exporter.set(RUNNING, vllm_labels("chat", ns), 5)
    prometheus.wait_for(f'{WAITING}{{namespace="{ns}"}}')
    with capture_logs() as logs:
        signals = source_for(prometheus, config(model("chat", namespace=ns))).fetch_signals(now=time.time())
    assert signals.for_model("chat").waiting.freshness is Freshness.MISSING
    assert signals.for_model("chat").running.value == 5
    rejected = [e for e in logs if e["event"].startswith("rejected a sample")]
    assert rejected and rejected[0]["signal"] == "waiting" and rejected[0]["value"] == "NaN"
    assert "not finite" in rejected[0]["reason"]


def test_a_sample_older_than_stale_after_s_reads_stale(prometheus_stack):
    exporter, prometheus = prometheus_stack
    ns = unique_name("ns")
    exporter.set(WAITING, vllm_labels("chat", ns), 7, timestamp=time.time() - 120)
    exporter.set(RUNNING, vllm_labels("chat", ns), 3)
    prometheus.wait_for(f'{WAITING}{{namespace="{ns}"}}')
    signals = source_for(prometheus, config(model("chat", namespace=ns))).fetch_signals(now=time.time())
    waiting = signals.for_model("chat").waiting
    assert waiting.freshness is Freshness.STALE and waiting.value == 7
    assert 115 < waiting.age_s < 140
    assert signals.for_model("chat").running.freshness is Freshness.OK


def test_a_series_that_vanishes_reads_missing(prometheus_stack):
    exporter, prometheus = prometheus_stack
    ns = unique_name("ns")
    exporter.set(WAITING, vllm_labels("chat", ns), 2)
    exporter.set(RUNNING, vllm_labels("chat", ns), 2)
    prometheus.wait_for(f'{WAITING}{{namespace="{ns}"}}')
    exporter.remove(WAITING, vllm_labels("chat", ns))
    prometheus.wait_absent(f'{WAITING}{{namespace="{ns}"}}')
    signals = source_for(prometheus, config(model("chat", namespace=ns))).fetch_signals(now=time.time())
    assert signals.for_model("chat").waiting.freshness is Freshness.MISSING
    assert signals.for_model("chat").running.value == 2


def test_model_name_values_never_enter_promql(prometheus_stack):
    exporter, prometheus = prometheus_stack
    ns = unique_name("ns")
    hostile = 'x"} or vector(1) #'
    exporter.set(WAITING, vllm_labels(hostile, ns), 9)
    exporter.set(RUNNING, vllm_labels(hostile, ns), 1)
    prometheus.wait_for(f'{WAITING}{{namespace="{ns}"}}')
    source = source_for(prometheus, config(model("chat", namespace=ns, model_name=hostile)))
    assert all(hostile not in q.promql for q in source.queries)
    assert source.fetch_signals(now=time.time()).for_model("chat").waiting.value == 9


def test_past_instants_read_what_prometheus_held_then(prometheus_stack):
    exporter, prometheus = prometheus_stack
    ns = unique_name("ns")
    exporter.set(WAITING, vllm_labels("chat", ns), 1)
    exporter.set(RUNNING, vllm_labels("chat", ns), 1)
    prometheus.wait_for(f'{WAITING}{{namespace="{ns}"}}')
    before = time.time()
    exporter.set(WAITING, vllm_labels("chat", ns), 30)
    prometheus.wait_for(f'{WAITING}{{namespace="{ns}"}} == 30')
    source = source_for(prometheus, config(model("chat", namespace=ns)))
    assert source.fetch_signals(now=before).for_model("chat").waiting.value == 1
    assert source.fetch_signals(now=time.time()).for_model("chat").waiting.value == 30


def test_prometheus_down_means_no_data_not_zero():
    cfg = config(model("chat"), prometheus={"url": "http://127.0.0.1:9", "timeout_s": 1})
    errors = []
    with capture_logs() as logs:
        signals = PrometheusSource(cfg, on_error=lambda signal, kind: errors.append((signal, kind))).fetch_signals(now=time.time())
    assert signals.for_model("chat").waiting.freshness is Freshness.MISSING
    # Every query failed the same way, and one line says so; each counts as a failed query.
    [failed] = [e for e in logs if e["event"] == "prometheus query failed; its readings are missing this tick"]
    assert failed["signals"] == [q.signal for q in PrometheusSource(cfg).queries] and len(failed["signals"]) == 6
    assert errors == [(signal, "connection") for signal in failed["signals"]]


def test_the_queries_of_a_tick_go_out_together(prometheus_stack):
    """Behind a proxy that answers each request 0.5 s late, six queries one after another
    take 3 s."""
    exporter, prometheus = prometheus_stack
    ns = unique_name("ns")
    exporter.set(WAITING, vllm_labels("chat", ns), 3)
    exporter.set(RUNNING, vllm_labels("chat", ns), 1)
    prometheus.wait_for(f'{WAITING}{{namespace="{ns}"}}')
    with FaultyProxy(prometheus.url) as proxy:
        proxy.delay_s = 0.5
        source = PrometheusSource(config(model("chat", namespace=ns), prometheus={"url": proxy.url}))
        started = time.monotonic()
        signals = source.fetch_signals(now=time.time())
        took_s = time.monotonic() - started
    assert signals.for_model("chat").waiting.value == 3 and signals.for_model("chat").running.value == 1
    assert len(source.queries) == 6 and 0.5 <= took_s < 1.5, took_s


def test_a_server_slower_than_timeout_s_costs_one_timeout_a_tick_and_one_log_line(prometheus_stack):
    _, prometheus = prometheus_stack
    errors = []
    with FaultyProxy(prometheus.url) as proxy, capture_logs() as logs:
        proxy.delay_s = 1.0
        cfg = config(model("chat"), prometheus={"url": proxy.url, "timeout_s": 0.5})
        source = PrometheusSource(cfg, on_error=lambda signal, kind: errors.append((signal, kind)))
        started = time.monotonic()
        signals = source.fetch_signals(now=time.time())
        took_s = time.monotonic() - started
    assert signals.for_model("chat").waiting.freshness is Freshness.MISSING
    assert 0.5 <= took_s < 1.5, took_s  # one after another: 2.5 s
    signals_asked = [q.signal for q in source.queries]
    assert errors == [(signal, "timeout") for signal in signals_asked]
    [failed] = [e for e in logs if e["event"] == "prometheus query failed; its readings are missing this tick"]
    assert failed["signals"] == signals_asked and "timed out" in failed["error"]


class _RecordingPrometheus(http.server.BaseHTTPRequestHandler):
    seen: list = []

    def do_GET(self):  # noqa: N802
        type(self).seen.append(self.headers.get("Authorization"))
        body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_bearer_token_is_read_from_its_file_every_tick(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RecordingPrometheus)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    token = tmp_path / "token"
    token.write_text("first\n")
    cfg = config(model("chat"), prometheus={"url": f"http://127.0.0.1:{server.server_port}", "auth": {"bearer_token_file": str(token)}})
    source = PrometheusSource(cfg)
    try:
        source.fetch_signals(now=time.time())
        token.write_text("rotated")
        with capture_logs() as logs:
            source.fetch_signals(now=time.time())
    finally:
        server.shutdown()
    assert _RecordingPrometheus.seen[:6] == ["Bearer first"] * 6
    assert _RecordingPrometheus.seen[6:] == ["Bearer rotated"] * 6
    assert all("rotated" not in json.dumps(e) for e in logs)


def _is_query_of(path: str, metric: str) -> bool:
    return metric in urllib.parse.unquote_plus(path)


def _exported_chat(exporter, prometheus) -> str:
    ns = unique_name("ns")
    exporter.set(WAITING, vllm_labels("chat", ns), 6)
    exporter.set(RUNNING, vllm_labels("chat", ns), 2)
    prometheus.wait_for(f'{WAITING}{{namespace="{ns}"}}')
    prometheus.wait_for(f'{RUNNING}{{namespace="{ns}"}}')
    return ns


def test_a_malformed_answer_costs_its_signal_only_and_is_counted(prometheus_stack):
    """Issue 19, item 7: a scalar where a vector should be raised out of fetch_signals, and
    every tick failed with no error counted."""
    exporter, prometheus = prometheus_stack
    ns = _exported_chat(exporter, prometheus)
    scalar = b'{"status":"success","data":{"resultType":"scalar","result":[1700000000,"1"]}}'
    errors = []
    with FaultyProxy(prometheus.url) as proxy:
        proxy.rewrite = lambda path, body: scalar if _is_query_of(path, WAITING) else None
        source = PrometheusSource(config(model("chat", namespace=ns), prometheus={"url": proxy.url}),
                                  on_error=lambda signal, kind: errors.append((signal, kind)))
        signals = source.fetch_signals(now=time.time())
    chat = signals.for_model("chat")
    assert chat.waiting.freshness is Freshness.MISSING and chat.waiting.value is None  # no data, not zero
    assert chat.running.value == 2
    assert errors == [("waiting", "malformed")]


def test_an_answer_past_max_answer_bytes_is_dropped_as_it_streams_in(prometheus_stack):
    """Issue 19, item 11: answers were read whole. A 256 MiB answer without Content-Length
    (streamed until the connection closes) against a 1 MiB cap: the adapter stops reading
    past the cap, so the proxy gets to send little more than that before the socket closes."""
    exporter, prometheus = prometheus_stack
    ns = _exported_chat(exporter, prometheus)
    huge = 256 * 2**20

    def endless(path, body):
        if not _is_query_of(path, WAITING):
            return None
        return (b" " * 2**20 for _ in range(huge // 2**20))  # JSON allows the whitespace

    errors = []
    with FaultyProxy(prometheus.url) as proxy, capture_logs() as logs:
        proxy.rewrite = endless
        cfg = config(model("chat", namespace=ns), prometheus={"url": proxy.url, "max_answer_bytes": 2**20})
        source = PrometheusSource(cfg, on_error=lambda signal, kind: errors.append((signal, kind)))
        signals = source.fetch_signals(now=time.time())
        sent = proxy.sent_bytes
    assert signals.for_model("chat").waiting.freshness is Freshness.MISSING
    assert signals.for_model("chat").running.value == 2
    assert errors == [("waiting", "too_large")]
    assert sent < 64 * 2**20, sent  # a quarter of it at most: socket buffers hold a few MiB
    [line] = [e for e in logs if e["event"].startswith("prometheus query failed")]
    assert "max_answer_bytes (1048576 bytes)" in line["error"]


def test_timeout_s_bounds_the_whole_query_not_each_read(prometheus_stack):
    """Issue 19, item 9: an answer trickled one byte every 0.4 s held a tick for as long as
    it trickled at timeout_s 0.5, since each read arrived within it. Sixteen bytes trickled
    take 6.4 s; the query must give up at its deadline."""
    exporter, prometheus = prometheus_stack
    ns = _exported_chat(exporter, prometheus)
    errors = []
    with FaultyProxy(prometheus.url) as proxy:
        proxy.trickle_s, proxy.trickle_bytes = 0.4, 16
        cfg = config(model("chat", namespace=ns), prometheus={"url": proxy.url, "timeout_s": 0.5})
        source = PrometheusSource(cfg, on_error=lambda signal, kind: errors.append((signal, kind)))
        started = time.monotonic()
        signals = source.fetch_signals(now=time.time())
        took_s = time.monotonic() - started
    assert signals.for_model("chat").waiting.freshness is Freshness.MISSING
    assert 0.45 <= took_s < 1.0, took_s
    assert errors == [(q.signal, "timeout") for q in source.queries]


def test_a_wake_query_that_fails_at_run_time_costs_only_its_model(prometheus_stack):
    """Issue 19, item 4: all wake queries go out as one, so b's failing expression kept a (demand
    5) at zero. b's parses, and fails only once a second gateway pod appears (many-to-many
    matching, Prometheus's 422). The combined query fails; its terms are then asked one by
    one, once each: a and c read their values, b none."""
    exporter, prometheus = prometheus_stack
    ns = unique_name("ns")
    exporter.set("gw_queue", {"model": f"{ns}-a"}, 5)
    exporter.set("gw_queue", {"model": f"{ns}-b"}, 7)
    exporter.set("gw_total", {"fleet": ns}, 3)
    for pod in ("p1", "p2"):
        exporter.set("gw_ready", {"model": f"{ns}-b", "pod": pod}, 1)
    prometheus.wait_for(f'gw_ready{{model="{ns}-b"}}', lambda r: len(r) == 2)
    prometheus.wait_for(f'gw_queue{{model="{ns}-a"}}')
    prometheus.wait_for(f'gw_total{{fleet="{ns}"}}')
    wake = {
        "a": f'sum(gw_queue{{model="{ns}-a"}})',
        "b": f'gw_queue{{model="{ns}-b"}} / on (model) gw_ready{{model="{ns}-b"}}',
        "c": f'sum(gw_total{{fleet="{ns}"}})',
    }
    with pytest.raises(Exception, match="422|many-to-many|many-to-one"):
        prometheus.query(wake["b"])
    cfg = config(*[model(name, namespace=ns, kind="long-tail", wake_query=query) for name, query in wake.items()])
    errors = []
    source = source_for(prometheus, cfg, on_error=lambda signal, kind: errors.append((signal, kind)))
    with capture_logs() as logs:
        signals = source.fetch_signals(now=time.time())
    assert signals.for_model("a").wake.value == 5
    assert signals.for_model("c").wake.value == 3
    assert signals.for_model("b").wake.freshness is Freshness.MISSING
    [wake_query] = [q for q in source.queries if q.signal == "wake"]
    # The usual queries, then one per distinct term of the failed one: no more.
    assert source._session.queries == len(source.queries) + len(wake_query.terms) == 6 + 1 + 3
    assert errors == [("wake", "http"), ("wake", "http")]  # the combined query, then b's term
    [term] = [e for e in logs if e["event"].startswith("a term of the combined query failed")]
    assert term["names"] == ["b"] and "422" in term["error"]


def test_wake_queries_that_differ_only_in_the_metric_name_are_not_merged(prometheus_stack):
    """Issue 19, item 4: `{__name__="a_total", ...}` and `{__name__="b_total", ...}` made one
    family, `rate({__name__=~"a_total|b_total"}[1m])`, which Prometheus refuses (two series
    with one label set once rate() drops the name)."""
    exporter, prometheus = prometheus_stack
    ns = unique_name("ns")
    names = {"a": f"{ns.replace('-', '_')}_a_total", "b": f"{ns.replace('-', '_')}_b_total"}
    for metric in names.values():
        exporter.declare(metric, type="counter")
        exporter.set(metric, {"route": "r"}, 0.0)
    prometheus.wait_for(f'{names["a"]}{{route="r"}}')
    prometheus.wait_for(f'{names["b"]}{{route="r"}}')
    prometheus.wait_for(f'rate({names["b"]}{{route="r"}}[1m])')
    wake = {m: f'sum(rate({{__name__="{metric}", route="r"}}[1m]))' for m, metric in names.items()}
    source = source_for(prometheus, config(*[model(m, namespace=ns, kind="long-tail", wake_query=q) for m, q in wake.items()]))
    signals = source.fetch_signals(now=time.time())
    assert signals.for_model("a").wake.value == 0 and signals.for_model("b").wake.value == 0
    assert source._session.queries == len(source.queries)  # the combined query answered


def test_completion_window_s_is_the_range_of_the_completion_rate(prometheus_stack):
    """Issue 15: the query said [1m] whatever completion_window_s was. One query per distinct
    window, each model read from its own: both equal Prometheus's own answer for that range."""
    exporter, prometheus = prometheus_stack
    ns = unique_name("ns")
    exporter.declare("vllm:request_success_total", type="counter")
    started = time.monotonic()
    for name in ("short", "long"):
        exporter.set("vllm:request_success_total", vllm_labels(name, ns), 0.0)
    prometheus.wait_for(f'vllm:request_success_total{{namespace="{ns}"}}', lambda r: len(r) == 2)
    while time.monotonic() - started < 5:
        for name, per_s in (("short", 10.0), ("long", 4.0)):
            exporter.set("vllm:request_success_total", vllm_labels(name, ns), per_s * (time.monotonic() - started))
        time.sleep(0.1)
    cfg = config(model("short", namespace=ns, policy={"completion_window_s": 3}),
                 model("long", namespace=ns, policy={"completion_window_s": 90}))
    source = source_for(prometheus, cfg)
    completion = [q for q in source.queries if q.signal == "completion_rate"]
    assert len(completion) == 2 and {"[3s]" in q.promql for q in completion} == {True, False}
    assert any("[1m30s]" in q.promql or "[90s]" in q.promql for q in completion)
    now = time.time()
    signals = source.fetch_signals(now=now)
    for name, window in (("short", "3s"), ("long", "90s")):
        [own] = prometheus.query(f'sum(rate(vllm:request_success_total{{namespace="{ns}", model_name="{name}"}}[{window}]))', at=now)
        assert signals.for_model(name).completion_rate.value == pytest.approx(float(own["value"][1])), name


def test_a_token_file_with_an_inner_newline_is_never_logged_nor_sent(tmp_path):
    """Issue 19, item 12: requests refused the header and its error, which quotes the header's
    value, went to the log."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RecordingPrometheus)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    token = tmp_path / "token"
    token.write_text("s3cr3tPartOne\ns3cr3tPartTwo\n")
    cfg = config(model("chat"), prometheus={"url": f"http://127.0.0.1:{server.server_port}", "auth": {"bearer_token_file": str(token)}})
    _RecordingPrometheus.seen = []
    try:
        with capture_logs() as logs:
            PrometheusSource(cfg).fetch_signals(now=time.time())
    finally:
        server.shutdown()
    assert logs and all("s3cr3t" not in json.dumps(e, default=str) for e in logs)
    assert any(e["event"] == "the Prometheus bearer token file does not hold one token; sending none" for e in logs)
    assert _RecordingPrometheus.seen == [None] * 6


def test_a_token_over_plain_http_is_warned_of_once(tmp_path):
    token = tmp_path / "token"
    token.write_text("abc")
    url = f"http://user:pw@{unique_name('prom')}.invalid:9090"
    cfg = config(model("chat"), prometheus={"url": url, "auth": {"bearer_token_file": str(token)}})
    with capture_logs() as logs:
        PrometheusSource(cfg), PrometheusSource(cfg)  # a reload builds a second one
    warned = [e for e in logs if "plain http://" in e["event"]]
    assert len(warned) == 1 and "pw" not in warned[0]["url"]
    https = cfg.model_copy(update={"prometheus": cfg.prometheus.model_copy(update={"url": "https://prom.invalid"})})
    with capture_logs() as logs:
        PrometheusSource(https)
    assert not [e for e in logs if "plain http://" in e["event"]]

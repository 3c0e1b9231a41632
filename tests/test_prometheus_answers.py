"""The adapter's reading of Prometheus's answers, pinned by canned JSON bodies as KEDA tests its
Prometheus scaler: a local HTTP server gives the waiting query's answer from the table (and
every other query a good one), the real PrometheusSource reads it. Milliseconds, no Prometheus;
test_metrics_prometheus.py keeps the wire tests against a real one."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.parse

import pytest
from structlog.testing import capture_logs

from autoscaler.metrics.answers import MalformedAnswer, parse_vector
from autoscaler.metrics.prometheus import PrometheusSource
from policies import Freshness
from tests.builders import config, model

NOW = 1_700_000_000.0
LABELS = {"namespace": "ml", "model_name": "chat"}


def series(stat: str, value, **labels) -> dict:
    return {"metric": {**LABELS, "autoscaler_stat": stat, **labels}, "value": [NOW, value]}


def vector(*result) -> dict:
    return {"status": "success", "data": {"resultType": "vector", "result": list(result)}}


def fresh(value: str) -> dict:
    return vector(series("value", value), series("timestamp", f"{NOW - 5}"))


class CannedPrometheus:
    """Answers /api/v1/query: `bodies[signal]` for the query whose PromQL names that metric,
    a good answer (0.5, which every signal can be) otherwise."""

    def __init__(self) -> None:
        self.bodies: dict[str, bytes] = {}
        canned = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)["query"][0]
                body = next((b for metric, b in canned.bodies.items() if metric in query), None)
                if body is None:
                    body = json.dumps(fresh("0.5")).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> CannedPrometheus:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def canned():
    with CannedPrometheus() as server:
        yield server


def read(canned, body) -> tuple:
    canned.bodies = {"vllm:num_requests_waiting": body if isinstance(body, bytes) else json.dumps(body).encode()}
    errors: list[tuple[str, str]] = []
    source = PrometheusSource(config(model("chat"), prometheus={"url": canned.url}), on_error=lambda s, k: errors.append((s, k)))
    with capture_logs() as logs:
        signals = source.fetch_signals(now=NOW)
    return signals.for_model("chat"), errors, logs


MISSING = None
# (case, body of the waiting query, waiting's value or MISSING, the errors counted)
TABLE = [
    ("a value", fresh("12"), 12.0, []),
    ("zero is a value", fresh("0"), 0.0, []),
    ("NaN", fresh("NaN"), MISSING, [("waiting", "rejected")]),
    ("+Inf", fresh("+Inf"), MISSING, [("waiting", "rejected")]),
    ("-Inf", fresh("-Inf"), MISSING, [("waiting", "rejected")]),
    ("negative", fresh("-1"), MISSING, [("waiting", "rejected")]),
    ("empty result: no data", vector(), MISSING, []),
    ("another model's series only", vector(series("value", "5", model_name="other")), MISSING, []),
    ("duplicate value series for one model",
     vector(series("value", "12", pod="a"), series("value", "0", pod="b"), series("timestamp", f"{NOW}")), MISSING,
     [("waiting", "rejected")]),
    ("duplicate timestamp series", vector(series("value", "12"), series("timestamp", f"{NOW}"), series("timestamp", f"{NOW - 900}", pod="b")),
     MISSING, [("waiting", "rejected")]),
    ("NaN timestamp is not fresh", vector(series("value", "12"), series("timestamp", "NaN")), MISSING, [("waiting", "rejected")]),
    ("no timestamp series: age unknown", vector(series("value", "12")), MISSING, [("waiting", "rejected")]),
    ("a scalar result", {"status": "success", "data": {"resultType": "scalar", "result": [NOW, "1"]}}, MISSING, [("waiting", "malformed")]),
    ("a matrix result", {"status": "success", "data": {"resultType": "matrix", "result": []}}, MISSING, [("waiting", "malformed")]),
    ("no data", {"status": "success"}, MISSING, [("waiting", "malformed")]),
    ("data null", {"status": "success", "data": None}, MISSING, [("waiting", "malformed")]),
    ("result not a list", {"status": "success", "data": {"resultType": "vector", "result": {}}}, MISSING, [("waiting", "malformed")]),
    ("result null", {"status": "success", "data": {"resultType": "vector", "result": None}}, MISSING, [("waiting", "malformed")]),
    ("a null metric", vector({"metric": None, "value": [NOW, "1"]}), MISSING, [("waiting", "malformed")]),
    ("a null value", vector({"metric": LABELS, "value": None}), MISSING, [("waiting", "malformed")]),
    ("a null sample", vector({"metric": LABELS, "value": [NOW, None]}), MISSING, [("waiting", "malformed")]),
    ("a number, not a string", vector({"metric": LABELS, "value": [NOW, 12]}), MISSING, [("waiting", "malformed")]),
    ("a non-numeric string", fresh("twelve"), MISSING, [("waiting", "malformed")]),
    ("a label value not a string", vector({"metric": {**LABELS, "autoscaler_stat": None}, "value": [NOW, "1"]}), MISSING, [("waiting", "malformed")]),
    ("status error with 200", {"status": "error", "error": "boom"}, MISSING, [("waiting", "malformed")]),
    ("the answer a JSON list", [], MISSING, [("waiting", "malformed")]),
    ("not JSON", b"<html>proxy error</html>", MISSING, [("waiting", "malformed")]),
]


@pytest.mark.parametrize("case, body, waiting, errors", TABLE, ids=[row[0] for row in TABLE])
def test_each_answer_reads_as_a_value_or_no_data_and_never_stops_the_tick(canned, case, body, waiting, errors):
    chat, counted, logs = read(canned, body)
    if waiting is MISSING:
        assert chat.waiting.freshness is Freshness.MISSING and chat.waiting.value is None, case
    else:
        assert chat.waiting.value == waiting and chat.waiting.freshness is Freshness.OK, case
    assert counted == errors, case
    # The other signals are read as usual, whatever the waiting query's answer was.
    assert chat.running.value == chat.kv_cache_usage.value == chat.completion_rate.value == 0.5
    if errors and errors[0][1] == "malformed":
        [line] = [e for e in logs if e["event"].startswith("prometheus query failed")]
        assert line["kind"] == "malformed" and line["signals"] == ["waiting"] and "malformed answer" in line["error"]


def test_duplicates_are_refused_not_resolved_by_their_order(canned):
    """The same two series in either order: neither wins."""
    one, two = series("value", "40", pod="a"), series("value", "0", pod="b")
    stamp = series("timestamp", f"{NOW}")
    readings = [read(canned, vector(*order, stamp))[0].waiting for order in ((one, two), (two, one))]
    assert all(r.freshness is Freshness.MISSING for r in readings)


@pytest.mark.parametrize(
    "body, where",
    [
        (b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[NaN,"1"]}]}}', "time"),
        (b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1","2"]}]}}', "pair"),
        (b'{"status":"success","data":{"resultType":"vector","result":[1]}}', "result[0]"),
    ],
)
def test_the_parser_names_where_an_answer_is_malformed(body, where):
    with pytest.raises(MalformedAnswer, match=where.replace("[", r"\[").replace("]", r"\]")):
        parse_vector(body)


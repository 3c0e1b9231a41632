"""TLS to Prometheus: the CA bundle in the config is what verifies the server. A throwaway CA
(trustme) signs a certificate for 127.0.0.1; a TLS server answers the query API."""

from __future__ import annotations

import http.server
import json
import ssl
import threading
import time

import pytest
import trustme
from structlog.testing import capture_logs

from autoscaler.metrics.prometheus import PrometheusSource
from tests.builders import config, model


class _Prometheus(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        result = []
        if "num_requests_waiting" in self.path:
            # The value and its sample's timestamp, as the adapter's query gives them both.
            labels = {"namespace": "ml", "model_name": "chat"}
            result = [
                {"metric": {**labels, "autoscaler_stat": "value"}, "value": [0, "7"]},
                {"metric": {**labels, "autoscaler_stat": "timestamp"}, "value": [0, f"{time.time():.3f}"]},
            ]
        body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def tls_prometheus(tmp_path):
    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Prometheus)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    yield f"https://127.0.0.1:{server.server_port}", bundle
    server.shutdown()


def test_the_ca_bundle_verifies_prometheus(tls_prometheus):
    url, bundle = tls_prometheus
    cfg = config(model("chat"), prometheus={"url": url, "auth": {"ca_bundle": str(bundle)}})
    assert PrometheusSource(cfg).fetch_signals(now=time.time()).for_model("chat").waiting.value == 7


def test_without_the_bundle_an_unknown_ca_is_refused(tls_prometheus):
    url, _ = tls_prometheus
    errors = []
    cfg = config(model("chat"), prometheus={"url": url})
    with capture_logs() as logs:
        signals = PrometheusSource(cfg, on_error=lambda signal, kind: errors.append(kind)).fetch_signals(now=time.time())
    assert not signals.for_model("chat").waiting.usable
    assert errors and set(errors) == {"tls"}
    (first, *_) = [e for e in logs if e["event"].startswith("prometheus query failed")]
    assert first["error"].startswith("SSLError: ") and "certificate verify failed" in first["error"]

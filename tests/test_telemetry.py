"""/metrics, /healthz and /readyz: what the daemon tells about itself, over real HTTP."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from autoscaler.clock import ManualClock
from autoscaler.controller import Outcome
from autoscaler.targets import Action
from autoscaler.telemetry import Telemetry, serve
from policies import Decision, Reason, ReasonCode


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def outcome(model: str, current: int, desired: int, *codes: str, action: str = "patched") -> Outcome:
    decision = Decision(current, desired, 1, 10, tuple(Reason(ReasonCode(code), "x") for code in codes))
    return Outcome(0.0, model, None, decision, Action(model, action, ""))


@pytest.fixture
def served():
    clock = ManualClock(1000.0)
    telemetry = Telemetry(clock=clock, interval_s=10.0)
    server = serve(telemetry, port=0, host="127.0.0.1")
    yield telemetry, clock, server.server_port
    server.shutdown()


def test_ready_after_the_first_tick_and_unhealthy_when_ticks_stop(served):
    telemetry, clock, port = served
    assert get(port, "/readyz")[0] == 503
    assert get(port, "/healthz")[0] == 200  # starting up is not a failure
    telemetry.record_tick([], duration_s=0.2)
    assert get(port, "/readyz")[0] == 200
    clock.advance(3 * 10.0 + 30.0)
    assert get(port, "/healthz")[0] == 200
    clock.advance(1.0)  # the loop has not ticked for three intervals and the grace: stuck
    assert get(port, "/healthz")[0] == 503


def test_metrics_count_decisions_by_reason_replicas_errors_and_tick_time(served):
    telemetry, _, port = served
    telemetry.record_tick(
        [
            outcome("chat", 2, 6, "Recommendation", "ScaleUpLimit"),
            outcome("code", 3, 3, "Recommendation", "WithinTolerance", action="unchanged"),
            outcome("tail", 1, 0, "IdleTimeout", action="forbidden"),
            Outcome(0.0, "gone", None, None, None, skipped="target could not be read this tick"),
        ],
        duration_s=0.3,
    )
    telemetry.prometheus_error("waiting", "timeout")
    status, text = get(port, "/metrics")
    assert status == 200
    got = samples(text)
    decisions = "llm_autoscaler_decisions_total"
    assert got[(decisions, (("direction", "up"), ("model", "chat"), ("reason", "ScaleUpLimit")))] == 1
    assert got[(decisions, (("direction", "hold"), ("model", "code"), ("reason", "WithinTolerance")))] == 1
    assert got[(decisions, (("direction", "down"), ("model", "tail"), ("reason", "IdleTimeout")))] == 1
    assert got[("llm_autoscaler_desired_replicas", (("model", "chat"),))] == 6
    assert got[("llm_autoscaler_current_replicas", (("model", "chat"),))] == 2
    assert got[("llm_autoscaler_kubernetes_errors_total", (("kind", "forbidden"),))] == 1
    assert got[("llm_autoscaler_kubernetes_errors_total", (("kind", "unreadable"),))] == 1
    assert got[("llm_autoscaler_prometheus_errors_total", (("kind", "timeout"), ("signal", "waiting")))] == 1
    assert got[("llm_autoscaler_tick_duration_seconds_count", ())] == 1
    assert got[("llm_autoscaler_leader", ())] == 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_running_daemon_serves_its_metrics(daemon_files):
    config_file, kubeconfig_file, _ = daemon_files
    port = free_port()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "autoscaler.cli", "run", "--config", str(config_file),
         "--kubeconfig", str(kubeconfig_file), "--dry-run", "--metrics-port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if get(port, "/readyz")[0] == 200:
                    break
            except (ConnectionError, urllib.error.URLError):
                pass
            assert time.monotonic() < deadline and daemon.poll() is None, "the daemon never became ready"
            time.sleep(0.1)
        status, text = get(port, "/metrics")
        assert get(port, "/healthz")[0] == 200
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=30)
    got = samples(text)
    assert status == 200 and daemon.returncode == 0
    assert got[("llm_autoscaler_desired_replicas", (("model", "chat"),))] == 5
    assert got[("llm_autoscaler_decisions_total", (("direction", "up"), ("model", "chat"), ("reason", "Recommendation")))] >= 1
    assert json.dumps(text).count("llm_autoscaler_tick_duration_seconds_bucket") > 3


def test_a_client_that_sends_half_a_request_is_cut_off_at_the_read_timeout():
    """The server starts a thread per connection; 50 clients that send half a request line and
    stop must not hold their threads: each is closed after read_timeout_s, and probes are
    answered meanwhile."""
    telemetry = Telemetry(clock=ManualClock(1000.0), interval_s=10.0)
    server = serve(telemetry, port=0, host="127.0.0.1", read_timeout_s=0.5)
    try:
        stalled = []
        for _ in range(50):
            sock = socket.create_connection(("127.0.0.1", server.server_port), timeout=5)
            sock.sendall(b"GET /metr")
            stalled.append(sock)
        assert get(server.server_port, "/metrics")[0] == 200
        started = time.monotonic()
        for sock in stalled:
            assert sock.recv(1024) == b""  # closed by the server, not answered
        assert time.monotonic() - started < 4
    finally:
        for sock in stalled:
            sock.close()
        server.shutdown()

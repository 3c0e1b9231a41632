"""The loop: ticks at the interval, survives a failing tick, and stops after the tick in
progress on SIGTERM (through the real `autoscaler run`)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

from structlog.testing import capture_logs

from autoscaler.clock import ManualClock
from autoscaler.daemon import run_loop
from tests.support.kmock_harness import DEPLOYMENTS


class ScriptedController:
    """Stands in for the controller: records the instants it was ticked at and can fail."""

    def __init__(self, *, fail_at: set[int] = frozenset(), stop: threading.Event | None = None, stop_at: int | None = None):
        self.instants: list[float] = []
        self._fail_at, self._stop, self._stop_at = fail_at, stop, stop_at

    def tick(self, *, now: float):
        self.instants.append(now)
        if self._stop is not None and len(self.instants) == self._stop_at:
            self._stop.set()  # as SIGTERM would, in the middle of this tick
        if len(self.instants) in self._fail_at:
            raise RuntimeError("boom")
        return []


def test_a_stop_during_a_tick_lets_that_tick_finish_and_no_other_start():
    stop = threading.Event()
    controller = ScriptedController(stop=stop, stop_at=2)
    ticks = run_loop(controller, clock=ManualClock(100.0), interval_s=0.0, stop=stop)
    assert ticks == 2 and len(controller.instants) == 2


def test_a_failing_tick_is_logged_and_the_loop_goes_on():
    controller = ScriptedController(fail_at={1})
    with capture_logs() as logs:
        ticks = run_loop(controller, clock=ManualClock(), interval_s=0.0, stop=threading.Event(), max_ticks=3)
    assert ticks == 3
    assert any(e["event"] == "tick failed" and e["log_level"] == "error" for e in logs)


def test_sigterm_stops_the_daemon_cleanly(daemon_files, kmock_cluster):
    config_file, kubeconfig_file, ns = daemon_files
    daemon = subprocess.Popen(
        [sys.executable, "-m", "autoscaler.cli", "run", "--config", str(config_file),
         "--kubeconfig", str(kubeconfig_file), "--metrics-port", "0", "--namespace", "llm-autoscaler"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while kmock_cluster.get(DEPLOYMENTS, ns, "chat")["spec"]["replicas"] == 1:
            assert time.monotonic() < deadline and daemon.poll() is None, "the daemon never scaled"
            time.sleep(0.05)
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=30)
    finally:
        daemon.kill()
    assert daemon.returncode == 0, stderr
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]  # JSON logs when not on a terminal
    assert any(e["event"] == "scaled" and e["change"] == "1 -> 5" for e in events)
    assert any(e["event"] == "stopping after the current tick" and e["signal"] == "SIGTERM" for e in events)
    assert events[-1]["event"] == "loop stopped"
    # The Event of the scaling was sent before the process ended (queued Events flush at stop).
    assert kmock_cluster.requests("POST", f"/api/v1/namespaces/{ns}/events")

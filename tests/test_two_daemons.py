"""Two daemons, as a platform team runs them: real processes, the real Prometheus, the kmock API
emulator. Only the Lease holder acts; when it is killed the standby takes the Lease within the
lease duration, restores the saved state and acts; a clean stop hands the Lease over."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.kmock_harness import DEPLOYMENTS

LEASES = "coordination.k8s.io/v1/leases"
CONFIGMAPS = "v1/configmaps"
HOME = "llm-autoscaler"
LEASE_S, RENEW_S, RETRY_S = 3.0, 2.0, 0.5
# Process start-up, a tick (1 s) and a loaded 2-core machine, on top of the lease duration.
SLACK_S = 4.0


def start(name: str, config: Path, kubeconfig: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "autoscaler.cli", "run", "--config", str(config), "--kubeconfig", str(kubeconfig),
         "--metrics-port", "0", "--namespace", HOME, "--leader-elect", "--identity", name,
         "--lease-duration-s", str(LEASE_S), "--renew-deadline-s", str(RENEW_S), "--retry-period-s", str(RETRY_S),
         # Inside the 1 s renew margin, as the daemon requires of every API request with --leader-elect.
         "--api-connect-timeout-s", "0.3", "--api-read-timeout-s", "0.6"],
        stdout=subprocess.DEVNULL, stderr=log.open("w"), text=True,
    )


def wait_until(condition, *, timeout_s: float, what: str) -> float:
    """Poll until `condition()` holds; returns when, on the monotonic clock."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return time.monotonic()


def holder(cluster) -> str | None:
    try:
        return cluster.get(LEASES, HOME, "llm-autoscaler")["spec"].get("holderIdentity")
    except KeyError:
        return None


def saved_state(cluster) -> dict:
    try:
        return cluster.get(CONFIGMAPS, HOME, "llm-autoscaler-state").get("data", {})
    except KeyError:
        return {}


def events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def test_only_the_leader_acts_and_the_standby_takes_over_when_it_dies(daemon_files, kmock_cluster, tmp_path):
    config, kubeconfig, ns = daemon_files
    replicas = lambda: kmock_cluster.get(DEPLOYMENTS, ns, "chat")["spec"]["replicas"]  # noqa: E731
    a = start("a", config, kubeconfig, tmp_path / "a.log")
    b = None
    try:
        wait_until(lambda: holder(kmock_cluster) == "a", timeout_s=20, what="a to take the Lease")
        b = start("b", config, kubeconfig, tmp_path / "b.log")
        wait_until(lambda: replicas() != 1, timeout_s=20, what="the leader to scale")
        first_count = replicas()
        # The leader saved the state for a successor.
        wait_until(lambda: "chat" in saved_state(kmock_cluster), timeout_s=10, what="the saved state")

        a.send_signal(signal.SIGKILL)  # no clean release: b must wait the Lease out
        killed_at = time.monotonic()
        a.wait(timeout=10)
        kmock_cluster.put({**kmock_cluster.get(DEPLOYMENTS, ns, "chat"), "spec": {
            **kmock_cluster.get(DEPLOYMENTS, ns, "chat")["spec"], "replicas": 1}})  # someone scales it back meanwhile
        took_at = wait_until(lambda: holder(kmock_cluster) == "b", timeout_s=LEASE_S + 10, what="b to take the Lease")
        assert took_at - killed_at <= LEASE_S + RETRY_S + SLACK_S
        wait_until(lambda: replicas() != 1, timeout_s=10, what="the new leader to scale")

        b.send_signal(signal.SIGTERM)
        assert b.wait(timeout=30) == 0
    finally:
        for process in (a, b):
            if process is not None and process.poll() is None:
                process.kill()
    assert holder(kmock_cluster) is None  # released on the clean stop: no one waits 3 s for it
    b_events = [e["event"] for e in events(tmp_path / "b.log")]
    took = b_events.index("took the lease")
    assert "scaled" not in b_events[:took]  # the standby wrote nothing while a led
    assert b_events.index("policy state restored") > took
    assert "scaled" in b_events[took:]
    assert first_count > 1
    assert "lease released" in b_events

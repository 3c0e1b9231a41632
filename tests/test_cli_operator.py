"""The command line as an operator uses it: kubectl's habits (where the cluster is found,
-n, -o, --context, --version, global flags after the command), and failures that end in an
exit status and one line instead of a run that looks like a result. Each runs the real entry
point in a subprocess; the cluster is kmock and Prometheus the real 2.42 (tests/conftest.py),
so what rests on a server is the client's discovery and the replies those two give."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from autoscaler.telemetry import Telemetry, serve
from tests.builders import kubeconfig
from autoscaler.clock import ManualClock

CHAT_CONFIG = {"models": [{"name": "chat", "namespace": "ml", "target": {"kind": "Deployment", "name": "chat"}, "policy": {"kind": "hot"}}]}


def autoscaler(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")} | (env or {})
    return subprocess.run([sys.executable, "-m", "autoscaler.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=environ)


def last_line(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()[-1]


@pytest.fixture
def dry_run_once(daemon_files):
    """`run --dry-run --once` against the busy chat model, with the kubeconfig left to be found."""
    config, kube, _ = daemon_files
    return lambda *flags, env=None: autoscaler("run", "--config", config, "--dry-run", "--once", "--metrics-port", "0",
                                               *flags, env=env), kube


def test_the_cluster_is_found_through_kubeconfig_env_as_kubectl_finds_it(dry_run_once, tmp_path):
    run, kube = dry_run_once
    result = run("-o", "json", env={"KUBECONFIG": f"{tmp_path / 'absent-first'}{os.pathsep}{kube}"})
    # The first file of the list is missing: named, not silently skipped.
    assert result.returncode == 2
    assert last_line(result) == f"error: $KUBECONFIG {tmp_path / 'absent-first'}: cannot read it: No such file or directory"

    result = run("-o", "json", env={"KUBECONFIG": str(kube)})
    assert result.returncode == 0, result.stderr
    decision = next(yaml.safe_load(line) for line in result.stdout.splitlines() if line.startswith("{"))
    assert decision["model"] == "chat" and decision["desired"] > 1  # 20 waiting on one replica


def test_the_home_kubeconfig_is_the_last_place_looked(dry_run_once, tmp_path):
    run, kube = dry_run_once
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    result = run(env={"HOME": str(home)})
    assert result.returncode == 2
    assert last_line(result) == (
        "error: no cluster to talk to: no --kubeconfig, no $KUBECONFIG, not in a pod (no KUBERNETES_SERVICE_HOST) "
        f"and no {home}/.kube/config; pass --kubeconfig FILE"
    )
    (home / ".kube" / "config").write_text(kube.read_text())
    assert run(env={"HOME": str(home)}).returncode == 0


def test_an_unknown_context_is_named_with_the_ones_there_are(dry_run_once):
    run, kube = dry_run_once
    result = run("--kubeconfig", kube, "--context", "prod")
    assert result.returncode == 2
    contexts = ", ".join(c["name"] for c in yaml.safe_load(kube.read_text())["contexts"])
    assert last_line(result) == f"error: --context prod: no such context in {kube}; it has: {contexts}"


def test_global_flags_go_after_the_command_too_and_version_answers():
    version = autoscaler("--version")
    assert version.returncode == 0 and version.stdout.startswith("autoscaler 0.")
    after = autoscaler("check-config", "deploy/configmap.yaml", "--log-level", "bogus")
    assert after.returncode == 2 and "argument --log-level: invalid choice: 'bogus'" in after.stderr
    assert autoscaler("replay", "--log-level", "warning", "-o", "json").returncode == 0


def test_once_exits_1_naming_what_it_could_not_reach(tmp_path):
    """Before: exit 0 with every model "skipped"."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"prometheus": {"url": "http://127.0.0.1:9"}, "tick_interval_s": 1, **CHAT_CONFIG}))
    kube = tmp_path / "kubeconfig"
    kube.write_text(yaml.safe_dump(kubeconfig("http://127.0.0.1:9")))
    result = autoscaler("run", "--config", config, "--kubeconfig", kube, "--dry-run", "--once", "--metrics-port", "0")
    assert result.returncode == 1
    assert last_line(result) == (
        "error: --once: Prometheus could not be read (connection); the cluster: 1 of 1 models' targets could not be "
        "read (Prometheus http://127.0.0.1:9, Kubernetes API http://127.0.0.1:9)"
    )


def test_replay_from_a_prometheus_that_cannot_answer_fails_at_once(tmp_path):
    """Before: exit 0 and a summary of holds, after a warning per tick (1.2 s each for an
    unresolvable host)."""
    started = time.monotonic()
    refused = autoscaler("replay", "--prometheus", "http://127.0.0.1:9", "--start", "0", "--end", "14400")
    assert refused.returncode == 1
    assert last_line(refused).startswith("error: --prometheus http://127.0.0.1:9: cannot connect: ")
    assert time.monotonic() - started < 30  # one probe, not 1,440 ticks
    bare = autoscaler("replay", "--prometheus", "127.0.0.1:9", "--start", "0", "--end", "60")
    assert bare.returncode == 2
    assert last_line(bare) == "error: --prometheus '127.0.0.1:9': not a URL; give its scheme, such as http://127.0.0.1:9"


def test_replay_from_a_prometheus_with_nothing_in_the_span_says_so(daemon_files, prometheus_stack, tmp_path):
    """The real Prometheus holds the busy chat model now, and nothing in 1970."""
    config, _, _ = daemon_files
    _, prometheus = prometheus_stack
    empty = autoscaler("replay", "--prometheus", prometheus.url, "--start", "1000", "--end", "2000", "--config", config)
    assert empty.returncode == 1
    assert last_line(empty) == (
        f"error: --prometheus {prometheus.url}: it holds no sample of vllm:num_requests_running between the start "
        "and the end: nothing to replay"
    )
    now = time.time()
    held = autoscaler("replay", "--prometheus", prometheus.url, "--start", f"{now - 60:.0f}", "--end", f"{now:.0f}",
                      "--config", config, "--step-s", "10")
    assert held.returncode == 0, held.stderr


def test_readyz_tells_a_loop_that_cannot_read_from_one_that_works():
    """Served for real on a loopback port; the tick's failures come as the adapters report them."""
    clock = ManualClock(1000.0)
    telemetry = Telemetry(clock=clock, interval_s=10.0)
    server = serve(telemetry, port=0, host="127.0.0.1")

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    try:
        assert get("/readyz") == (503, "not ok: no tick has completed yet\n")
        telemetry.prometheus_error("waiting", "connection")
        telemetry.record_tick([], duration_s=0.1)
        assert get("/readyz") == (503, "not ok: Prometheus could not be read (connection)\n")
        assert get("/healthz") == (200, "ok\n")  # an outage outside the pod: restarting it would not help
        telemetry.prometheus_error("waiting", "malformed")  # one query's answer, not Prometheus down
        telemetry.record_tick([], duration_s=0.1)
        assert get("/readyz") == (200, "ok\n")
    finally:
        server.shutdown()
        server.server_close()

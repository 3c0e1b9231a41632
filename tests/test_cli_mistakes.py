"""A user's mistake on the command line ends in exit 2 and one line naming the flag or field,
the value and what is allowed: never a traceback, never a run on a value read loosely. Each
case went wrong before (a traceback, an abort, or silence); all run the real entry point in a
subprocess."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGMAP = REPO / "deploy" / "configmap.yaml"
PROMETHEUS = ["--prometheus", "http://127.0.0.1:9"]  # never reached: each mistake is found first

CHAT = (
    "models:\n"
    "  - name: chat\n"
    "    namespace: ml\n"
    "    target: {kind: Deployment, name: chat}\n"
    "    policy: {kind: hot, max_replicas: 4, target_waiting_per_replica: 4}\n"
)


def autoscaler(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autoscaler.cli", *map(str, args)], capture_output=True, text=True, timeout=120)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The error, after argparse's usage lines if any: exit 2 and no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    if lines[0].startswith("usage:"):
        lines = [line for line in lines if line.startswith("autoscaler ")]  # argparse: usage, then "prog: error: ..."
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def chat_config(tmp_path: Path) -> Path:
    path = tmp_path / "chat.yaml"
    path.write_text(CHAT)
    return path


@pytest.fixture
def trace(tmp_path: Path):
    def write(*rows: str) -> Path:
        path = tmp_path / "trace.csv"
        path.write_text("time_s,name,signal,value\n" + "".join(row + "\n" for row in rows))
        return path

    return write


# -- run ---------------------------------------------------------------------------------------


def test_a_metrics_port_already_in_use_is_named():
    """Before: OSError: [Errno 98] Address already in use, as a traceback (the default 8080 is
    a common port). Found before the cluster is contacted, so no kubeconfig is needed here."""
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_error_line(autoscaler("run", "--config", CONFIGMAP, "--dry-run", "--once", "--metrics-port", port))
    assert line == f"error: --metrics-port {port}: already in use on this machine; pass a free port, or 0 to serve none"


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_a_port_outside_the_tcp_range_is_refused(port):
    """Before: 99999 aborted the interpreter (exit 134) inside the HTTP server's thread."""
    line = one_error_line(autoscaler("run", "--config", CONFIGMAP, "--dry-run", "--once", "--metrics-port", port))
    assert line == f"autoscaler run: error: argument --metrics-port: '{port}' is not allowed; a whole number >= 0, <= 65535"


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"clusters: [\n", "not valid YAML at line 2: expected the node content, but found '<stream end>'"),
        (b"\x7fELF\x02\x01\x01\x00\xff\xfe", "not a text file; a kubeconfig is YAML"),
    ],
)
def test_a_kubeconfig_that_is_not_yaml_is_named(tmp_path, content, expected):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_bytes(content)
    line = one_error_line(autoscaler("run", "--config", CONFIGMAP, "--dry-run", "--once", "--metrics-port", "0", "--kubeconfig", kubeconfig))
    assert line == f"error: --kubeconfig {kubeconfig}: {expected}"


def test_a_missing_kubeconfig_names_its_path_and_no_hint_to_pass_it(tmp_path):
    kubeconfig = tmp_path / "absent"
    line = one_error_line(autoscaler("run", "--config", CONFIGMAP, "--dry-run", "--once", "--metrics-port", "0", "--kubeconfig", kubeconfig))
    assert line == f"error: --kubeconfig {kubeconfig}: cannot read it: No such file or directory"


# -- config files --------------------------------------------------------------------------------


def test_a_binary_config_is_named(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00\xff\xfe")
    for command in (["check-config", path], ["run", "--config", path, "--dry-run", "--once"], ["replay", "--config", path]):
        assert one_error_line(autoscaler(*command)) == f"error: {path}: not a text file (byte 8 is not UTF-8); the config is YAML"


def test_max_replicas_true_is_not_one_replica(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(CHAT.replace("max_replicas: 4", "max_replicas: true"))
    line = one_error_line(autoscaler("check-config", path))
    assert line == f"error: {path}: models[0].policy.max_replicas: must be a whole number (got True)"


def test_a_key_given_twice_is_refused(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(CHAT.replace("    namespace: ml\n", "    namespace: ml\n    namespace: prod\n"))
    line = one_error_line(autoscaler("check-config", path))
    assert line == f"error: {path}: not valid YAML at line 4, column 5: key 'namespace' appears twice in one mapping (first at line 3)"


# -- replay --------------------------------------------------------------------------------------


@pytest.mark.parametrize("step", ["inf", "1e-6", "nan", "0.5", "601"])
def test_a_step_outside_the_tick_intervals_bounds_is_refused(step):
    """Before: inf looped forever on one tick, 1e-6 asked numpy for billions of instants."""
    line = one_error_line(autoscaler("replay", "--step-s", step))
    assert line == f"autoscaler replay: error: argument --step-s: '{step}' is not allowed; seconds from 1 to 600, as tick_interval_s"


@pytest.mark.parametrize(
    "flag, value",
    [("--start", "nan"), ("--start", "-inf"), ("--end", "1e15"), ("--start", "-1")],
)
def test_an_instant_outside_the_calendar_is_refused(flag, value):
    """Before: nan was taken as a start, and 1e15 (year 31 million) failed as a traceback when
    the first decision was printed as a date."""
    other = {"--start": ["--end", "2026-11-20T09:00:00Z"], "--end": ["--start", "2026-11-20T08:00:00Z"]}[flag]
    line = one_error_line(autoscaler("replay", *PROMETHEUS, f"{flag}={value}", *other))  # = lets -inf through argparse
    assert line == (
        f"autoscaler replay: error: argument {flag}: '{value}' is not allowed; "
        "seconds since the epoch from 0 to 253402300799 (9999-12-31T23:59:59Z)"
    )


def test_a_start_without_a_zone_is_refused():
    """Before: read as this machine's local time, so the same command replayed another window
    on a machine in another zone."""
    line = one_error_line(autoscaler("replay", *PROMETHEUS, "--start", "2026-11-20T08:00:00", "--end", "2026-11-20T09:00:00Z"))
    assert line == (
        "autoscaler replay: error: argument --start: '2026-11-20T08:00:00' has no zone; "
        "add one, such as 2026-11-20T08:00:00Z (UTC) or 2026-11-20T08:00:00+01:00"
    )


def test_start_and_end_without_prometheus_are_refused():
    """Before: ignored, and the whole bundled trace was replayed."""
    line = one_error_line(autoscaler("replay", "--start", "100", "--end", "200"))
    assert line == "error: --start and --end apply only with --prometheus; a trace file is replayed from its first sample to its last"


def test_a_trace_spanning_1e12_s_is_refused_before_any_allocation(trace, chat_config):
    """Before: numpy asked for 745 GiB of instants (1e11 ticks at 10 s) and died."""
    path = trace("0,chat,waiting,1", "1e12,chat,waiting,2")
    line = one_error_line(autoscaler("replay", "--trace", path, "--config", chat_config))
    assert line == (
        f"error: the trace {path} spans 1e+12 s: 100,000,000,001 ticks at --step-s 10; "
        "at most 10,000,000: replay a shorter span or pass a larger --step-s"
    )


def test_a_prometheus_span_of_too_many_ticks_is_refused(chat_config):
    line = one_error_line(autoscaler("replay", *PROMETHEUS, "--config", chat_config, "--start", "0", "--end", "1e9"))
    assert line.startswith("error: --start..--end spans 1e+09 s: 100,000,001 ticks at --step-s 10; at most 10,000,000")


@pytest.mark.parametrize(
    "row, expected",
    [
        ("0,chat,kv_cache_usage,7", "kv_cache_usage value '7' is not allowed; it must be a fraction of the KV cache, 0 to 1"),
        ("0,chat,gpu_utilization,500", "gpu_utilization value '500' is not allowed; it must be a percent, 0 to 100"),
    ],
)
def test_a_trace_value_beyond_its_signals_range_is_refused(trace, chat_config, row, expected):
    """Before: replayed as it was, a KV cache 7 times full holding every scale-down."""
    path = trace(row, "10,chat,waiting,1")
    assert one_error_line(autoscaler("replay", "--trace", path, "--config", chat_config)) == f"error: {path}: line 2: {expected}"


def test_ctrl_c_during_a_replay_is_one_line_and_exit_130(trace, chat_config):
    """Before: a KeyboardInterrupt traceback. 130 is 128 + SIGINT, as a shell reports it."""
    path = trace("0,chat,waiting,50", "3000000,chat,waiting,50")  # 300,001 ticks: still running when interrupted
    process = subprocess.Popen(
        [sys.executable, "-m", "autoscaler.cli", "replay", "--trace", str(path), "--config", str(chat_config), "--all", "--output", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout.readline()  # the first decision: the replay loop is running
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130
    assert stderr.strip() == "interrupted"

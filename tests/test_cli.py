"""The command line through its real entry point, in a subprocess: exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.builders import model


def autoscaler(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autoscaler.cli", *args], capture_output=True, text=True, timeout=120)


def test_replay_with_no_arguments_runs_the_bundled_trace():
    result = autoscaler("replay")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "IdleTimeout" in out and "Wake: wake signal" in out
    summary = out[out.index("replayed"):]
    tail = next(line for line in summary.splitlines() if line.startswith("llama-1b-tail"))
    hot = next(line for line in summary.splitlines() if line.startswith("llama-1b-hot"))
    assert tail.split()[3] == "3"  # scale-to-zero events: one per real idle gap of the recording
    assert hot.split()[3] == "0"  # a hot model never goes to zero
    assert "0:" not in hot.split("  ")[-1]


def test_replay_piped_into_a_reader_that_stops_early_ends_without_a_traceback():
    # `autoscaler replay | head -1`: the reader closes the pipe after one line.
    process = subprocess.Popen([sys.executable, "-m", "autoscaler.cli", "replay"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.readline().startswith(b"time ")
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141  # 128 + SIGPIPE, as a shell reports a command killed by it
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr


def test_replay_json_lines_carry_time_model_current_desired_reasons():
    result = autoscaler("replay", "--output", "json")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records and all({"time", "model", "current", "desired", "reasons"} <= set(r) for r in records)
    assert all(r["reasons"] for r in records)
    assert any(r["desired"] == 0 and r["reasons"][0]["code"] == "IdleTimeout" for r in records)


@pytest.mark.parametrize("args", [(), ("--trace", "azure-conv", "--policies", "ours,keda"), ("--help",)])
def test_simulate_in_the_product_names_the_lab_in_one_line(args):
    """The simulator is lab code: the product's `simulate`, with or without the old flags,
    exits 2 with one line that says how to run it, and never imports the lab to say so."""
    probe = ("import sys; from autoscaler.cli import main; code = main(sys.argv[1:]); "
             "assert not [m for m in sys.modules if m.split('.')[0] == 'simulations'], 'imported the lab'; "
             "sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", probe, "simulate", *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "python -m simulations" in lines[0] and "'.[lab]'" in lines[0], lines


def test_check_config_prints_effective_settings(tmp_path):
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"models": [model("tail", kind="long-tail", policy={"cold_start_s": 90})]}))
    result = autoscaler("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert "effective_idle_timeout_s: 360.0" in result.stdout
    assert "scale_down_stabilization_s: 300.0" in result.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        (["check-config", "/nonexistent.yaml"], "cannot read the config"),
        (["replay", "--trace", "/nonexistent.csv"], "cannot read the trace"),
        (["replay", "--step-s", "0"], "argument --step-s: '0' is not allowed; seconds from 1 to 600, as tick_interval_s"),
        (["replay", "--step-s", "fast"], "argument --step-s: 'fast' is not a number"),
        (["replay", "--prometheus", "http://127.0.0.1:9", "--start", "yesterday"], "argument --start: 'yesterday' is neither"),
        (["replay", "--prometheus", "http://127.0.0.1:9"], "--prometheus needs --start and --end"),
        (["replay", "--prometheus", "http://127.0.0.1:9", "--processes", "2"], "a --prometheus replay runs in one process"),
        (["replay", "--processes", "0"], "argument --processes: '0' is not allowed; from 1 (this process alone) to 64"),
        (["run"], "the following arguments are required: --config"),
        (["scale"], "invalid choice: 'scale'"),
        (["run", "--config", "x.yaml", "--watch-scope", "global"],
         "argument --watch-scope: invalid choice: 'global' (choose from 'namespaces', 'cluster')"),
        (["run", "--config", "x.yaml", "--write-workers", "0"],
         "argument --write-workers: '0' is not allowed; a whole number >= 1, <= 64"),
    ],
)
def test_user_mistakes_exit_2_with_a_message_and_no_traceback(args, expected):
    result = autoscaler(*args)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_config_lists_every_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("models:\n  - name: chat\n    namespace: ml\n    target: {kind: Deployment, name: chat}\n    policy: {kind: hot, max_replicas: 0}\n")
    result = autoscaler("check-config", str(path))
    assert result.returncode == 2
    assert f"{path}: models[0].policy.max_replicas: Input should be greater than or equal to 1 (got 0)" in result.stderr
    assert "Traceback" not in result.stderr


def test_trace_that_names_no_configured_model_is_an_error(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("time_s,name,signal,value\n0,someone-else,waiting,1\n")
    result = autoscaler("replay", "--trace", str(trace))
    assert result.returncode == 2
    assert "names none of the configured models" in result.stderr


def test_replay_from_prometheus_history_backfilled_with_promtool(tmp_path):
    """A live Prometheus over a past range: history written into its TSDB by promtool,
    then the same batched queries the daemon runs, evaluated at past instants. The history
    has one pod while the replay scales to several: replay counts no pods, or every later
    scale-down would hold as "1 of N pods reported" (autoscaler/replay.py)."""
    import time as clock

    from tests.support.prom_harness import OpenMetricsHistory, run_prometheus

    import yaml

    start = (int(clock.time()) // 60) * 60 - 3 * 3600
    history = OpenMetricsHistory()
    labels = {"namespace": "ml", "model_name": "chat", "pod": "chat-0", "engine": "0"}
    burst = [(start + t, 40.0 if 300 <= t < 900 else 0.0) for t in range(0, 1800, 15)]
    history.add_series("vllm:num_requests_waiting", labels, burst)
    history.add_series("vllm:num_requests_running", labels, [(t, 16.0 if v else 0.0) for t, v in burst])
    # The scale-down guard's input: without it no scale-down happens (GuardInputMissing).
    history.add_series("vllm:kv_cache_usage_perc", labels, [(t, 0.2 if v else 0.0) for t, v in burst])
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"models": [model("chat")]}))
    with run_prometheus([], backfill=history.render()) as prometheus:
        result = autoscaler("replay", "--config", str(config), "--prometheus", prometheus.url,
                            "--start", str(start), "--end", str(start + 1800), "--output", "json")
    assert result.returncode == 0, result.stderr
    changes = [json.loads(line) for line in result.stdout.splitlines()]
    first_up = next(c for c in changes if c["direction"] == "up")
    assert start + 300 <= first_up["time"] < start + 330 and first_up["current"] == 1
    assert any(c["direction"] == "down" and c["time"] >= start + 900 for c in changes)


@pytest.mark.parametrize("flags", [(), ("--all", "--output", "json")])
def test_replay_on_two_processes_prints_what_one_process_does(flags):
    one, two = autoscaler("replay", *flags), autoscaler("replay", "--processes", "2", *flags)
    assert one.returncode == two.returncode == 0, two.stderr
    assert two.stdout == one.stdout


@pytest.mark.parametrize(
    "wake_query, why",
    [
        ('sum(gw_queue{model="b"}) # the gateway', "a '#' comment"),
        ('sum(gw_queue{model="b"}', "expected ')'"),
        ("rate(gw_requests_total)", "expected type range vector in call to function 'rate'"),
        ("scalar(gw_queue)", "gives a scalar; it must give an instant vector"),
    ],
)
def test_check_config_refuses_a_wake_query_prometheus_would_refuse_naming_model_field_and_expression(tmp_path, wake_query, why):
    """Issue 19, item 4: check-config passed these, and at run time b's made every model's
    wake query fail."""
    import yaml

    path = tmp_path / "c.yaml"
    models = [model("a", kind="long-tail", wake_query='sum(gw_queue{model="a"})'), model("b", kind="long-tail", wake_query=wake_query)]
    path.write_text(yaml.safe_dump({"models": models}))
    result = autoscaler("check-config", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"models[1]: model 'b': wake_query {wake_query!r}" in result.stderr and why in result.stderr, result.stderr


def test_check_config_refuses_a_saturation_query_prometheus_would_refuse(tmp_path):
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "models": [model("a", dependencies=["db"])],
        "dependencies": [{"name": "db", "saturation_query": "max(db_load{", "saturated_at": 0.9}],
    }))
    result = autoscaler("check-config", str(path))
    assert result.returncode == 2 and "dependency 'db': saturation_query 'max(db_load{'" in result.stderr, result.stderr


def test_check_config_never_prints_the_password_of_the_prometheus_url(tmp_path):
    """Issue 19, item 12."""
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"prometheus": {"url": "https://admin:hunter2@prom.example:9090"}, "models": [model("a")]}))
    result = autoscaler("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout + result.stderr and "https://admin:***@prom.example:9090" in result.stdout

"""Config reload through a real file: applied at the next tick, rejected when invalid, policy
state carried over for the models that stay."""

from __future__ import annotations

import yaml
from structlog.testing import capture_logs

from autoscaler.controller import Controller
from autoscaler.metrics.recorded import RecordedSource, load_trace
from autoscaler.reload import ReloadingController
from autoscaler.targets.recording import InMemoryTargets
from tests.builders import model


def setup(tmp_path, *, max_replicas: int = 10):
    trace = tmp_path / "trace.csv"
    # The queue halves after the first tick, so the recommendations at 0 s and 10 s differ and
    # both stay in the stabilization history (an equal later one would replace the first).
    rows = "".join(f"{t},chat,waiting,{200 if t == 0 else 100}\n{t},chat,running,64\n" for t in range(0, 200, 10))
    trace.write_text("time_s,name,signal,value\n" + rows)
    path = tmp_path / "config.yaml"
    write(path, max_replicas)
    recorded = load_trace(trace)

    def build(config):
        targets = InMemoryTargets({m.name: m for m in config.models}, initial={m.name: 1 for m in config.models})
        return Controller(config, metrics=RecordedSource(recorded, config), targets=targets)

    return path, build


def write(path, max_replicas: int, **extra) -> None:
    path.write_text(yaml.safe_dump({"models": [model("chat", policy={"max_replicas": max_replicas}, **extra)]}))


def test_a_changed_config_applies_at_the_next_tick_and_keeps_policy_state(tmp_path):
    path, build = setup(tmp_path)
    reloading = ReloadingController(path, build)
    reloading.tick(now=0.0)
    write(path, 3)
    with capture_logs() as logs:
        (outcome,) = reloading.tick(now=10.0)
    assert reloading.config.models[0].policy.max_replicas == 3
    assert outcome.decision.desired_replicas <= 3
    assert any(e["event"] == "config reloaded" for e in logs)
    # The stabilization history from before the reload is still there.
    assert [t for t, _ in reloading.controller.states["chat"].recommendations] == [0.0, 10.0]


def test_an_invalid_config_is_rejected_and_the_running_one_kept(tmp_path):
    path, build = setup(tmp_path)
    rejected = []
    reloading = ReloadingController(path, build, on_rejected=lambda: rejected.append(1))
    reloading.tick(now=0.0)
    path.write_text("models:\n  - name: chat\n    policy: {kind: hot, max_replicas: 0}\n")
    with capture_logs() as logs:
        (outcome,) = reloading.tick(now=10.0)
    assert reloading.config.models[0].policy.max_replicas == 10
    assert outcome.decision is not None
    (error,) = [e for e in logs if e["event"] == "new config rejected; keeping the running one"]
    assert "max_replicas" in error["errors"] and error["log_level"] == "error"
    assert rejected == [1]
    reloading.tick(now=20.0)  # the same bad file is not reported again every tick
    assert rejected == [1]


def test_an_unreadable_file_mid_swap_is_tried_again(tmp_path):
    path, build = setup(tmp_path)
    reloading = ReloadingController(path, build)
    path.unlink()
    reloading.tick(now=0.0)
    write(path, 4)
    reloading.tick(now=10.0)
    assert reloading.config.models[0].policy.max_replicas == 4


def test_a_reload_with_a_wake_query_prometheus_cannot_parse_is_rejected(tmp_path):
    """Issue 19, item 4: the reload took a wake query that Prometheus refuses, and with it the
    one query every model's wake signal shares."""
    path, build = setup(tmp_path)
    reloading = ReloadingController(path, build)
    reloading.tick(now=0.0)
    write(path, 3, wake_query='sum(gateway_queue{model="chat"}) # the queue at the gateway')
    with capture_logs() as logs:
        reloading.tick(now=10.0)
    assert reloading.config.models[0].policy.max_replicas == 10  # nothing of the new file applied
    (error,) = [e for e in logs if e["event"] == "new config rejected; keeping the running one"]
    assert "model 'chat': wake_query" in error["errors"] and "comment" in error["errors"]

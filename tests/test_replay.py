from __future__ import annotations

import json
import os
from pathlib import Path

from autoscaler.bundled import load_bundled
from autoscaler.metrics.recorded import RecordedSource
from autoscaler.replay import format_summary, replay, replay_sharded, shares
from autoscaler.targets.recording import InMemoryTargets
from policies import Decision, Reason, ReasonCode
from simulations.bench_replay import by_kind, fleet
from tests.builders import config, model

GOLDEN = Path(__file__).parent / "golden" / "burstgpt_decisions.json"


def test_bundled_replay_matches_the_golden_decision_sequence():
    """Every count change the controller makes over the bundled trace, pinned. A policy change
    that moves one is a behaviour change: regenerate with UPDATE_GOLDEN=1 and review the diff."""
    cfg, trace = load_bundled()
    changes = []

    def keep(outcome) -> None:
        d = outcome.decision
        if d is not None and d.direction != "hold":
            changes.append([round(outcome.now, 1), outcome.model, d.current_replicas, d.desired_replicas, list(d.reason_codes)])

    result = replay(cfg, RecordedSource(trace, cfg), start_s=trace.start_s, end_s=trace.end_s, step_s=10.0,
                    initial={"llama-1b-hot": 1, "llama-1b-tail": 1}, trace=trace, on_outcome=keep)
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text("[\n" + ",\n".join(json.dumps(change) for change in changes) + "\n]\n")
    assert changes == json.loads(GOLDEN.read_text())
    assert result.summaries["llama-1b-tail"].scale_to_zero == 3
    assert result.summaries["llama-1b-hot"].seconds_at[0] == 0
    assert result.summaries["llama-1b-tail"].replica_seconds < result.summaries["llama-1b-tail"].recorded_replica_seconds


def test_in_memory_replicas_become_ready_one_cold_start_later():
    cfg = config(model("chat", policy={"cold_start_s": 60}))
    targets = InMemoryTargets({"chat": cfg.models[0]}, initial={"chat": 1})
    targets.apply(cfg.models[0], Decision(1, 3, 1, 10, (Reason(ReasonCode.Recommendation, "x"),)), now=100.0)
    assert targets.read_states(now=159.0)["chat"].ready_replicas == 1
    assert targets.read_states(now=160.0)["chat"].ready_replicas == 3
    targets.apply(cfg.models[0], Decision(3, 1, 1, 10, (Reason(ReasonCode.Recommendation, "x"),)), now=200.0)
    state = targets.read_states(now=200.0)["chat"]
    assert (state.spec_replicas, state.ready_replicas) == (1, 1)


def test_scale_down_removes_starting_replicas_first():
    cfg = config(model("chat", policy={"cold_start_s": 60}))
    targets = InMemoryTargets({"chat": cfg.models[0]}, initial={"chat": 2})
    targets.apply(cfg.models[0], Decision(2, 4, 1, 10, (Reason(ReasonCode.Recommendation, "x"),)), now=0.0)
    targets.apply(cfg.models[0], Decision(4, 3, 1, 10, (Reason(ReasonCode.Recommendation, "x"),)), now=10.0)
    assert targets.read_states(now=10.0)["chat"].ready_replicas == 2
    assert targets.read_states(now=60.0)["chat"].ready_replicas == 3


def test_sharded_replay_gives_the_result_and_decisions_of_one_process():
    cfg, trace = fleet(*load_bundled(), 3)
    span = dict(start_s=trace.start_s, end_s=trace.start_s + 3000.0, step_s=10.0, initial={m.name: 1 for m in cfg.models})
    every = []
    whole = replay(cfg, RecordedSource(trace, cfg), trace=trace, on_outcome=every.append, **span)
    sharded, kept = replay_sharded(cfg, trace, processes=2, keep="all", **span)
    assert list(sharded.summaries) == [m.name for m in cfg.models]
    assert sharded == whole
    assert format_summary(sharded) == format_summary(whole)
    assert kept == every
    _, changes = replay_sharded(cfg, trace, processes=2, keep="changes", **span)
    assert changes == [o for o in every if o.decision.direction != "hold"] and changes


def test_models_sharing_a_gpu_pool_are_replayed_in_the_same_process():
    cfg = config(
        model("a", pool="gpu"), model("b"), model("c", pool="gpu"), model("d"), model("e", pool="gpu"),
        pools=[{"name": "gpu", "capacity_gpus": 4}],
    )
    assert sorted(map(sorted, shares(cfg, 2))) == [["a", "c", "e"], ["b", "d"]]
    assert sorted(map(sorted, shares(cfg, 8))) == [["a", "c", "e"], ["b"], ["d"]]
    assert shares(cfg, 1) == [{"a", "b", "c", "d", "e"}]


def test_the_benchmark_by_kind_times_each_bundled_model_and_what_a_model_tick_builds():
    cfg, trace = load_bundled()
    lines = by_kind(cfg, trace, 60.0, copies=1, repeat=1).splitlines()
    rows = {name: (kind, float(controller_us), float(policy_us)) for name, kind, controller_us, policy_us in
            (line.split() for line in lines[1:3])}
    assert {name: kind for name, (kind, _, _) in rows.items()} == {m.name: m.policy.kind for m in cfg.models}
    assert all(controller_us > 0 and policy_us > 0 for _, controller_us, policy_us in rows.values())
    built = [line.strip() for line in lines[3:]]
    assert [line.split()[0] for line in built] == ["PolicyState", "Observation", "Decision", "Reason"]
    assert all(line.endswith(" us") and float(line.split()[-2]) > 0 for line in built)

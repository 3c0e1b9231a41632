"""Replay speed, in model-ticks per second: the whole controller (recorded source, policy,
in-memory target) beside the bare policy function on the same observations, so the cost of
everything around the policy is visible, and the controller replay with its models shared out
to one worker process per core (autoscaler.replay.replay_sharded).
Run: ./dev bench  (or python -m simulations.bench_replay); ./dev bench --by-kind: each bundled model
alone, in microseconds a model-tick, and what the objects a hot model-tick builds cost.

The bundled trace (2 models, 12,070 s at 10 s ticks) is replayed with its models copied to
make larger fleets.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
import timeit

from autoscaler.bundled import load_bundled
from autoscaler.config import Config
from autoscaler.controller import observe
from autoscaler.logs import configure_logging
from autoscaler.metrics.recorded import RecordedSource, RecordedTrace
from autoscaler.replay import replay, replay_sharded
from autoscaler.targets import TargetState
from policies import Decision, Observation, PolicyState, Reading, Reason, decide


def fleet(config: Config, trace: RecordedTrace, copies: int) -> tuple[Config, RecordedTrace]:
    models, series = [], {}
    for i in range(copies):
        for m in config.models:
            name = f"{m.name}-{i}"
            models.append(m.model_copy(update={"name": name, "model_name": f"{m.label_value}-{i}"}))
            series.update({(name, signal): s for (owner, signal), s in trace.series.items() if owner == m.name})
    return config.model_copy(update={"models": tuple(models)}), RecordedTrace(series)


def _end_s(trace: RecordedTrace, step_s: float, ticks: int | None) -> float:
    return trace.end_s if ticks is None else min(trace.end_s, trace.start_s + (ticks - 1) * step_s)


def bench_controller(
    config: Config, trace: RecordedTrace, step_s: float, *, ticks: int | None = None, processes: int = 1
) -> tuple[int, float]:
    """`ticks`: replay only the first ticks of the trace (default: all of it). `processes`
    above 1: the models shared out to that many worker processes (replay_sharded), timed from
    the start of the first to the merged result, wall clock."""
    started = time.perf_counter()
    span = dict(start_s=trace.start_s, end_s=_end_s(trace, step_s, ticks), step_s=step_s, initial={m.name: 1 for m in config.models})
    if processes > 1:
        result, _ = replay_sharded(config, trace, processes=processes, **span)
    else:
        result = replay(config, RecordedSource(trace, config), **span)
    return result.ticks * len(config.models), time.perf_counter() - started


def bench_policy(config: Config, trace: RecordedTrace, step_s: float, *, ticks: int | None = None) -> tuple[int, float]:
    """The same observations, built beforehand, through decide() alone (replicas held at 1)."""
    source = RecordedSource(trace, config)
    target = TargetState(spec_replicas=1, ready_replicas=1)
    end_s = _end_s(trace, step_s, ticks)
    ticks = []
    now = trace.start_s
    while now <= end_s:
        signals = source.fetch_signals(now=now)
        ticks.append((now, [observe(m, signals, target, {}) for m in config.models]))
        now += step_s
    states = {m.name: PolicyState() for m in config.models}
    started = time.perf_counter()
    for now, observations in ticks:
        for m, observation in zip(config.models, observations):
            _, states[m.name] = decide(observation, states[m.name], m.policy, now=now)
    return len(ticks) * len(config.models), time.perf_counter() - started


def by_kind(config: Config, trace: RecordedTrace, step_s: float, *, copies: int, repeat: int) -> str:
    """Each bundled model alone, copied: what one of its model-ticks costs in the controller and
    in the policy, and what the objects a hot model-tick builds cost each."""
    lines = [f"{'model':<16} {'kind':<10} {'controller us':>14} {'policy us':>10}   (a model-tick, {copies} copies, median of {repeat})"]
    for m in config.models:
        cfg, tr = fleet(config.model_copy(update={"models": (m,)}), trace, copies)
        controller = statistics.median(s / n for n, s in (bench_controller(cfg, tr, step_s) for _ in range(repeat)))
        policy = statistics.median(s / n for n, s in (bench_policy(cfg, tr, step_s) for _ in range(repeat)))
        lines.append(f"{m.name:<16} {m.policy.kind:<10} {controller * 1e6:>14.1f} {policy * 1e6:>10.1f}")
    reading = Reading.of(3.0)
    state = PolicyState()
    built = {
        "PolicyState (dataclasses.replace, 9 fields, as advance)": lambda: dataclasses.replace(
            state, starting_since=None, service_rate_per_replica=2.0, service_rate_estimate=2.0, ready_history=(),
            saturated_since=None, burst_headroom=None, first_seen=None, recommendations=(), last_scale_up_at=1.0),
        "Observation": lambda: Observation(spec_replicas=2, ready_replicas=2, waiting=reading, running=reading,
                                           kv_cache_usage=reading, gpu_utilization=reading, completion_rate=reading, wake=reading),
        "Decision": lambda: Decision(current_replicas=2, desired_replicas=3, floor=1, cap=8, reasons=(), needed_replicas=3),
        "Reason with 5 formatted numbers": lambda: Reason("Recommendation", f"{4.5:.2f} req/s at {2.72:.2f} x {0.8:g} -> {2.1:.1f}; +{0.0:.1f}"),
    }
    for name, build in built.items():
        lines.append(f"  {name:<58} {min(timeit.repeat(build, number=20_000, repeat=5)) / 20_000 * 1e6:>5.1f} us")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Replay speed: controller vs bare policy.")
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 10, 50], help="copies of the bundled 2 models")
    parser.add_argument("--step-s", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each figure; the median is printed")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="worker processes of the sharded column (default: one per core)")
    parser.add_argument("--by-kind", action="store_true", help="instead: each bundled model alone (50 copies), microseconds a model-tick")
    args = parser.parse_args()
    configure_logging(level="warning")
    config, trace = load_bundled()
    if args.by_kind:
        print(by_kind(config, trace, args.step_s, copies=50, repeat=args.repeat))
        return
    print(f"bundled BurstGPT trace, {trace.end_s - trace.start_s:.0f} s at {args.step_s:g} s ticks; figures in model-ticks/s")
    sharded = f"on {args.processes} processes"
    print(f"{'models':>7} {'model-ticks':>12} {'controller replay':>18} {sharded:>15} {'policy alone':>13} {'policy share':>13}")
    for copies in args.copies:
        cfg, tr = fleet(config, trace, copies)
        runs = []
        for _ in range(args.repeat):  # interleaved, so that a slow spell of the machine hits all three
            n, replay_s = bench_controller(cfg, tr, args.step_s)
            _, sharded_s = bench_controller(cfg, tr, args.step_s, processes=args.processes)
            m, policy_s = bench_policy(cfg, tr, args.step_s)
            runs.append((replay_s, sharded_s, policy_s))
        replay_s, sharded_s, policy_s = (statistics.median(column) for column in zip(*runs))
        print(f"{len(cfg.models):>7} {n:>12,} {n / replay_s:>18,.0f} {n / sharded_s:>15,.0f} {m / policy_s:>13,.0f} {policy_s / replay_s:>12.0%}")


if __name__ == "__main__":
    main()

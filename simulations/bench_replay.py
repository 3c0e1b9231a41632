"""Replay speed, in model-ticks per second: the whole controller (recorded source, policy,
in-memory target) beside the bare policy function on the same observations, so the cost of
everything around the policy is visible, and the controller replay with its models shared out
to one worker process per core (simulations.replay.replay_sharded).
Run: ./dev bench  (or python -m simulations.bench_replay)

The bundled trace (2 models, 12,070 s at 10 s ticks) is replayed with its models copied to
make larger fleets.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from autoscaler.cli import _bundled
from autoscaler.config import Config, load_config
from autoscaler.controller import observe
from autoscaler.logs import configure_logging
from autoscaler.metrics.recorded import RecordedSource, RecordedTrace, load_trace
from autoscaler.targets import TargetState
from policies import PolicyState, decide
from simulations.replay import replay, replay_sharded


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


def main() -> None:
    parser = argparse.ArgumentParser(description="Replay speed: controller vs bare policy.")
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 10, 50], help="copies of the bundled 2 models")
    parser.add_argument("--step-s", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each figure; the median is printed")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="worker processes of the sharded column (default: one per core)")
    args = parser.parse_args()
    configure_logging(level="warning")
    config, trace = load_config(_bundled("replay.yaml")), load_trace(_bundled("burstgpt.csv.gz"))
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

"""Open-loop replay: the daemon's controller fed a recorded trace instead of live Prometheus.

The recorded load does not react to the replicas the controller chooses (that is what the
closed-loop simulator is for), so replay answers "what would it have decided, and when",
and how many replica-seconds that would have held against the recorded count.

Replay runs without the partial-data guard (Observation.reporting_pods is None): the pods
that reported were the recorded cluster's, while the ready replicas are the replay's own, so
the two counts are not of the same pods. Compared, every replayed scale-up past the recorded
count would read as "4 of 6 pods reported" and hold every later scale-down. The recorded sums
are taken as the load, as the rest of replay takes them; the guard is exercised live and in
the closed-loop simulator, where the pods counted are the replicas decided.
"""

from __future__ import annotations

import multiprocessing
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from autoscaler.config import Config
from autoscaler.controller import Controller, Outcome
from autoscaler.metrics import MetricsSource
from autoscaler.metrics.recorded import RecordedSource, RecordedTrace
from autoscaler.targets.recording import InMemoryTargets


@dataclass
class ModelSummary:
    decisions: int = 0
    scale_ups: int = 0
    scale_downs: int = 0
    scale_to_zero: int = 0
    wakes: int = 0
    seconds_at: Counter = field(default_factory=Counter)
    replica_seconds: float = 0.0
    recorded_replica_seconds: float | None = None
    reason_counts: Counter = field(default_factory=Counter)


@dataclass
class ReplayResult:
    start_s: float
    end_s: float
    step_s: float
    ticks: int
    summaries: dict[str, ModelSummary]


def replay(
    config: Config,
    source: MetricsSource,
    *,
    start_s: float,
    end_s: float,
    step_s: float,
    initial: Mapping[str, int],
    trace: RecordedTrace | None = None,
    on_outcome: Callable[[Outcome], None] = lambda outcome: None,
) -> ReplayResult:
    models = {m.name: m for m in config.models}
    controller = Controller(config, metrics=source, targets=InMemoryTargets(models, initial=initial))
    summaries = {name: ModelSummary() for name in models}
    instants = np.arange(start_s, end_s + step_s / 2, step_s)
    prefetch = getattr(source, "prefetch", None)  # a recorded trace reads all ticks in one search
    if prefetch is not None:
        prefetch(instants.tolist())
    for now in instants:
        for outcome in controller.tick(now=float(now)):
            _count(summaries[outcome.model], outcome, step_s)
            on_outcome(outcome)
    if trace is not None:
        for name, summary in summaries.items():
            recorded = trace.recorded_replicas(name)
            if recorded is not None:
                counts = [recorded.at(float(now)) for now in instants]
                summary.recorded_replica_seconds = sum(sample[1] for sample in counts if sample is not None) * step_s
    return ReplayResult(start_s=start_s, end_s=end_s, step_s=step_s, ticks=len(instants), summaries=summaries)


def replay_sharded(
    config: Config,
    trace: RecordedTrace,
    *,
    start_s: float,
    end_s: float,
    step_s: float,
    initial: Mapping[str, int],
    processes: int,
    keep: Literal["changes", "all"] | None = None,
) -> tuple[ReplayResult, list[Outcome]]:
    """`replay` of a recorded trace with the models shared out to `processes` worker
    processes, each running a controller of its own over its share. In an open-loop replay a
    model depends on no other (each has its own policy state, target and signals) except
    through a GPU pool, whose arbitration needs all its models in the same tick: the models of
    a pool stay together. The result equals `replay`'s, summaries in the config's order.
    `keep`: also return the outcomes that change a count, or all of them, in the order
    `replay` hands them to on_outcome (tick by tick, the config's order within a tick)."""
    order = {m.name: i for i, m in enumerate(config.models)}
    shards = [config.model_copy(update={"models": tuple(m for m in config.models if m.name in share)})
              for share in shares(config, processes)]
    span = (start_s, end_s, step_s, dict(initial), keep)
    if len(shards) == 1:
        results = [_replay_shard(config, trace, span)]
    else:
        # fork where there is one: the workers start in milliseconds, with everything imported.
        context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
        with ProcessPoolExecutor(len(shards), mp_context=context) as pool:
            results = list(pool.map(_replay_shard, shards, [trace] * len(shards), [span] * len(shards)))
    summaries = {name: summary for result, _ in results for name, summary in result.summaries.items()}
    kept = sorted((o for _, outcomes in results for o in outcomes), key=lambda o: (o.now, order[o.model]))
    first = results[0][0]
    return ReplayResult(first.start_s, first.end_s, first.step_s, first.ticks, {m.name: summaries[m.name] for m in config.models}), kept


def shares(config: Config, processes: int) -> list[set[str]]:
    """The models of each worker: the models of a GPU pool together, every other model on its
    own, dealt largest group first to the worker with the fewest models."""
    groups: dict[str, list[str]] = {}
    for m in config.models:
        groups.setdefault(m.pool or f"model {m.name}", []).append(m.name)
    result: list[set[str]] = [set() for _ in range(max(1, min(processes, len(groups))))]
    for group in sorted(groups.values(), key=len, reverse=True):
        min(result, key=len).update(group)
    return result


def _replay_shard(config: Config, trace: RecordedTrace, span: tuple) -> tuple[ReplayResult, list[Outcome]]:
    start_s, end_s, step_s, initial, keep = span
    kept: list[Outcome] = []

    def collect(outcome: Outcome) -> None:
        if keep == "all" or (keep == "changes" and outcome.decision is not None and outcome.decision.direction != "hold"):
            kept.append(outcome)

    mine = {m.name: initial[m.name] for m in config.models if m.name in initial}
    result = replay(config, RecordedSource(trace, config), start_s=start_s, end_s=end_s, step_s=step_s, initial=mine,
                    trace=trace, on_outcome=collect)
    return result, kept


def _count(summary: ModelSummary, outcome: Outcome, step_s: float) -> None:
    decision = outcome.decision
    if decision is None:
        return
    summary.decisions += 1
    for reason in decision.reasons:
        summary.reason_counts[reason.code] += 1
    summary.seconds_at[decision.desired_replicas] += step_s
    summary.replica_seconds += decision.desired_replicas * step_s
    direction = decision.direction
    if direction == "up":
        summary.scale_ups += 1
        summary.wakes += decision.current_replicas == 0
    elif direction == "down":
        summary.scale_downs += 1
        summary.scale_to_zero += decision.desired_replicas == 0


def format_summary(result: ReplayResult) -> str:
    lines = [
        f"replayed {result.end_s - result.start_s:.0f} s in {result.ticks} ticks of {result.step_s:g} s",
        f"{'model':<24} {'ups':>4} {'downs':>5} {'to-zero':>7} {'wakes':>5} {'replica-h':>9} {'recorded':>9}  time at each count",
    ]
    for name, s in result.summaries.items():
        recorded = f"{s.recorded_replica_seconds / 3600:.2f}" if s.recorded_replica_seconds is not None else "-"
        total = sum(s.seconds_at.values()) or 1.0
        shares = ", ".join(f"{count}: {seconds / total:.0%}" for count, seconds in sorted(s.seconds_at.items()))
        lines.append(
            f"{name:<24} {s.scale_ups:>4} {s.scale_downs:>5} {s.scale_to_zero:>7} {s.wakes:>5} "
            f"{s.replica_seconds / 3600:>9.2f} {recorded:>9}  {shares}"
        )
    return "\n".join(lines)

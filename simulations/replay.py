"""Open-loop replay: the daemon's controller fed a recorded trace instead of live Prometheus.

The recorded load does not react to the replicas the controller chooses (that is what the
closed-loop simulator is for), so replay answers "what would it have decided, and when",
and how many replica-seconds that would have held against the recorded count.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from autoscaler.config import Config
from autoscaler.controller import Controller, Outcome
from autoscaler.metrics import MetricsSource
from autoscaler.metrics.recorded import RecordedTrace
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

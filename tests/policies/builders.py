"""Builders shared by the policy tests: observations from plain numbers, and a closed loop
that feeds each decision back as the next tick's replica count.

A number becomes a fresh reading, None becomes "no data", and a Reading passes through, so a
table row can say `waiting=None` or `waiting=Reading.stale(3, age_s=120)` where it matters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from policies import Decision, Dependency, Observation, PolicySpec, PolicyState, Reading, decide

MISSING = Reading.missing()
Signal = float | int | Reading | None


def reading(signal: Signal) -> Reading:
    if isinstance(signal, Reading):
        return signal
    if signal is None:
        return Reading.missing()
    return Reading.of(signal)


def obs(
    spec: int = 2,
    ready: int | None = None,
    *,
    waiting: Signal = 0,
    running: Signal = 0,
    kv: Signal = 0,
    gpu: Signal = None,
    wake: Signal = None,
    completions: Signal = None,
    dependencies: tuple[Dependency, ...] = (),
    pods: Signal = "not counted",
) -> Observation:
    """One tick's observation. `ready` defaults to `spec` (nothing starting); the load
    readings and the KV cache (the scale-down guard's input) default to a fresh zero, the
    optional signals (GPU, wake, completions) to no data, and `pods` (the pods that reported)
    to None, not counted."""
    return Observation(
        spec_replicas=spec,
        ready_replicas=spec if ready is None else ready,
        waiting=reading(waiting),
        running=reading(running),
        kv_cache_usage=reading(kv),
        gpu_utilization=reading(gpu),
        wake=reading(wake),
        completion_rate=reading(completions),
        dependencies=dependencies,
        reporting_pods=None if pods == "not counted" else reading(pods),
    )


def dependency(name: str, saturation: Signal, *, saturated_at: float = 0.9) -> Dependency:
    return Dependency(name=name, saturation=reading(saturation), saturated_at=saturated_at)


@dataclass(frozen=True)
class Tick:
    now: float
    observation: Observation
    decision: Decision
    state: PolicyState

    @property
    def desired(self) -> int:
        return self.decision.desired_replicas

    @property
    def codes(self) -> tuple[str, ...]:
        return self.decision.reason_codes


def replay(
    spec: PolicySpec, ticks: Iterable[tuple[float, Observation]], *, state: PolicyState | None = None
) -> list[Tick]:
    """Feed (now, observation) pairs through decide, threading the state, as replay does."""
    state = PolicyState() if state is None else state
    trace = []
    for now, observation in ticks:
        decision, state = decide(observation, state, spec, now=now)
        trace.append(Tick(now, observation, decision, state))
    return trace


def closed_loop(
    spec: PolicySpec,
    *,
    start_replicas: int,
    times: Iterable[float],
    observe: Callable[[float, int], Observation],
    state: PolicyState | None = None,
) -> list[Tick]:
    """Each tick observes with the replica count the previous decision asked for, as if the
    actuator applied it at once. `observe(now, replicas)` builds the observation."""
    state = PolicyState() if state is None else state
    replicas = start_replicas
    trace = []
    for now in times:
        observation = observe(now, replicas)
        decision, state = decide(observation, state, spec, now=now)
        trace.append(Tick(now, observation, decision, state))
        replicas = decision.desired_replicas
    return trace


def every(step_s: float, *, start: float, stop: float) -> list[float]:
    """Instants from `start` up to and including `stop`, `step_s` apart."""
    count = int(round((stop - start) / step_s))
    return [start + i * step_s for i in range(count + 1)]

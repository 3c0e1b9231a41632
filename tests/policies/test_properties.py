"""Invariants over long random sequences, without a property-testing library.

A seeded generator draws 2,000 ticks per case: readings that are fresh, missing or stale,
replica counts that mostly follow the last decision but sometimes jump (an operator, another
controller, a lowered max_replicas), pods that are not ready, saturated dependencies, and
uneven tick intervals. Each invariant is its own test, and a failure lists how many ticks
broke it and the first few, with their explanations, so a counterexample can be replayed.

Allowed exception, documented: without usable load data the count is held, even above
max_replicas (scale_on_load: raising to the floor is the only change made without data).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from policies import Dependency, HotSpec, LongTailSpec, Observation, PolicySpec, PolicyState, Reading, decide
from tests.policies.builders import Tick, replay

SEED = 20_240_611
TICK_COUNT = 2_000

CASES: dict[str, PolicySpec] = {
    "hot-default": HotSpec(),
    "hot-tight": HotSpec(
        min_replicas=2, max_replicas=6, scale_up_period_s=30, scale_up_stabilization_s=60, tolerance=0.2
    ),
    "long-tail-default": LongTailSpec(),
    "long-tail-min1": LongTailSpec(min_replicas=1, max_replicas=4, cold_start_s=60, wake_threshold=2),
}
HOT_CASES = [name for name, spec in CASES.items() if isinstance(spec, HotSpec)]


def random_reading(rng: np.random.Generator, value: float) -> Reading:
    draw = rng.random()
    if draw < 0.1:
        return Reading.missing()
    if draw < 0.2:
        return Reading.stale(value, age_s=float(rng.integers(60, 3600)))
    return Reading.of(value)


def random_observation(rng: np.random.Generator, replicas: int) -> Observation:
    ready = replicas if rng.random() < 0.7 else int(rng.integers(0, replicas + 1))
    dependencies = ()
    if rng.random() < 0.2:
        dependencies = (
            Dependency(name="vector-db", saturation=random_reading(rng, float(rng.random())), saturated_at=0.9),
        )
    return Observation(
        spec_replicas=replicas,
        ready_replicas=ready,
        waiting=random_reading(rng, 0.0 if rng.random() < 0.4 else float(rng.integers(1, 200))),
        running=random_reading(rng, 0.0 if rng.random() < 0.3 else float(rng.integers(1, 500))),
        kv_cache_usage=random_reading(rng, float(rng.random())),
        gpu_utilization=random_reading(rng, float(rng.uniform(0, 100))),
        wake=random_reading(rng, 0.0 if rng.random() < 0.5 else float(rng.integers(1, 10))),
        dependencies=dependencies,
    )


@functools.cache
def trace_for(case: str) -> tuple[Tick, ...]:
    spec = CASES[case]
    rng = np.random.default_rng([SEED, sorted(CASES).index(case)])
    state = PolicyState()
    now = 0.0
    replicas = spec.min_replicas
    trace = []
    for _ in range(TICK_COUNT):
        now += float(rng.choice([1, 15, 15, 15, 30, 60, 120, 400]))
        if rng.random() < 0.3:
            replicas = int(rng.integers(0, spec.max_replicas + 6))
        observation = random_observation(rng, replicas)
        decision, state = decide(observation, state, spec, now=now)
        trace.append(Tick(now, observation, decision, state))
        replicas = decision.desired_replicas
    return tuple(trace)


def report(violations: list[Tick], invariant: str) -> str:
    lines = [f"{len(violations)} of {TICK_COUNT} ticks break: {invariant}"]
    for tick in violations[:3]:
        o = tick.observation
        lines.append(
            f"  t={tick.now:g} spec={o.spec_replicas} ready={o.ready_replicas} waiting={o.waiting.describe()} "
            f"running={o.running.describe()} -> desired {tick.desired}: {tick.decision.explain()}"
        )
    return "\n".join(lines)


def missing_load(tick: Tick) -> bool:
    return not (tick.observation.waiting.usable and tick.observation.running.usable)


@pytest.mark.parametrize("case", CASES)
def test_the_generator_covers_the_interesting_ticks(case):
    # Guard against a generator that silently stops producing the cases the invariants are about.
    trace = trace_for(case)
    codes = {code for tick in trace for code in tick.codes}
    assert sum(missing_load(tick) for tick in trace) > 100
    assert sum(tick.observation.spec_replicas == 0 for tick in trace) > 20
    assert sum(tick.observation.spec_replicas > CASES[case].max_replicas for tick in trace) > 20
    assert {"Recommendation", "MissingData", "ScaleUpLimit", "ScaleDownLimit"} <= codes
    assert {"up", "down", "hold"} == {tick.decision.direction for tick in trace}


@pytest.mark.parametrize("case", CASES)
def test_every_decision_has_a_reason(case):
    violations = [tick for tick in trace_for(case) if not tick.decision.reasons]
    assert not violations, report(violations, "at least one reason")


@pytest.mark.parametrize("case", CASES)
def test_desired_within_bounds(case):
    spec = CASES[case]

    def allowed(tick: Tick) -> bool:
        desired = tick.desired
        if spec.min_replicas <= desired <= spec.max_replicas:
            return True
        # The documented exception: holding, without data, a count that is above max_replicas.
        return "MissingData" in tick.codes and desired == tick.observation.spec_replicas > spec.max_replicas

    violations = [tick for tick in trace_for(case) if not allowed(tick)]
    assert not violations, report(
        violations,
        f"min_replicas {spec.min_replicas} <= desired <= max_replicas {spec.max_replicas} "
        "(BUG: pipeline.py clamps before stabilize/limit_rate, so a rate limit leaves the count out of bounds)",
    )


@pytest.mark.parametrize("case", HOT_CASES)
def test_hot_never_zero(case):
    violations = [tick for tick in trace_for(case) if tick.desired < 1 or tick.decision.floor < 1]
    assert not violations, report(
        violations, "a hot model never goes to zero (BUG: pipeline.py rate-limits the raise from 0 to the floor)"
    )


@pytest.mark.parametrize("case", CASES)
def test_no_scale_down_without_usable_load(case):
    violations = [tick for tick in trace_for(case) if missing_load(tick) and tick.decision.direction == "down"]
    assert not violations, report(violations, "no scale-down on a tick whose waiting or running reading is unusable")


@pytest.mark.parametrize("case", CASES)
def test_missing_load_with_replicas_up_says_missing_data(case):
    violations = [
        tick
        for tick in trace_for(case)
        if missing_load(tick) and tick.observation.spec_replicas > 0 and "MissingData" not in tick.codes
    ]
    assert not violations, report(violations, "reason MissingData when load data is unusable and replicas are up")


@pytest.mark.parametrize("case", CASES)
def test_decision_reports_the_observed_count(case):
    violations = [tick for tick in trace_for(case) if tick.decision.current_replicas != tick.observation.spec_replicas]
    assert not violations, report(violations, "current_replicas is the observed spec_replicas")


@pytest.mark.parametrize("case", CASES)
def test_state_keeps_only_the_stabilization_window(case):
    # Checked on the ticks that record a recommendation: a MissingData hold leaves the history
    # as it was (unpruned), which is harmless because stabilize filters by window on use.
    spec = CASES[case]
    keep_s = max(spec.scale_up_stabilization_s, spec.scale_down_stabilization_s)
    violations = [
        tick
        for tick in trace_for(case)
        if "Recommendation" in tick.codes and any(tick.now - at > keep_s for at, _ in tick.state.recommendations)
    ]
    assert not violations, report(violations, f"recommendations older than {keep_s:g} s are dropped")


@pytest.mark.parametrize("case", CASES)
def test_replaying_the_trace_gives_the_same_decisions(case):
    # Pure functions: the same observations at the same instants give the same decisions and states.
    trace = trace_for(case)
    again = replay(CASES[case], [(tick.now, tick.observation) for tick in trace])
    assert [(t.decision, t.state) for t in again] == [(t.decision, t.state) for t in trace]

"""Invariants over random observation sequences (hypothesis shrinks any failure to a minimal
sequence): bounds kept, no scale-down without data (load, every pod's series, the KV
reading), a hot model never at zero, step limits
kept except where bounds deliberately bypass them, and every decision explained. The floor
holds through a shared pool's arbitration too, whatever the pool holds."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from policies import Decision, HotSpec, LongTailSpec, Observation, PolicyState, Reading, Reason, ReasonCode, decide
from policies.arbitration import Claim, arbitrate

readings = st.one_of(
    st.floats(min_value=0, max_value=500, allow_nan=False).map(Reading.of),
    st.just(Reading.missing()),
    st.floats(min_value=0, max_value=500, allow_nan=False).map(lambda v: Reading.stale(v, age_s=200.0)),
)
fractions = st.one_of(st.floats(min_value=0, max_value=1).map(Reading.of), st.just(Reading.missing()))
# Pods that reported: not counted (None), a count (often below the ready replicas), or none.
pod_counts = st.one_of(
    st.none(), st.integers(min_value=0, max_value=40).map(lambda n: Reading.of(float(n))), st.just(Reading.missing())
)


@st.composite
def ticks(draw):
    spec_replicas = draw(st.integers(min_value=0, max_value=40))
    return draw(st.floats(min_value=1, max_value=120)), Observation(
        spec_replicas=spec_replicas,
        ready_replicas=draw(st.integers(min_value=0, max_value=spec_replicas)),
        waiting=draw(readings),
        running=draw(readings),
        kv_cache_usage=draw(fractions),
        gpu_utilization=draw(st.one_of(st.floats(min_value=0, max_value=100).map(Reading.of), st.just(Reading.missing()))),
        completion_rate=draw(st.one_of(st.floats(min_value=0, max_value=50).map(Reading.of), st.just(Reading.missing()))),
        wake=draw(st.one_of(st.floats(min_value=0, max_value=5).map(Reading.of), st.just(Reading.missing()))),
        reporting_pods=draw(pod_counts),
    )


specs = st.one_of(
    st.builds(HotSpec, min_replicas=st.integers(1, 4), max_replicas=st.integers(4, 30)),
    st.builds(LongTailSpec, min_replicas=st.integers(0, 2), max_replicas=st.integers(2, 30), cold_start_s=st.floats(10, 300)),
)


@settings(max_examples=300, deadline=None)
@given(spec=specs, sequence=st.lists(ticks(), min_size=1, max_size=40))
def test_invariants_hold_over_any_sequence(spec, sequence):
    state, now = PolicyState(), 0.0
    floor = max(spec.min_replicas, 1) if spec.kind == "hot" else spec.min_replicas
    for step_s, observation in sequence:
        now += step_s
        decision, state = decide(observation, state, spec, now=now)
        current, desired = observation.spec_replicas, decision.desired_replicas
        load_known = observation.waiting.usable and observation.running.usable

        assert decision.reasons, "every decision explains itself"
        assert desired >= floor, f"below the floor {floor}: {decision.explain()}"
        if spec.kind == "hot":
            assert desired >= 1, "a hot model never goes to zero"
        # Above max only by holding a count someone else set, without data to act on.
        assert desired <= max(spec.max_replicas, current if not load_known else 0), decision.explain()
        if current > 0 and not load_known:
            assert desired >= current, f"scaled down without data: {decision.explain()}"
        if observation.unreported() is not None and current <= spec.max_replicas:
            assert desired >= current, f"scaled down on sums that miss a pod: {decision.explain()}"
        if not observation.kv_cache_usage.usable and current <= spec.max_replicas and decision.reason_codes != ("IdleTimeout",):
            # The idle timeout needs no KV reading: it acts only once nothing ran for its whole length.
            assert desired >= current, f"scaled down without the KV guard's input: {decision.explain()}"
        if desired > current:
            step = max(spec.scale_up_max_step_replicas, math.ceil(current * spec.scale_up_max_step_percent / 100))
            assert desired <= max(current + step, floor), f"scale-up step exceeded: {decision.explain()}"
        if 0 < desired < current and current <= spec.max_replicas:
            step = max(1, math.floor(current * spec.scale_down_max_step_percent / 100))
            assert current - desired <= step, f"scale-down step exceeded: {decision.explain()}"
        if desired == 0 < current:
            assert decision.reason_codes == ("IdleTimeout",) and spec.kind == "long-tail"


@settings(max_examples=300, deadline=None)
@given(
    spec=specs,
    sequence=st.lists(ticks(), min_size=1, max_size=20),
    capacities=st.lists(st.integers(0, 40), min_size=20, max_size=20),
    rival=st.tuples(st.sampled_from(["hot", "long-tail", "batch"]), st.integers(0, 3), st.integers(0, 30), st.sampled_from([1, 2, 8])),
)
def test_the_floor_holds_through_arbitration(spec, sequence, capacities, rival):
    """Each decision, arbitrated in a pool of any capacity (0 too: the pool read empty) beside
    a rival model, keeps the policy's floor: a hot model never goes to zero, a min_replicas is
    never cut. Before issue 19's fix a pool of 0 GPUs took any model to 0."""
    state, now = PolicyState(), 0.0
    kind, rival_minimum, rival_wants, rival_gpus = rival
    other = Claim("rival", kind, rival_gpus, rival_minimum, 5.0,
                  Decision(rival_wants, max(rival_wants, rival_minimum), rival_minimum, 40, (Reason(ReasonCode.Recommendation, "rival"),)))
    minimum = max(spec.min_replicas, 1) if spec.kind == "hot" else spec.min_replicas
    for (step_s, observation), capacity in zip(sequence, capacities):
        now += step_s
        decision, state = decide(observation, state, spec, now=now)
        mine = Claim("m", spec.kind, 1, minimum, observation.waiting.value if observation.waiting.usable else None, decision)
        arbitrated, _ = arbitrate([mine, other], pool="p", capacity_gpus=capacity)
        floor = min(minimum, decision.desired_replicas)
        assert arbitrated.desired_replicas >= floor, arbitrated.explain()
        assert arbitrated.floor >= min(decision.floor, floor), arbitrated.explain()
        if spec.kind == "hot":
            assert arbitrated.desired_replicas >= 1 and arbitrated.cap >= 1, arbitrated.explain()

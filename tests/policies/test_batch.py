"""The batch policy: deadline sizing, drain to zero after a grace, missing data holds, and
waking from the backlog seen outside the pods. Tables for the arithmetic, sequences for state."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import BatchSpec, Observation, PolicyState, Reading, decide
from policies.batch import size_for_deadline
from tests.policies.builders import obs, replay

# 2 req/s per replica, one hour to drain, 120 s cold start, 120 s grace before zero.
SPEC = BatchSpec(replica_throughput_rps=2.0, drain_deadline_s=3600, cold_start_s=120, drain_grace_s=120, max_replicas=20)


@pytest.mark.parametrize(
    ("backlog", "since", "now", "measured", "expected"),
    [
        # 6,000 / (2 x (3,600 - 120)) = 0.86 -> 1
        (6000, 0, 0, None, 1),
        # 60,000 / (2 x 3,480) = 8.6 -> 9
        (60000, 0, 0, None, 9),
        # the same job 40 minutes in: 20 minutes left, 20,000 left: 20,000 / (2 x 1,080) = 9.3 -> 10
        (20000, 0, 2400, None, 10),
        # a measured 4 req/s per replica halves it: 20,000 / (4 x 1,080) = 4.6 -> 5
        (20000, 0, 2400, 4.0, 5),
        # past the deadline: plan one cold start ahead, 1,000 / (2 x 120) = 4.2 -> 5
        (1000, 0, 4000, None, 5),
        # a single request still needs one replica
        (1, 0, 0, None, 1),
        # absurd backlog: capped just above max_replicas for the bounds to say so
        (10**9, 0, 0, None, 21),
    ],
)
def test_size_for_deadline(backlog, since, now, measured, expected):
    desired, reason = size_for_deadline(backlog, SPEC, measured, backlog_since=since, now=now)
    assert desired == expected
    assert reason.code == "DeadlineSizing"


@pytest.mark.parametrize(
    ("observation", "desired", "codes"),
    [
        # a backlog sized against the deadline
        (obs(2, waiting=60000, running=16), 9, ("DeadlineSizing",)),
        # more than max_replicas allows
        (obs(2, waiting=10**7, running=16), 20, ("DeadlineSizing", "AboveCap")),
        # missing is not zero: replicas up and no data holds
        (obs(3, waiting=None, running=4), 3, ("MissingData",)),
        (obs(3, waiting=Reading.stale(5, age_s=200), running=4), 3, ("MissingData",)),
        # ... within the bounds, and a bound that moves the count says so (each clamp gives its reason)
        (obs(25, waiting=None, running=4), 20, ("MissingData", "AboveCap")),
        # drained, within the grace: hold, but never above max_replicas (found by hypothesis)
        (obs(3, waiting=0, running=0), 3, ("DrainGrace",)),
        (obs(25, waiting=0, running=0), 20, ("DrainGrace", "AboveCap")),
        # replicas starting, none ready: the gateway's backlog sizes it, never down
        (obs(1, ready=0, waiting=None, running=None, wake=60000), 9, ("GatewayBacklog", "DeadlineSizing")),
        (obs(12, ready=0, waiting=None, running=None, wake=60000), 12, ("GatewayBacklog", "DeadlineSizing", "BelowFloor")),
        (obs(25, ready=0, waiting=None, running=None, wake=60000), 20, ("GatewayBacklog", "DeadlineSizing", "BelowFloor")),
        (obs(1, ready=0, waiting=None, running=None, wake=10**7), 20, ("GatewayBacklog", "DeadlineSizing", "AboveCap")),
        (obs(1, ready=0, waiting=None, running=None, wake=None), 1, ("MissingData",)),
        # at zero: the backlog outside the pods wakes and sizes it
        (obs(0, waiting=None, running=None, wake=60000), 9, ("Wake", "DeadlineSizing")),
        (obs(0, waiting=None, running=None, wake=10**7), 20, ("Wake", "DeadlineSizing", "AboveCap")),
        (obs(0, waiting=None, running=None, wake=0), 0, ("IdleAtZero",)),
        (obs(0, waiting=None, running=None, wake=None), 0, ("MissingData",)),
    ],
)
def test_one_tick(observation, desired, codes):
    decision, _ = decide(observation, PolicyState(), SPEC, now=0.0)
    assert decision.desired_replicas == desired
    assert decision.reason_codes == codes
    assert decision.floor == 0 and decision.cap == 20


@pytest.mark.parametrize(
    ("observation", "message"),
    [
        (obs(0, waiting=None, running=None, wake=0), "0 raised to 2: min_replicas"),
        (obs(1, waiting=5000, running=16), "1 raised to 2: min_replicas"),  # 5,016 / (2 x 3,480) = 0.72 -> 1
        (obs(25, waiting=None, running=4), "25 lowered to 20: max_replicas"),
        (obs(25, ready=0, waiting=None, running=None, wake=60000),
         "9 raised to 20: the 25 replicas asked for are starting, and no data says the job shrank; max_replicas 20 is the most kept"),
    ],
)
def test_every_clamp_of_a_batch_decision_names_its_bound(observation, message):
    """The bounds go through steps.clamp in every branch, so the clamp's message names the bound."""
    spec = BatchSpec(**{**SPEC.model_dump(), "min_replicas": 2})
    decision, _ = decide(observation, PolicyState(), spec, now=0.0)
    assert decision.reasons[-1].code in ("BelowFloor", "AboveCap")
    assert decision.reasons[-1].message == message


def test_goes_to_zero_after_the_grace_and_not_before():
    ticks = replay(SPEC, [(0, obs(4, waiting=0, running=0)), (110, obs(4, waiting=0, running=0)), (120, obs(4, waiting=0, running=0))])
    assert [t.desired for t in ticks] == [4, 4, 0]
    assert ticks[-1].codes == ("Drained",)


def test_a_gap_in_the_data_restarts_the_grace():
    ticks = replay(
        SPEC,
        [(0, obs(4, waiting=0, running=0)), (60, obs(4, waiting=None, running=None)), (100, obs(4, waiting=0, running=0)),
         (200, obs(4, waiting=0, running=0)), (220, obs(4, waiting=0, running=0))],
    )
    # idle again from 100, not from 0: held at 200 (100 s), drained at 220 (120 s)
    assert [t.desired for t in ticks] == [4, 4, 4, 4, 0]
    assert [t.codes[0] for t in ticks] == ["DrainGrace", "MissingData", "DrainGrace", "DrainGrace", "Drained"]


def test_min_replicas_is_kept_when_drained():
    spec = SPEC.model_copy(update={"min_replicas": 1})
    ticks = replay(spec, [(0, obs(4, waiting=0, running=0)), (200, obs(4, waiting=0, running=0))])
    assert ticks[-1].desired == 1


def test_the_deadline_runs_from_the_first_sight_of_the_backlog():
    """The same 20,000 left asks for 3 replicas at the start of a job and 10 forty minutes in:
    the deadline does not slide with each tick."""
    ticks = replay(SPEC, [(0, obs(2, waiting=20000, running=16)), (2400, obs(2, waiting=20000, running=0))])
    assert [t.desired for t in ticks] == [3, 10]
    assert ticks[-1].state.backlog_since == 0


def test_a_drained_backlog_starts_a_new_deadline():
    ticks = replay(SPEC, [(0, obs(2, waiting=100, running=0)), (600, obs(2, waiting=0, running=0)), (700, obs(2, waiting=20000, running=0))])
    assert ticks[-1].state.backlog_since == 700
    assert ticks[-1].desired == 3  # 20,000 / (2 x 3,480) = 2.9


def test_batch_spec_needs_a_throughput_and_names_the_field():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="replica_throughput_rps"):
        BatchSpec()
    with pytest.raises(ValidationError, match="target_running_per_replica"):
        BatchSpec(replica_throughput_rps=1, target_running_per_replica=8)


# -- invariants over random sequences --------------------------------------------------------

signals = st.one_of(
    st.floats(min_value=0, max_value=50_000, allow_nan=False).map(Reading.of),
    st.just(Reading.missing()),
    st.floats(min_value=0, max_value=500, allow_nan=False).map(lambda v: Reading.stale(v, age_s=200.0)),
)


@st.composite
def batch_ticks(draw):
    spec_replicas = draw(st.integers(0, 30))
    return draw(st.floats(1, 300)), Observation(
        spec_replicas=spec_replicas,
        ready_replicas=draw(st.integers(0, spec_replicas)),
        waiting=draw(signals),
        running=draw(signals),
        completion_rate=draw(st.one_of(st.floats(0, 50).map(Reading.of), st.just(Reading.missing()))),
        wake=draw(signals),
    )


@settings(max_examples=300, deadline=None)
@given(st.builds(BatchSpec, replica_throughput_rps=st.floats(0.1, 20), min_replicas=st.integers(0, 2),
                 max_replicas=st.integers(2, 40), drain_deadline_s=st.floats(60, 7200), cold_start_s=st.floats(10, 600)),
       st.lists(batch_ticks(), min_size=1, max_size=30))
def test_batch_invariants(spec, ticks):
    state, now = PolicyState(), 0.0
    for step, observation in ticks:
        now += step
        decision, state = decide(observation, state, spec, now=now)
        current, desired = observation.spec_replicas, decision.desired_replicas
        assert decision.reasons, "every decision explains itself"
        assert spec.min_replicas <= desired <= max(spec.max_replicas, spec.min_replicas)
        load = (observation.waiting, observation.running)
        if current > 0 and not all(r.usable for r in load):
            assert desired >= min(current, spec.max_replicas), "no scale-down without data"
        if current > 0 and all(r.usable for r in load) and sum(r.value for r in load) > 0:
            assert desired >= 1, "never zero with a backlog"

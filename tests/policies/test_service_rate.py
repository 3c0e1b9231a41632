"""Sizing from a measured service rate: when a sample counts, how it is averaged, and how the
replica count follows from it, with explicit instants."""

from __future__ import annotations

import pytest

from policies import HotSpec, PolicyState, decide
from policies.steps import (
    estimate_service_rate,
    learn_service_rate,
    recommend_by_service_rate,
    track_ready,
    track_saturated,
)
from tests.policies.builders import obs

SPEC = HotSpec(max_replicas=50, burst_headroom_step=0)  # these pin the sizing from a rate alone (test_hot.py has headroom)


@pytest.mark.parametrize(
    "history, ready, now, steady",
    [
        (((0.0, 4), (10.0, 4)), 4, 70.0, True),  # covered from 0 s, never moved
        (((10.0, 4), (20.0, 4)), 4, 70.0, False),  # nothing older than the window: not covered
        (((0.0, 4), (30.0, 3)), 4, 70.0, False),  # moved inside the window
        (((0.0, 3), (5.0, 4), (15.0, 4)), 4, 70.0, True),  # the change at 5 s is older than the window
    ],
)
def test_a_window_is_steady_when_covered_and_unchanged(history, ready, now, steady):
    kept, got = track_ready(history, ready, window_s=60.0, now=now)
    assert got is steady
    assert kept[-1] == (now, ready)
    assert sum(1 for t, _ in kept if now - t > 60.0) <= 1  # only one entry older than the window


@pytest.mark.parametrize(
    "saturated_for_s, completions, steady, previous, expected",  # saturated for so long, at 100 s
    [
        (60.0, 6.0, True, None, 1.5),  # saturated for the whole minute, steady: 6 / 4
        (60.0, 6.0, True, 1.0, 1.0 + 0.3 * (1.5 - 1.0)),  # averaged into what was known
        (None, 6.0, True, None, None),  # not saturated now: no sample
        (30.0, 6.0, True, None, None),  # saturated for half the minute the rate covers: too low
        (60.0, 6.0, False, None, None),  # replicas changed in the window: completions lag
        (60.0, None, True, 2.0, 2.0),  # no completion data: keep what was known
        (60.0, 0.0, True, 2.0, 2.0),  # no completion at all is no measure of speed
    ],
)
def test_a_sample_counts_only_when_saturated_all_minute_and_steady(saturated_for_s, completions, steady, previous, expected):
    observation = obs(spec=4, waiting=8, running=40, completions=completions)
    since = None if saturated_for_s is None else 100.0 - saturated_for_s
    got = learn_service_rate(observation, SPEC, previous, steady=steady, saturated_since=since, now=100.0)
    assert got == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize(
    "waiting, ready, since, expected",
    [
        (8, 4, None, 100.0),  # saturated from now
        (8, 4, 40.0, 40.0),  # still saturated: since then
        (3, 4, 40.0, None),  # fewer waiting than replicas: the run ends
        (8, 0, 40.0, None),  # no replica ready: nothing runs flat out
        (None, 4, 40.0, None),  # no data: not known to be saturated
    ],
)
def test_saturation_is_tracked_as_an_unbroken_run(waiting, ready, since, expected):
    observation = obs(spec=4, ready=ready, waiting=waiting, running=40)
    assert track_saturated(since, observation, now=100.0) == expected


def test_sizing_covers_arrivals_at_target_utilization_and_drains_the_backlog():
    # 3 req/s at 0.5 per replica and 0.8 utilization -> 7.5; 60 waiting in 30 s -> +4: 12.
    desired, why = recommend_by_service_rate(obs(spec=6, waiting=60, running=40, completions=3.0), SPEC, 0.5)
    assert desired == 12
    assert why.message == (
        "3.00 req/s at 0.50 req/s per replica (measured) x 0.8 -> 7.5; 60 waiting drained in 30 s -> +4.0"
    )


def test_the_policy_learns_from_a_saturated_minute_then_sizes_on_it():
    state, now = PolicyState(), 0.0
    # Four ready replicas, saturated for a whole minute, each completing 1.5 req/s.
    for now in range(0, 80, 10):
        saturated = obs(spec=4, waiting=20, running=60, completions=6.0)
        decision, state = decide(saturated, state, SPEC, now=float(now))
    assert state.service_rate_per_replica == pytest.approx(1.5)
    assert "req/s per replica (measured)" in decision.explain()
    # Later the load eases to 3 req/s with no queue: 3 / (1.5 x 0.8) = 2.5 -> 3 replicas,
    # where the in-flight rule (30 in flight / 32 per replica) would have kept 1.
    calm = obs(spec=4, waiting=0, running=30, completions=3.0)
    decision, _ = decide(calm, state, SPEC.model_copy(update={"scale_down_stabilization_s": 0.0}), now=1000.0)
    assert decision.reason_codes[0] == "Recommendation" and "-> 2.5" in decision.explain()
    assert decision.desired_replicas == 3


def test_without_any_rate_the_in_flight_rule_sizes():
    decision, state = decide(obs(spec=2, waiting=12, running=20, completions=4.0), PolicyState(), SPEC, now=0.0)
    assert state.service_rate_per_replica is None  # one tick: the window is not covered yet
    assert state.service_rate_estimate is None
    assert "12 waiting / 4 per replica -> 3" in decision.explain()


# -- the estimate by Little's law, before a rate is measured --------------------------------------


@pytest.mark.parametrize(
    "waiting, running, completions, steady, previous, expected",
    [
        # 64 running and 8 req/s done: a request takes 64 / 8 = 8 s, so a replica holding the
        # 32 in flight of its target would complete 32 / 8 = 4 req/s.
        (0, 64, 8.0, True, None, 4.0),
        (0, 64, 8.0, True, 3.0, 3.0 + 0.3 * (4.0 - 3.0)),  # averaged into what was known
        (4, 64, 8.0, True, None, None),  # saturated (4 waiting, 4 ready): that is for measuring
        (0, 64, 8.0, False, 3.0, 3.0),  # replicas changed in the window: completions lag
        (0, 0, 8.0, True, 3.0, 3.0),  # nothing running: no latency to read
        (0, 64, 0.0, True, 3.0, 3.0),  # nothing done yet
        (0, 64, None, True, 3.0, 3.0),  # no completion data
        (0, 32, 4.0, True, None, 4.0),  # 8 per replica, a quarter of the target: still counts
        # 4 per replica, an eighth: requests in so small a batch run much faster than at 32, so
        # 32 x 2 / 16 = 4 would overstate the replica.
        (0, 16, 2.0, True, 3.0, 3.0),
        (0, 128, 16.0, True, None, 4.0),  # 32 running per replica, at the target: counts
        # 40 per replica, past the target: each request shares a larger batch and takes longer
        # than it would at 32, so 32 x 16 / 160 = 3.2 would understate the replica.
        (0, 160, 16.0, True, 3.0, 3.0),
    ],
)
def test_an_estimate_counts_only_when_unsaturated_and_steady(waiting, running, completions, steady, previous, expected):
    observation = obs(spec=4, waiting=waiting, running=running, completions=completions)
    got = estimate_service_rate(observation, SPEC, previous, steady=steady)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_an_estimated_rate_plans_for_full_use_and_says_it_is_estimated():
    # The estimate is already at the per-replica target, so no utilization margin on top:
    # 6 req/s at 2 per replica -> 3; 12 waiting drained in 30 s -> +0.2: 4 replicas.
    desired, why = recommend_by_service_rate(
        obs(spec=3, waiting=12, running=40, completions=6.0), SPEC, 2.0, measured=False
    )
    assert desired == 4
    assert why.message == "6.00 req/s at 2.00 req/s per replica (estimated) x 1 -> 3.0; 12 waiting drained in 30 s -> +0.2"


def test_a_backlog_is_sized_on_the_estimate_not_on_four_per_replica():
    # A model that served short requests calmly (64 running, 16 req/s over 4 replicas: 4 s
    # each, so 8 req/s per replica at 32 in flight) is hit by 120 waiting just as two more
    # replicas come up, so nothing can be measured this minute. The per-replica target would
    # ask for 120 / 4 = 30 replicas; the estimate, 4 / 8 + 120 / (8 x 30) = 1.
    state = PolicyState()
    for now in range(0, 80, 10):
        _, state = decide(obs(spec=4, waiting=0, running=64, completions=16.0), state, SPEC, now=float(now))
    assert state.service_rate_estimate == pytest.approx(8.0)
    decision, state = decide(obs(spec=6, waiting=120, running=20, completions=4.0), state, SPEC, now=80.0)
    assert state.service_rate_per_replica is None
    assert decision.reasons[0].message == (
        "4.00 req/s at 8.00 req/s per replica (estimated) x 1 -> 0.5; 120 waiting drained in 30 s -> +0.5"
    )
    assert decision.needed == 1


def test_a_measured_rate_wins_over_the_estimate():
    state = PolicyState(service_rate_per_replica=1.0, service_rate_estimate=8.0)
    decision, _ = decide(obs(spec=4, waiting=0, running=16, completions=4.0), state, SPEC, now=0.0)
    assert "4.00 req/s at 1.00 req/s per replica (measured)" in decision.explain()


def test_a_vanishing_service_rate_sizes_to_the_cap_instead_of_overflowing():
    # Found by the hypothesis invariants: 1e-300 req/s per replica overflowed math.ceil.
    desired, _ = recommend_by_service_rate(obs(spec=2, waiting=10, running=5, completions=1.0), SPEC, 1e-300)
    assert desired == SPEC.max_replicas + 1
    decision, _ = decide(
        obs(spec=2, waiting=10, running=5, completions=1.0),
        PolicyState(service_rate_per_replica=1e-300), SPEC, now=0.0,
    )
    assert decision.desired_replicas <= SPEC.max_replicas


def test_a_gap_in_the_data_ends_a_saturated_run():
    # Saturated from 0 to 30 s, no data from 40 to 190 s, saturated again at 200 s: the minute
    # before 200 s was not seen, so nothing is learned from it.
    state = PolicyState()
    for now in range(0, 40, 10):
        _, state = decide(obs(spec=4, waiting=20, running=60, completions=6.0), state, SPEC, now=float(now))
    for now in range(40, 200, 10):
        _, state = decide(obs(spec=4, waiting=None, running=None, completions=None), state, SPEC, now=float(now))
    assert state.saturated_since is None
    _, state = decide(obs(spec=4, waiting=20, running=60, completions=2.0), state, SPEC, now=200.0)
    assert state.service_rate_per_replica is None and state.saturated_since == 200.0

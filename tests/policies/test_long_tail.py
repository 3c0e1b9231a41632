"""The long-tail policy: warm while used, straight to zero after an idle time derived from
the cold start, and awake on the wake signal. Time is passed explicitly; the idle clock is an
instant in the state, so the tick interval does not matter."""

from __future__ import annotations

import pytest

from policies import LongTailSpec, Observation, PolicyState, Reading, decide
from policies.long_tail import idle_timeout
from tests.policies.builders import Tick, closed_loop, every, obs, replay

# A 90 s cold start at the default ratio 3: 90 x (1 + 3) = 360 s idle before zero.
LONG_TAIL = LongTailSpec(cold_start_s=90)


def idle(replicas: int, **signals) -> Observation:
    """Fresh data saying nothing is waiting or running."""
    return obs(spec=replicas, waiting=0, running=0, **signals)


def at(times, observation):
    return [(float(now), observation) for now in times]


def by_time(trace: list[Tick]) -> dict[float, Tick]:
    return {tick.now: tick for tick in trace}


# --- the idle timeout --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected_s"),
    [
        (LongTailSpec(cold_start_s=90, cold_start_cost_ratio=3), 360.0),
        (LongTailSpec(cold_start_s=300, cold_start_cost_ratio=3), 1200.0),
        (LongTailSpec(cold_start_s=120, cold_start_cost_ratio=0), 120.0),
        (LongTailSpec(cold_start_s=120), 480.0),  # the default ratio is 3
        (LongTailSpec(cold_start_s=90, idle_timeout_s=50), 50.0),  # explicit overrides
        (LongTailSpec(cold_start_s=90, cold_start_cost_ratio=10, idle_timeout_s=900), 900.0),
    ],
)
def test_effective_idle_timeout(spec, expected_s):
    assert spec.effective_idle_timeout_s == expected_s


def test_idle_less_than_the_timeout_stays_at_one():
    trace = replay(LONG_TAIL, at(every(15, start=0, stop=345), idle(1)))
    assert all(tick.desired == 1 for tick in trace)
    last = trace[-1]
    assert "BelowFloor" in last.codes
    # The floor's reason tells how long the model has been idle and how long it may be.
    assert "idle for 345 s; 15 s left of the 360 s before scale-to-zero" in last.decision.explain()
    assert last.state.idle_since == 0.0


@pytest.mark.parametrize("replicas", [1, 4])
def test_at_the_timeout_goes_straight_to_zero(replicas):
    trace = replay(LONG_TAIL, at(every(15, start=0, stop=360), idle(replicas)))
    assert all(tick.desired > 0 for tick in trace[:-1])
    last = trace[-1]
    assert last.now == 360.0
    assert last.desired == 0, "from N straight to 0, no 50% scale-down steps"
    assert last.codes == ("IdleTimeout",)
    assert last.decision.floor == 0
    message = last.decision.reasons[0].message
    assert "360 s >= idle timeout 360 s" in message
    assert "cold start 90 s x (1 + 3)" in message


def test_after_the_timeout_also_goes_to_zero():
    # A tick may land anywhere after the timeout: the clock compares instants, not tick counts.
    trace = replay(LONG_TAIL, at([0, 100, 1000], idle(2)))
    assert [tick.desired for tick in trace][-1] == 0
    assert "no request for 1000 s" in trace[-1].decision.explain()


def test_explicit_idle_timeout_is_used_and_named():
    spec = LongTailSpec(cold_start_s=90, idle_timeout_s=60)
    trace = replay(spec, at([0, 30, 60], idle(1)))
    assert [tick.desired for tick in trace] == [1, 1, 0]
    assert "(idle_timeout_s)" in trace[-1].decision.explain()


@pytest.mark.parametrize(
    "activity",
    [
        obs(spec=1, waiting=1, running=0),
        obs(spec=1, waiting=0, running=1),
        obs(spec=1, waiting=0, running=0, wake=3),  # a wake signal above threshold counts as use
    ],
    ids=["waiting", "running", "wake"],
)
def test_activity_resets_the_idle_clock(activity):
    ticks = at(every(15, start=0, stop=195), idle(1)) + [(210.0, activity)] + at(every(15, start=225, stop=600), idle(1))
    got = by_time(replay(LONG_TAIL, ticks))
    assert got[210.0].state.idle_since is None
    assert got[225.0].state.idle_since == 225.0
    assert all(got[t].desired == 1 for t in every(15, start=0, stop=570))
    assert got[585.0].desired == 0  # 225 + 360


@pytest.mark.parametrize(
    "gap",
    [
        obs(spec=1, waiting=None, running=0),
        obs(spec=1, waiting=0, running=None),
        obs(spec=1, waiting=Reading.stale(0, age_s=300), running=Reading.stale(0, age_s=300)),
    ],
    ids=["waiting-missing", "running-missing", "stale"],
)
def test_a_missing_data_tick_restarts_the_idle_count(gap):
    # Conservative: an outage never shortens the time a model is kept warm.
    ticks = at(every(15, start=0, stop=195), idle(1)) + [(210.0, gap)] + at(every(15, start=225, stop=600), idle(1))
    got = by_time(replay(LONG_TAIL, ticks))
    assert got[210.0].desired == 1
    assert got[210.0].codes == ("MissingData",)
    assert got[210.0].state.idle_since is None
    assert all(got[t].desired == 1 for t in every(15, start=0, stop=570))
    assert got[585.0].desired == 0
    assert got[585.0].codes == ("IdleTimeout",)


def test_wake_at_the_threshold_with_replicas_up_is_still_idle():
    spec = LongTailSpec(cold_start_s=90, wake_threshold=2)
    trace = replay(spec, at([0, 360], idle(1, wake=2)))
    assert trace[-1].desired == 0


def test_wake_missing_with_replicas_up_does_not_keep_the_model_warm():
    # Up, the vLLM series are the evidence; the gateway's wake signal only adds demand.
    trace = replay(LONG_TAIL, at([0, 360], idle(1, wake=None)))
    assert trace[-1].desired == 0


def test_busy_model_is_sized_by_load():
    # In use: the shared pipeline sizes it. 40 waiting / 4 = 10 -> capped, +max(4, 100%) step.
    decision, _ = decide(obs(spec=2, waiting=40, running=64, gpu=90), PolicyState(), LONG_TAIL, now=0.0)
    assert decision.desired_replicas == 6
    assert decision.floor == 1


# --- at zero -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("threshold", "wake", "expected", "code"),
    [
        (0, 1, 1, "Wake"),
        (0, 0.5, 1, "Wake"),
        (0, 0, 0, "IdleAtZero"),
        (5, 5, 0, "IdleAtZero"),  # at the threshold is not above it
        (5, 6, 1, "Wake"),
        (0, None, 0, "MissingData"),
        (0, Reading.stale(10, age_s=120), 0, "MissingData"),
    ],
)
def test_at_zero_only_the_wake_signal_counts(threshold, wake, expected, code):
    spec = LongTailSpec(cold_start_s=90, wake_threshold=threshold)
    decision, state = decide(obs(spec=0, ready=0, wake=wake), PolicyState(), spec, now=0.0)
    assert decision.desired_replicas == expected
    assert decision.reason_codes == (code,)
    assert state.idle_since is None


@pytest.mark.parametrize(
    ("wake", "expected", "code"),
    [(3, 1, "Wake"), (0, 0, "IdleAtZero"), (None, 0, "MissingData")],
)
@pytest.mark.parametrize(
    ("waiting", "running"),
    [(None, None), (Reading.stale(7, age_s=900), Reading.stale(9, age_s=900))],
    ids=["vllm-missing", "vllm-stale"],
)
def test_vllm_series_at_zero_are_irrelevant(waiting, running, wake, expected, code):
    observation = obs(spec=0, ready=0, waiting=waiting, running=running, wake=wake)
    decision, _ = decide(observation, PolicyState(), LONG_TAIL, now=0.0)
    assert decision.desired_replicas == expected
    assert decision.reason_codes == (code,)


def test_wake_message_names_signal_and_threshold():
    decision, _ = decide(obs(spec=0, ready=0, wake=2), PolicyState(), LONG_TAIL, now=0.0)
    assert decision.reasons[0].message == "wake signal 2 > 0: waking to 1"


def test_waking_bypasses_the_scale_up_period():
    # Ray Serve's fast path from zero: a scale-up ten seconds ago does not delay the wake.
    state = PolicyState(last_scale_up_at=990.0)
    decision, new_state = decide(obs(spec=0, ready=0, wake=1), state, LONG_TAIL, now=1000.0)
    assert decision.desired_replicas == 1
    assert new_state.last_scale_up_at == 1000.0


# --- min_replicas > 0 --------------------------------------------------------------------


@pytest.mark.parametrize("min_replicas", [1, 2])
def test_long_tail_with_min_replicas_never_goes_to_zero(min_replicas):
    spec = LongTailSpec(cold_start_s=90, min_replicas=min_replicas, max_replicas=4)
    trace = closed_loop(
        spec,
        start_replicas=4,
        times=every(30, start=0, stop=4 * 3600),
        observe=lambda now, replicas: idle(replicas, wake=0),
    )
    assert min(tick.desired for tick in trace) == min_replicas
    assert "IdleTimeout" not in {code for tick in trace for code in tick.codes}


def test_idle_reason_of_a_model_that_cannot_scale_to_zero_does_not_promise_it():
    spec = LongTailSpec(cold_start_s=90, min_replicas=1)
    decision, _ = decide(idle(1), PolicyState(idle_since=0.0), spec, now=100.0)
    assert decision.desired_replicas == 1
    assert "scale-to-zero" not in decision.explain(), (
        "BUG (long_tail.py:54-55): with min_replicas=1 the model never scales to zero, yet the floor reason "
        f"counts down to it: {decision.explain()!r}"
    )


@pytest.mark.parametrize(("min_replicas", "wake"), [(1, 0), (2, 0), (2, None), (2, 5)])
def test_long_tail_with_min_replicas_found_at_zero_returns_to_min(min_replicas, wake):
    spec = LongTailSpec(cold_start_s=90, min_replicas=min_replicas, max_replicas=4)
    decision, _ = decide(obs(spec=0, ready=0, wake=wake), PolicyState(), spec, now=0.0)
    assert decision.desired_replicas == min_replicas


# --- a whole cycle -----------------------------------------------------------------------


def test_busy_idle_zero_wake_cycle():
    """Busy until t=0, idle afterwards, a request at the gateway at t=1000, ready at 1090."""

    def observe(now, replicas):
        if replicas == 0:
            return obs(spec=0, ready=0, waiting=None, running=None, wake=1 if now >= 1000 else 0)
        if now < 0:
            return obs(spec=replicas, waiting=0, running=20, gpu=80)
        if now < 1000:
            return idle(replicas, wake=0)
        if now < 1090:
            return obs(spec=replicas, ready=0, waiting=None, running=None, wake=1)  # loading
        return obs(spec=replicas, waiting=0, running=1, gpu=60, wake=1)

    trace = closed_loop(LONG_TAIL, start_replicas=1, times=every(15, start=-60, stop=1200), observe=observe)
    got = by_time(trace)
    assert all(tick.decision.reasons for tick in trace)
    assert got[345.0].desired == 1
    assert got[360.0].desired == 0 and got[360.0].codes == ("IdleTimeout",)
    assert all(got[t].desired == 0 for t in every(15, start=375, stop=990))
    assert got[990.0].codes == ("IdleAtZero",)
    assert got[1005.0].desired == 1 and got[1005.0].codes == ("Wake",)
    assert all(got[t].codes == ("MissingData",) and got[t].desired == 1 for t in every(15, start=1020, stop=1080))
    assert all(got[t].desired == 1 for t in every(15, start=1095, stop=1200))


# --- the idle timeout learned from the model's own idle periods ----------------------------

# A 120 s cold start at ratio 3: break-even 480 s; the ladder tries 30, 60, 120, 240 and 480 s.
LEARNING = LongTailSpec(cold_start_s=120)


@pytest.mark.parametrize(
    ("gaps", "expected_s", "origin"),
    [
        ((), 480.0, "cold start 120 s x (1 + 3)"),
        ((3000.0,) * 4, 480.0, "cold start 120 s x (1 + 3)"),  # four periods say too little
        ((20.0, 25.0, 30.0, 3000.0, 5000.0), 60.0, "learned: over the last 5 idle periods it would have cost 1,155 GPU-s, against 1,995"),
        ((3000.0,) * 5, 30.0, "learned"),  # always long: the shortest rung
        ((400.0,) * 5, 480.0, "no shorter timeout would have cost less over the last 5 idle periods"),
        ((10.0,) * 5, 480.0, "no shorter timeout"),  # every rung covers them: a tie, the longest wins
    ],
)
def test_the_idle_timeout_is_the_rung_that_would_have_cost_least(gaps, expected_s, origin):
    timeout_s, why = idle_timeout(LEARNING, gaps)
    assert timeout_s == expected_s
    assert origin in why


def test_an_explicit_idle_timeout_is_never_learned_over():
    spec = LongTailSpec(cold_start_s=120, idle_timeout_s=900)
    assert idle_timeout(spec, (3000.0,) * 20) == (900, "idle_timeout_s")


def sessions(count: int, *, gap_s: float, spec: LongTailSpec = LEARNING) -> list[Tick]:
    """A model used for 60 s, then idle for gap_s, `count` times, with the replicas it asks
    for; the gap ends with demand seen warm, or with the wake signal at zero."""

    def observe(now, replicas):
        in_session = (now % (60 + gap_s)) < 60
        if replicas == 0:
            return obs(spec=0, ready=0, waiting=None, running=None, wake=1 if in_session else 0)
        return obs(spec=replicas, waiting=0, running=2 if in_session else 0, wake=1 if in_session else 0)

    return closed_loop(spec, start_replicas=1, times=every(10, start=0, stop=count * (60 + gap_s) - 10), observe=observe)


def test_idle_periods_are_remembered_whether_they_end_warm_or_at_zero():
    trace = sessions(6, gap_s=200)  # shorter than the break-even: each ends warm
    assert [round(g) for g in trace[-1].state.idle_gaps] == [200] * 5
    trace = sessions(6, gap_s=1500)  # longer: each ends at zero, woken by the gateway
    assert [round(g) for g in trace[-1].state.idle_gaps] == [1500] * 5
    assert "Wake" in {code for tick in trace for code in tick.codes}


def test_a_model_idle_for_long_stretches_learns_to_go_to_zero_sooner():
    trace = sessions(8, gap_s=1500)
    went_to_zero = [tick for tick in trace if tick.codes == ("IdleTimeout",)]
    idle_for = [float(t.decision.explain().split("no request for ")[1].split(" s")[0]) for t in went_to_zero]
    # The break-even (480 s) until five idle periods have been seen, then the shortest rung.
    assert idle_for[:5] == [480.0] * 5
    assert idle_for[5:] == [30.0] * (len(idle_for) - 5)
    assert "learned" in went_to_zero[-1].decision.explain()


def test_remembered_idle_periods_are_bounded_and_can_be_turned_off():
    assert len(sessions(30, gap_s=100, spec=LongTailSpec(cold_start_s=120, idle_gap_history=20))[-1].state.idle_gaps) == 20
    assert sessions(8, gap_s=1500, spec=LongTailSpec(cold_start_s=120, idle_gap_history=0))[-1].state.idle_gaps == ()


def test_missing_data_ends_an_idle_period_without_remembering_it():
    ticks = at(every(15, start=0, stop=195), idle(1)) + [(210.0, obs(spec=1, waiting=None, running=None))]
    assert replay(LEARNING, ticks)[-1].state.idle_gaps == ()

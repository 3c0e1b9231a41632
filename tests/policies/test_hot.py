"""The hot policy over time: quick up, slow down, never zero, and no move on missing data.

Scenarios advance `now` explicitly; `closed_loop` feeds each decision back as the next
tick's replica count, as if the actuator applied it at once.
"""

from __future__ import annotations

import math

import pytest

from policies import HotSpec, LongTailSpec, PolicyState, Reading, decide
from tests.policies.builders import Tick, closed_loop, dependency, every, obs, replay

HOT = HotSpec(min_replicas=1, max_replicas=10)  # defaults otherwise: 300 s down window, 60 s down period
STEADY = HOT.model_copy(update={"burst_headroom_step": 0.0})  # no headroom for bursts: the guards alone


def assert_explained_and_warm(trace: list[Tick]) -> None:
    """What every hot decision must satisfy, whatever the scenario."""
    for tick in trace:
        assert tick.decision.reasons, f"t={tick.now}: a decision without a reason"
        assert tick.decision.floor >= 1, f"t={tick.now}: hot floor {tick.decision.floor}"
        assert tick.desired >= 1, f"t={tick.now}: hot model sent to {tick.desired}: {tick.decision.explain()}"


def desired_by_time(trace: list[Tick]) -> dict[float, int]:
    return {tick.now: tick.desired for tick in trace}


# --- scaling up --------------------------------------------------------------------------


def test_burst_scales_up_quickly():
    # Two replicas, then 200 requests waiting from t=0 on; new replicas are ready at once.
    trace = closed_loop(
        HOT,
        start_replicas=2,
        times=every(15, start=0, stop=60),
        observe=lambda now, replicas: obs(spec=replicas, waiting=200, running=32 * replicas, gpu=95),
    )
    assert_explained_and_warm(trace)
    # 200 / 4 = 50 wanted (75 with headroom for the overflowing queue), capped at 10; one step
    # adds max(4, 100% of 2) = 4, then 100% of 6.
    assert [tick.desired for tick in trace] == [6, 10, 10, 10, 10]
    assert trace[0].codes == ("Recommendation", "BurstHeadroom", "ScaleUpLimit")


def test_burst_waits_for_starting_replicas_then_continues():
    # Replicas take 100 s to be ready. The 4 starting replicas will take 4 x 32 = 128 requests
    # off the queue of 100, so while they start no second step; once ready, the next goes through.
    def observe(now, replicas):
        ready = replicas if now >= 100 else min(replicas, 2)
        return obs(spec=replicas, ready=ready, waiting=100, running=32 * ready, gpu=95)

    trace = closed_loop(STEADY, start_replicas=2, times=every(15, start=0, stop=120), observe=observe)
    assert_explained_and_warm(trace)
    got = desired_by_time(trace)
    assert got[0] == 6
    assert all(got[t] == 6 for t in (15, 30, 45, 60, 75, 90))
    assert "ReplicasStarting" in trace[1].codes
    assert got[105] == 10  # ready at t=100: the next step goes through


def test_stuck_start_no_longer_holds_after_cold_start_times_factor():
    # The 4 new replicas never become ready. The start is counted from the first tick that
    # sees them starting (t=15); after 120 s x 2 = 240 s it is stuck, and scale-up resumes.
    def observe(now, replicas):
        return obs(spec=replicas, ready=2, waiting=100, running=64, gpu=95)

    trace = closed_loop(STEADY, start_replicas=2, times=every(15, start=0, stop=270), observe=observe)
    assert_explained_and_warm(trace)
    got = desired_by_time(trace)
    assert all(got[t] == 6 for t in every(15, start=15, stop=240))
    assert got[255] == 10


def test_a_queue_beyond_what_starting_replicas_take_still_scales_up():
    # 4 starting replicas take 128 of 300 waiting; the other 172 still ask for 43, not 75.
    decision, _ = decide(
        obs(spec=6, ready=2, waiting=300, running=64, gpu=95), PolicyState(starting_since=0.0), STEADY, now=15.0
    )
    assert decision.desired_replicas == 10
    assert "sizing on the rest: 43 instead of 75" in decision.explain()


def test_headroom_for_bursts_is_kept_on_what_starting_replicas_leave():
    # The same queue overflows (300 waiting on 2 ready): +50% on the 75 asked for is 113, and
    # on the 43 that the starting replicas leave, 65.
    decision, _ = decide(
        obs(spec=6, ready=2, waiting=300, running=64, gpu=95),
        PolicyState(starting_since=0.0),
        HOT.model_copy(update={"max_replicas": 100}),
        now=15.0,
    )
    assert "BurstHeadroom: +50% for bursts (queue overflow 0 s ago, decaying over 3600 s): 75 -> 113" in decision.explain()
    assert "sizing on the rest: 65 instead of 113" in decision.explain()


def test_saturated_dependency_holds_and_caps_at_current():
    observation = obs(spec=3, waiting=100, running=96, gpu=95, dependencies=(dependency("vector-db", 0.98),))
    decision, _ = decide(observation, PolicyState(), HOT, now=0.0)
    assert decision.desired_replicas == 3
    assert "DownstreamSaturated" in decision.reason_codes
    assert decision.cap == 3, "while a dependency is saturated the cap handed to KEDA is the current count"
    assert "vector-db" in decision.explain()


def test_stays_within_bounds_under_varying_load():
    spec = HotSpec(min_replicas=2, max_replicas=8)
    pattern = [0, 50, 300, 5, 0, 0, 120, 900, 40, 0, 0, 0]

    def observe(now, replicas):
        waiting = pattern[int(now // 300) % len(pattern)]
        return obs(spec=replicas, waiting=waiting, running=min(waiting, 32 * replicas), gpu=90, kv=0.5)

    trace = closed_loop(spec, start_replicas=2, times=every(30, start=0, stop=4 * 3600), observe=observe)
    assert_explained_and_warm(trace)
    assert all(2 <= tick.desired <= 8 for tick in trace)
    assert {tick.desired for tick in trace} >= {2, 8}, "the scenario should reach both bounds"


# --- scaling down ------------------------------------------------------------------------


def test_scale_down_only_after_the_300_s_window():
    # 192 in flight / 32 = 6 replicas until t=0, then no load at all.
    def observe(now, replicas):
        running = 192 if now <= 0 else 0
        return obs(spec=replicas, running=running, gpu=90)

    trace = closed_loop(HOT, start_replicas=6, times=every(15, start=-600, stop=900), observe=observe)
    assert_explained_and_warm(trace)
    got = desired_by_time(trace)
    assert all(got[t] == 6 for t in every(15, start=-600, stop=300)), "no scale-down inside the 300 s window"
    assert "ScaleDownStabilized" in trace[[t.now for t in trace].index(300)].codes
    # The last 6 was recommended at t=0 and leaves the window after t=300. Then 50% per step,
    # one step per 60 s: 6 -> 3 -> 2 -> 1.
    assert got[315] == 3
    assert got[360] == 3
    assert got[375] == 2
    assert got[435] == 1
    assert got[900] == 1


def test_kv_cache_full_holds_the_scale_down():
    history = PolicyState(recommendations=((0.0, 4),))
    decision, _ = decide(obs(spec=4, kv=0.97, gpu=90), history, HOT, now=1000.0)
    assert decision.desired_replicas == 4
    assert "KVCacheFull" in decision.reason_codes


# --- never zero --------------------------------------------------------------------------


@pytest.mark.parametrize("min_replicas", [1, 3])
def test_zero_load_for_hours_never_reaches_zero(min_replicas):
    spec = HotSpec(min_replicas=min_replicas, max_replicas=10)
    trace = closed_loop(
        spec,
        start_replicas=10,
        times=every(15, start=0, stop=6 * 3600),
        observe=lambda now, replicas: obs(spec=replicas, waiting=0, running=0, gpu=0, wake=0),
    )
    assert_explained_and_warm(trace)
    assert min(tick.desired for tick in trace) == min_replicas
    assert trace[-1].desired == min_replicas
    assert "BelowFloor" in trace[-1].codes


@pytest.mark.parametrize(
    ("waiting", "running"),
    [
        (0, 0),
        (None, None),
        (Reading.stale(0, age_s=900), Reading.stale(0, age_s=900)),
        (None, 0),
    ],
    ids=["zero-load", "missing", "stale", "waiting-missing"],
)
def test_found_at_zero_returns_to_one(waiting, running):
    decision, _ = decide(obs(spec=0, ready=0, waiting=waiting, running=running), PolicyState(), HOT, now=0.0)
    assert decision.desired_replicas == 1
    assert decision.floor == 1
    assert "BelowFloor" in decision.reason_codes


def test_found_at_zero_with_a_saturated_dependency_still_returns_to_one():
    observation = obs(spec=0, ready=0, waiting=30, dependencies=(dependency("vector-db", 1.0),))
    decision, _ = decide(observation, PolicyState(), HOT, now=0.0)
    assert decision.desired_replicas == 1


# --- missing or stale data ---------------------------------------------------------------

# A state in which fresh zero load would scale 5 replicas down at once: the last
# recommendation is old and no scale-down has happened for an hour.
READY_TO_SCALE_DOWN = PolicyState(recommendations=((0.0, 1),), last_scale_down_at=0.0, first_seen=(0.0, 1))


@pytest.mark.parametrize(
    ("waiting", "running"),
    [
        (None, None),
        (None, 0),
        (0, None),
        (Reading.stale(0, age_s=120), Reading.stale(0, age_s=120)),
        (Reading.stale(0, age_s=120), 0),
        (0, Reading.stale(0, age_s=120)),
        (None, Reading.stale(0, age_s=120)),
    ],
    ids=["both-missing", "waiting-missing", "running-missing", "both-stale", "waiting-stale", "running-stale", "mixed"],
)
def test_missing_or_stale_load_holds_replicas_up(waiting, running):
    observation = obs(spec=5, waiting=waiting, running=running, kv=0.1, gpu=0)
    decision, state = decide(observation, READY_TO_SCALE_DOWN, HOT, now=3600.0)
    assert decision.desired_replicas == 5
    assert decision.direction == "hold"
    assert decision.reason_codes == ("MissingData",)
    assert state.recommendations == READY_TO_SCALE_DOWN.recommendations, "no data, no recommendation recorded"


def test_fresh_zero_load_in_the_same_state_does_scale_down():
    # The control for the table above: the hold is due to the missing data, not the state.
    decision, _ = decide(obs(spec=5, waiting=0, running=0, gpu=0), READY_TO_SCALE_DOWN, HOT, now=3600.0)
    assert decision.direction == "down"


def test_missing_data_reason_says_what_was_missing():
    observation = obs(spec=5, waiting=None, running=Reading.stale(3, age_s=120))
    decision, _ = decide(observation, PolicyState(), HOT, now=0.0)
    assert decision.reasons[0].message == "waiting no data, running stale (120 s old): no fresh load data, holding at 5"


def test_an_hour_without_data_never_scales_down():
    def observe(now, replicas):
        if now < 0:
            return obs(spec=replicas, waiting=0, running=160, gpu=90)  # 160 / 32 = 5
        if int(now // 60) % 2:
            return obs(spec=replicas, waiting=None, running=None)
        return obs(spec=replicas, waiting=Reading.stale(0, age_s=now + 1), running=Reading.stale(0, age_s=now + 1))

    trace = closed_loop(HOT, start_replicas=5, times=every(15, start=-300, stop=3600), observe=observe)
    assert_explained_and_warm(trace)
    assert all(tick.desired == 5 for tick in trace)
    assert all("MissingData" in tick.codes for tick in trace if tick.now >= 0)


def test_missing_data_above_max_holds_rather_than_lowering():
    # Documented exception to desired <= max_replicas: without data the count is held, even
    # above the bound (raising to the floor is the only change made without data).
    decision, _ = decide(obs(spec=14, waiting=None, running=None), PolicyState(), HOT, now=0.0)
    assert decision.desired_replicas == 14
    assert decision.reason_codes == ("MissingData",)


def test_every_decision_has_a_reason_even_when_nothing_changes():
    # 64 in flight / 32 = 2 replicas at 2 replicas: no step changes anything.
    decision, _ = decide(obs(spec=2, waiting=0, running=64, gpu=90), PolicyState(), HOT, now=0.0)
    assert decision.direction == "hold"
    assert decision.reason_codes == ("Recommendation",)


def test_replay_is_deterministic():
    ticks = [(float(t), obs(spec=3, waiting=(t * 7) % 50, running=(t * 13) % 200, gpu=80)) for t in range(0, 3000, 15)]
    first = [tick.decision for tick in replay(HOT, ticks)]
    second = [tick.decision for tick in replay(HOT, ticks)]
    assert first == second


# --- bounds must hold after the rate limit -----------------------------------------------
# steps.py and scale_on_load document the order "... stabilize, rate limit, bounds", but
# pipeline.py clamps to [floor, max_replicas] *before* stabilize and limit_rate and never
# after, so a rate limit can leave the count outside the bounds. The HPA, which these steps
# follow, jumps straight to min/max when the current count is outside them.


def test_hot_found_at_zero_returns_to_one_even_right_after_a_scale_up():
    spec = HotSpec(scale_up_period_s=60)
    observation = obs(spec=0, ready=0, waiting=0, running=0)
    decision, _ = decide(observation, PolicyState(last_scale_up_at=990.0), spec, now=1000.0)
    assert decision.desired_replicas >= 1, (
        "BUG (pipeline.py: clamp before limit_rate): a hot model found at 0 replicas is kept at 0 "
        f"by the scale-up period; got {decision.desired_replicas}: {decision.explain()}"
    )


def test_hot_below_min_replicas_is_raised_to_min_replicas():
    spec = HotSpec(min_replicas=8, max_replicas=10)
    decision, _ = decide(obs(spec=1, waiting=0, running=0), PolicyState(), spec, now=0.0)
    assert decision.desired_replicas >= decision.floor == 8, (
        "BUG (pipeline.py: clamp before limit_rate): the scale-up step leaves the count below "
        f"min_replicas 8; got {decision.desired_replicas}: {decision.explain()}"
    )


def test_above_max_replicas_is_lowered_within_the_scale_down_period():
    # max_replicas lowered from 20 to 10 (say) ten seconds after a scale-down.
    decision, _ = decide(
        obs(spec=20, waiting=0, running=0), PolicyState(last_scale_down_at=990.0), HOT, now=1000.0
    )
    assert decision.desired_replicas <= HOT.max_replicas, (
        "BUG (pipeline.py: clamp before limit_rate): fresh data, count above max_replicas 10, and the "
        f"decision stays above it; got {decision.desired_replicas}: {decision.explain()}"
    )


def test_above_max_replicas_is_lowered_to_max_in_one_step():
    spec = HotSpec(max_replicas=10, scale_down_max_step_percent=25)
    decision, _ = decide(obs(spec=20, waiting=400, running=640), PolicyState(), spec, now=0.0)
    assert decision.desired_replicas <= spec.max_replicas, (
        "BUG (pipeline.py: clamp before limit_rate): the scale-down step (25% of 20 = 5) leaves the "
        f"count above max_replicas 10; got {decision.desired_replicas}: {decision.explain()}"
    )


def test_needed_replicas_is_the_load_before_stabilization():
    """A scale-down the 300 s window holds keeps `desired` at the current count; `needed`
    says what the load asks for now, so a shared pool can lend the difference."""
    spec = HotSpec(target_waiting_per_replica=4, target_running_per_replica=16, max_replicas=20)
    ticks = replay(spec, [(0.0, obs(12, waiting=0, running=190)), (30.0, obs(12, waiting=0, running=100))])
    assert (ticks[0].desired, ticks[0].decision.needed) == (12, 12)
    assert (ticks[1].desired, ticks[1].decision.needed) == (12, 7)  # 100 / 16 -> 7
    missing = replay(spec, [(0.0, obs(5, waiting=None, running=None))])[0].decision
    assert missing.needed == 5  # no data: it needs what it has


def test_a_model_found_at_a_count_keeps_it_until_a_whole_window_is_seen():
    # The daemon starts (or meets a new model) at 6 replicas with no load: it has not seen the
    # last 300 s, so 6 stands as recommended at first sight until 300 s have passed.
    trace = closed_loop(
        HOT, start_replicas=6, times=every(30, start=0, stop=360), observe=lambda now, replicas: obs(spec=replicas)
    )
    assert_explained_and_warm(trace)
    assert [tick.desired for tick in trace if tick.now < 300] == [6] * 10
    assert all("ScaleDownStabilized" in tick.codes for tick in trace if tick.now < 300)
    assert [tick.desired for tick in trace if tick.now >= 300] == [3, 3, 2]  # 50% a step, one a minute


def test_a_model_found_at_a_count_still_scales_up_at_once():
    decision, state = decide(obs(spec=2, waiting=40, running=32, gpu=95), PolicyState(), HOT, now=0.0)
    assert decision.desired_replicas > 2
    assert state.first_seen == (0.0, 2)



# --- headroom for bursts -----------------------------------------------------------------

BURSTY = HotSpec(max_replicas=100, cold_start_s=120, burst_headroom_step=0.5, burst_headroom_max=1.0)


def test_a_load_that_never_overflows_gets_no_headroom():
    state = PolicyState()
    for now in range(0, 600, 15):
        decision, state = decide(obs(spec=4, waiting=2, running=100, gpu=90), state, BURSTY, now=float(now))
        assert "BurstHeadroom" not in decision.reason_codes
    assert state.burst_headroom is None
    assert decision.desired_replicas == 4  # 102 in flight / 32 -> 4


def test_each_overflow_adds_a_step_at_most_once_per_cold_start_up_to_the_most():
    overflow = obs(spec=4, waiting=40, running=128, gpu=95)  # 40 waiting > 4 per ready replica x 4
    _, state = decide(overflow, PolicyState(), BURSTY, now=0.0)
    assert state.burst_headroom == (0.0, 0.5)
    _, state = decide(overflow, state, BURSTY, now=60.0)  # within the cold start: the same burst
    assert state.burst_headroom == (0.0, 0.5)
    _, state = decide(overflow, state, BURSTY, now=120.0)  # 0.5 decayed over 120 s, + 0.5
    assert state.burst_headroom == (120.0, pytest.approx(0.5 * math.exp(-120 / 3600) + 0.5))
    _, state = decide(overflow, state, BURSTY, now=240.0)  # past burst_headroom_max: held at 1
    assert state.burst_headroom == (240.0, 1.0)


def test_headroom_decays_without_overflows_and_says_so():
    calm = obs(spec=10, waiting=0, running=320, gpu=90)  # 320 in flight / 32 -> 10
    decision, _ = decide(calm, PolicyState(burst_headroom=(0.0, 0.5)), BURSTY, now=3600.0)
    # An hour (burst_headroom_decay_s) after it was raised: 0.5 / e = 18%, so 10 -> 12.
    assert decision.desired_replicas == 12
    assert decision.reasons[1].message == "+18% for bursts (queue overflow 3600 s ago, decaying over 3600 s): 10 -> 12"
    decision, state = decide(calm, PolicyState(burst_headroom=(0.0, 0.5)), BURSTY, now=6 * 3600.0)
    assert "BurstHeadroom" not in decision.reason_codes  # 0.5 / e^6 = 0.1%: forgotten
    assert state.burst_headroom is None


def test_no_headroom_when_turned_off_or_for_a_long_tail_model():
    overflow = obs(spec=4, waiting=40, running=128, gpu=95)
    off = BURSTY.model_copy(update={"burst_headroom_step": 0.0})
    decision, state = decide(overflow, PolicyState(), off, now=0.0)
    assert "BurstHeadroom" not in decision.reason_codes and state.burst_headroom is None
    decision, state = decide(overflow, PolicyState(burst_headroom=(0.0, 1.0)), off, now=10.0)  # raised before
    assert "BurstHeadroom" not in decision.reason_codes and state.burst_headroom is None
    decision, state = decide(overflow, PolicyState(), LongTailSpec(max_replicas=100), now=0.0)
    assert "BurstHeadroom" not in decision.reason_codes and state.burst_headroom is None


@pytest.mark.parametrize(
    "observation, spec, why",
    [
        (obs(spec=4, ready=0, waiting=40, running=0), BURSTY, "none ready yet: the first cold start"),
        (obs(spec=4, waiting=40, running=128, gpu=2), BURSTY, "GPUs idle: a stuck engine"),
        (
            obs(spec=4, waiting=40, running=128, gpu=95, dependencies=(dependency("vector-db", 0.98),)),
            BURSTY,
            "a saturated dependency",
        ),
        (obs(spec=4, waiting=40, running=128, gpu=95), BURSTY.model_copy(update={"max_replicas": 4}), "at max_replicas"),
    ],
)
def test_a_queue_more_replicas_would_not_serve_raises_no_headroom(observation, spec, why):
    _, state = decide(observation, PolicyState(), spec, now=0.0)
    assert state.burst_headroom is None, why


def test_headroom_is_not_what_the_load_needs():
    # 10 asked for by the load, 12 with 18% headroom: a shared pool counts 10 as needed.
    calm = obs(spec=12, waiting=0, running=320, gpu=90)
    decision, _ = decide(calm, PolicyState(burst_headroom=(0.0, 0.5)), BURSTY, now=3600.0)
    assert (decision.desired_replicas, decision.needed, decision.headroom_replicas) == (12, 10, 2)


def test_a_rate_limited_scale_up_is_load_before_headroom():
    # 24 waiting on 2 ready ask for 6, 9 with headroom; one step may add 4, so 6: all load.
    decision, _ = decide(obs(spec=2, waiting=24, running=32, gpu=95), PolicyState(), HOT, now=0.0)
    assert decision.reason_codes == ("Recommendation", "BurstHeadroom", "ScaleUpLimit")
    assert (decision.desired_replicas, decision.needed, decision.headroom_replicas) == (6, 6, 0)

"""The named steps, one table each. Every step returns (count, reason or None); a step that
changes the count must say why, and one that changes nothing must stay silent."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import HotSpec, PolicySpec, Reading
from policies.steps import (
    apply_tolerance,
    clamp,
    guard_scale_down,
    guard_scale_up,
    limit_rate,
    record,
    recommend,
    stabilize,
)
from tests.policies.builders import dependency, obs

DEFAULTS = PolicySpec()  # 4 waiting and 32 in flight per replica, 10% tolerance, 300 s down window


# --- recommend ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("waiting", "running", "expected", "why"),
    [
        (0, 0, 0, "no load asks for nothing"),
        (12, 0, 3, "queue: 12 / 4 = 3; load: 12 / 32 -> 1"),
        (13, 0, 4, "queue rounds up: 13 / 4 = 3.25 -> 4"),
        (0, 100, 4, "load: 100 / 32 = 3.1 -> 4; queue 0"),
        (8, 56, 2, "queue 8 / 4 = 2; load 64 / 32 = 2"),
        (5, 91, 3, "load wins: queue 5 / 4 -> 2; load 96 / 32 = 3"),
        (40, 8, 10, "queue wins: queue 40 / 4 = 10; load 48 / 32 -> 2"),
        (1, 0, 1, "a single waiting request asks for a replica"),
    ],
)
def test_recommend_takes_the_larger_of_queue_and_load(waiting, running, expected, why):
    desired, reason = recommend(obs(spec=2, waiting=waiting, running=running), DEFAULTS)
    assert desired == expected, why
    assert reason.code == "Recommendation"


@pytest.mark.parametrize("current", [0, 1, 3, 10])
def test_recommend_is_an_average_value_target_independent_of_the_current_count(current):
    # 12 waiting at 4 per replica asks for 3 replicas whatever the count is now.
    desired, _ = recommend(obs(spec=current, waiting=12, running=0), DEFAULTS)
    assert desired == 3


@pytest.mark.parametrize(
    ("target_waiting", "target_running", "waiting", "running", "expected"),
    [
        (5, 8, 5, 3, 1),  # queue 5 / 5 = 1; load 8 / 8 = 1
        (5, 8, 0, 17, 3),  # load 17 / 8 = 2.1 -> 3
        (2, 100, 7, 0, 4),  # queue 7 / 2 = 3.5 -> 4
        (0.5, 32, 1, 0, 2),  # fractional target: 1 / 0.5 = 2
    ],
)
def test_recommend_uses_the_spec_targets(target_waiting, target_running, waiting, running, expected):
    spec = PolicySpec(target_waiting_per_replica=target_waiting, target_running_per_replica=target_running)
    desired, _ = recommend(obs(waiting=waiting, running=running), spec)
    assert desired == expected


def test_recommend_reason_shows_the_worked_numbers():
    _, reason = recommend(obs(waiting=12, running=20), DEFAULTS)
    assert "12 waiting / 4 per replica -> 3" in reason.message
    assert "32 in flight / 32 per replica -> 1" in reason.message


# --- apply_tolerance ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("desired", "current", "tolerance", "expected", "code"),
    [
        (20, 20, 0.1, 20, None),  # no change, nothing to say
        (21, 20, 0.1, 20, "WithinTolerance"),  # +5% inside the band
        (19, 20, 0.1, 20, "WithinTolerance"),  # -5% inside the band
        (23, 20, 0.1, 23, None),  # +15% outside
        (16, 20, 0.1, 16, None),  # -20% outside
        (0, 1, 0.1, 0, None),  # -100% outside
        (2, 1, 0.5, 2, None),  # +100% outside a 50% band
        (21, 20, 0.0, 21, None),  # no band at all
        (3, 0, 0.1, 3, None),  # from zero there is no ratio: the recommendation stands
        (0, 0, 0.1, 0, None),
    ],
)
def test_apply_tolerance(desired, current, tolerance, expected, code):
    result, reason = apply_tolerance(desired, current, tolerance)
    assert result == expected
    assert (reason.code if reason else None) == code


def test_apply_tolerance_reason_names_both_counts():
    _, reason = apply_tolerance(21, 20, 0.1)
    assert "21" in reason.message and "keeping 20" in reason.message


# --- guard_scale_up ----------------------------------------------------------------------


def test_saturated_dependency_holds_and_is_named_in_the_reason():
    observation = obs(spec=2, waiting=40, dependencies=(dependency("vector-db", 0.97, saturated_at=0.9),))
    desired, reason = guard_scale_up(6, observation, DEFAULTS, starting_for_s=None)
    assert desired == 2
    assert reason.code == "DownstreamSaturated"
    assert "vector-db" in reason.message
    assert "0.97" in reason.message and "0.9" in reason.message
    assert "holding at 2 instead of 6" in reason.message


def test_only_the_saturated_dependencies_are_named():
    observation = obs(
        spec=2,
        waiting=40,
        dependencies=(dependency("reranker", 0.5), dependency("vector-db", 0.95)),
    )
    desired, reason = guard_scale_up(6, observation, DEFAULTS, starting_for_s=None)
    assert desired == 2
    assert "vector-db" in reason.message
    assert "reranker" not in reason.message


@pytest.mark.parametrize(
    ("saturation", "why"),
    [
        (None, "no data about a dependency is not evidence that it is saturated"),
        (Reading.stale(0.99, age_s=600), "a stale saturation reading does not gate"),
        (0.89, "below saturated_at"),
    ],
)
def test_dependency_that_is_not_known_saturated_does_not_gate(saturation, why):
    observation = obs(spec=2, waiting=40, dependencies=(dependency("vector-db", saturation, saturated_at=0.9),))
    assert guard_scale_up(6, observation, DEFAULTS, starting_for_s=None) == (6, None), why


def test_dependency_at_exactly_saturated_at_is_saturated():
    observation = obs(spec=2, waiting=40, dependencies=(dependency("vector-db", 0.9, saturated_at=0.9),))
    assert guard_scale_up(6, observation, DEFAULTS, starting_for_s=None)[0] == 2


def test_queue_with_idle_gpus_holds():
    # 10 waiting while the GPUs are 3% busy: a stuck engine, not missing capacity.
    desired, reason = guard_scale_up(5, obs(spec=2, waiting=10, gpu=3), DEFAULTS, starting_for_s=None)
    assert desired == 2
    assert reason.code == "QueueWithIdleGPUs"
    assert "10 waiting" in reason.message and "3%" in reason.message


@pytest.mark.parametrize(
    ("waiting", "running", "gpu", "why"),
    [
        (10, 0, None, "GPU data missing does not gate"),
        (10, 0, Reading.stale(1, age_s=300), "stale GPU data does not gate"),
        (10, 0, 95, "busy GPUs: the queue is real demand"),
        (10, 0, 10, "at the threshold is not below it"),
        (0, 200, 3, "no queue: scaling on in-flight load is not gated by GPU idleness"),
    ],
)
def test_gpu_guard_lets_through(waiting, running, gpu, why):
    observation = obs(spec=2, waiting=waiting, running=running, gpu=gpu)
    assert guard_scale_up(7, observation, DEFAULTS, starting_for_s=None) == (7, None), why


STARTING = PolicySpec(cold_start_s=90, stuck_start_factor=2)  # a start is stuck after 180 s


@pytest.mark.parametrize(
    ("starting_for_s", "expected", "code"),
    [
        (0.0, 4, "ReplicasStarting"),
        (90.0, 4, "ReplicasStarting"),
        (179.9, 4, "ReplicasStarting"),
        (180.0, 8, None),  # cold_start_s * stuck_start_factor: treated as stuck, let through
        (3600.0, 8, None),
    ],
)
def test_replicas_starting_hold_until_the_start_is_stuck(starting_for_s, expected, code):
    observation = obs(spec=4, ready=2, waiting=40)
    desired, reason = guard_scale_up(8, observation, STARTING, starting_for_s=starting_for_s)
    assert desired == expected
    assert (reason.code if reason else None) == code


def test_replicas_starting_reason_counts_them():
    _, reason = guard_scale_up(8, obs(spec=4, ready=1, waiting=40), STARTING, starting_for_s=30)
    assert "3 replicas starting for 30 s (of up to 180 s) will take up to 96 of the 40 waiting" in reason.message
    

def test_dependency_guard_comes_first():
    observation = obs(spec=4, ready=2, waiting=40, gpu=1, dependencies=(dependency("vector-db", 1.0),))
    _, reason = guard_scale_up(8, observation, STARTING, starting_for_s=10)
    assert reason.code == "DownstreamSaturated"


@pytest.mark.parametrize("desired", [0, 1, 2])
def test_guard_scale_up_ignores_anything_but_a_scale_up(desired):
    observation = obs(spec=2, ready=1, waiting=40, gpu=1, dependencies=(dependency("vector-db", 1.0),))
    assert guard_scale_up(desired, observation, DEFAULTS, starting_for_s=0) == (desired, None)


# --- guard_scale_down --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("desired", "kv", "expected", "code"),
    [
        (2, 0.95, 5, "KVCacheFull"),  # out of cache: about to queue, hold
        (2, 1.0, 5, "KVCacheFull"),
        (2, 0.9, 2, None),  # at the threshold is not above it
        (2, 0.5, 2, None),
        # A guard without its input holds (issue 19, item 10): no KV data is not "cache free".
        (2, None, 5, "GuardInputMissing"),
        (0, None, 5, "GuardInputMissing"),
        (2, Reading.stale(0.99, age_s=120), 5, "GuardInputMissing"),
        (2, Reading.stale(0.1, age_s=120), 5, "GuardInputMissing"),
        (5, 0.99, 5, None),  # not a scale-down
        (7, 0.99, 7, None),
        (7, None, 7, None),  # a scale-up needs no KV reading
        (5, None, 5, None),
    ],
)
def test_guard_scale_down_holds_when_kv_cache_is_high(desired, kv, expected, code):
    result, reason = guard_scale_down(desired, obs(spec=5, kv=kv), DEFAULTS)
    assert result == expected
    assert (reason.code if reason else None) == code


@pytest.mark.parametrize("kv", [None, Reading.stale(0.99, age_s=120), 1.0])
def test_a_kv_guard_set_at_1_can_never_hold_and_so_needs_no_input(kv):
    """kv_cache_hold_down_above: 1 is how a fleet whose engine exports no KV gauge turns the
    guard off: a fraction above 1 is refused at the adapter, so nothing could trip it."""
    off = PolicySpec(kv_cache_hold_down_above=1.0)
    assert guard_scale_down(2, obs(spec=5, kv=kv), off) == (2, None)


def test_a_missing_kv_reading_says_what_is_missing():
    _, reason = guard_scale_down(2, obs(spec=8, kv=None), DEFAULTS)
    assert reason.message == (
        "KV cache use no data: the KV-cache guard cannot tell whether replicas are about to queue; holding at 8 instead of 2"
    )


@pytest.mark.parametrize(
    ("desired", "spec", "ready", "pods", "kv", "expected", "code"),
    [
        # Fewer pods reported than are ready (issue 19, item 2): the sums miss the rest's load.
        (2, 4, 4, 3, 0.1, 4, "PartialData"),
        (0, 2, 2, 1, 0.1, 2, "PartialData"),  # never to zero on them
        (1, 4, 4, 0, 0.1, 4, "PartialData"),
        (2, 4, 4, Reading.stale(4, age_s=120), 0.1, 4, "PartialData"),  # a count not fresh is unknown
        (2, 4, 4, None, 0.1, 4, "PartialData"),  # counted, but no count this tick: unknown, not zero
        (2, 4, 4, 3, None, 4, "PartialData"),  # the first guard that holds gives the reason
        # Scale-ups on partial sums go through: they can only have missed load, not added it.
        (8, 4, 4, 3, 0.1, 8, None),
        (8, 4, 4, None, 0.1, 8, None),
        (4, 4, 4, 3, 0.1, 4, None),  # nothing to hold
        # Every ready pod reported, or more (a pod still draining, a ready count not yet updated).
        (2, 4, 4, 4, 0.1, 2, None),
        (2, 4, 4, 5, 0.1, 2, None),
        (2, 4, 3, 3, 0.1, 2, None),  # one starting: it has no series to miss
        (2, 4, 0, None, 0.1, 2, None),  # none ready: there is no pod whose load could be missed
        (2, 4, 4, "not counted", 0.1, 2, None),  # a source that does not count pods: guard off
    ],
)
def test_guard_scale_down_holds_while_pods_did_not_report(desired, spec, ready, pods, kv, expected, code):
    observation = obs(spec=spec, ready=ready, pods=pods, kv=kv)
    result, reason = guard_scale_down(desired, observation, DEFAULTS)
    assert result == expected
    assert (reason.code if reason else None) == code


def test_a_partial_hold_says_how_many_pods_reported():
    _, reason = guard_scale_down(2, obs(spec=4, pods=3), DEFAULTS)
    assert reason.message == (
        "3 of 4 pods reported: the sums miss the load of the rest, so they can only scale up; holding at 4 instead of 2"
    )
    _, reason = guard_scale_down(2, obs(spec=4, pods=None), DEFAULTS)
    assert reason.message.startswith("the count of pods that reported is no data, of 4 ready:")


# --- stabilize ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("history", "current", "now", "expected", "code"),
    [
        # The docstring's example: 6, 4, 2 inside 300 s keep 6.
        (((0.0, 6), (100.0, 4), (200.0, 2)), 6, 200.0, 6, "ScaleDownStabilized"),
        # At exactly 300 s the 6 is still inside the window.
        (((0.0, 6), (100.0, 4), (300.0, 2)), 6, 300.0, 6, "ScaleDownStabilized"),
        # Once the 6 is older than 300 s, the highest left (4) is allowed.
        (((0.0, 6), (100.0, 4), (301.0, 2)), 6, 301.0, 4, "ScaleDownStabilized"),
        # Once every higher one has aged out, the recommendation stands.
        (((0.0, 6), (100.0, 4), (401.0, 2)), 6, 401.0, 2, None),
        # Down window max above current never pushes the count up.
        (((0.0, 9), (10.0, 5)), 5, 10.0, 5, None),
        # No up window (the default): a scale-up is immediate.
        (((0.0, 1), (10.0, 8)), 2, 10.0, 8, None),
    ],
)
def test_stabilize_default_windows(history, current, now, expected, code):
    desired = history[-1][1]
    result, reason = stabilize(desired, current, history, DEFAULTS, now=now)
    assert result == expected
    assert (reason.code if reason else None) == code


UP_WINDOW = PolicySpec(scale_up_stabilization_s=60, scale_down_stabilization_s=300)


@pytest.mark.parametrize(
    ("history", "current", "now", "expected", "code"),
    [
        # The 2 at t=0 is inside the 60 s up window: up only to the lowest (2), so hold.
        (((0.0, 2), (30.0, 8), (60.0, 8)), 2, 60.0, 2, "ScaleUpStabilized"),
        # The lowest in the window is 5: up to 5, not 8.
        (((0.0, 2), (40.0, 5), (91.0, 8)), 2, 91.0, 5, "ScaleUpStabilized"),
        # Everything below 8 aged out of the up window.
        (((0.0, 2), (30.0, 5), (91.0, 8)), 2, 91.0, 8, None),
    ],
)
def test_stabilize_up_window_takes_the_minimum(history, current, now, expected, code):
    desired = history[-1][1]
    result, reason = stabilize(desired, current, history, UP_WINDOW, now=now)
    assert result == expected
    assert (reason.code if reason else None) == code


def test_stabilize_reason_names_window_and_counts():
    _, reason = stabilize(2, 6, ((0.0, 6), (200.0, 2)), DEFAULTS, now=200.0)
    assert reason.message == "recommendations over the last 300 s allow 6, not 2"


def test_record_keeps_the_longest_window_and_appends():
    history = ((0.0, 6), (100.0, 4), (350.0, 3))
    assert record(history, 2, DEFAULTS, now=400.0) == ((100.0, 4), (350.0, 3), (400.0, 2))
    spec = PolicySpec(scale_up_stabilization_s=600, scale_down_stabilization_s=300)
    assert record(history, 2, spec, now=400.0) == history + ((400.0, 2),)


# --- limit_rate --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("desired", "current", "expected", "code"),
    [
        (20, 2, 6, "ScaleUpLimit"),  # step max(4, 100% of 2) = 4
        (50, 10, 20, "ScaleUpLimit"),  # step max(4, 100% of 10) = 10
        (7, 3, 7, None),  # +4 fits the step
        (9, 0, 4, "ScaleUpLimit"),  # from zero: 4
        (10, 1, 5, "ScaleUpLimit"),
    ],
)
def test_limit_rate_scale_up_step(desired, current, expected, code):
    result, reason = limit_rate(desired, current, DEFAULTS, last_scale_up_at=None, last_scale_down_at=None, now=0.0)
    assert result == expected
    assert (reason.code if reason else None) == code


@pytest.mark.parametrize(
    ("max_step_replicas", "max_step_percent", "current", "expected"),
    [
        (4, 50, 5, 9),  # 50% of 5 -> 3, less than 4
        (1, 50, 5, 8),  # 50% of 5 rounds up to 3
        (2, 300, 3, 12),  # 300% of 3 = 9
    ],
)
def test_limit_rate_scale_up_step_is_the_larger_of_replicas_and_percent(
    max_step_replicas, max_step_percent, current, expected
):
    spec = PolicySpec(scale_up_max_step_replicas=max_step_replicas, scale_up_max_step_percent=max_step_percent)
    result, _ = limit_rate(100, current, spec, last_scale_up_at=None, last_scale_down_at=None, now=0.0)
    assert result == expected


@pytest.mark.parametrize(
    ("now", "expected", "code"),
    [
        (100.0, 2, "ScaleUpLimit"),  # 0 s after the last scale-up
        (129.9, 2, "ScaleUpLimit"),
        (130.0, 3, None),  # 30 s later: allowed
    ],
)
def test_limit_rate_scale_up_period(now, expected, code):
    spec = PolicySpec(scale_up_period_s=30)
    result, reason = limit_rate(3, 2, spec, last_scale_up_at=100.0, last_scale_down_at=None, now=now)
    assert result == expected
    assert (reason.code if reason else None) == code


@pytest.mark.parametrize(
    ("desired", "current", "expected", "code"),
    [
        (1, 10, 5, "ScaleDownLimit"),  # 50% of 10
        (0, 3, 2, "ScaleDownLimit"),  # 50% of 3 rounds down to 1
        (0, 1, 0, None),  # at least one: 50% of 1 is 0, one may go
        (6, 10, 6, None),  # -4 fits the step
        (0, 2, 1, "ScaleDownLimit"),
    ],
)
def test_limit_rate_scale_down_step(desired, current, expected, code):
    result, reason = limit_rate(desired, current, DEFAULTS, last_scale_up_at=None, last_scale_down_at=None, now=0.0)
    assert result == expected
    assert (reason.code if reason else None) == code


@pytest.mark.parametrize(
    ("now", "expected", "code"),
    [
        (100.0, 4, "ScaleDownLimit"),
        (159.0, 4, "ScaleDownLimit"),
        (160.0, 3, None),  # the default 60 s period has passed
    ],
)
def test_limit_rate_scale_down_period(now, expected, code):
    result, reason = limit_rate(3, 4, DEFAULTS, last_scale_up_at=None, last_scale_down_at=100.0, now=now)
    assert result == expected
    assert (reason.code if reason else None) == code


def test_limit_rate_periods_are_per_direction():
    spec = PolicySpec(scale_up_period_s=30, scale_down_period_s=60)
    # A recent scale-down does not delay a scale-up, and the other way round.
    assert limit_rate(5, 4, spec, last_scale_up_at=None, last_scale_down_at=99.0, now=100.0) == (5, None)
    assert limit_rate(3, 4, spec, last_scale_up_at=99.0, last_scale_down_at=None, now=100.0) == (3, None)


def test_limit_rate_hold_is_silent():
    assert limit_rate(4, 4, DEFAULTS, last_scale_up_at=99.0, last_scale_down_at=99.0, now=100.0) == (4, None)


# --- clamp -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("desired", "floor", "cap", "expected", "code"),
    [
        (0, 1, 10, 1, "BelowFloor"),
        (1, 1, 10, 1, None),
        (5, 1, 10, 5, None),
        (10, 1, 10, 10, None),
        (11, 1, 10, 10, "AboveCap"),
        (0, 0, 10, 0, None),
        (3, 3, 3, 3, None),
    ],
)
def test_clamp(desired, floor, cap, expected, code):
    result, reason = clamp(desired, floor=floor, cap=cap, floor_why="the floor", cap_why="max_replicas")
    assert result == expected
    assert (reason.code if reason else None) == code


def test_clamp_reasons_carry_the_why():
    assert clamp(0, floor=2, cap=5, floor_why="keep two warm", cap_why="")[1].message == "0 raised to 2: keep two warm"
    assert clamp(9, floor=2, cap=5, floor_why="", cap_why="max_replicas")[1].message == "9 lowered to 5: max_replicas"


def test_steps_accept_the_policy_kind_specs():
    # The steps take the base PolicySpec; the kinds are subclasses and must work the same.
    assert recommend(obs(waiting=12), HotSpec())[0] == 3


@settings(max_examples=300, deadline=None)
@given(
    up_s=st.sampled_from([0.0, 30.0, 60.0]),
    down_s=st.sampled_from([0.0, 60.0, 300.0]),
    ticks=st.lists(st.tuples(st.sampled_from([1.0, 5.0, 10.0, 45.0]), st.integers(0, 8), st.integers(0, 8)), min_size=1, max_size=80),
)
def test_the_pruned_history_stabilizes_exactly_as_the_whole_one(up_s, down_s, ticks):
    """record() keeps only what can still be a window's min or max; stabilize() must read the
    same from it as from every recommendation of the windows."""
    spec = HotSpec(scale_up_stabilization_s=up_s, scale_down_stabilization_s=down_s)
    keep_s = max(up_s, down_s)
    now, pruned, whole = 0.0, (), ()
    for dt, desired, current in ticks:
        now += dt
        pruned = record(pruned, desired, spec, now=now)
        whole = tuple((t, r) for t, r in whole if now - t <= keep_s) + ((now, desired),)
        assert stabilize(desired, current, pruned, spec, now=now) == stabilize(desired, current, whole, spec, now=now)
        assert len(pruned) <= len(whole)

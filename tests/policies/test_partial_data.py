"""Decisions on incomplete data, for every policy kind (issue 19, items 2 and 10).

Item 2: a pod whose scrape failed has no series, so the sums over the model's pods miss its
load. Fewer pods reporting than ready replicas means no scale-down and never zero; a scale-up
on those sums stays allowed, as they can only have missed load (the HPA's rule).
Item 10: the KV-cache guard without its reading holds, it does not switch off.

Each row is a state in which the same observation with complete data does scale down (the
control rows say so), so a hold in the other rows is due to the missing pods or reading alone.
"""

from __future__ import annotations

import pytest

from policies import BatchSpec, HotSpec, LongTailSpec, PolicyState, Reading, decide
from tests.policies.builders import obs

NOW = 3600.0
# No stabilization window nor rate limit in the way: a scale-down shows at once.
HOT = HotSpec(min_replicas=1, max_replicas=10, scale_down_stabilization_s=0, scale_down_period_s=0)
TAIL = LongTailSpec(cold_start_s=90, scale_down_stabilization_s=0, scale_down_period_s=0)
BATCH = BatchSpec(replica_throughput_rps=2.0, drain_deadline_s=3600, cold_start_s=120, drain_grace_s=120, max_replicas=20)
# Idle for an hour: a long-tail model goes to zero, a batch model past its drain grace drains.
IDLE_FOR_AN_HOUR = PolicyState(idle_since=0.0, first_seen=(0.0, 1))
SEEN = PolicyState(first_seen=(0.0, 1))

ROWS = [
    # id, spec, state, observation, what the decision must be, its reason code (None: any)
    # -- item 2: a hot model with 112 in flight whose busiest pod was lost read 40 in flight.
    ("hot, all 4 reported: the control", HOT, SEEN, obs(spec=4, running=40, pods=4), "down", None),
    ("hot, 3 of 4 reported", HOT, SEEN, obs(spec=4, running=40, pods=3), "hold", "PartialData"),
    ("hot, count unknown", HOT, SEEN, obs(spec=4, running=40, pods=None), "hold", "PartialData"),
    ("hot, 3 of 4, a queue: up", HOT, SEEN, obs(spec=4, waiting=40, running=120, pods=3), "up", None),
    # -- item 2: a long-tail model with 5 running on the lost pod read idle.
    ("long-tail, both reported: the control", TAIL, IDLE_FOR_AN_HOUR, obs(spec=2, pods=2), "zero", "IdleTimeout"),
    ("long-tail, 1 of 2 reported", TAIL, IDLE_FOR_AN_HOUR, obs(spec=2, pods=1), "hold", "PartialData"),
    ("long-tail, count unknown", TAIL, IDLE_FOR_AN_HOUR, obs(spec=2, pods=Reading.stale(2, age_s=120)), "hold", "PartialData"),
    ("long-tail, 1 of 2, a queue: up", TAIL, SEEN, obs(spec=2, waiting=20, pods=1), "up", None),
    # -- item 2: a batch model mid-job whose pods with the work were lost read drained.
    ("batch, all reported: the control", BATCH, IDLE_FOR_AN_HOUR, obs(spec=3, pods=3), "zero", "Drained"),
    ("batch, 2 of 3 reported, nothing seen", BATCH, IDLE_FOR_AN_HOUR, obs(spec=3, pods=2), "hold", "PartialData"),
    ("batch, 2 of 3 reported, a little seen", BATCH, SEEN, obs(spec=3, waiting=10, pods=2), "hold", "PartialData"),
    ("batch, 2 of 3, a large backlog: up", BATCH, SEEN, obs(spec=3, waiting=30_000, pods=2), "up", None),
    # -- item 10: 8 replicas whose KV reading is lost (it had been at 97%), the queue empty.
    ("hot, KV at 97%", HOT, SEEN, obs(spec=8, running=40, kv=0.97), "hold", "KVCacheFull"),
    ("hot, KV reading lost", HOT, SEEN, obs(spec=8, running=40, kv=None), "hold", "GuardInputMissing"),
    ("hot, KV stale", HOT, SEEN, obs(spec=8, running=40, kv=Reading.stale(0.97, age_s=120)), "hold", "GuardInputMissing"),
    ("hot, KV lost, a queue: up", HOT, SEEN, obs(spec=8, waiting=80, running=300, kv=None), "up", None),
    ("long-tail, KV reading lost", TAIL, SEEN, obs(spec=3, running=1, kv=None), "hold", "GuardInputMissing"),
    ("hot, KV guard off (1), KV lost", HOT.model_copy(update={"kv_cache_hold_down_above": 1.0}), SEEN,
     obs(spec=8, running=40, kv=None), "down", None),
]


@pytest.mark.parametrize(("spec", "state", "observation", "outcome", "code"), [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_incomplete_data_never_scales_down_and_never_to_zero(spec, state, observation, outcome, code):
    decision, _ = decide(observation, state, spec, now=NOW)
    current, desired = decision.current_replicas, decision.desired_replicas
    if outcome == "zero":
        assert desired == 0, decision.explain()
    else:
        assert decision.direction == outcome, decision.explain()
        assert desired >= 1
    if code is not None:
        assert code in decision.reason_codes, decision.explain()
    if outcome == "hold":
        assert desired == current


def test_a_partial_tick_restarts_the_idle_count_as_a_gap_does():
    """The lost pod may be the one serving: an idle period is not seen through partial data."""
    _, state = decide(obs(spec=2, pods=1), IDLE_FOR_AN_HOUR, TAIL, now=NOW)
    assert state.idle_since is None
    assert state.idle_gaps == (), "nor did demand end an idle period: nothing was seen"
    _, state = decide(obs(spec=2, pods=1), IDLE_FOR_AN_HOUR, BATCH, now=NOW)
    assert state.idle_since is None


def test_no_service_rate_is_learned_from_sums_over_some_of_the_pods():
    """Completions of 3 pods over 4 ready ones would read a replica a quarter slower than it is."""
    saturated = PolicyState(saturated_since=0.0, ready_history=((0.0, 4),), first_seen=(0.0, 4))
    observation = obs(spec=4, waiting=40, running=120, completions=6.0, pods=3)
    _, state = decide(observation, saturated, HOT, now=NOW)
    assert state.service_rate_per_replica is None
    _, state = decide(obs(spec=4, waiting=40, running=120, completions=6.0, pods=4), saturated, HOT, now=NOW)
    assert state.service_rate_per_replica == 1.5  # the control: 6 req/s over 4 replicas

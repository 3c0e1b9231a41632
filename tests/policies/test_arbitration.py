"""Arbitration of a shared GPU pool: tables of claims and capacities against the counts each
model gets, the reasons a cut decision carries, and properties over random pools."""

from __future__ import annotations

import dataclasses

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import Decision, Reason, ReasonCode
from policies.arbitration import Claim, Stamped, arbitrate, pool_capacity


def claim(model: str, kind: str, current: int, desired: int, *, gpus: int = 1, minimum: int | None = None,
          pressure: float | None = 10.0, floor: int | None = None, cap: int = 100, needed: int | None = None) -> Claim:
    minimum = (1 if kind == "hot" else 0) if minimum is None else minimum
    decision = Decision(current, desired, minimum if floor is None else floor, cap, (Reason(ReasonCode.Recommendation, "test"),),
                        needed_replicas=needed)
    return Claim(model, kind, gpus, minimum, pressure, decision)


def granted(claims: list[Claim], capacity: int) -> dict[str, int]:
    decisions = arbitrate(claims, pool="a100", capacity_gpus=capacity)
    return {c.model: d.desired_replicas for c, d in zip(claims, decisions)}


CASES = {
    "everything fits: nothing changes": (
        [claim("chat", "hot", 6, 8), claim("embed", "batch", 6, 6)], 16, {"chat": 8, "embed": 6}),
    "a hot scale-up takes batch GPUs above batch's minimum": (
        [claim("chat", "hot", 6, 10), claim("tail", "long-tail", 2, 2), claim("embed", "batch", 6, 6)], 16,
        {"chat": 10, "tail": 2, "embed": 4}),
    "batch keeps its minimum even against a hot scale-up": (
        [claim("chat", "hot", 6, 12), claim("embed", "batch", 4, 4, minimum=2)], 10, {"chat": 8, "embed": 2}),
    "a long-tail wake takes batch GPUs too": (
        [claim("tail", "long-tail", 0, 1), claim("embed", "batch", 8, 8)], 8, {"tail": 1, "embed": 7}),
    "hot scale-ups come before long-tail scale-ups": (
        [claim("chat", "hot", 4, 8), claim("tail", "long-tail", 2, 6)], 10, {"chat": 8, "tail": 2}),
    # Running 4 + 4, 4 GPUs free; chat has 80 waiting (20 per GPU), code 40 (10 per GPU):
    # chat takes replicas until its queue per GPU meets code's, 80 / 8 = 10.
    "two hot scale-ups share by requests waiting per GPU": (
        [claim("chat", "hot", 4, 8, pressure=80), claim("code", "hot", 4, 8, pressure=40)], 12, {"chat": 8, "code": 4}),
    "equal pressure splits evenly, ties by name": (
        [claim("b", "hot", 2, 6, pressure=20), claim("a", "hot", 2, 6, pressure=20)], 7, {"a": 4, "b": 3}),
    "running interactive replicas are never cut while the pool holds them": (
        [claim("chat", "hot", 6, 6), claim("tail", "long-tail", 4, 4), claim("code", "hot", 2, 9)], 12,
        {"chat": 6, "tail": 4, "code": 2}),
    "a shrunken pool cuts long-tail before hot": (
        [claim("chat", "hot", 6, 6), claim("tail", "long-tail", 4, 4)], 8, {"chat": 6, "tail": 2}),
    # The floors need 20 GPUs of 12: every floor stands (the pool is over-committed and says so).
    "every minimum holds even when the pool cannot hold them all": (
        [claim("chat", "hot", 2, 2, minimum=2, gpus=4, pressure=30), claim("code", "hot", 2, 2, minimum=2, gpus=4, pressure=10),
         claim("embed", "batch", 1, 1, minimum=1, gpus=4)], 12, {"chat": 2, "code": 2, "embed": 1}),
    # Issue 19, item 1: a pool that reads 0 GPUs (both nodes NotReady) took chat from 8 to 0.
    "a hot model keeps its floor in a pool of no GPUs": (
        [claim("chat", "hot", 8, 10, minimum=2, pressure=40), claim("tail", "long-tail", 2, 2), claim("embed", "batch", 4, 4)], 0,
        {"chat": 2, "tail": 0, "embed": 0}),
    "two hot models keep their floor of 1 in a pool that holds one of them": (
        [claim("chat", "hot", 4, 4, minimum=1, gpus=8), claim("code", "hot", 4, 4, minimum=1, gpus=8)], 8, {"chat": 1, "code": 1}),
    "a scale-down frees GPUs for another model's scale-up": (
        [claim("chat", "hot", 8, 4), claim("code", "hot", 2, 10)], 12, {"chat": 4, "code": 8}),
    # chat needs 4 GPUs a replica and only 2 are left: batch may use those 2.
    "GPUs too few for a replica of a big model go to a smaller one": (
        [claim("chat", "hot", 2, 3, gpus=4), claim("embed", "batch", 0, 4)], 10, {"chat": 2, "embed": 2}),
    "a model without GPUs is never cut": (
        [claim("cpu", "hot", 2, 5, gpus=0), claim("chat", "hot", 4, 6)], 4, {"cpu": 5, "chat": 4}),
    "a model without load data ranks after those with": (
        [claim("blind", "hot", 2, 4, pressure=None), claim("seen", "hot", 2, 4, pressure=1)], 6, {"blind": 2, "seen": 4}),
    # tail woke to a backlog and runs 6; its load needs 2 now, its 300 s window keeps the rest.
    "a long-tail model's replicas kept only by stabilization go to a hot scale-up": (
        [claim("tail", "long-tail", 6, 6, needed=2), claim("code", "hot", 8, 11)], 14, {"tail": 3, "code": 11}),
    "and to another long-tail model's wake": (
        [claim("tail-a", "long-tail", 4, 4, needed=1), claim("tail-b", "long-tail", 0, 1)], 4, {"tail-a": 3, "tail-b": 1}),
    "but not to batch": (
        [claim("tail", "long-tail", 6, 6, needed=2), claim("embed", "batch", 0, 4)], 8, {"tail": 6, "embed": 2}),
    # A hot model's stabilization window is kept: its load comes back within minutes, and a
    # replica lent away costs a cold start to get back.
    "a hot model's replicas kept by stabilization stay with it": (
        [claim("chat", "hot", 12, 12, needed=7), claim("code", "hot", 8, 11)], 20, {"chat": 12, "code": 8}),
    # chat sizes up from requests in flight with nothing queued: free GPUs only.
    "a scale-up with nothing waiting takes no running batch replica": (
        [claim("chat", "hot", 6, 10, pressure=0), claim("embed", "batch", 6, 6)], 14, {"chat": 8, "embed": 6}),
    "nor does one without data": (
        [claim("chat", "hot", 6, 10, pressure=None), claim("embed", "batch", 6, 6)], 14, {"chat": 8, "embed": 6}),
    "but it still comes before batch growth": (
        [claim("chat", "hot", 6, 10, pressure=0), claim("embed", "batch", 2, 6)], 12, {"chat": 10, "embed": 2}),
    "a model going to zero needs nothing": (
        [claim("tail", "long-tail", 3, 0), claim("embed", "batch", 0, 10)], 6, {"tail": 0, "embed": 6}),
}


@pytest.mark.parametrize(("claims", "capacity", "expected"), CASES.values(), ids=CASES.keys())
def test_arbitration(claims, capacity, expected):
    assert granted(claims, capacity) == expected


@pytest.mark.parametrize(("claims", "capacity", "expected"), CASES.values(), ids=CASES.keys())
def test_input_order_does_not_matter(claims, capacity, expected):
    for order in itertools.permutations(claims):
        assert granted(list(order), capacity) == expected


def test_a_cut_decision_says_why_with_the_numbers():
    claims = [claim("chat", "hot", 6, 10), claim("tail", "long-tail", 2, 2), claim("embed", "batch", 6, 6)]
    chat, tail, embed = arbitrate(claims, pool="a100", capacity_gpus=16)
    assert chat is claims[0].decision and tail is claims[1].decision  # not cut: untouched
    assert embed.reason_codes == ("Recommendation", "PoolArbitration")
    assert embed.reasons[-1].message == (
        "pool a100: 16 GPUs, its models want 18; embed (batch, 1 GPU per replica) gets 4 of 6 replicas, cut 6->4: "
        "batch yields its GPUs to interactive models first (granted: chat 10x1, tail 2x1, embed 4x1)"
    )


def test_a_scale_up_held_for_batch_says_why():
    chat, _ = arbitrate([claim("chat", "hot", 6, 10, pressure=0), claim("embed", "batch", 6, 6)], pool="a100", capacity_gpus=14)
    assert "gets 8 of 10 replicas, held at 8: nothing waiting, so its scale-up grows only into free GPUs" in chat.reasons[-1].message


def test_a_held_scale_up_says_so():
    (chat, _) = arbitrate([claim("chat", "hot", 4, 8), claim("code", "hot", 6, 6)], pool="h100", capacity_gpus=10)
    assert chat.desired_replicas == 4
    assert "held at 4" in chat.reasons[-1].message
    assert "no free GPUs left for its scale-up" in chat.reasons[-1].message


def test_a_cut_of_replicas_kept_by_stabilization_says_so():
    tail, _ = arbitrate([claim("tail", "long-tail", 6, 6, needed=2), claim("code", "hot", 8, 11)], pool="a100", capacity_gpus=14)
    assert "gets 3 of 6 replicas, cut 6->3: its load needs 2 now; the replicas above that, kept by its scale-down " \
           "stabilization, go to models whose load needs them" in tail.reasons[-1].message


def test_floor_and_cap_follow_the_cut():
    """KEDA bounds mode writes floor and cap: its HPA must not grow past what the pool gave."""
    (chat, embed) = arbitrate([claim("chat", "hot", 6, 10), claim("embed", "batch", 6, 6, floor=3, cap=10)],
                              pool="a100", capacity_gpus=12)
    assert (embed.desired_replicas, embed.floor, embed.cap) == (2, 2, 2)
    assert (chat.desired_replicas, chat.floor, chat.cap) == (10, 1, 100)


def test_an_over_committed_pool_keeps_every_floor_and_each_decision_says_so():
    """Issue 19, item 1: the KEDA bounds written from this decision were 0..0. The floor and the
    cap a bounds-mode target writes stay at the hot model's minimum of 2."""
    chat, embed = arbitrate([claim("chat", "hot", 8, 10, minimum=2, gpus=2, pressure=40), claim("embed", "batch", 3, 3, minimum=1, gpus=2)],
                            pool="a100", capacity_gpus=4)
    assert (chat.desired_replicas, chat.floor, chat.cap) == (2, 2, 2)
    assert (embed.desired_replicas, embed.floor, embed.cap) == (1, 1, 1)
    for decision in (chat, embed):
        assert decision.reason_codes[-2:] == ("PoolArbitration", "PoolOverCommitted")
        assert decision.reasons[-1].message == (
            "pool a100: 4 GPUs, its models' floors alone need 6 (chat 2x2, embed 1x2); every floor is kept "
            "(min_replicas, a hot model's at least 1, and what a model without load data runs), and the replicas that do not fit wait for the scheduler"
        )


def test_a_pool_that_holds_its_floors_is_not_over_committed():
    decisions = arbitrate([claim("chat", "hot", 6, 10, minimum=2), claim("embed", "batch", 6, 6)], pool="a100", capacity_gpus=8)
    assert not any("PoolOverCommitted" in d.reason_codes for d in decisions)


def test_a_model_without_load_data_keeps_what_it_runs_when_a_node_leaves_the_pool():
    """Missing is not zero: the soak found a hot model with stale readings cut 5 -> 4 when
    the pool read fewer GPUs than its models ran. Its replicas may be serving; the model with
    data gives way, and past that the pool is over-committed."""
    blind = claim("blind", "hot", 5, 5, minimum=1, pressure=None)
    seen = claim("seen", "hot", 5, 5, minimum=1, pressure=0.0)
    got = arbitrate([blind, seen], pool="a100", capacity_gpus=8)
    assert [d.desired_replicas for d in got] == [5, 3]
    assert "PoolArbitration" in got[1].reason_codes and "PoolArbitration" not in got[0].reason_codes
    got = arbitrate([blind, seen], pool="a100", capacity_gpus=4)
    assert [d.desired_replicas for d in got] == [5, 1]
    assert all("PoolOverCommitted" in d.reason_codes for d in got)


def test_an_unknown_kind_is_refused_with_its_name():
    with pytest.raises(ValueError, match="'interactive'"):
        claim("x", "interactive", 1, 1)


# -- properties over random pools -----------------------------------------------------------

@st.composite
def pools(draw):
    count = draw(st.integers(1, 6))
    claims = []
    for i in range(count):
        kind = draw(st.sampled_from(["hot", "long-tail", "batch"]))
        minimum = draw(st.integers(1 if kind == "hot" else 0, 3))
        desired = draw(st.integers(minimum, 12))
        current = draw(st.integers(0, 12))
        pressure = draw(st.one_of(st.none(), st.floats(0, 500)))
        needed = draw(st.one_of(st.none(), st.integers(0, desired)))
        made = claim(f"m{i}", kind, current, desired, gpus=draw(st.sampled_from([0, 1, 1, 2, 4, 8])),
                     minimum=minimum, pressure=pressure, needed=needed)
        claims.append(dataclasses.replace(made, load_unknown=draw(st.booleans())))
    return claims, draw(st.integers(0, 80))


def floor(c: Claim) -> int:
    """What a claim keeps whatever the pool: its minimum (as far as it asks), and without load
    data the replicas it runs (as far as it asks): missing is not zero."""
    asked = c.decision.desired_replicas
    kept = min(c.minimum, asked)
    return kept if c.pressure is not None and not c.load_unknown else max(kept, min(c.decision.current_replicas, asked))


@settings(max_examples=400, deadline=None)
@given(pools())
def test_properties(pool):
    claims, capacity = pool
    decisions = arbitrate(claims, pool="p", capacity_gpus=capacity)
    got = {c.model: d.desired_replicas for c, d in zip(claims, decisions)}
    used = sum(got[c.model] * c.gpus_per_replica for c in claims)
    # Never more than asked, and never more than the pool holds (unless nothing was cut).
    assert all(got[c.model] <= c.decision.desired_replicas for c in claims)
    # Never below a floor (a hot model's minimum is at least 1: never at zero), whatever the pool
    # holds; above the pool only by the floors, and then every decision says it is over-committed.
    floors = {c.model: floor(c) for c in claims}
    assert all(got[c.model] >= floors[c.model] for c in claims)
    assert all(got[c.model] >= 1 for c in claims if c.kind == "hot")
    floors_gpus = sum(floors[c.model] * c.gpus_per_replica for c in claims)
    assert used <= max(capacity, floors_gpus) or got == {c.model: c.decision.desired_replicas for c in claims}
    if floors_gpus > capacity and used > capacity:
        assert all("PoolOverCommitted" in d.reason_codes for d in decisions)
    # Every cut says so.
    for c, d in zip(claims, decisions):
        assert (d.desired_replicas < c.decision.desired_replicas) == ("PoolArbitration" in d.reason_codes)
    # A hot model with requests waiting is cut only while batch models hold above their minimum
    # fewer GPUs than one of its replicas: batch never keeps what such a replica could have used.
    batch_surplus = sum((got[c.model] - floor(c)) * c.gpus_per_replica
                        for c in claims if c.kind == "batch")
    for c in claims:
        if c.kind == "hot" and got[c.model] < c.decision.desired_replicas and c.pressure:
            assert batch_surplus < c.gpus_per_replica
    # Running interactive replicas that the load needs are kept whenever they and the minimums fit.
    def kept(c: Claim) -> int:
        running = min(c.decision.current_replicas, c.decision.desired_replicas)
        return max(running if c.kind == "hot" else min(running, c.decision.needed), floor(c))

    keep = sum(kept(c) * c.gpus_per_replica for c in claims if c.kind != "batch")
    keep += sum(floor(c) * c.gpus_per_replica for c in claims if c.kind == "batch")
    if keep <= capacity:
        for c in claims:
            if c.kind != "batch":
                assert got[c.model] >= kept(c)


def test_headroom_for_bursts_comes_after_every_models_load():
    # A hot model asks for 6, 2 of them headroom for bursts; a long-tail model's load asks for
    # 3 more than it runs. With 7 GPUs, the long-tail load goes first.
    hot = Claim("chat", "hot", 1, 1, 10.0, Decision(4, 6, 1, 100, (Reason(ReasonCode.BurstHeadroom, "test"),), needed_replicas=4, headroom_replicas=2))
    tail = claim("tail", "long-tail", 0, 3, pressure=20.0)
    decisions = arbitrate([hot, tail], pool="a100", capacity_gpus=7)
    assert [d.desired_replicas for d in decisions] == [4, 3]
    assert "its load asks for 4; the 2 it keeps ahead of bursts come after every model's load" in decisions[0].explain()


# -- what a pool holds: drops stabilized, 0 as no data ----------------------------------------


def capacities(reads: list[tuple[float, int | None]], *, window_s: float = 300.0) -> list[int | None]:
    readings, result = (), []
    for now, read in reads:
        capacity, readings = pool_capacity(readings, read, window_s=window_s, now=now)
        result.append(capacity.gpus)
    return result


CAPACITY_CASES = {
    "a rise acts at once": ([(0, 8), (10, 16)], [8, 16]),
    "a drop acts once no reading of the window is higher": ([(0, 16), (100, 8), (300, 8), (301, 8)], [16, 16, 16, 8]),
    "a drop that recovers within the window never acts": ([(0, 16), (100, 8), (200, 16), (450, 16)], [16, 16, 16, 16]),
    "the highest reading of the window stands, step by step": ([(0, 16), (100, 12), (200, 8), (350, 8), (450, 8)], [16, 16, 16, 12, 8]),
    # Issue 19, item 1: both nodes NotReady or cordoned read 0 GPUs.
    "a reading of 0 is no data: the last reading stands, however old": ([(0, 16), (10, 0), (5000, 0)], [16, 16, 16]),
    "so is an unreadable pool": ([(0, 16), (10, None), (5000, None)], [16, 16, 16]),
    "a drop then 0: the drop acts after its window, 0 never": ([(0, 16), (100, 8), (200, 0), (401, 0)], [16, 16, 16, 8]),
    "0 or nothing before any reading: unknown": ([(0, 0), (10, None), (20, 8)], [None, None, 8]),
}


@pytest.mark.parametrize(("reads", "expected"), CAPACITY_CASES.values(), ids=CAPACITY_CASES.keys())
def test_pool_capacity(reads, expected):
    assert capacities(reads) == expected


def test_a_window_of_0_follows_every_positive_reading_and_still_takes_0_as_no_data():
    assert capacities([(0, 16), (10, 8), (20, 0)], window_s=0.0) == [16, 8, 8]


def test_a_held_drop_says_what_the_nodes_read_and_until_when():
    readings = pool_capacity((), 16, window_s=300, now=0)[1]
    held, _ = pool_capacity(readings, 8, window_s=300, now=40)
    assert (held.gpus, held.read_now) == (16, 8)
    assert held.origin == "16 as read 40 s ago: the nodes read 8 now, and a pool's capacity is the highest it read in the last 300 s"
    zero, _ = pool_capacity(readings, 0, window_s=300, now=30)
    assert (zero.gpus, zero.read_now) == (16, 0)
    assert zero.origin == (
        "16 as last read 30 s ago: the nodes read 0 GPUs now (none Ready and schedulable), which is no data, not an empty pool"
    )
    unknown, _ = pool_capacity((), 0, window_s=300, now=0)
    assert unknown.gpus is None and "the nodes read 0 GPUs (none Ready and schedulable), which is no data" in unknown.origin


def test_only_readings_that_can_still_be_a_windows_highest_are_kept():
    readings = ()
    for now, read in [(0, 8), (10, 12), (20, 16), (30, 10)]:
        _, readings = pool_capacity(readings, read, window_s=300, now=now)
    assert readings == (Stamped(20, 16), Stamped(30, 10))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 400), st.one_of(st.none(), st.integers(0, 64))), min_size=1, max_size=30),
       st.floats(0, 600))
def test_pool_capacity_properties(steps, window_s):
    """Once anything positive was read the pool is never unknown nor 0, and it is never below
    a positive reading of the last window_s."""
    readings, now, seen = (), 0.0, []
    for step_s, read in steps:
        now += step_s
        capacity, readings = pool_capacity(readings, read, window_s=window_s, now=now)
        if read:
            seen.append((now, read))
        if not seen:
            assert capacity.gpus is None
            continue
        assert capacity.gpus is not None and capacity.gpus >= 1
        assert capacity.gpus >= max((r for t, r in seen if now - t <= window_s), default=0)
        assert capacity.gpus <= max(r for _, r in seen)

"""No learned figure that its own consequences cannot correct (issue 17, item 1).

The runaway: a long-tail model's Little's-law estimate of 0.08 req/s per replica, taken once
from a minute that mixed a few requests with idle time just after a wake, sized it at 60
replicas for 17 requests in flight with nothing waiting; with that many replicas each ran
too few requests for a new sample to replace the estimate. Pure policy tests, closed loop:
each tick observes the count the last decision asked for."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from policies import LongTailSpec, PolicyState
from policies.spec import HotSpec
from tests.policies.builders import closed_loop, every, obs

TARGET = 32.0  # the default target_running_per_replica


def need(running: float) -> int:
    return math.ceil(running / TARGET)


def test_the_runaway_comes_down_and_the_estimate_that_caused_it_is_corrected():
    spec = LongTailSpec(cold_start_s=120, max_replicas=80)
    state = PolicyState(service_rate_estimate=0.08)
    trace = closed_loop(
        spec, start_replicas=54, state=state, times=every(10, start=0, stop=1200),
        observe=lambda now, replicas: obs(replicas, running=17, completions=4.55, kv=0.1),
    )
    first = trace[0]
    assert "InFlightBound" in first.codes, first.decision.explain()
    assert "0.08 req/s per replica" in first.decision.explain()
    # Fewer replicas each run enough requests for a new sample: the estimate moves off 0.08.
    assert trace[-1].state.service_rate_estimate > 0.08
    # 17 in flight at 32 per replica need 1; the bound allows 2. One scale-down window (300 s)
    # and the halving steps of the rate limit later, the count is there.
    assert max(t.desired for t in trace if t.now >= 300 + 60 * 6) <= 2
    assert max(t.desired for t in trace) <= 54, "never up on nothing waiting"
    assert "InFlightBound" not in trace[-1].codes, "the corrected estimate no longer asks for more"


def test_a_queue_lifts_the_bound():
    """Something waiting is evidence that the replicas do not keep up: the rate decides."""
    spec = HotSpec(max_replicas=80)
    state = PolicyState(service_rate_estimate=0.5)
    [tick] = closed_loop(spec, start_replicas=4, state=state, times=[0.0],
                         observe=lambda now, replicas: obs(replicas, running=60, waiting=12, completions=4.0, kv=0.1))
    assert "InFlightBound" not in tick.codes
    assert tick.desired > 2 * need(60 + 12)


@settings(max_examples=150, deadline=None)
@given(
    start=st.integers(2, 80),
    estimate=st.floats(0.01, 50),
    loads=st.lists(st.tuples(st.floats(0, 0.25), st.floats(0, 20)), min_size=80, max_size=80),
    hot=st.booleans(),
)
def test_with_nothing_waiting_and_replicas_under_a_quarter_full_the_count_falls_within_a_window(start, estimate, loads, hot):
    """Over any sequence in which nothing waits and running per replica stays under a quarter
    of the target, the count comes, within one scale-down window and the halving steps of the
    scale-down rate limit, to at most twice the in-flight need seen over that window (or the
    floor)."""
    spec = HotSpec(max_replicas=80) if hot else LongTailSpec(cold_start_s=60, max_replicas=80)
    state = PolicyState(service_rate_estimate=estimate)
    seen: list[float] = []

    def observe(now: float, replicas: int):
        share, completions = loads[int(now // 10) % len(loads)]
        running = math.floor(share * TARGET * replicas)
        seen.append(running)
        return obs(replicas, running=running, completions=completions, kv=0.1)

    trace = closed_loop(spec, start_replicas=start, state=state, times=every(10, start=0, stop=790), observe=observe)
    settle_s = spec.scale_down_stabilization_s + spec.scale_down_period_s * math.ceil(math.log2(80))
    floor = spec.min_replicas
    for tick in trace:
        if tick.now < settle_s:
            continue
        window = [r for t, r in zip(trace, seen) if tick.now - spec.scale_down_stabilization_s <= t.now <= tick.now]
        bound = max(math.ceil(spec.in_flight_bound * max(window) / TARGET), floor)
        # Sized by the in-flight targets (no rate) the count may sit at its own recommendation.
        assert tick.desired <= max(bound, need(max(window))), (tick.now, tick.decision.explain())

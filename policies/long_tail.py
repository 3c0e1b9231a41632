"""The long-tail policy: a model with sparse traffic. It keeps one replica warm while requests
come, scales to zero after an idle time derived from its cold-start time and learned from its
own idle periods (idle_timeout), and wakes to one replica as soon as the wake signal shows
demand. At zero no vLLM series exist, so only the wake signal is read there."""

from __future__ import annotations

from policies import steps
from policies.decision import Decision, PolicyState, Reason
from policies.pipeline import advance, scale_on_load
from policies.reasons import ReasonCode
from policies.signals import Observation
from policies.spec import LongTailSpec


def decide(
    observation: Observation, state: PolicyState, spec: LongTailSpec, *, now: float
) -> tuple[Decision, PolicyState]:
    if observation.spec_replicas == 0:
        return _at_zero(observation, state, spec, now=now)

    wake = observation.wake
    # Sums that miss a pod (Observation.unreported) cannot show idleness: the lost pod may be
    # the one serving. Like a gap in the data, they restart the idle count.
    load_known = observation.waiting.usable and observation.running.usable and observation.unreported() is None
    idle = (
        load_known
        and observation.waiting.value == 0
        and observation.running.value == 0
        and not (wake.usable and wake.number > spec.wake_threshold)
    )
    # Idleness must be seen without a break: a gap in the data restarts the count, so an
    # outage never shortens the time a model is kept warm.
    idle_since = (now if state.idle_since is None else state.idle_since) if idle else None
    gaps = state.idle_gaps
    if load_known and not idle and state.idle_since is not None:
        gaps = _remembered(gaps, now - state.idle_since, spec)  # demand ended an idle period
    timeout_s, origin = idle_timeout(spec, gaps)

    if idle_since is not None and spec.min_replicas == 0 and now - idle_since >= timeout_s:
        # Like KEDA after its cooldown, straight from N to 0: the idle time was the stabilization.
        decision = Decision(
            current_replicas=observation.spec_replicas,
            desired_replicas=0,
            floor=0,
            cap=spec.max_replicas,
            reasons=(
                Reason(
                    ReasonCode.IdleTimeout,
                    f"no request for {now - idle_since:.0f} s >= idle timeout {timeout_s:.0f} s ({origin}); scaling to zero",
                ),
            ),
        )
        return decision, advance(state, decision, now=now, idle_since=idle_since, idle_gaps=gaps, recommendations=())

    floor = max(spec.min_replicas, 1)
    if idle_since is not None and spec.min_replicas == 0:
        left_s = timeout_s - (now - idle_since)
        why = f"idle for {now - idle_since:.0f} s; {left_s:.0f} s left of the {timeout_s:.0f} s before scale-to-zero"
    else:
        why = f"a long-tail model keeps at least {floor} warm while in use or while min_replicas says so"
    return scale_on_load(
        observation, state, spec, now=now, floor=floor, floor_why=why, remember={"idle_since": idle_since, "idle_gaps": gaps}
    )


def _at_zero(
    observation: Observation, state: PolicyState, spec: LongTailSpec, *, now: float
) -> tuple[Decision, PolicyState]:
    """The idle period that took the model to zero goes on until the wake signal ends it."""
    wake = observation.wake
    floor = max(spec.min_replicas, 1)
    idle_since, gaps = state.idle_since, state.idle_gaps
    if wake.usable and wake.number > spec.wake_threshold:
        desired = floor
        reasons: tuple[Reason, ...] = (
            Reason(ReasonCode.Wake, f"wake signal {wake.value:g} > {spec.wake_threshold:g}: waking to {floor}"),
        )
        if idle_since is not None:
            gaps, idle_since = _remembered(gaps, now - idle_since, spec), None
    elif spec.min_replicas > 0:
        desired, raised = steps.clamp(0, floor=spec.min_replicas, cap=spec.max_replicas, floor_why="min_replicas", cap_why="")
        reasons = () if raised is None else (raised,)
    elif wake.usable:
        desired = 0
        reasons = (Reason(ReasonCode.IdleAtZero, f"wake signal {wake.value:g} <= {spec.wake_threshold:g}: staying at zero"),)
    else:
        desired = 0
        reasons = (Reason(ReasonCode.MissingData, f"wake signal {wake.describe()}: staying at zero"),)
    decision = Decision(
        current_replicas=0, desired_replicas=desired, floor=spec.min_replicas, cap=spec.max_replicas, reasons=reasons
    )
    # Waking bypasses stabilization and rate limits (Ray Serve's fast path from zero).
    return decision, advance(
        state, decision, now=now, idle_since=idle_since, idle_gaps=gaps, starting_since=None, recommendations=()
    )


# Idle timeouts tried against the remembered idle periods, as shares of the break-even. The
# break-even itself is the last rung: learning only ever shortens the timeout.
TIMEOUT_LADDER = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1)
# Idle periods seen before the timeout is learned from them: fewer say too little.
MIN_IDLE_GAPS = 5


def idle_timeout(spec: LongTailSpec, gaps: tuple[float, ...]) -> tuple[float, str]:
    """The idle timeout, and where it comes from. idle_timeout_s when set; else, once
    MIN_IDLE_GAPS idle periods have been seen, the rung of TIMEOUT_LADDER that would have
    cost least over them; else the break-even. An idle period of g seconds costs g GPU-seconds
    when the timeout outlasts it (the replica idled through it), or the timeout plus the
    break-even when it does not (idled until the timeout, then a cold start). Ties go to the
    longer timeout: fewer users wait. Example: a 120 s cold start at ratio 3 (break-even
    480 s) and idle periods of 20, 25, 30, 3,000 and 5,000 s: 60 s costs 75 + 2 x 540 = 1,155,
    480 s costs 75 + 2 x 960 = 1,995, and 30 s, which the 30 s period outlasts too,
    45 + 3 x 510 = 1,575: 60 s it is."""
    if spec.idle_timeout_s is not None:
        return spec.idle_timeout_s, "idle_timeout_s"
    break_even = spec.break_even_s
    origin = f"cold start {spec.cold_start_s:g} s x (1 + {spec.cold_start_cost_ratio:g})"
    if len(gaps) < MIN_IDLE_GAPS:
        return break_even, origin

    def cost(timeout: float) -> float:
        return sum(gap if gap < timeout else timeout + break_even for gap in gaps)

    best = min((break_even * share for share in reversed(TIMEOUT_LADDER)), key=cost)
    if best == break_even:
        return break_even, f"{origin}; no shorter timeout would have cost less over the last {len(gaps)} idle periods"
    return best, (
        f"learned: over the last {len(gaps)} idle periods it would have cost {cost(best):,.0f} GPU-s, "
        f"against {cost(break_even):,.0f} at the break-even {break_even:.0f} s ({origin})"
    )


def _remembered(gaps: tuple[float, ...], gap: float, spec: LongTailSpec) -> tuple[float, ...]:
    return (*gaps, gap)[-spec.idle_gap_history :] if spec.idle_gap_history else ()

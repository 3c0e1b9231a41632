"""The sizing pipeline both policy kinds share, for a model that has replicas or should."""

from __future__ import annotations

import dataclasses
from typing import Any

from policies import steps
from policies.decision import Decision, PolicyState, Reason
from policies.reasons import ReasonCode
from policies.signals import Observation
from policies.spec import HotSpec, PolicySpec


def scale_on_load(
    observation: Observation,
    state: PolicyState,
    spec: PolicySpec,
    *,
    now: float,
    floor: int,
    floor_why: str,
    reasons: tuple[Reason, ...] = (),
    remember: dict[str, object] | None = None,
) -> tuple[Decision, PolicyState]:
    """Recommend from load, then guard, stabilize, rate-limit and bound, each step
    adding its reason. Missing or stale load data holds the count: raising it to the floor is
    the only change made without data, since it cannot hurt a user. `remember`: changes to the
    state that the caller made, kept in the new state."""
    current = observation.spec_replicas
    trail = list(reasons)
    # The new state is built once, at the end, from these changes: replay builds one per model
    # and tick, and each dataclasses.replace of PolicyState costs about 4 us.
    changes = dict(remember or {})

    def note(reason: Reason | None) -> None:
        if reason is not None:
            trail.append(reason)

    starting_since = None
    if observation.starting_replicas:
        starting_since = now if state.starting_since is None else state.starting_since
    changes["starting_since"] = starting_since

    # While a dependency is saturated, the cap handed to another scaler (KEDA bounds mode) is
    # the current count, so its HPA cannot add the replicas this policy holds back.
    saturated = any(dependency.saturated for dependency in observation.dependencies)
    cap = max(min(current, spec.max_replicas), floor) if saturated else spec.max_replicas

    if not (observation.waiting.usable and observation.running.usable):
        note(
            Reason(
                ReasonCode.MissingData,
                f"waiting {observation.waiting.describe()}, running {observation.running.describe()}: "
                f"no fresh load data, holding at {current}",
            )
        )
        desired, why = steps.clamp(current, floor=floor, cap=max(current, floor), floor_why=floor_why, cap_why="")
        note(why)
        decision = _decided(observation, desired, floor, cap, trail, needed=desired)
        # A gap in the data ends a saturated run: what happened in it was not seen.
        return decision, advance(state, decision, now=now, saturated_since=None, **changes)

    ready_history, steady = steps.track_ready(
        state.ready_history, observation.ready_replicas, window_s=spec.completion_window_s, now=now
    )
    # Sums over some of the pods, divided by all the ready ones, would read a replica slower
    # than it is: no service-rate sample is taken from them.
    steady = steady and observation.unreported() is None
    saturated_since = steps.track_saturated(state.saturated_since, observation, now=now)
    service_rate = steps.learn_service_rate(
        observation, spec, state.service_rate_per_replica, steady=steady, saturated_since=saturated_since, now=now
    )
    estimate = steps.estimate_service_rate(observation, spec, state.service_rate_estimate, steady=steady)
    changes.update(
        service_rate_per_replica=service_rate,
        service_rate_estimate=estimate,
        ready_history=ready_history,
        saturated_since=saturated_since,
    )
    if service_rate is not None and observation.completion_rate.usable:
        # Measured while saturated: the replicas' capacity was seen, so it is not bound.
        desired, why = steps.recommend_by_service_rate(observation, spec, service_rate)
    elif estimate is not None and observation.completion_rate.usable:
        desired, why = steps.recommend_by_service_rate(observation, spec, estimate, measured=False)
        note(why)
        desired, why = steps.bound_by_in_flight(desired, observation, spec, rate=estimate)
    else:
        desired, why = steps.recommend(observation, spec)
    note(why)
    share, load = 0.0, desired
    if isinstance(spec, HotSpec):
        share, raised = steps.headroom_share(observation, spec, raised=state.burst_headroom, now=now)
        changes["burst_headroom"] = raised
        desired, why = steps.add_headroom(desired, share, spec=spec, raised=raised, now=now)
        note(why)
    desired, why = steps.apply_tolerance(desired, current, spec.tolerance)
    note(why)
    starting_for_s = None if starting_since is None else now - starting_since
    desired, why = steps.guard_scale_up(desired, observation, spec, starting_for_s=starting_for_s, headroom=share)
    note(why)
    desired, why = steps.guard_scale_down(desired, observation, spec)
    note(why)
    # Replicas kept for bursts on top of what the load asks for: not needed by the load now.
    headroom = max(desired - max(load, floor), 0) if share else 0
    needed = min(max(desired - headroom, floor), spec.max_replicas)

    # Until a whole scale-down window has been observed, the count found at first sight stands
    # as recommended then: nothing scales down on a window it never saw (a restored model
    # holds its last count the same way, autoscaler.state_store).
    first_seen = state.first_seen or (now, current)
    changes["first_seen"] = first_seen
    history = steps.record(state.recommendations, desired, spec, now=now)
    desired, why = steps.stabilize(desired, current, history, spec, now=now, found=first_seen)
    note(why)
    desired, why = steps.limit_rate(
        desired,
        current,
        spec,
        last_scale_up_at=state.last_scale_up_at,
        last_scale_down_at=state.last_scale_down_at,
        now=now,
    )
    note(why)
    # Bounds come last and bypass the rate limits, as in the HPA: a hot model found at zero
    # goes straight back to its floor, a count above max straight down to it.
    desired, why = steps.clamp(desired, floor=floor, cap=spec.max_replicas, floor_why=floor_why, cap_why="max_replicas")
    note(why)

    # Stabilization and rate limits act on the whole count: what is left above the load's is headroom.
    decision = _decided(observation, desired, floor, cap, trail, needed=needed, headroom=min(headroom, max(desired - needed, 0)))
    return decision, advance(state, decision, now=now, recommendations=history, **changes)


def advance(state: PolicyState, decision: Decision, *, now: float, **changes: Any) -> PolicyState:
    """The new state: `changes`, and when the count last moved in each direction (for the
    rate limits)."""
    # Any: `changes` are PolicyState fields of several types, forwarded to dataclasses.replace,
    # which rejects a name that is no field. Typing them would take a TypedDict naming every
    # field again beside PolicyState, a hand-kept list of the kind that drifts.
    direction = decision.direction
    if direction == "up":
        changes["last_scale_up_at"] = now
    elif direction == "down":
        changes["last_scale_down_at"] = now
    return dataclasses.replace(state, **changes) if changes else state


def _decided(
    observation: Observation, desired: int, floor: int, cap: int, trail: list[Reason], *, needed: int, headroom: int = 0
) -> Decision:
    return Decision(
        current_replicas=observation.spec_replicas,
        desired_replicas=desired,
        floor=floor,
        cap=cap,
        reasons=tuple(trail),
        needed_replicas=needed,
        headroom_replicas=headroom,
    )

"""The batch policy: offline traffic with a deadline instead of a latency target.

Size to finish the backlog (waiting + running) by `backlog_since + drain_deadline_s`, at the
throughput one replica was measured to complete (or the configured prior until then); go to
zero once nothing has waited or run for `drain_grace_s`. No tolerance band, stabilization or
rate limits: the deadline sizing changes little from tick to tick by construction (a backlog
drained at the planned rate asks for the same count until it is done), and giving GPUs back
fast is the point. Under a shared pool, arbitration (policies.arbitration) cuts batch first.
"""

from __future__ import annotations

import dataclasses
import math

from policies import steps
from policies.decision import Decision, PolicyState, Reason
from policies.pipeline import advance
from policies.reasons import ReasonCode
from policies.signals import Observation
from policies.spec import BatchSpec


def decide(observation: Observation, state: PolicyState, spec: BatchSpec, *, now: float) -> tuple[Decision, PolicyState]:
    current = observation.spec_replicas
    if current == 0:
        return _at_zero(observation, state, spec, now=now)

    if not (observation.waiting.usable and observation.running.usable):
        if observation.ready_replicas == 0 and observation.wake.usable and observation.wake.number > spec.wake_threshold:
            return _starting(observation, state, spec, now=now)
        # Missing is not zero: a batch model with replicas and no data may be mid-job.
        reason = Reason(
            ReasonCode.MissingData,
            f"waiting {observation.waiting.describe()}, running {observation.running.describe()}: "
            f"no fresh load data, holding at {current}",
        )
        desired, reasons = _bounded(current, spec, (reason,))
        decision = _decided(observation, desired, spec, reasons)
        # A gap restarts the drain grace (an outage never sends a model mid-job to zero) and
        # ends a saturated run (what happened in it was not seen).
        return decision, advance(dataclasses.replace(state, idle_since=None, saturated_since=None), decision, now=now)

    # Sums that miss a pod (Observation.unreported) are a floor of the backlog: they may size
    # up, never down nor to the drain, and no service rate is learned from them.
    unreported = observation.unreported()
    ready_history, steady = steps.track_ready(
        state.ready_history, observation.ready_replicas, window_s=spec.completion_window_s, now=now
    )
    steady = steady and unreported is None
    saturated_since = steps.track_saturated(state.saturated_since, observation, now=now)
    measured = steps.learn_service_rate(
        observation, spec, state.service_rate_per_replica, steady=steady, saturated_since=saturated_since, now=now
    )
    state = dataclasses.replace(
        state, service_rate_per_replica=measured, ready_history=ready_history, saturated_since=saturated_since
    )

    backlog = observation.waiting.number + observation.running.number
    if backlog == 0 and unreported is not None:
        # Nothing seen, but not on every pod: no drain, and the grace starts again.
        reason = Reason(ReasonCode.PartialData, f"{unreported}: nothing waiting or running on those; holding at {current}")
        desired, reasons = _bounded(current, spec, (reason,))
        decision = _decided(observation, desired, spec, reasons)
        return decision, advance(dataclasses.replace(state, idle_since=None), decision, now=now)
    if backlog == 0:
        idle_since = now if state.idle_since is None else state.idle_since
        state = dataclasses.replace(state, idle_since=idle_since, backlog_since=None)
        idle_s = now - idle_since
        if idle_s >= spec.drain_grace_s:
            desired = spec.min_replicas
            reasons = (
                Reason(
                    ReasonCode.Drained,
                    f"nothing waiting or running for {idle_s:.0f} s >= grace {spec.drain_grace_s:g} s; "
                    f"giving the GPUs back: {current} -> {desired}",
                ),
            )
        else:
            # The bounds hold during the grace too: a count above max_replicas (raised by hand,
            # or a lowered max) comes down to it at once.
            desired, bounds = _bounded(current, spec, ())
            grace = Reason(
                ReasonCode.DrainGrace,
                f"nothing waiting or running for {idle_s:.0f} s; holding at {desired} for the rest of the "
                f"{spec.drain_grace_s:g} s grace in case more of the job arrives",
            )
            reasons = (grace, *bounds)
        decision = _decided(observation, desired, spec, reasons)
        return decision, advance(state, decision, now=now)

    backlog_since = now if state.backlog_since is None else state.backlog_since
    state = dataclasses.replace(state, idle_since=None, backlog_since=backlog_since)
    desired, reason = size_for_deadline(backlog, spec, measured, backlog_since=backlog_since, now=now)
    reasons = (reason,)
    if unreported is not None and desired < current:
        reasons += (Reason(ReasonCode.PartialData, f"{unreported}: the backlog seen is a floor of the job's; holding at {current} instead of {desired}"),)
        desired = current
    desired, reasons = _bounded(desired, spec, reasons)
    decision = _decided(observation, desired, spec, reasons)
    return decision, advance(state, decision, now=now)


def size_for_deadline(
    backlog: float, spec: BatchSpec, measured_rps: float | None, *, backlog_since: float, now: float
) -> tuple[int, Reason]:
    """Replicas that finish `backlog` requests by the deadline. A replica asked for now serves
    only after a cold start, so the plan counts the time left minus one cold start; past that
    point it plans to finish within one more cold start rather than dividing by ~0. Example:
    6,000 requests at 2 req/s per replica, 3,600 s left, 120 s cold start: 6,000 / (2 x 3,480)
    = 0.86, so 1 replica; with 600 s left, 6,000 / (2 x 480) = 6.25, so 7."""
    rate = measured_rps if measured_rps is not None else spec.replica_throughput_rps
    origin = "measured" if measured_rps is not None else "replica_throughput_rps"
    left_s = backlog_since + spec.drain_deadline_s - now
    horizon_s = max(left_s - spec.cold_start_s, spec.cold_start_s)
    desired = max(1, math.ceil(min(backlog / (rate * horizon_s), spec.max_replicas + 1.0) - 1e-9))
    past = "" if left_s > spec.cold_start_s else " (deadline within a cold start or past: planning one cold start ahead)"
    return desired, Reason(
        ReasonCode.DeadlineSizing,
        f"{backlog:g} waiting or running at {rate:.2f} req/s per replica ({origin}), {left_s:.0f} s left of the "
        f"{spec.drain_deadline_s:g} s deadline, {horizon_s:.0f} s to serve after a {spec.cold_start_s:g} s cold start"
        f"{past} -> {desired}",
    )


def _starting(observation: Observation, state: PolicyState, spec: BatchSpec, *, now: float) -> tuple[Decision, PolicyState]:
    """Replicas asked for and none ready: no vLLM series exist yet, and every request of the job
    waits at the gateway, so the wake signal is the whole backlog. Without this the model
    would hold at the count it woke to for a whole cold start before sizing the job. Only
    up: the replicas already starting count, and no data says the job shrank."""
    current = observation.spec_replicas
    backlog_since = now if state.backlog_since is None else state.backlog_since
    state = dataclasses.replace(state, idle_since=None, backlog_since=backlog_since)
    desired, reason = size_for_deadline(
        observation.wake.number, spec, state.service_rate_per_replica, backlog_since=backlog_since, now=now
    )
    sized = (
        Reason(ReasonCode.GatewayBacklog, f"no replica ready yet, so no vLLM series; {observation.wake.value:g} waiting outside the pods"),
        reason,
    )
    # Within the bounds all the same: a count above max_replicas comes down to it.
    starting = f"the {current} replicas asked for are starting, and no data says the job shrank"
    if current > spec.max_replicas:
        starting += f"; max_replicas {spec.max_replicas} is the most kept"
    desired, bounds = steps.clamp(
        desired,
        floor=min(max(current, spec.min_replicas), spec.max_replicas),
        cap=spec.max_replicas,
        floor_why=starting if current > spec.min_replicas else "min_replicas",
        cap_why="max_replicas",
    )
    reasons = sized if bounds is None else (*sized, bounds)
    decision = _decided(observation, desired, spec, reasons)
    return decision, advance(state, decision, now=now)


def _at_zero(observation: Observation, state: PolicyState, spec: BatchSpec, *, now: float) -> tuple[Decision, PolicyState]:
    """No vLLM series exist at zero: the wake signal, read as the backlog waiting outside the
    pods, is the only evidence of work. Missing wake data stays at zero (or min_replicas)."""
    wake = observation.wake
    state = dataclasses.replace(state, idle_since=None, recommendations=())
    if wake.usable and wake.number > spec.wake_threshold:
        backlog_since = now if state.backlog_since is None else state.backlog_since
        state = dataclasses.replace(state, backlog_since=backlog_since)
        desired, reason = size_for_deadline(
            wake.number, spec, state.service_rate_per_replica, backlog_since=backlog_since, now=now
        )
        woken = Reason(ReasonCode.Wake, f"{wake.value:g} waiting outside the pods > {spec.wake_threshold:g}")
        desired, reasons = _bounded(desired, spec, (woken, reason))
    elif spec.min_replicas > 0:
        desired, reasons = _bounded(0, spec, ())
    elif wake.usable:
        desired, reasons = 0, (Reason(ReasonCode.IdleAtZero, f"backlog outside the pods {wake.value:g} <= {spec.wake_threshold:g}: staying at zero"),)
    else:
        desired, reasons = 0, (Reason(ReasonCode.MissingData, f"wake signal {wake.describe()}: staying at zero"),)
    decision = _decided(observation, desired, spec, reasons)
    return decision, advance(state, decision, now=now)


def _bounded(desired: int, spec: BatchSpec, reasons: tuple[Reason, ...]) -> tuple[int, tuple[Reason, ...]]:
    """`desired` within [min_replicas, max_replicas] (steps.clamp), and `reasons` with the
    clamp's when it moved the count: a batch decision bounded silently would not explain itself."""
    bounded, why = steps.clamp(
        desired, floor=spec.min_replicas, cap=spec.max_replicas, floor_why="min_replicas", cap_why="max_replicas"
    )
    return bounded, reasons if why is None else (*reasons, why)


def _decided(observation: Observation, desired: int, spec: BatchSpec, reasons: tuple[Reason, ...]) -> Decision:
    return Decision(
        current_replicas=observation.spec_replicas,
        desired_replicas=desired,
        floor=spec.min_replicas,
        cap=spec.max_replicas,
        reasons=reasons,
    )

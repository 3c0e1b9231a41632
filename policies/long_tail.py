"""The long-tail policy: a model with sparse traffic. It keeps one replica warm while requests
come, scales to zero after an idle time derived from its cold-start time (see
LongTailSpec.effective_idle_timeout_s), and wakes to one replica as soon as the wake signal
shows demand. At zero no vLLM series exist, so only the wake signal is read there."""

from __future__ import annotations

from policies.decision import Decision, PolicyState, Reason
from policies.pipeline import advance, scale_on_load
from policies.signals import Observation
from policies.spec import LongTailSpec


def decide(
    observation: Observation, state: PolicyState, spec: LongTailSpec, *, now: float
) -> tuple[Decision, PolicyState]:
    if observation.spec_replicas == 0:
        return _at_zero(observation, state, spec, now=now)

    wake = observation.wake
    load_known = observation.waiting.usable and observation.running.usable
    idle = (
        load_known
        and observation.waiting.value == 0
        and observation.running.value == 0
        and not (wake.usable and wake.value > spec.wake_threshold)
    )
    # Idleness must be seen without a break: a gap in the data restarts the count, so an
    # outage never shortens the time a model is kept warm.
    idle_since = (now if state.idle_since is None else state.idle_since) if idle else None
    timeout_s = spec.effective_idle_timeout_s

    if idle and spec.min_replicas == 0 and now - idle_since >= timeout_s:
        # Like KEDA after its cooldown, straight from N to 0: the idle time was the stabilization.
        decision = Decision(
            current_replicas=observation.spec_replicas,
            desired_replicas=0,
            floor=0,
            cap=spec.max_replicas,
            reasons=(
                Reason(
                    "IdleTimeout",
                    f"no request for {now - idle_since:.0f} s >= idle timeout {timeout_s:.0f} s "
                    f"({_timeout_origin(spec)}); scaling to zero",
                ),
            ),
        )
        return decision, advance(state, decision, now=now, idle_since=idle_since, recommendations=())

    floor = max(spec.min_replicas, 1)
    if idle and spec.min_replicas == 0:
        left_s = timeout_s - (now - idle_since)
        why = f"idle for {now - idle_since:.0f} s; {left_s:.0f} s left of the {timeout_s:.0f} s before scale-to-zero"
    else:
        why = f"a long-tail model keeps at least {floor} warm while in use or while min_replicas says so"
    return scale_on_load(observation, state, spec, now=now, floor=floor, floor_why=why, remember={"idle_since": idle_since})


def _at_zero(
    observation: Observation, state: PolicyState, spec: LongTailSpec, *, now: float
) -> tuple[Decision, PolicyState]:
    wake = observation.wake
    floor = max(spec.min_replicas, 1)
    if wake.usable and wake.value > spec.wake_threshold:
        desired = floor
        reason = Reason("Wake", f"wake signal {wake.value:g} > {spec.wake_threshold:g}: waking to {floor}")
    elif spec.min_replicas > 0:
        desired = spec.min_replicas
        reason = Reason("BelowFloor", f"0 raised to min_replicas {spec.min_replicas}")
    elif wake.usable:
        desired = 0
        reason = Reason("IdleAtZero", f"wake signal {wake.value:g} <= {spec.wake_threshold:g}: staying at zero")
    else:
        desired = 0
        reason = Reason("MissingData", f"wake signal {wake.describe()}: staying at zero")
    decision = Decision(
        current_replicas=0, desired_replicas=desired, floor=spec.min_replicas, cap=spec.max_replicas, reasons=(reason,)
    )
    # Waking bypasses stabilization and rate limits (Ray Serve's fast path from zero).
    return decision, advance(state, decision, now=now, idle_since=None, starting_since=None, recommendations=())


def _timeout_origin(spec: LongTailSpec) -> str:
    if spec.idle_timeout_s is not None:
        return "idle_timeout_s"
    return f"cold start {spec.cold_start_s:g} s x (1 + {spec.cold_start_cost_ratio:g})"

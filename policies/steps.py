"""Named steps that turn an observation into a replica count. Each returns the new count and
the reason it gives, or None when it changed nothing. The policy kinds compose them in order:
recommend, headroom for bursts (hot), tolerance, guards, floor, stabilize, rate limit, bounds.
"""

from __future__ import annotations

import math

from policies.decision import Reason
from policies.reasons import ReasonCode
from policies.signals import Observation
from policies.spec import AnySpec, HotSpec, PolicySpec


def recommend(observation: Observation, spec: PolicySpec) -> tuple[int, Reason]:
    """Size from queue depth and from in-flight load, each against its per-replica target,
    and take the larger (the HPA's rule for several metrics). Both are AverageValue targets:
    12 waiting at 4 per replica asks for 3 replicas whatever the current count is."""
    waiting = observation.waiting.number
    in_flight = waiting + observation.running.number
    by_queue, by_load = _size(waiting, in_flight, spec)
    return max(by_queue, by_load), Reason(
        ReasonCode.Recommendation,
        f"{waiting:g} waiting / {spec.target_waiting_per_replica:g} per replica -> {by_queue}; "
        f"{in_flight:g} in flight / {spec.target_running_per_replica:g} per replica -> {by_load}",
    )


def recommend_by_service_rate(
    observation: Observation, spec: PolicySpec, service_rate: float, *, measured: bool = True
) -> tuple[int, Reason]:
    """Size from what a replica was measured to complete, rather than from a fixed number of
    requests per replica, whose right value differs by an order of magnitude between short
    chats and long prompts. Replicas for the arrivals at target utilization, plus replicas to
    drain the backlog in backlog_drain_s. Example: 3 req/s served, 0.5 req/s per replica
    measured, 60 waiting: 3 / (0.5 x 0.8) = 7.5 and 60 / (0.5 x 30) = 4, so 12 replicas.
    The completion rate stands for the arrivals: equal while the replicas keep up, short of
    them while a queue grows, which the backlog term then covers."""
    arrivals = observation.completion_rate.number
    waiting = observation.waiting.number
    utilization = spec.target_utilization if measured else 1.0
    steady = arrivals / (service_rate * utilization)
    drain = waiting / (service_rate * spec.backlog_drain_s)
    # A vanishing measured rate would size to infinity; anything above max_replicas is cut
    # to it by the bounds anyway, so cap just above it and let that step say so.
    desired = math.ceil(min(steady + drain, spec.max_replicas + 1.0) - 1e-9)
    return desired, Reason(
        ReasonCode.Recommendation,
        f"{arrivals:.2f} req/s at {service_rate:.2f} req/s per replica ({'measured' if measured else 'estimated'}) x {utilization:g} -> {steady:.1f}; "
        f"{waiting:g} waiting drained in {spec.backlog_drain_s:g} s -> +{drain:.1f}",
    )


def track_ready(
    history: tuple[tuple[float, int], ...], ready: int, *, window_s: float, now: float
) -> tuple[tuple[tuple[float, int], ...], bool]:
    """Keep (time, ready) over the last window and the entry just before it. The window is
    steady when that history covers it and the ready count never moved inside it."""
    older = [entry for entry in history if now - entry[0] > window_s][-1:]
    kept = older + [entry for entry in history if now - entry[0] <= window_s] + [(now, ready)]
    steady = bool(older) and all(count == ready for _, count in kept)
    return tuple(kept), steady


def track_saturated(since: float | None, observation: Observation, *, now: float) -> float | None:
    """Since when at least one request per ready replica has waited, without a break (None:
    not now). A replica with a request waiting behind its batch runs as fast as it can."""
    ready = observation.ready_replicas
    if not (ready and observation.waiting.usable and observation.waiting.number >= ready):
        return None
    return now if since is None else since


def learn_service_rate(
    observation: Observation,
    spec: AnySpec,
    previous: float | None,
    *,
    steady: bool,
    saturated_since: float | None,
    now: float,
) -> float | None:
    """A replica's capacity shows only while it is saturated: requests wait, so every ready
    replica runs as fast as it can. A sample counts only when the same replicas served through
    the whole completion window (`steady`), saturated all along (`saturated_since`, from
    track_saturated): the completion rate covers that window, so a replica idle for part of
    it looks slower than it is (samples taken at the first waiting request read 1.0-1.7 req/s
    per replica on the suite's mix, under the 1.5-2.3 estimated at the target), and
    completions lag service by a request's latency, so a replica ready for seconds shows
    almost none, however fast it is."""
    ready = observation.ready_replicas
    if not (steady and ready and observation.completion_rate.usable):
        return previous
    if saturated_since is None or now - saturated_since < spec.completion_window_s:
        return previous
    sample = observation.completion_rate.number / ready
    if sample <= 0:
        return previous
    return _averaged(previous, sample, spec)


# Requests running per ready replica, as a share of target_running_per_replica, at which a
# Little's-law sample counts (estimate_service_rate).
ESTIMATE_LOAD_BAND = (0.25, 1.0)


def estimate_service_rate(
    observation: Observation, spec: PolicySpec, previous: float | None, *, steady: bool
) -> float | None:
    """What a replica would complete at target_running_per_replica in flight, by Little's law,
    while it is not saturated: a request takes running / completions seconds, so a replica
    holding `target` at once completes target x completions / running per second.

    A request's time grows with the batch it shares, so only samples near the target count
    (ESTIMATE_LOAD_BAND). With vLLM's step time base + per_seq x batch and the target at the
    knee (base / per_seq), a request at r in flight takes (target + r) / (2 x target) of its
    time at the target: at a quarter of the target 62%, so the estimate is at most 1.6x high.
    Above the target it runs low without bound: 4 replicas found running 49 each in a flash
    crowd sized it for 47 replicas where 25 sufficed. Below a quarter, a few short requests
    read as a replica many times faster than it is (29 req/s for a 1B model that serves 3)."""
    if not (steady and observation.completion_rate.usable and observation.running.usable and observation.waiting.usable):
        return previous
    running, completions = observation.running.number, observation.completion_rate.number
    if running <= 0 or completions <= 0 or observation.waiting.number >= observation.ready_replicas:
        return previous
    per_replica = running / observation.ready_replicas  # ready > 0: waiting >= ready returned above
    if not ESTIMATE_LOAD_BAND[0] <= per_replica / spec.target_running_per_replica <= ESTIMATE_LOAD_BAND[1]:
        return previous
    return _averaged(previous, spec.target_running_per_replica * completions / running, spec)


def _averaged(previous: float | None, sample: float, spec: AnySpec) -> float:
    """A new rate sample weighed into what was known (service_rate_smoothing)."""
    return sample if previous is None else previous + spec.service_rate_smoothing * (sample - previous)


def bound_by_in_flight(desired: int, observation: Observation, spec: PolicySpec, *, rate: float) -> tuple[int, Reason | None]:
    """Hold a count sized from an estimated service rate (Little's law, taken while the
    replicas were not saturated) to `in_flight_bound` times the in-flight need while nothing
    waits. A rate measured while saturated saw the replicas' capacity, and is not bound: there
    the target may be what is wrong. An estimate is only as good as the minute it came from: one
    taken just after a wake, from a few requests and idle time, read a replica at 0.08 req/s
    and sized a long-tail model at 60 replicas for 17 requests in flight; with that many
    replicas each ran too few requests for any later sample to replace it. Nothing waiting is
    the evidence that the replicas keep up; the in-flight need is what they hold. Bound, the
    replicas come down until each runs enough for a new sample (ESTIMATE_LOAD_BAND), which
    then corrects the estimate: its consequence no longer hides it."""
    if observation.waiting.number > 0:
        return desired, None
    in_flight = observation.running.number
    bound = math.ceil(spec.in_flight_bound * in_flight / spec.target_running_per_replica - 1e-9)
    if desired <= bound:
        return desired, None
    return bound, Reason(
        ReasonCode.InFlightBound,
        f"nothing waiting, {in_flight:g} in flight at {spec.target_running_per_replica:g} per replica: "
        f"{desired} held to {bound} ({spec.in_flight_bound:g}x the in-flight need): the estimate of {rate:.2f} req/s "
        f"per replica it was sized from reads replicas slower than they are",
    )


def _size(waiting: float, in_flight: float, spec: PolicySpec) -> tuple[int, int]:
    return math.ceil(waiting / spec.target_waiting_per_replica), math.ceil(in_flight / spec.target_running_per_replica)


def headroom_share(
    observation: Observation, spec: HotSpec, *, raised: tuple[float, float] | None, now: float
) -> tuple[float, tuple[float, float] | None]:
    """How much to keep on top of what the load asks for, ahead of bursts that outrun a cold
    start, in proportion to the evidence: each queue overflow (more than
    target_waiting_per_replica waiting per ready replica) adds burst_headroom_step, at most once
    per cold start, up to burst_headroom_max; without overflows it decays over
    burst_headroom_decay_s. A queue that more replicas would not serve is no evidence: none
    ready yet (the first cold start), a saturated dependency, idle GPUs, or max_replicas
    reached. Steady traffic that the sizing keeps up with never overflows and gets none.
    Returns the share and (when, share) as last raised."""
    if spec.burst_headroom_step == 0 or spec.burst_headroom_max == 0:
        return 0.0, None
    share = 0.0 if raised is None else raised[1] * math.exp(-(now - raised[0]) / spec.burst_headroom_decay_s)
    if share < 0.01:  # decayed to nothing: forgotten
        share, raised = 0.0, None
    ready = observation.ready_replicas
    overflow = ready > 0 and observation.waiting.number > spec.target_waiting_per_replica * ready
    servable = (
        observation.spec_replicas < spec.max_replicas
        and not any(dependency.saturated for dependency in observation.dependencies)
        and not _gpus_idle(observation, spec)
    )
    if overflow and servable and (raised is None or now - raised[0] >= spec.cold_start_s):
        share = min(share + spec.burst_headroom_step, spec.burst_headroom_max)
        raised = (now, share)
    return share, raised


def with_headroom(count: int, share: float) -> int:
    """`count` and `share` of it on top, to the nearest whole replica: 10 at 18% is 12."""
    return count + math.floor(count * share + 0.5)


def add_headroom(
    desired: int, share: float, *, spec: HotSpec, raised: tuple[float, float] | None, now: float
) -> tuple[int, Reason | None]:
    """Example: raised to 0.5 an hour ago, 0.5 / e = 0.18, so a load asking for 10 gets 12."""
    raised_to = with_headroom(desired, share)
    if raised_to == desired or raised is None:
        return desired, None
    return raised_to, Reason(
        ReasonCode.BurstHeadroom,
        f"+{share:.0%} for bursts (queue overflow {now - raised[0]:.0f} s ago, decaying over "
        f"{spec.burst_headroom_decay_s:g} s): {desired} -> {raised_to}",
    )


def apply_tolerance(desired: int, current: int, tolerance: float) -> tuple[int, Reason | None]:
    # The epsilon makes the band symmetric: in floating point 11/10 - 1 > 0.1 but 1 - 9/10 <= 0.1.
    if current == 0 or desired == current or abs(desired / current - 1.0) > tolerance + 1e-9:
        return desired, None
    return current, Reason(ReasonCode.WithinTolerance, f"{desired} is within {tolerance:.0%} of {current}; keeping {current}")


def guard_scale_up(
    desired: int, observation: Observation, spec: PolicySpec, *, starting_for_s: float | None, headroom: float = 0.0
) -> tuple[int, Reason | None]:
    """Hold a scale-up that more replicas of this model would not turn into served requests.
    The first guard that holds gives the reason; a held scale-up keeps the current count.
    `headroom`: the share kept for bursts (headroom_share), kept on what starting replicas
    leave of the queue too."""
    current = observation.spec_replicas
    if desired <= current:
        return desired, None
    saturated = [dep for dep in observation.dependencies if dep.saturated]
    if saturated:
        named = ", ".join(f"{dep.name} at {dep.saturation.value:g} (saturated at {dep.saturated_at:g})" for dep in saturated)
        return current, Reason(
            ReasonCode.DownstreamSaturated, f"{named}: more replicas would only queue there; holding at {current} instead of {desired}"
        )
    gpu = observation.gpu_utilization
    if observation.waiting.number > 0 and _gpus_idle(observation, spec):
        return current, Reason(
            ReasonCode.QueueWithIdleGPUs,
            f"{observation.waiting.value:g} waiting while GPUs are {gpu.value:g}% busy "
            f"(< {spec.idle_gpu_utilization_percent:g}%): a stuck engine or a downstream block, not missing "
            f"capacity; holding at {current} instead of {desired}",
        )
    stuck_after_s = spec.cold_start_s * spec.stuck_start_factor
    if starting_for_s is not None and starting_for_s < stuck_after_s:
        # Each starting replica will take target_running_per_replica requests off the queue
        # once ready, so the queue they will serve asks for nothing more. Example: 200 waiting,
        # 4 starting at 32 each: they will take 128, and only the other 72 size the queue term.
        waiting = observation.waiting.number
        absorbed = observation.starting_replicas * spec.target_running_per_replica
        by_queue, by_load = _size(max(waiting - absorbed, 0.0), waiting + observation.running.number, spec)
        sized = max(with_headroom(max(by_queue, by_load), headroom), current)
        if sized < desired:
            return sized, Reason(
                ReasonCode.ReplicasStarting,
                f"{observation.starting_replicas} replicas starting for {starting_for_s:.0f} s (of up to {stuck_after_s:.0f} s) will take up to "
                f"{absorbed:g} of the {waiting:g} waiting; sizing on the rest: {sized} instead of {desired}",
            )
    return desired, None


def _gpus_idle(observation: Observation, spec: PolicySpec) -> bool:
    gpu = observation.gpu_utilization
    return gpu.usable and gpu.number < spec.idle_gpu_utilization_percent


def guard_scale_down(desired: int, observation: Observation, spec: PolicySpec) -> tuple[int, Reason | None]:
    """Hold a scale-down that the data cannot vouch for. The first guard that holds gives the
    reason; a held scale-down keeps the current count. A guard whose input is missing holds
    too, as missing data does anywhere else. Example: 8 replicas at 97% KV cache with an empty
    queue hold; were the guard off while the KV reading is lost, they would go to 4 at once."""
    current = observation.spec_replicas
    if desired >= current:
        return desired, None
    unreported = observation.unreported()
    if unreported is not None:
        return current, Reason(
            ReasonCode.PartialData,
            f"{unreported}: the sums miss the load of the rest, so they can only scale up; "
            f"holding at {current} instead of {desired}",
        )
    kv = observation.kv_cache_usage
    if spec.kv_cache_hold_down_above < 1 and not kv.usable:
        # At 1 the guard can never hold (a fraction above 1 is refused at the adapter), so it
        # needs no input: that is how a fleet without a KV-cache gauge turns it off.
        return current, Reason(
            ReasonCode.GuardInputMissing,
            f"KV cache use {kv.describe()}: the KV-cache guard cannot tell whether replicas are about to queue; "
            f"holding at {current} instead of {desired}",
        )
    if kv.usable and kv.number > spec.kv_cache_hold_down_above:
        return current, Reason(
            ReasonCode.KVCacheFull,
            f"KV cache {kv.value:.0%} used (> {spec.kv_cache_hold_down_above:.0%}): replicas are about to queue; "
            f"holding at {current} instead of {desired}",
        )
    return desired, None


def stabilize(
    desired: int,
    current: int,
    history: tuple[tuple[float, int], ...],
    spec: PolicySpec,
    *,
    now: float,
    found: tuple[float, int] | None = None,
) -> tuple[int, Reason | None]:
    """The HPA's stabilization, on instants: scale up only to the lowest recommendation of the
    up window, down only to the highest of the down window. `history` includes `desired` at
    `now`. Example: recommendations 6, 4, 2 over the last 300 s keep 6 replicas at 6, not 2.
    `found`, the (time, count) the model was first seen at, counts in the down window only:
    a model found at 6 keeps 6 until a whole window has been seen, but scales up at once."""
    up_floor = min(r for t, r in history if now - t <= spec.scale_up_stabilization_s)
    down_ceiling = max(r for t, r in history if now - t <= spec.scale_down_stabilization_s)
    if found is not None and now - found[0] < spec.scale_down_stabilization_s:
        down_ceiling = max(down_ceiling, found[1])
    if current < up_floor:
        stabilized = up_floor
    elif current > down_ceiling:
        stabilized = down_ceiling
    else:
        stabilized = current
    if stabilized == desired:
        return desired, None
    if desired > current:
        window, code = spec.scale_up_stabilization_s, ReasonCode.ScaleUpStabilized
    else:
        window, code = spec.scale_down_stabilization_s, ReasonCode.ScaleDownStabilized
    return stabilized, Reason(code, f"recommendations over the last {window:g} s allow {stabilized}, not {desired}")


def record(
    history: tuple[tuple[float, int], ...], desired: int, spec: PolicySpec, *, now: float
) -> tuple[tuple[float, int], ...]:
    """The history with `desired` at `now`, keeping only what a window's min or max can still
    be. A recommendation is dropped once a later one is at least as high (so it can no longer
    be a window's max: the later one is in every window it is in) and a later one is at most as
    low (nor its min). Stabilize then reads the same min and max as over the whole history,
    from a few entries instead of a window's worth: a steady 6, 6, 6... over 300 s at 10 s
    ticks is one entry, not 30."""
    keep_s = max(spec.scale_up_stabilization_s, spec.scale_down_stabilization_s)
    kept = [(now, desired)]
    later_max = later_min = desired
    for t, r in reversed(history):
        if now - t > keep_s:
            break  # the history is in time order: all that is left is older still
        if r > later_max or r < later_min:
            kept.append((t, r))
            later_max, later_min = max(later_max, r), min(later_min, r)
    return tuple(reversed(kept))


def limit_rate(
    desired: int,
    current: int,
    spec: PolicySpec,
    *,
    last_scale_up_at: float | None,
    last_scale_down_at: float | None,
    now: float,
) -> tuple[int, Reason | None]:
    if desired > current:
        if last_scale_up_at is not None and now - last_scale_up_at < spec.scale_up_period_s:
            return current, Reason(
                ReasonCode.ScaleUpLimit,
                f"last scale-up {now - last_scale_up_at:.0f} s ago, the next is allowed after {spec.scale_up_period_s:g} s",
            )
        step = max(spec.scale_up_max_step_replicas, math.ceil(current * spec.scale_up_max_step_percent / 100))
        if desired - current > step:
            return current + step, Reason(ReasonCode.ScaleUpLimit, f"one step adds at most {step}: {current} -> {current + step}, not {desired}")
    elif desired < current:
        if last_scale_down_at is not None and now - last_scale_down_at < spec.scale_down_period_s:
            return current, Reason(
                ReasonCode.ScaleDownLimit,
                f"last scale-down {now - last_scale_down_at:.0f} s ago, the next is allowed after {spec.scale_down_period_s:g} s",
            )
        step = max(1, math.floor(current * spec.scale_down_max_step_percent / 100))
        if current - desired > step:
            return current - step, Reason(
                ReasonCode.ScaleDownLimit, f"one step removes at most {step}: {current} -> {current - step}, not {desired}"
            )
    return desired, None


def clamp(desired: int, *, floor: int, cap: int, floor_why: str, cap_why: str) -> tuple[int, Reason | None]:
    if desired < floor:
        return floor, Reason(ReasonCode.BelowFloor, f"{desired} raised to {floor}: {floor_why}")
    if desired > cap:
        return cap, Reason(ReasonCode.AboveCap, f"{desired} lowered to {cap}: {cap_why}")
    return desired, None

"""Every reason a decision can give: one enum, each code with what it means.

A code is stable and machine-readable, as the HPA's condition reasons are one set: it is the
`reason` label of llm_autoscaler_decisions_total, leads each reason in the logs, in the
message of a scaling's Kubernetes Event and in dry-run and replay output, and is what the
golden replay files pin. A StrEnum, so a code is its string everywhere it is written out, and
adding a member is the only way to add a code. docs/reasons.md is generated from this
(autoscaler/reason_reference.py), and a test fails when the page is stale.
"""

from __future__ import annotations

from enum import StrEnum


class ReasonCode(StrEnum):
    """A member's name is its code: one spelling in the source, the logs and the metrics."""

    description: str

    def __new__(cls, code: str, description: str) -> ReasonCode:
        member = str.__new__(cls, code)
        member._value_ = code
        member.description = description
        return member

    # Sizing
    Recommendation = (
        "Recommendation",
        "What the load asks for: from the measured or estimated service rate, else from the per-replica targets "
        "for waiting and in-flight requests.",
    )
    InFlightBound = (
        "InFlightBound",
        "Nothing waits, and the count an estimated service rate asks for is more than `in_flight_bound` times what "
        "the requests in flight need at `target_running_per_replica`: the count is held to that, until the "
        "replicas run enough for a new sample to correct the estimate.",
    )
    BurstHeadroom = (
        "BurstHeadroom",
        "A hot model keeps a share on top of what its load asks for, ahead of bursts: raised by queue overflows, "
        "decaying without them.",
    )
    WithinTolerance = "WithinTolerance", "The recommendation is within `tolerance` of the current count, which is kept."
    DeadlineSizing = "DeadlineSizing", "A batch model is sized to finish its backlog by its deadline (`drain_deadline_s`)."
    GatewayBacklog = (
        "GatewayBacklog",
        "A batch model with replicas asked for and none ready: sized on the wake signal, the backlog waiting "
        "outside the pods.",
    )
    # Guards
    MissingData = (
        "MissingData",
        "The load signals (at zero, the wake signal) are missing or stale: the count holds, and never goes down "
        "on no data.",
    )
    DownstreamSaturated = (
        "DownstreamSaturated",
        "A dependency is at or above its `saturated_at`: more replicas would only queue there, so the scale-up is "
        "held.",
    )
    QueueWithIdleGPUs = (
        "QueueWithIdleGPUs",
        "Requests wait while the GPUs idle (a stuck engine or a downstream block, not missing capacity): the "
        "scale-up is held.",
    )
    ReplicasStarting = (
        "ReplicasStarting",
        "Replicas still starting will take part of the queue once ready: the scale-up sizes on the rest.",
    )
    KVCacheFull = (
        "KVCacheFull",
        "The KV cache is above `kv_cache_hold_down_above`: the scale-down is held, since replicas are about to "
        "queue.",
    )
    GuardInputMissing = (
        "GuardInputMissing",
        "A scale-down guard has no fresh reading (the KV-cache use): the scale-down is held, as missing data "
        "holds anywhere else. `kv_cache_hold_down_above: 1` turns the guard, and its input, off.",
    )
    PartialData = (
        "PartialData",
        "Fewer pods reported than are ready, or their count is unknown: the sums miss the others' load, so they "
        "may scale up but never down, nor to zero, nor to a drain.",
    )
    # Stabilization and rate limits
    ScaleUpStabilized = (
        "ScaleUpStabilized",
        "A scale-up goes only to the lowest recommendation of the last `scale_up_stabilization_s`.",
    )
    ScaleDownStabilized = (
        "ScaleDownStabilized",
        "A scale-down goes only to the highest recommendation of the last `scale_down_stabilization_s` (and the "
        "count found at first sight, until a whole window has been seen).",
    )
    ScaleUpLimit = (
        "ScaleUpLimit",
        "A scale-up is cut to what one step may add, or waits for `scale_up_period_s` after the last one.",
    )
    ScaleDownLimit = (
        "ScaleDownLimit",
        "A scale-down is cut to what one step may remove, or waits for `scale_down_period_s` after the last one.",
    )
    # Bounds
    BelowFloor = "BelowFloor", "Raised to the floor: `min_replicas`, and at least 1 for a hot model or a long-tail model in use."
    AboveCap = "AboveCap", "Lowered to the cap: `max_replicas`, or the current count while no load data is fresh."
    # Idle, wake and drain
    IdleTimeout = "IdleTimeout", "A long-tail model had no request for its idle timeout: scaled to zero."
    Wake = "Wake", "Demand on the wake signal, above `wake_threshold`, wakes a model at zero."
    IdleAtZero = "IdleAtZero", "A model at zero with no demand on its wake signal stays at zero."
    DrainGrace = (
        "DrainGrace",
        "A batch model with nothing waiting or running holds for the rest of `drain_grace_s`, in case more of the "
        "job arrives.",
    )
    Drained = "Drained", "A batch model idle for `drain_grace_s` gives its GPUs back, down to `min_replicas`."
    # Shared GPU pools
    PoolArbitration = (
        "PoolArbitration",
        "A shared GPU pool's models want more than it holds: this model's count was cut or held, and the message "
        "says why and what each model was granted.",
    )
    PoolOverCommitted = (
        "PoolOverCommitted",
        "The floors of a pool's models alone need more GPUs than it holds: every floor is kept, and the replicas "
        "that do not fit wait for the scheduler.",
    )
    PoolCapacityFromNodes = (
        "PoolCapacityFromNodes",
        "Where the GPUs a node pool was arbitrated on come from: its nodes as read now, or an earlier reading "
        "that stands.",
    )
    PoolCapacityHeld = (
        "PoolCapacityHeld",
        "The nodes read less than the capacity arbitrated on (a drop that has not lasted its window, or 0 GPUs, "
        "which is no data): not acted on yet.",
    )
    PoolCapacityUnknown = (
        "PoolCapacityUnknown",
        "A node pool's capacity cannot be read and none is known: its models are not arbitrated this tick.",
    )


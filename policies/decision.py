"""A decision, the reasons that built it, and the state a policy carries between ticks."""

from __future__ import annotations

from dataclasses import dataclass, field

from policies.reasons import ReasonCode


@dataclass(frozen=True, slots=True)
class Reason:
    """One step's contribution. `code` is stable and machine-readable (for metrics and
    tests), one of policies.reasons.ReasonCode; `message` says what happened with the numbers
    that made it happen."""

    code: ReasonCode
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(frozen=True, slots=True)
class Decision:
    """What a policy wants for one model, and why.

    `floor` and `cap` are the bounds the policy would hand to another scaler (KEDA's
    `minReplicaCount` / `maxReplicaCount` in bounds mode): the warm floor it keeps, and the
    ceiling it allows now (lowered to the current count while a dependency is saturated).
    """

    current_replicas: int
    desired_replicas: int
    floor: int
    cap: int
    reasons: tuple[Reason, ...]
    # What the load asks for now, before stabilization and rate limits (None: desired). A
    # scale-down held by a stabilization window keeps replicas above it; a shared GPU pool
    # may give those to another model whose load needs them (policies.arbitration).
    needed_replicas: int | None = None
    # Replicas of desired kept ahead of bursts (a hot model's headroom), not asked for by the
    # load now: a shared GPU pool grants them after every model's load (policies.arbitration).
    headroom_replicas: int = 0

    @property
    def direction(self) -> str:
        if self.desired_replicas > self.current_replicas:
            return "up"
        if self.desired_replicas < self.current_replicas:
            return "down"
        return "hold"

    @property
    def needed(self) -> int:
        return self.desired_replicas if self.needed_replicas is None else self.needed_replicas

    @property
    def reason_codes(self) -> tuple[ReasonCode, ...]:
        return tuple(reason.code for reason in self.reasons)

    def explain(self) -> str:
        return "; ".join(str(reason) for reason in self.reasons)


# Not kept across a restart: rebuilt from the observations of the first window instead (the
# stabilization history is restored as one recommendation, the last count given).
_REBUILT = {"persist": None}


@dataclass(frozen=True, slots=True)
class PolicyState:
    """Everything a policy remembers, as instants (seconds, the caller's clock), never tick
    counts: delays counted in ticks drift when the tick interval changes (Ray Serve's lesson).

    `recommendations` holds (time, replicas) pairs inside the longest stabilization window.

    Each field says how it crosses a restart or a failover (`persist`, read by
    autoscaler.state_store, which refuses to import while a field does not say): an encoding,
    or None for what is rebuilt from observations instead. An instant also says which way to
    place it when the time between the last save and the takeover is unknown (`when_unsure`):
    "later" counts none of that time (an idle clock never runs early), "earlier" counts it up
    to a bound (a deadline never runs late, a scale-up is not held back longer). `unbroken`
    marks a span that counts only while watched without a break: a record that cannot vouch
    for all of it restarts it.
    """

    recommendations: tuple[tuple[float, int], ...] = field(default_factory=tuple, metadata=_REBUILT)
    idle_since: float | None = field(
        default=None, metadata={"persist": "instant", "when_unsure": "later", "unbroken": True}
    )
    starting_since: float | None = field(default=None, metadata={"persist": "instant", "when_unsure": "earlier"})
    last_scale_up_at: float | None = field(default=None, metadata={"persist": "instant", "when_unsure": "earlier"})
    last_scale_down_at: float | None = field(default=None, metadata={"persist": "instant", "when_unsure": "later"})
    # Requests per second one replica completes when saturated, as measured (None: not yet).
    service_rate_per_replica: float | None = field(default=None, metadata={"persist": "rate"})
    # The same at target_running_per_replica in flight, estimated by Little's law while the
    # model is not saturated (None: not yet); used until a rate has been measured.
    service_rate_estimate: float | None = field(default=None, metadata={"persist": "rate"})
    # Since when requests have waited behind every ready replica, without a break (None: not now).
    saturated_since: float | None = field(default=None, metadata=_REBUILT)
    # (time, ready replicas) over the completion-rate window, to tell when it was steady.
    ready_history: tuple[tuple[float, int], ...] = field(default_factory=tuple, metadata=_REBUILT)
    # (time, replicas) when the model was first seen, standing as a recommendation made then.
    first_seen: tuple[float, int] | None = field(default=None, metadata=_REBUILT)
    # Hot: (when, share) the headroom for bursts was last raised by a queue overflow; it decays
    # from there (steps.headroom_share).
    burst_headroom: tuple[float, float] | None = field(
        default=None, metadata={"persist": "stamped_share", "when_unsure": "later"}
    )
    # Long-tail: how long each of the last idle periods lasted (seconds, oldest first), from no
    # request in flight to the next demand, to learn the idle timeout from.
    idle_gaps: tuple[float, ...] = field(default_factory=tuple, metadata={"persist": "durations"})
    # Batch: when the backlog now being drained was first seen (its deadline runs from here).
    backlog_since: float | None = field(default=None, metadata={"persist": "instant", "when_unsure": "earlier"})

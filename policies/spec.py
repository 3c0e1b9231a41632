"""Policy parameters, one class per policy kind. Defaults live here and only here.

Every field carries its unit in its name and the reason for its default in its description;
`autoscaler check-config` prints the effective values of every model.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Any, Literal, Self, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Frozen, no unknown fields, and no infinities: `cold_start_s: .inf` is a typo, not a setting.
STRICT_MODEL = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


@dataclass(frozen=True)
class LooseNumber:
    """A value given where a number belongs that pydantic's lax mode would quietly convert.
    `exact_numbers` puts it in the value's place, so the field's own validation fails on it,
    beside every other error of the config, and autoscaler.config.describe_errors says why."""

    value: Any
    wanted: str

    def __repr__(self) -> str:
        return f"{self.value!r} (must be {self.wanted})"


def exact_numbers(model: type[BaseModel], data: Any) -> Any:
    """A number field takes numbers only. Pydantic's lax mode reads YAML's `true` as 1, "3" as
    3 and 3.0 as 3, so `max_replicas: true` would become one replica without a word. Every
    model of the config runs its input through this first (a model validator, mode="before":
    a field validator on "*" would also wrap `kind`, which pydantic forbids on a discriminator)."""
    if not isinstance(data, dict):
        return data
    checked = dict(data)
    for name, value in data.items():
        field = model.model_fields.get(name)
        if field is None:
            continue
        kinds = set(get_args(field.annotation)) if get_origin(field.annotation) in (Union, types.UnionType) else {field.annotation}
        if not kinds & {int, float} or bool in kinds or str in kinds:
            continue
        wanted = "a number" if float in kinds else "a whole number"
        if isinstance(value, (bool, str)) or (wanted == "a whole number" and isinstance(value, float)):
            checked[name] = LooseNumber(value, wanted)
    return checked


class _Sized(BaseModel):
    """What every policy kind has: bounds, and the service rate it measures from completions."""

    model_config = STRICT_MODEL

    @model_validator(mode="before")
    @classmethod
    def _exact_numbers(cls, data: Any) -> Any:
        return exact_numbers(cls, data)

    min_replicas: int = Field(0, ge=0, description="Lower bound on replicas.")
    max_replicas: int = Field(10, ge=1, le=10_000, description="Upper bound on replicas.")
    service_rate_smoothing: float = Field(
        0.3, gt=0, le=1, description="Weight of a new service-rate sample in the running average (EWMA)."
    )
    completion_window_s: float = Field(
        60.0,
        gt=0,
        description=(
            "Range of the completion-rate query, rate(vllm:request_success_total[<this>s]): 60 s is four "
            "samples at a 15 s scrape, enough for rate(), short enough to follow load."
        ),
    )

    @model_validator(mode="after")
    def _bounds_in_order(self) -> Self:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) must not exceed max_replicas ({self.max_replicas})"
            )
        return self


class PolicySpec(_Sized):
    target_waiting_per_replica: float = Field(
        4.0,
        gt=0,
        description=(
            "Requests waiting in vLLM's queue per replica that we accept before adding one. "
            "vLLM queues only when the batch is full (max_num_seqs or KV cache), so a few "
            "waiting requests already mean saturation; llm-d counts 5 as saturated."
        ),
    )
    target_running_per_replica: float = Field(
        32.0,
        gt=0,
        description=(
            "In-flight requests (running + waiting) per replica at the latency the model should "
            "keep. Set it at the throughput/latency knee of the model and GPU, e.g. about 8 for "
            "an A100-40G serving 1,024-in/128-out requests (ANCHORS.md)."
        ),
    )
    tolerance: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Relative band around the current count inside which no change is made (the HPA's 0.1).",
    )
    cold_start_s: float = Field(
        120.0,
        gt=0,
        le=3600,
        description=(
            "Seconds from a new replica to ready. 2 to 7 minutes is typical for vLLM; an 8B "
            "model with local caches takes about 82 s (ANCHORS.md)."
        ),
    )
    stuck_start_factor: float = Field(
        2.0,
        ge=1,
        description=(
            "A start that takes longer than cold_start_s times this is treated as stuck: "
            "scale-up is no longer held back waiting for it."
        ),
    )
    scale_up_stabilization_s: float = Field(0.0, ge=0, description="Window (min of recommendations) before scaling up.")
    scale_down_stabilization_s: float = Field(
        300.0, ge=0, description="Window (max of recommendations) before scaling down: the HPA's 300 s."
    )
    scale_up_max_step_replicas: int = Field(4, ge=1, description="Replicas one scale-up may add (or the percent, whichever is larger).")
    scale_up_max_step_percent: float = Field(100.0, gt=0, description="Percent of current replicas one scale-up may add.")
    scale_up_period_s: float = Field(0.0, ge=0, description="Least time between two scale-ups.")
    scale_down_max_step_percent: float = Field(
        50.0, gt=0, le=100, description="Percent of current replicas one scale-down may remove (at least one)."
    )
    scale_down_period_s: float = Field(60.0, ge=0, description="Least time between two scale-downs.")
    idle_gpu_utilization_percent: float = Field(
        10.0,
        ge=0,
        le=100,
        description=(
            "GPU duty cycle (DCGM_FI_DEV_GPU_UTIL) below which a queue is not read as missing "
            "capacity: a busy vLLM engine keeps its GPUs near 100%, so requests waiting while "
            "the GPUs idle point at a stuck engine or a downstream block, which more replicas "
            "of the same model do not fix."
        ),
    )
    kv_cache_hold_down_above: float = Field(
        0.9,
        gt=0,
        le=1,
        description=(
            "KV-cache use (0..1) above which no scale-down happens: replicas that are out of "
            "cache are about to queue even when the queue is empty now. Without a KV reading "
            "no scale-down happens either (GuardInputMissing); 1 turns the guard off, for "
            "engines that export no KV-cache gauge."
        ),
    )

    target_utilization: float = Field(
        0.8,
        gt=0,
        le=1,
        description=(
            "Share of a replica's measured service rate to plan for. Queues grow without bound as "
            "utilization nears 1; at 0.8 an M/M/1-like queue holds about 4 requests on average."
        ),
    )
    backlog_drain_s: float = Field(
        30.0,
        gt=0,
        description=(
            "Seconds within which a backlog should drain, on top of the arrivals: 300 waiting at "
            "2 req/s per replica asks for 300 / (2 x 30) = 5 more replicas."
        ),
    )
    in_flight_bound: float = Field(
        2.0,
        ge=1,
        description=(
            "With nothing waiting, a count sized from an estimated service rate is held to this many times the "
            "in-flight need (in flight / target_running_per_replica, rounded up): replicas that would "
            "each hold under half their target while nothing queues are more than the load asks, "
            "whatever the estimate says; with fewer replicas each runs enough for a new sample to "
            "correct it (InFlightBound). A rate measured while saturated is not bound."
        ),
    )


class HotSpec(PolicySpec):
    """A model with steady traffic: always warm, quick to scale up, slow to scale down."""

    kind: Literal["hot"] = "hot"
    min_replicas: int = Field(1, ge=1, description="Lower bound on replicas; a hot model never goes to zero.")
    burst_headroom_step: float = Field(
        0.5,
        ge=0,
        le=10,
        description=(
            "Share added on top of what the load asks for each time the queue overflows (more "
            "than target_waiting_per_replica waiting per ready replica), at most once per "
            "cold_start_s. A burst that outruns a cold start is served only by replicas already "
            "up; an overflow is the evidence that this model's traffic brings such bursts. "
            "0 turns it off."
        ),
    )
    burst_headroom_max: float = Field(
        3.0, ge=0, le=10, description="Most headroom for bursts, as a share of what the load asks for (3: four times)."
    )
    burst_headroom_decay_s: float = Field(
        3600.0,
        gt=0,
        description=(
            "Seconds over which headroom for bursts falls to 1/e (37%) without another "
            "overflow: an hour of calm gives most of it back."
        ),
    )


class LongTailSpec(PolicySpec):
    """A model with sparse traffic: scales to zero when idle and wakes on demand."""

    kind: Literal["long-tail"] = "long-tail"
    scale_up_period_s: float = Field(30.0, ge=0, description="Least time between two scale-ups.")
    idle_timeout_s: float | None = Field(
        None,
        gt=0,
        description="Idle time before scaling to zero; unset derives it from cold_start_s (see effective_idle_timeout_s).",
    )
    cold_start_cost_ratio: float = Field(
        3.0,
        ge=0,
        description=(
            "GPU-seconds that one second of a user waiting on a cold start is worth. It prices "
            "the latency side of the break-even that sets the idle timeout."
        ),
    )
    idle_gap_history: int = Field(
        20,
        ge=0,
        le=1000,
        description=(
            "Idle periods remembered to learn the idle timeout from (see long_tail.idle_timeout); "
            "0 keeps the break-even. 20 spans a day of a model used every hour or so."
        ),
    )
    wake_threshold: float = Field(
        0.0, ge=0, description="Wake signal above which a model at zero replicas gets one (KEDA's activation threshold)."
    )

    @property
    def effective_idle_timeout_s(self) -> float:
        """The idle timeout before this model's idle periods have been seen: idle_timeout_s
        when set, else the break-even. Learning may then shorten it (long_tail.idle_timeout)."""
        if self.idle_timeout_s is not None:
            return self.idle_timeout_s
        return self.break_even_s

    @property
    def break_even_s(self) -> float:
        """Ski-rental break-even: stay warm until the GPU time spent idling equals what one
        cold start costs, then scale to zero. A cold start costs cold_start_s of GPU time
        (a loading replica holds its GPU and serves nothing) plus cold_start_s of user wait,
        priced at cold_start_cost_ratio GPU-seconds per second. Worked example: a 90 s cold
        start at ratio 3 gives 90 * (1 + 3) = 360 s idle before zero; a 300 s one, 20 min.
        Keeping warm for this long is at most twice the cost of the best choice in hindsight
        (the deterministic ski-rental bound)."""
        return self.cold_start_s * (1.0 + self.cold_start_cost_ratio)


class BatchSpec(_Sized):
    """Offline traffic (embeddings, evaluations, summaries of a document set): what matters is
    that the backlog is done before a deadline, not how long one request waits. It scales to
    drain the backlog in time at a replica's throughput, yields its GPUs to interactive models
    first when a pool is short (policies.arbitration), and goes to zero once drained.

    Not a PolicySpec: the interactive sizing knobs (targets per replica, tolerance,
    stabilization windows) have no meaning for a backlog with a deadline."""

    kind: Literal["batch"] = "batch"
    min_replicas: int = Field(0, ge=0, description="Lower bound on replicas; 0 lets a drained batch model give back every GPU.")
    max_replicas: int = Field(10, ge=1, le=10_000, description="Upper bound on replicas.")
    replica_throughput_rps: float = Field(
        gt=0,
        description=(
            "Requests per second one replica completes with a full batch: the prior the "
            "backlog is sized with until a rate has been measured (the measured one then "
            "wins). Required, since it differs by orders of magnitude between a 300-token "
            "embedding and a 4,000-token summary. Example: an 8B model on an A100-40G at 8 "
            "concurrent 1,024-in/128-out requests finishes about 8 / (12 ms x 128 + 150 us x "
            "1,024 + ...) ~ 2 req/s (ANCHORS.md's knee)."
        ),
    )
    drain_deadline_s: float = Field(
        3600.0,
        gt=0,
        description=(
            "Seconds from when a backlog is first seen to when it should be done. The deadline "
            "holds until the backlog drains, so a job submitted at 12:00 with a 1-hour deadline "
            "is sized to finish by 13:00 however much of it is left at 12:40. One hour is a "
            "common turnaround for offline jobs that feed the next step of a pipeline."
        ),
    )
    drain_grace_s: float = Field(
        120.0,
        ge=0,
        description=(
            "Seconds with nothing waiting or running before a drained model goes to zero: long "
            "enough for the last requests of a job submitted in chunks to arrive (two scrapes "
            "at the 60 s default), short against the ~2 minutes of GPU time a replica idles for."
        ),
    )
    cold_start_s: float = Field(
        120.0,
        gt=0,
        le=3600,
        description=(
            "Seconds from a new replica to ready. A replica asked for now serves for the time "
            "left to the deadline minus this; 2 to 7 minutes is typical for vLLM (ANCHORS.md)."
        ),
    )
    wake_threshold: float = Field(
        0.0,
        ge=0,
        description=(
            "At zero replicas the wake signal is read as the backlog waiting outside the pods (a "
            "gateway's queue for the batch route, a job queue's length); above this it wakes the model."
        ),
    )


AnySpec = PolicySpec | BatchSpec

SPEC_BY_KIND: dict[str, type[PolicySpec] | type[BatchSpec]] = {
    "hot": HotSpec,
    "long-tail": LongTailSpec,
    "batch": BatchSpec,
}

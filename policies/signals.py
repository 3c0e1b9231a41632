"""What a policy sees of one model at one instant.

A reading is a value, no data, or stale data: three distinct outcomes, because "no series"
must never be read as "zero load" while replicas are up (ANCHORS.md, vLLM section).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum


class Freshness(str, Enum):
    OK = "ok"
    MISSING = "missing"
    STALE = "stale"


@dataclass(frozen=True, slots=True)
class Reading:
    """One signal for one model: a finite, non-negative value, or the reason there is none."""

    value: float | None = None
    freshness: Freshness = Freshness.MISSING
    age_s: float | None = None

    @classmethod
    def of(cls, value: float, *, age_s: float = 0.0) -> Reading:
        return cls(value=checked_value(value), freshness=Freshness.OK, age_s=age_s)

    @classmethod
    def missing(cls) -> Reading:
        return cls()

    @classmethod
    def stale(cls, value: float, *, age_s: float) -> Reading:
        return cls(value=checked_value(value), freshness=Freshness.STALE, age_s=age_s)

    @property
    def usable(self) -> bool:
        return self.freshness is Freshness.OK

    @property
    def number(self) -> float:
        """The value, for a caller that knows there is one (it checked `usable`, or wants a stale
        reading's last value). A reading with no data raises rather than pass for a number:
        missing is not zero."""
        if self.value is None:
            raise ValueError("no data: a reading with no value was read as a number")
        return self.value

    def describe(self) -> str:
        if self.freshness is Freshness.OK:
            return f"{self.value:g}"
        if self.freshness is Freshness.STALE:
            return f"stale ({self.age_s:.0f} s old)"
        return "no data"


def checked_value(value: float) -> float:
    """Reject what no gauge or count of ours can be: NaN, infinities, negatives."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"value {value!r} is not finite")
    if value < 0:
        raise ValueError(f"value {value!r} is negative")
    return value


@dataclass(frozen=True, slots=True)
class Dependency:
    """A downstream service the model's requests need, with its saturation and the level
    at which adding model replicas stops helping (more replicas only queue at the dependency)."""

    name: str
    saturation: Reading
    saturated_at: float

    @property
    def saturated(self) -> bool:
        return self.saturation.usable and self.saturation.number >= self.saturated_at


@dataclass(frozen=True, slots=True)
class Observation:
    """One model at one tick.

    `spec_replicas` is the count the target asks for now; `ready_replicas` how many serve.
    `waiting` and `running` are summed over the model's pods; `kv_cache_usage` is the highest
    pod's fraction (0..1); `gpu_utilization` the mean duty cycle (percent) of its GPUs;
    `completion_rate` is requests finished per second over the last minute, summed over the
    pods (vLLM's request_success_total); `wake` is demand seen outside the pods (a gateway),
    the only signal that exists at zero.

    `reporting_pods` is how many pods the sums were taken over. Fewer than `ready_replicas`
    means the sums miss the load of the others (a pod whose scrape failed has no series), so
    they are a floor of the load: good for a scale-up, never for a scale-down (the HPA's rule
    for pods without metrics). None: the source does not count pods (replay, whose replicas
    are not the pods that were recorded); no data: it does, and the count is unknown, which
    holds like too few.
    """

    spec_replicas: int
    ready_replicas: int
    waiting: Reading = Reading()
    running: Reading = Reading()
    kv_cache_usage: Reading = Reading()
    gpu_utilization: Reading = Reading()
    completion_rate: Reading = Reading()
    wake: Reading = Reading()
    dependencies: tuple[Dependency, ...] = field(default_factory=tuple)
    reporting_pods: Reading | None = None

    def __post_init__(self) -> None:
        if self.spec_replicas < 0 or self.ready_replicas < 0:
            raise ValueError(
                f"replica counts must be >= 0, got spec={self.spec_replicas} ready={self.ready_replicas}"
            )

    @property
    def starting_replicas(self) -> int:
        return max(self.spec_replicas - self.ready_replicas, 0)

    def unreported(self) -> str | None:
        """Why the load sums may miss ready pods ("3 of 4 pods reported"), or None when every
        ready pod reported or the source does not count them."""
        pods = self.reporting_pods
        if pods is None or self.ready_replicas == 0:
            return None  # not counted, or no ready pod whose load the sums could miss
        if not pods.usable:
            return f"the count of pods that reported is {pods.describe()}, of {self.ready_replicas} ready"
        if pods.number < self.ready_replicas:
            return f"{pods.number:g} of {self.ready_replicas} pods reported"
        return None

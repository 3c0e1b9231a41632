"""The metrics-source boundary: what the controller reads each tick, from live Prometheus
(prometheus.py) or a recorded trace (recorded.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol

from policies.signals import Reading

SIGNALS = ("waiting", "running", "kv_cache_usage", "gpu_utilization", "completion_rate", "wake", "reporting_pods")


@dataclass(frozen=True, slots=True)
class ModelSignals:
    """`reporting_pods`: how many of the model's pods answered the scrape behind the sums
    (policies.signals.Observation). It defaults to no data, which holds every scale-down: a
    source that forgets to count is read as one whose count failed. None says that the source
    counts none on purpose (replay: autoscaler/replay.py says why)."""

    waiting: Reading = Reading()
    running: Reading = Reading()
    kv_cache_usage: Reading = Reading()
    gpu_utilization: Reading = Reading()
    completion_rate: Reading = Reading()
    wake: Reading = Reading()
    reporting_pods: Reading | None = Reading()


@dataclass(frozen=True, slots=True)
class Signals:
    """Everything read at one instant. A model or dependency absent from a mapping has no data."""

    models: Mapping[str, ModelSignals] = field(default_factory=dict)
    dependencies: Mapping[str, Reading] = field(default_factory=dict)

    # The defaults are built once: a default argument to get() is built on every call, found
    # or not, and the controller asks for every model at every tick.
    def for_model(self, name: str) -> ModelSignals:
        return self.models.get(name, _NO_SIGNALS)

    def for_dependency(self, name: str) -> Reading:
        return self.dependencies.get(name, _NO_READING)


_NO_READING = Reading()  # frozen: one instance serves every absent reading
_NO_SIGNALS = ModelSignals()


class MetricsSource(Protocol):
    def fetch_signals(self, *, now: float) -> Signals:
        """Read every signal of every configured model as of `now` (seconds since the epoch)."""
        ...

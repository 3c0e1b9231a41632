"""KEDA ScaledObject with one Prometheus trigger, and the HPA it creates.

Reproduced from kedacore/keda `pkg/scaling/executor/scale_scaledobjects.go` (RequestScale,
scaleToZeroOrIdle, scaleFromZeroOrIdle), `pkg/scaling/executor/scale_executor.go`
(defaultCooldownPeriod, defaultInitialCooldownPeriod), `apis/keda/v1alpha1/scaledobject_types.go`
(defaultHPAMinReplicas, defaultHPAMaxReplicas), `pkg/scalers/prometheus_scaler.go`
(ExecutePromQuery, GetMetricsAndActivity) and the ScaledObject specification (keda-docs
scaledobject-spec: pollingInterval "Optional. Default: 30 seconds").

Two loops share one replica count:
* KEDA's scale loop, every pollingInterval (30 s): it only decides 0 <-> N. Active (value >
  activationThreshold) at zero -> write max(minReplicaCount, 1) and stamp LastActiveTime; active
  above zero -> stamp LastActiveTime; inactive above zero with minReplicaCount 0 -> once the
  cooldown has passed since LastActiveTime, write 0 straight from N, bypassing the HPA's rules.
* the HPA (`HpaCore`, min max(minReplicaCount, 1), behavior unset unless `hpa_behavior_set`),
  every 15 s: 1..N on ceil(value / threshold). At zero replicas it is disabled.
Both run at view.now when due; when both are due the HPA sees KEDA's write (in a cluster the HPA
syncs 0 to 15 s after KEDA's write; the simulation takes the early end).

What the trigger sees at zero replicas: the vLLM series do not exist, and ignoreNullValues (true
by default) turns the empty result into 0, so a trigger on vLLM waiting alone never activates
from zero. `wake_from_gateway=True` (the default) models what deployments do instead: the query
`(sum(vllm:num_requests_waiting{model=...}) or vector(0)) + sum(gateway_queue{model=...})`, i.e.
value = (waiting or 0) + buffered. (Without `or vector(0)` the `+` of an absent vector is itself
empty, which ignoreNullValues would read as 0 again.)

As users run it (simulations.contenders): KServe documents KEDA for LLMs as a Prometheus
trigger on `vllm:num_requests_running` with a target value of 2 per pod, minReplicas 1
(https://kserve.github.io/website/docs/model-serving/generative-inference/autoscaling, source
kserve/website docs/model-serving/generative-inference/autoscaling/autoscaling.md); KEDA's
trigger defaults are in its scaler docs (https://keda.sh/docs/latest/scalers/prometheus/:
ignoreNullValues "Default is `true`"; threshold required, activationThreshold optional) and
the ScaledObject spec (https://keda.sh/docs/latest/reference/scaledobject-spec/: pollingInterval
30 s, cooldownPeriod 300 s). Tuned, the trigger sums running + waiting (`metric="in_flight"`).
"""

from __future__ import annotations

import math

from simulations.peers import QUEUE_METRICS, PeerView, queue_metric
from simulations.peers.hpa import (
    DEFAULT_THRESHOLD,
    DOWNSCALE_STABILIZATION_S,
    SYNC_PERIOD_S,
    TOLERANCE,
    HpaCore,
    SyncSchedule,
)

POLLING_INTERVAL_S = 30.0  # ScaledObject spec docs: pollingInterval "Optional. Default: 30 seconds"
COOLDOWN_PERIOD_S = 300.0  # executor/scale_executor.go defaultCooldownPeriod = 5 * 60
INITIAL_COOLDOWN_PERIOD_S = 0.0  # executor/scale_executor.go defaultInitialCooldownPeriod = 0
MIN_REPLICA_COUNT = 0  # ScaledObjectSpec.MinReplicaCount nil -> 0 (getIdleOrMinimumReplicaCount)
MAX_REPLICA_COUNT = 100  # apis/keda/v1alpha1/scaledobject_types.go defaultHPAMaxReplicas = 100
ACTIVATION_THRESHOLD = 0.0  # prometheus_scaler.go ActivationThreshold, optional, zero value
IGNORE_NULL_VALUES = True  # prometheus_scaler.go IgnoreNullValues `default=true` (keda issue 3065)
# KEDA has no default threshold (prometheus_scaler.go Threshold is required). 5 waiting requests
# per replica is llm-d's saturation rule (queue >= 5), so KEDA and the plain HPA share a target.
THRESHOLD = DEFAULT_THRESHOLD


class Keda:
    """KEDA 2.x ScaledObject (a Prometheus trigger on one vLLM series, `metric`: waiting by
    default here, as KEDA itself has no default query) plus its HPA.

    `last_reasons` keeps what happened at the latest call: KEDA's own step (`Activated`,
    `Deactivated`, `CoolingDown`, `TriggerError`, ...) then the HPA's condition reasons.
    """

    name = "keda"

    def __init__(
        self,
        *,
        threshold: float = THRESHOLD,
        activation_threshold: float = ACTIVATION_THRESHOLD,
        polling_interval_s: float = POLLING_INTERVAL_S,
        cooldown_period_s: float = COOLDOWN_PERIOD_S,
        initial_cooldown_period_s: float = INITIAL_COOLDOWN_PERIOD_S,
        min_replica_count: int = MIN_REPLICA_COUNT,
        max_replica_count: int = MAX_REPLICA_COUNT,
        ignore_null_values: bool = IGNORE_NULL_VALUES,
        wake_from_gateway: bool = True,
        metric: str = "waiting",
        hpa_sync_period_s: float = SYNC_PERIOD_S,
        hpa_tolerance: float = TOLERANCE,
        hpa_downscale_stabilization_s: float = DOWNSCALE_STABILIZATION_S,
        hpa_behavior_set: bool = False,
    ) -> None:
        if min_replica_count < 0:
            raise ValueError(f"min_replica_count must be >= 0, got {min_replica_count!r}")
        if cooldown_period_s < 0 or initial_cooldown_period_s < 0:
            raise ValueError(
                f"cooldown periods must be >= 0, got cooldown_period_s={cooldown_period_s!r}, "
                f"initial_cooldown_period_s={initial_cooldown_period_s!r}"
            )
        if metric not in QUEUE_METRICS:
            raise ValueError(f"metric {metric!r} unknown; choose from {', '.join(QUEUE_METRICS)}")
        self.metric = metric
        self.threshold = threshold
        self.activation_threshold = activation_threshold
        self.polling_interval_s = polling_interval_s
        self.cooldown_period_s = cooldown_period_s
        self.initial_cooldown_period_s = initial_cooldown_period_s
        self.min_replica_count = min_replica_count
        self.max_replica_count = max_replica_count
        self.ignore_null_values = ignore_null_values
        self.wake_from_gateway = wake_from_gateway
        self.period_s = _common_period_s(polling_interval_s, hpa_sync_period_s)
        # keda's hpa.go getHPAMinReplicas: minReplicaCount if > 0, else 1.
        self.hpa = HpaCore(
            target_average_value=threshold,
            min_replicas=max(min_replica_count, 1),
            max_replicas=max_replica_count,
            tolerance=hpa_tolerance,
            downscale_stabilization_s=hpa_downscale_stabilization_s,
            behavior_set=hpa_behavior_set,
        )
        self._polls = SyncSchedule(polling_interval_s)
        self._hpa_syncs = SyncSchedule(hpa_sync_period_s)
        self._created_at: float | None = None
        self._last_active_at: float | None = None  # ScaledObject.Status.LastActiveTime
        self.last_reasons: tuple[str, ...] = ()

    def trigger_value(self, view: PeerView) -> float | None:
        """What the Prometheus scaler returns now; None is a query error (only possible with
        ignore_null_values=False, when the result is empty)."""
        value = queue_metric(view, self.metric)
        if self.wake_from_gateway:
            return (value or 0.0) + view.buffered
        if value is None:
            return 0.0 if self.ignore_null_values else None
        return value

    def assume_running(self, replicas: int, *, now: float) -> None:
        """A ScaledObject that has been active at `replicas`: its HPA's window holds them."""
        self.hpa.assume_running(replicas, now=now)
        if replicas > 0:
            self._created_at, self._last_active_at = now, now

    def decide(self, view: PeerView) -> int:
        now = view.now
        if self._created_at is None:
            self._created_at = now
        value = self.trigger_value(view)
        replicas = view.spec_replicas
        reasons: list[str] = []
        if self._polls.due(now):
            replicas, keda_reason = self._scale_loop(now, replicas, value)
            reasons.append(keda_reason)
        if self._hpa_syncs.due(now):
            # The HPA reads the same trigger through KEDA's metrics server; a query error is a
            # failed metric there too.
            step = self.hpa.sync(now=now, current_replicas=replicas, metric_value=value)
            replicas = step.replicas
            reasons.extend(step.reasons)
        self.last_reasons = tuple(reasons)
        return replicas

    def _scale_loop(self, now: float, current: int, value: float | None) -> tuple[int, str]:
        """RequestScale for one trigger."""
        if value is None:
            # isError with no fallback: "Triggers defined in ScaledObject are not working
            # correctly", no change. (fallback is not modelled.)
            return current, "TriggerError"
        if value > self.activation_threshold:  # GetMetricsAndActivity: val > ActivationThreshold
            self._last_active_at = now
            if current == 0:
                return max(self.min_replica_count, 1), "Activated"
            return current, "Active"
        if current > 0 and self.min_replica_count == 0:
            if self._cooldown_passed(now):
                return 0, "Deactivated"
            return current, "CoolingDown"
        if current < self.min_replica_count:
            return self.min_replica_count, "BelowMinReplicaCount"
        return current, "Inactive"

    def _cooldown_passed(self, now: float) -> bool:
        # KEDA tests LastActiveTime.Add(cooldown).Before(time.Now()). LastActiveTime is a
        # metav1.Time, stored at whole seconds, so at the poll exactly one cooldown after the last
        # active one "now" is already past it: the simulation scales at that poll (>=), not one
        # poll later. With LastActiveTime nil (never active) the reference is the creation time
        # plus initialCooldownPeriod (0): a fresh ScaledObject over an idle target drops at once.
        assert self._created_at is not None
        if self._last_active_at is None:
            return now - self._created_at >= self.initial_cooldown_period_s - 1e-9
        return now - self._last_active_at >= self.cooldown_period_s - 1e-9


def _common_period_s(*periods_s: float) -> float:
    """The longest step that lands on every loop's instants: the gcd of whole-second periods
    (30 s polls and 15 s HPA syncs -> 15 s), else the shortest period."""
    if all(float(p).is_integer() for p in periods_s):
        return float(math.gcd(*(int(p) for p in periods_s)))
    return min(periods_s)

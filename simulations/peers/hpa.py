"""Kubernetes HPA (autoscaling/v2) on one External metric with an AverageValue target.

Reproduced from kubernetes `pkg/controller/podautoscaler/horizontal.go` (reconcileAutoscaler,
normalizeDesiredReplicas, stabilizeRecommendation, the *WithBehaviors variants),
`replica_calculator.go` (GetExternalPerPodMetricReplicas) and `pkg/apis/autoscaling/v2/defaults.go`.

Two normalisation paths exist in the controller, and which one runs depends on whether
`spec.behavior` is set at all:

* behavior unset (the default, and what KEDA creates unless `advanced.horizontalPodAutoscalerConfig
  .behavior` is given): `normalizeDesiredReplicas`. Stabilization takes the max of every
  recommendation not older than 300 s (up or down); the scale-up cap is the absolute
  `max(2 * current, 4)` (`scaleUpLimitFactor`, `scaleUpLimitMinimum`); there is no scale-down
  rate limit. From 1 replica it allows 4, from 2 also 4, from 3 it allows 6.
* behavior set (any field): the API server fills `defaultHPAScaleUpRules` (+4 pods or +100% per
  15 s, selectPolicy Max, no up window) and `defaultHPAScaleDownRules` (-100% per 15 s, window =
  the controller's 300 s), and `normalizeDesiredReplicasWithBehaviors` counts changes from the
  replica count at the start of each 15 s period. From 1 replica it allows 5, from 2 it allows 6.

The two agree from 4 replicas up (2x >= x + 4); ANCHORS.md describes the second. `HpaCore` does
both (`behavior_set`), is reused by the KEDA peer, and takes the time as an argument.

As users run it (simulations.contenders): the Kubernetes vLLM example scales on a Pods metric
`vllm_num_requests_running` with an AverageValue of 4, minReplicas 1
(https://github.com/kubernetes/examples/blob/master/AI/vllm-deployment/hpa/horizontal-pod-autoscaler.yaml;
it also sets a 30 s down-window, which the tuning grid covers), and the HPA's defaults
otherwise: 300 s down-stabilization, none up, tolerance 0.1, a 15 s sync
(https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulations.peers import QUEUE_METRICS, PeerView, queue_metric

SYNC_PERIOD_S = 15.0  # kube-controller-manager --horizontal-pod-autoscaler-sync-period default 15s
TOLERANCE = 0.1  # --horizontal-pod-autoscaler-tolerance default 0.1 (replica_calculator.go Tolerances)
DOWNSCALE_STABILIZATION_S = 300.0  # --horizontal-pod-autoscaler-downscale-stabilization default 5m
SCALE_UP_LIMIT_FACTOR = 2.0  # horizontal.go scaleUpLimitFactor (behavior unset)
SCALE_UP_LIMIT_MINIMUM = 4.0  # horizontal.go scaleUpLimitMinimum (behavior unset)
# defaults.go defaultHPAScaleUpRules: Pods 4 / 15 s and Percent 100 / 15 s, selectPolicy Max,
# StabilizationWindowSeconds 0 (scaleUpLimitMinimumPods, scaleUpLimitPercent, scaleUpPeriod).
SCALE_UP_POLICY_PODS = 4
SCALE_UP_POLICY_PERCENT = 100.0
SCALE_UP_POLICY_PERIOD_S = 15.0
SCALE_UP_STABILIZATION_S = 0.0
# defaults.go defaultHPAScaleDownRules: Percent 100 / 15 s (scaleDownLimitPercent, scaleDownPeriod);
# its window is nil, so maybeInitScaleDownStabilizationWindow puts in the controller's 300 s.
SCALE_DOWN_POLICY_PERCENT = 100.0
SCALE_DOWN_POLICY_PERIOD_S = 15.0
# Not a Kubernetes default: HPA requires maxReplicas and External targets. 100 matches KEDA's
# defaultHPAMaxReplicas, and 5 waiting requests per replica is llm-d's saturation queue rule.
DEFAULT_MAX_REPLICAS = 100
DEFAULT_THRESHOLD = 5.0

_EPSILON_S = 1e-9  # float slack when comparing simulated instants


@dataclass(frozen=True, slots=True)
class HpaStep:
    """One HPA sync: the replica count it writes (or leaves) and the controller's own condition
    reasons, in the order they applied (e.g. `ScaleDownStabilized`, `ScaleUpLimit`)."""

    replicas: int
    reasons: tuple[str, ...]


@dataclass(slots=True)
class _Timed:
    at: float
    value: int


class HpaCore:
    """The HPA controller's arithmetic for one HPA with a single External AverageValue metric.

    State: the recommendation history (horizontal.go `recommendations`) and, with behavior set,
    the scale events per direction (`scaleUpEvents`, `scaleDownEvents`). `sync` is one call of
    reconcileAutoscaler at `now`; the caller decides when syncs happen.
    """

    def __init__(
        self,
        *,
        target_average_value: float,
        min_replicas: int = 1,
        max_replicas: int = DEFAULT_MAX_REPLICAS,
        tolerance: float = TOLERANCE,
        downscale_stabilization_s: float = DOWNSCALE_STABILIZATION_S,
        behavior_set: bool = False,
    ) -> None:
        if not target_average_value > 0:
            raise ValueError(f"target_average_value must be > 0, got {target_average_value!r}")
        if min_replicas < 1:
            # The HPAScaleToZero alpha gate is off by default; validation rejects minReplicas 0.
            raise ValueError(f"min_replicas must be >= 1 (HPA without HPAScaleToZero), got {min_replicas!r}")
        if max_replicas < min_replicas:
            raise ValueError(f"max_replicas ({max_replicas!r}) must be >= min_replicas ({min_replicas!r})")
        if tolerance < 0:
            raise ValueError(f"tolerance must be >= 0, got {tolerance!r}")
        if downscale_stabilization_s < 0:
            raise ValueError(f"downscale_stabilization_s must be >= 0, got {downscale_stabilization_s!r}")
        self.target_average_value = float(target_average_value)
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.tolerance = tolerance
        self.downscale_stabilization_s = downscale_stabilization_s
        self.behavior_set = behavior_set
        self._recommendations: list[_Timed] = []
        self._scale_up_events: list[_Timed] = []
        self._scale_down_events: list[_Timed] = []

    def assume_running(self, replicas: int, *, now: float) -> None:
        """Start as an HPA that has run for its window at `replicas`: its history holds that
        recommendation, so the first sync of a warm service does not drop it to what an
        empty window would allow."""
        self._recommendations = [_Timed(now, replicas)]

    def sync(self, *, now: float, current_replicas: int, metric_value: float | None) -> HpaStep:
        """One reconcile. `current_replicas` is the scale subresource's spec.replicas (also used
        for status.replicas: the pods created, which the simulator equates with spec).
        `metric_value` is the External metric's sum, or None when fetching it failed."""
        if current_replicas == 0:
            # "scaling is disabled since the replica count of the target is zero"
            return HpaStep(0, ("ScalingDisabled",))
        if current_replicas > self.max_replicas:
            return HpaStep(self.max_replicas, ("TooManyReplicas",))
        if current_replicas < self.min_replicas:
            return HpaStep(self.min_replicas, ("TooFewReplicas",))
        if metric_value is None:
            # computeReplicasForMetrics fails for every metric: the HPA returns an error and
            # neither scales nor records a recommendation.
            return HpaStep(current_replicas, ("FailedGetExternalMetric",))

        proposal, proposal_reason = self._proposal(current_replicas, metric_value)
        if self.behavior_set:
            replicas, reasons = self._normalize_with_behaviors(now, current_replicas, proposal)
        else:
            replicas, reasons = self._normalize_legacy(now, current_replicas, proposal)
        return HpaStep(replicas, (proposal_reason, *reasons))

    def _proposal(self, current: int, value: float) -> tuple[int, str]:
        # GetExternalPerPodMetricReplicas: usageRatio = usage / (target * statusReplicas); inside
        # the tolerance keep the count, else ceil(usage / target). E.g. 11 waiting at 5 per replica
        # with 2 replicas: ratio 1.1, inside [0.9, 1.1], so 2 stay (not ceil(2.2) = 3).
        # Tolerances.isWithin (1.33+): (1 - down) <= ratio <= (1 + up), both ends inclusive. Older
        # releases tested math.Abs(1.0-usageRatio) > tolerance, which in floats scales at exactly
        # 1.1 (1 - 1.1 = -0.10000000000000009); only the boundary differs.
        usage_ratio = value / (self.target_average_value * current)
        if (1.0 - self.tolerance) <= usage_ratio <= (1.0 + self.tolerance):
            return current, "WithinTolerance"
        return math.ceil(value / self.target_average_value), "MetricRecommendation"

    def _normalize_legacy(self, now: float, current: int, proposal: int) -> tuple[int, tuple[str, ...]]:
        # stabilizeRecommendation: max of the proposal and every recommendation whose timestamp
        # is not Before(now - window), i.e. at most 300 s old (one taken exactly 300 s ago counts).
        cutoff = now - self.downscale_stabilization_s
        stabilized = max([proposal, *(r.value for r in self._recommendations if r.at >= cutoff - _EPSILON_S)])
        self._recommendations = [r for r in self._recommendations if r.at >= cutoff - _EPSILON_S]
        self._recommendations.append(_Timed(now, proposal))
        reasons: list[str] = ["ScaleDownStabilized"] if stabilized != proposal else []

        # convertDesiredReplicasWithRules: [minReplicas, min(maxReplicas, calculateScaleUpLimit)].
        scale_up_limit = int(max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM))
        if self.max_replicas > scale_up_limit:
            maximum, limit_reason = scale_up_limit, "ScaleUpLimit"
        else:
            maximum, limit_reason = self.max_replicas, "TooManyReplicas"
        if stabilized < self.min_replicas:
            return self.min_replicas, (*reasons, "TooFewReplicas")
        if stabilized > maximum:
            return maximum, (*reasons, limit_reason)
        return stabilized, (*reasons, "DesiredWithinRange")

    def _normalize_with_behaviors(self, now: float, current: int, proposal: int) -> tuple[int, tuple[str, ...]]:
        # stabilizeRecommendationWithBehaviors: up takes the min over the up window (0 s: none),
        # down the max over the down window; a record counts if its timestamp is After(cutoff),
        # so one taken exactly 300 s ago no longer does.
        if proposal >= current:
            cutoff = now - SCALE_UP_STABILIZATION_S
            window = [r.value for r in self._recommendations if r.at > cutoff + _EPSILON_S]
            stabilized = min([proposal, *window])
            stabilized_reason = "ScaleUpStabilized"
        else:
            cutoff = now - self.downscale_stabilization_s
            window = [r.value for r in self._recommendations if r.at > cutoff + _EPSILON_S]
            stabilized = max([proposal, *window])
            stabilized_reason = "ScaleDownStabilized"
        keep_after = now - max(SCALE_UP_STABILIZATION_S, self.downscale_stabilization_s)
        self._recommendations = [r for r in self._recommendations if r.at >= keep_after - _EPSILON_S]
        self._recommendations.append(_Timed(now, proposal))
        reasons: list[str] = [stabilized_reason] if stabilized != proposal else []

        desired, limit_reason = self._rate_limit(now, current, stabilized)
        reasons.append(limit_reason)
        if desired > current:
            self._scale_up_events.append(_Timed(now, desired - current))
        elif desired < current:
            self._scale_down_events.append(_Timed(now, current - desired))
        return desired, tuple(reasons)

    def _period_start(self, now: float, current: int, period_s: float) -> int:
        # getReplicasChangePerPeriod counts events After(now - period); the count at the start
        # of the period is current - added + deleted.
        cutoff = now - period_s
        added = sum(e.value for e in self._scale_up_events if e.at > cutoff + _EPSILON_S)
        deleted = sum(e.value for e in self._scale_down_events if e.at > cutoff + _EPSILON_S)
        return current - added + deleted

    def _rate_limit(self, now: float, current: int, desired: int) -> tuple[int, str]:
        # convertDesiredReplicasWithBehaviorRate with the default policies.
        if desired > current:
            start = self._period_start(now, current, SCALE_UP_POLICY_PERIOD_S)
            by_pods = start + SCALE_UP_POLICY_PODS
            by_percent = math.ceil(start * (1 + SCALE_UP_POLICY_PERCENT / 100))
            scale_up_limit = max(current, max(by_pods, by_percent))  # selectPolicy Max
            if self.max_replicas > scale_up_limit:
                maximum, reason = scale_up_limit, "ScaleUpLimit"
            else:
                maximum, reason = self.max_replicas, "TooManyReplicas"
            if desired > maximum:
                return maximum, reason
        elif desired < current:
            start = self._period_start(now, current, SCALE_DOWN_POLICY_PERIOD_S)
            scale_down_limit = min(current, int(start * (1 - SCALE_DOWN_POLICY_PERCENT / 100)))
            if self.min_replicas < scale_down_limit:
                minimum, reason = scale_down_limit, "ScaleDownLimit"
            else:
                minimum, reason = self.min_replicas, "TooFewReplicas"
            if desired < minimum:
                return minimum, reason
        return desired, "DesiredWithinRange"


class SyncSchedule:
    """When a periodic loop next runs: every `period_s` from the first instant it is asked about,
    counted from that first instant (not from the last call) so late calls do not drift it."""

    def __init__(self, period_s: float) -> None:
        if not period_s > 0:
            raise ValueError(f"period_s must be > 0, got {period_s!r}")
        self.period_s = period_s
        self._next_at: float | None = None

    def due(self, now: float) -> bool:
        """True (and advance) when a run is due at `now`."""
        if self._next_at is None:
            self._next_at = now
        if now + _EPSILON_S < self._next_at:
            return False
        while self._next_at <= now + _EPSILON_S:
            self._next_at += self.period_s
        return True


class Hpa:
    """A plain HPA on one vLLM series summed over the pods (`metric`, waiting by default) with
    an AverageValue target, through prometheus-adapter (an External metric, or a Pods metric,
    whose AverageValue arithmetic is the same): desired = ceil(sum / threshold), min 1 replica.

    With no series (view.waiting is None) the adapter answers an error, and the HPA holds.
    `last_reasons` keeps the controller's condition reasons of the latest sync.
    """

    name = "hpa"

    def __init__(
        self,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        min_replicas: int = 1,
        max_replicas: int = DEFAULT_MAX_REPLICAS,
        tolerance: float = TOLERANCE,
        sync_period_s: float = SYNC_PERIOD_S,
        downscale_stabilization_s: float = DOWNSCALE_STABILIZATION_S,
        behavior_set: bool = False,
        metric: str = "waiting",
    ) -> None:
        if metric not in QUEUE_METRICS:
            raise ValueError(f"metric {metric!r} unknown; choose from {', '.join(QUEUE_METRICS)}")
        self.metric = metric
        self.period_s = sync_period_s
        self.core = HpaCore(
            target_average_value=threshold,
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            tolerance=tolerance,
            downscale_stabilization_s=downscale_stabilization_s,
            behavior_set=behavior_set,
        )
        self._schedule = SyncSchedule(sync_period_s)
        self.last_reasons: tuple[str, ...] = ()

    def assume_running(self, replicas: int, *, now: float) -> None:
        self.core.assume_running(replicas, now=now)

    def decide(self, view: PeerView) -> int:
        if not self._schedule.due(view.now):
            self.last_reasons = ("NotSyncing",)
            return view.spec_replicas
        step = self.core.sync(now=view.now, current_replicas=view.spec_replicas, metric_value=queue_metric(view, self.metric))
        self.last_reasons = step.reasons
        return step.replicas

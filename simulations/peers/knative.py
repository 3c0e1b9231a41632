"""Knative Serving's KPA (concurrency metric), decider plus the PodAutoscaler reconciler's
scale-to-zero and activation handling.

Reproduced from knative/serving `pkg/autoscaler/scaling/autoscaler.go` (Scale),
`pkg/autoscaler/scaling/multiscaler.go` (tickInterval, Poke), `pkg/autoscaler/config/config.go`
(defaultConfig), `pkg/reconciler/autoscaling/resources/target.go` (ResolveMetricTarget),
`pkg/reconciler/autoscaling/kpa/scaler.go` (handleScaleToZero) and `kpa/kpa.go`
(computeActiveCondition).

Signal. The metric collector keeps 1-second buckets of the revision's TOTAL concurrency (per-pod
average x ready pods, plus what the activator holds) and the decider reads their averages over the
stable (60 s) and panic (6 s) windows. Here one sample is taken per 2 s tick:
total = in_flight_per_pod x ready + buffered. A window's average runs over the samples it holds,
which, like TimedFloat64Buckets.WindowAverage, is over the time since the first sample when the
autoscaler is younger than the window.

Decision, every tick (2 s), with ready = max(1, ready pods):
  desired_stable = ceil(stable_avg / target), desired_panic = ceil(panic_avg / target), each
  clamped to [floor(ready / max_scale_down_rate), ceil(ready * max_scale_up_rate)]
  (floor: maxScaleDown = math.Floor(readyPodsCount / MaxScaleDownRate), 0 if not Reachable).
  Panic starts when ceil(panic_avg / target) / ready >= 2 (unclamped), is extended by every tick
  still over, and ends at the first tick not over once more than a stable window has passed since
  the last tick over. While panicking, desired = max(stable, panic, every earlier panic desired).
Scale to zero (handleScaleToZero): a desired 0 while the PA is Active does not scale; once the PA
  has been active for a stable window it marks the PA inactive (activator into the path) and keeps
  the pods; once inactive for scale-to-zero-grace-period (30 s) the 0 is applied. With steady
  traffic stopping at t, that is t + 60 s (stable average reaches 0) + 30 s.
From zero: the activator's stat pokes the decider at once; its 60 s average of the buffered
  requests asks ceil(B / 60-ish / target) = 1 pod unless B is in the thousands.
No data (view.in_flight_per_pod None with ready pods) is ScaleValid=false: nothing changes.

As users run it (simulations.contenders): the defaults of config-autoscaler
(https://knative.dev/docs/serving/autoscaling/kpa-specific/: stable-window 60 s, panic window
10% of it, panic threshold 200%; scale-to-zero-grace-period 30 s; container-concurrency-target
-default 100 at 70% utilization). Tuned: the target and the stable window
(autoscaling.knative.dev/target and autoscaling.knative.dev/window).
"""

from __future__ import annotations

import math
from collections import deque

from simulations.peers import PeerView

TICK_INTERVAL_S = 2.0  # multiscaler.go tickInterval = 2 * time.Second
CONTAINER_CONCURRENCY_TARGET_DEFAULT = 100.0  # config.go ContainerConcurrencyTargetDefault (CC 0)
TARGET_UTILIZATION = 0.7  # config.go defaultTargetUtilization (container-concurrency-target-percentage)
TARGET_MIN = 0.01  # apis/autoscaling TargetMin, floor of target in ResolveMetricTarget
STABLE_WINDOW_S = 60.0  # config.go StableWindow: 60 * time.Second
PANIC_WINDOW_PERCENTAGE = 10.0  # config.go PanicWindowPercentage (6 s of 60 s)
PANIC_THRESHOLD_PERCENTAGE = 200.0  # config.go PanicThresholdPercentage
MAX_SCALE_UP_RATE = 1000.0  # config.go MaxScaleUpRate
MAX_SCALE_DOWN_RATE = 2.0  # config.go MaxScaleDownRate
SCALE_TO_ZERO_GRACE_PERIOD_S = 30.0  # config.go ScaleToZeroGracePeriod: 30 * time.Second
ENABLE_SCALE_TO_ZERO = True  # config.go EnableScaleToZero
MIN_SCALE = 0  # autoscaling.knative.dev/min-scale unset -> 0
# Knative's max-scale default is 0 = unbounded (config.go MaxScale). The simulator needs a
# ceiling; 100 matches KEDA's defaultHPAMaxReplicas and Ray's num_replicas="auto".
MAX_SCALE = 100

_ACTIVE, _ACTIVATING, _INACTIVE = "active", "activating", "inactive"


class Kpa:
    """Knative Pod Autoscaler on concurrency. Effective target per pod =
    max(0.01, target_concurrency x target_utilization), 70 by default; `target_concurrency` is the
    `autoscaling.knative.dev/target` annotation (or containerConcurrency when set).

    `last_reasons` keeps what happened at the latest tick.
    """

    name = "knative-kpa"

    def __init__(
        self,
        *,
        target_concurrency: float = CONTAINER_CONCURRENCY_TARGET_DEFAULT,
        target_utilization: float = TARGET_UTILIZATION,
        stable_window_s: float = STABLE_WINDOW_S,
        panic_window_percentage: float = PANIC_WINDOW_PERCENTAGE,
        panic_threshold_percentage: float = PANIC_THRESHOLD_PERCENTAGE,
        max_scale_up_rate: float = MAX_SCALE_UP_RATE,
        max_scale_down_rate: float = MAX_SCALE_DOWN_RATE,
        scale_to_zero_grace_period_s: float = SCALE_TO_ZERO_GRACE_PERIOD_S,
        enable_scale_to_zero: bool = ENABLE_SCALE_TO_ZERO,
        min_replicas: int = MIN_SCALE,
        max_replicas: int = MAX_SCALE,
        reachable: bool = True,
        tick_interval_s: float = TICK_INTERVAL_S,
    ) -> None:
        if not target_concurrency > 0:
            raise ValueError(f"target_concurrency must be > 0, got {target_concurrency!r}")
        if not 0 < target_utilization <= 1:
            raise ValueError(f"target_utilization must be in (0, 1], got {target_utilization!r}")
        if not max_scale_up_rate > 1 or not max_scale_down_rate > 1:
            raise ValueError(
                f"max_scale_up_rate and max_scale_down_rate must be > 1, got "
                f"{max_scale_up_rate!r} and {max_scale_down_rate!r}"
            )
        if not scale_to_zero_grace_period_s > 0:
            raise ValueError(f"scale_to_zero_grace_period_s must be > 0, got {scale_to_zero_grace_period_s!r}")
        if min_replicas < 0 or max_replicas < max(min_replicas, 1):
            raise ValueError(f"need 0 <= min_replicas <= max_replicas, got {min_replicas!r} and {max_replicas!r}")
        self.target = max(TARGET_MIN, target_concurrency * target_utilization)
        self.stable_window_s = stable_window_s
        self.panic_window_s = stable_window_s * panic_window_percentage / 100
        self.panic_threshold = panic_threshold_percentage / 100
        self.max_scale_up_rate = max_scale_up_rate
        self.max_scale_down_rate = max_scale_down_rate
        self.scale_to_zero_grace_period_s = scale_to_zero_grace_period_s
        self.enable_scale_to_zero = enable_scale_to_zero
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.reachable = reachable
        self.period_s = tick_interval_s
        self._samples: deque[tuple[float, float]] = deque()
        self._started = False
        self._panic_since: float | None = None  # autoscaler.panicTime (last tick over threshold)
        self._max_panic_pods = 0
        self._status = _INACTIVE  # the PA's Active condition
        self._status_since = -math.inf
        self.last_reasons: tuple[str, ...] = ()

    def decide(self, view: PeerView) -> int:
        now = view.now
        if not self._started:
            self._start(view)
        if view.ready_replicas > 0 and view.in_flight_per_pod is None:
            self.last_reasons = ("NoData",)
            return view.spec_replicas
        total = (view.in_flight_per_pod or 0.0) * view.ready_replicas + view.buffered
        self._record(now, total)
        desired, reasons = self._decider(now, view.ready_replicas)
        replicas, want, scaler_reason = self._scale(now, view.spec_replicas, desired)
        self._update_active_condition(now, want, view.ready_replicas)
        self.last_reasons = (*reasons, scaler_reason)
        return replicas

    def _start(self, view: PeerView) -> None:
        self._started = True
        # newAutoscaler: "We always start in the panic mode, if the deployment is scaled up over
        # 1 pod", holding the current count until enough history exists.
        if view.ready_replicas > 1:
            self._panic_since = view.now
            self._max_panic_pods = view.ready_replicas
        if view.ready_replicas >= max(self.min_replicas, 1):
            self._status, self._status_since = _ACTIVE, -math.inf
        elif view.spec_replicas > 0:
            self._status, self._status_since = _ACTIVATING, view.now
        else:
            self._status, self._status_since = _INACTIVE, -math.inf

    def _record(self, now: float, total: float) -> None:
        self._samples.append((now, total))
        while self._samples and self._samples[0][0] <= now - self.stable_window_s + 1e-9:
            self._samples.popleft()

    def _average(self, now: float, window_s: float) -> float:
        values = [v for t, v in self._samples if t > now - window_s + 1e-9]
        return sum(values) / len(values) if values else 0.0

    def _decider(self, now: float, ready: int) -> tuple[int, list[str]]:
        """autoscaler.Scale: the desired pod count from the window averages."""
        ready_count = max(1.0, float(ready))
        max_scale_up = math.ceil(self.max_scale_up_rate * ready_count)
        max_scale_down = math.floor(ready_count / self.max_scale_down_rate) if self.reachable else 0
        dspc = math.ceil(self._average(now, self.stable_window_s) / self.target)
        dppc = math.ceil(self._average(now, self.panic_window_s) / self.target)
        desired_stable = min(max(dspc, max_scale_down), max_scale_up)
        desired_panic = min(max(dppc, max_scale_down), max_scale_up)
        reasons: list[str] = []
        if dspc < max_scale_down or dppc < max_scale_down:
            reasons.append("MaxScaleDownRate")
        if dspc > max_scale_up or dppc > max_scale_up:
            reasons.append("MaxScaleUpRate")

        over_panic_threshold = dppc / ready_count >= self.panic_threshold
        if over_panic_threshold:
            if self._panic_since is None:
                reasons.append("PanicStarted")
            self._panic_since = now  # begin, or extend the panic window
        elif self._panic_since is not None and self._panic_since + self.stable_window_s < now:
            self._panic_since = None
            self._max_panic_pods = 0
            reasons.append("PanicEnded")

        desired = desired_stable
        if self._panic_since is not None:
            # "We do not scale down while in panic mode. Only increases will be applied."
            desired = max(desired, desired_panic)
            self._max_panic_pods = max(self._max_panic_pods, desired)
            desired = self._max_panic_pods
            reasons.append("Panicking")
        return desired, reasons

    def _scale(self, now: float, current: int, desired: int) -> tuple[int, int | None, str]:
        """kpa/scaler.go Scale: bounds, then handleScaleToZero. Returns (replicas written or
        kept, the PA's `want`, reason); `want` None is scaleUnknown."""
        desired = max(desired, self.min_replicas)
        if self.max_replicas:
            desired = min(desired, self.max_replicas)
        if desired != 0:
            return desired, desired, "Scale" if desired != current else "NoChange"
        if not self.enable_scale_to_zero:
            return 1, 1, "ScaleToZeroDisabled"
        if self._status == _ACTIVATING:
            # Only an activation timeout (progress deadline + 10 s) scales an activating PA to 0;
            # buffered requests keep its average above 0 long before that.
            return current, None, "Activating"
        if self._status == _ACTIVE:
            if now - self._status_since >= self.stable_window_s:
                return current, 0, "MarkInactive"  # (0, false): mark inactive, do not scale
            return 1, 1, "ActiveForLessThanStableWindow"
        if now - self._status_since >= self.scale_to_zero_grace_period_s:
            return 0, 0, "ScaleToZero"
        return current, 0, "ScaleToZeroGracePeriod"

    def _update_active_condition(self, now: float, want: int | None, ready: int) -> None:
        """kpa.go computeActiveCondition, after Scale."""
        min_ready = max(self.min_replicas, 1)
        if want == 0:
            status = _INACTIVE
        elif (want or 0) <= 0 and self._status == _INACTIVE:
            # scaleUnknown (-1) on an inactive PA keeps it inactive.
            status = _INACTIVE
        else:
            status = _ACTIVATING if ready < min_ready else _ACTIVE
        if status != self._status:
            self._status, self._status_since = status, now

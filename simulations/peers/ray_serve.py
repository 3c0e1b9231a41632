"""Ray Serve's default request-based autoscaling policy.

Reproduced from ray-project/ray `python/ray/serve/autoscaling_policy.py`
(replica_queue_length_autoscaling_policy, _core_replica_queue_length_policy,
_apply_scaling_factors, _apply_bounds, _apply_delay_logic, _get_cold_start_scale_up_replicas),
`python/ray/serve/config.py` (AutoscalingConfig) and `python/ray/serve/_private/constants.py`
(DEFAULT_TARGET_ONGOING_REQUESTS, CONTROL_LOOP_INTERVAL_S).

Each control-loop iteration, with running = replicas serving and target = the current target:
1. running == 0 (cold start fast path, before any delay): with requests queued at the handles,
   max(ceil(1 x upscaling_factor), target); otherwise target.
2. desired = total_requests / target_ongoing_requests, where total_requests is the running plus
   queued requests averaged over look_back_period_s (30 s).
3. scaling factors: ceil(running + factor x (desired - running)), factor = upscaling_factor when
   desired > running else downscaling_factor; a downscale stuck at `running` by a small factor is
   forced one lower.
4. bounds [min_replicas, max_replicas].
5. delays against the current target: a scale-up applies once the "up" decision has been taken for
   upscale_delay_s in a row (30 s), a scale-down after downscale_delay_s (600 s); "no change" or a
   change of direction restarts the count. A scale-down from N > 1 goes to at least 1; 1 -> 0 is a
   separate decision that waits downscale_to_zero_delay_s (or downscale_delay_s when unset). So a
   deployment that goes idle at N > 1 reaches 0 after two full delays (1200 s by default).

Ray counts the delays in loop iterations (`decision_counter > int(delay_s / CONTROL_LOOP_INTERVAL_S)`
at 0.1 s), which makes a decision apply on the iteration delay_s after the first one that took it.
Here the delays compare stored instants, so the loop period does not matter to them; period_s is
1 s instead of 0.1 s to keep the simulation cheap, which moves decisions by under a second.

As users run it (simulations.contenders): AutoscalingConfig's defaults
(https://docs.ray.io/en/latest/serve/api/doc/ray.serve.config.AutoscalingConfig.html:
target_ongoing_requests 2, look_back_period_s 30, upscale_delay_s 30, downscale_delay_s 600,
downscale_to_zero_delay_s None; the advanced guide,
https://docs.ray.io/en/latest/serve/advanced-guides/advanced-autoscaling.html, says to load
test and set the target from a latency objective, which is what tuning does). Tuned: the
target and downscale_delay_s, with downscale_to_zero_delay_s set to the same delay.
"""

from __future__ import annotations

import math
from collections import deque

from simulations.peers import PeerView

TARGET_ONGOING_REQUESTS = 2.0  # _private/constants.py DEFAULT_TARGET_ONGOING_REQUESTS = 2
LOOK_BACK_PERIOD_S = 30.0  # config.py AutoscalingConfig.look_back_period_s default 30.0
UPSCALE_DELAY_S = 30.0  # config.py AutoscalingConfig.upscale_delay_s default 30.0
DOWNSCALE_DELAY_S = 600.0  # config.py AutoscalingConfig.downscale_delay_s default 600.0
DOWNSCALE_TO_ZERO_DELAY_S: float | None = None  # config.py downscale_to_zero_delay_s default None
# config.py: upscaling_factor / downscaling_factor default None, falling back (get_upscaling_factor)
# to the deprecated *_smoothing_factor (None) and then smoothing_factor = 1.0.
UPSCALING_FACTOR = 1.0
DOWNSCALING_FACTOR = 1.0
MIN_REPLICAS = 1  # config.py AutoscalingConfig.min_replicas = 1; scale to zero needs min_replicas=0
# config.py AutoscalingConfig.max_replicas defaults to 1; num_replicas="auto" (AutoscalingConfig
# .default()) uses 100, which is what an autoscaled deployment without a max gets.
MAX_REPLICAS = 100
CONTROL_LOOP_INTERVAL_S = 0.1  # _private/constants.py CONTROL_LOOP_INTERVAL_S (RAY_SERVE_CONTROL_LOOP_INTERVAL_S)
PERIOD_S = 1.0  # coarser than Ray's loop; see the module docstring


class RayServe:
    """Ray Serve autoscaling on ongoing requests (running + queued), per deployment.

    `last_reasons` keeps what happened at the latest iteration.
    """

    name = "ray-serve"

    def __init__(
        self,
        *,
        target_ongoing_requests: float = TARGET_ONGOING_REQUESTS,
        min_replicas: int = MIN_REPLICAS,
        max_replicas: int = MAX_REPLICAS,
        look_back_period_s: float = LOOK_BACK_PERIOD_S,
        upscale_delay_s: float = UPSCALE_DELAY_S,
        downscale_delay_s: float = DOWNSCALE_DELAY_S,
        downscale_to_zero_delay_s: float | None = DOWNSCALE_TO_ZERO_DELAY_S,
        upscaling_factor: float = UPSCALING_FACTOR,
        downscaling_factor: float = DOWNSCALING_FACTOR,
        period_s: float = PERIOD_S,
    ) -> None:
        if not target_ongoing_requests > 0:
            raise ValueError(f"target_ongoing_requests must be > 0, got {target_ongoing_requests!r}")
        if min_replicas < 0 or max_replicas < max(min_replicas, 1):
            raise ValueError(
                f"need 0 <= min_replicas <= max_replicas and max_replicas >= 1, got "
                f"min_replicas={min_replicas!r}, max_replicas={max_replicas!r}"
            )
        if not look_back_period_s > 0:
            raise ValueError(f"look_back_period_s must be > 0, got {look_back_period_s!r}")
        for field, value in (("upscale_delay_s", upscale_delay_s), ("downscale_delay_s", downscale_delay_s)):
            if value < 0:
                raise ValueError(f"{field} must be >= 0, got {value!r}")
        if downscale_to_zero_delay_s is not None and downscale_to_zero_delay_s < 0:
            raise ValueError(f"downscale_to_zero_delay_s must be >= 0 or None, got {downscale_to_zero_delay_s!r}")
        if not upscaling_factor > 0 or not downscaling_factor > 0:
            raise ValueError(
                f"upscaling_factor and downscaling_factor must be > 0, got "
                f"{upscaling_factor!r} and {downscaling_factor!r}"
            )
        self.target_ongoing_requests = target_ongoing_requests
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.look_back_period_s = look_back_period_s
        self.upscale_delay_s = upscale_delay_s
        self.downscale_delay_s = downscale_delay_s
        self.downscale_to_zero_delay_s = downscale_to_zero_delay_s
        self.upscaling_factor = upscaling_factor
        self.downscaling_factor = downscaling_factor
        self.period_s = period_s
        self._samples: deque[tuple[float, float]] = deque()
        # Ray's SERVE_AUTOSCALING_DECISION_COUNTERS_KEY, as a direction and the first instant of
        # the current run of same-direction decisions.
        self._direction: str | None = None
        self._direction_since = 0.0
        self.last_reasons: tuple[str, ...] = ()

    def assume_running(self, replicas: int, *, now: float) -> None:
        """A deployment that has run at `replicas` with its target met: the look-back window
        holds replicas x target ongoing requests."""
        self._samples.append((now - self.look_back_period_s / 2, replicas * self.target_ongoing_requests))

    def decide(self, view: PeerView) -> int:
        now = view.now
        total_requests = self._record_and_average(now, view.ongoing)
        running, target = view.ready_replicas, view.spec_replicas

        if running == 0:
            # _get_cold_start_scale_up_replicas; the delay counter is left as it was.
            if total_requests > 0:
                desired = max(math.ceil(1 * self.upscaling_factor), target)
                self.last_reasons = ("ColdStartFastPath",)
            else:
                desired = target
                self.last_reasons = ("NoRunningReplicas",)
            return self._bounded(desired)

        desired_float = total_requests / self.target_ongoing_requests
        desired = self._bounded(self._apply_scaling_factors(desired_float, running))
        decision, reason = self._apply_delay_logic(now, desired, target)
        self.last_reasons = (reason,)
        return self._bounded(decision)

    def _record_and_average(self, now: float, ongoing: float) -> float:
        self._samples.append((now, ongoing))
        while self._samples and self._samples[0][0] <= now - self.look_back_period_s + 1e-9:
            self._samples.popleft()
        return sum(v for _, v in self._samples) / len(self._samples)

    def _apply_scaling_factors(self, desired: float, running: int) -> int:
        delta = desired - running
        factor = self.upscaling_factor if delta > 0 else self.downscaling_factor
        scaled = math.ceil(running + factor * delta)
        if math.ceil(desired) < running and scaled == running:
            scaled -= 1  # "If the scaled_replicas are stuck during downscaling ..., decrement by 1."
        return scaled

    def _bounded(self, replicas: int) -> int:
        return max(self.min_replicas, min(self.max_replicas, replicas))

    def _apply_delay_logic(self, now: float, desired: int, target: int) -> tuple[int, str]:
        if desired > target:
            self._continue("up", now)
            if now - self._direction_since >= self.upscale_delay_s - 1e-9:
                self._direction = None
                return desired, "ScaleUp"
            return target, "UpscaleDelay"
        if desired < target:
            self._continue("down", now)
            if target == 1:
                delay_s = self.downscale_to_zero_delay_s
                if delay_s is None:
                    delay_s = self.downscale_delay_s
            else:
                delay_s = self.downscale_delay_s
                desired = max(1, desired)  # "Downscaling to zero is only allowed from 1 -> 0"
            if now - self._direction_since >= delay_s - 1e-9:
                self._direction = None
                return desired, "ScaleDown" if desired > 0 else "ScaleToZero"
            return target, "DownscaleDelay"
        self._direction = None
        return target, "NoChange"

    def _continue(self, direction: str, now: float) -> None:
        if self._direction != direction:
            self._direction, self._direction_since = direction, now

"""Every autoscaler the simulator can run: ours (the daemon's Controller), the peers, and the
oracle; each at the configuration its users start from, and over a grid for tuning.

What each contender is given at its user configuration, and where it comes from:
- ours: the policy's documented defaults per kind, the model's kind, and a cold start the
  user measured (simulate.measured_cold_start_s: the readiness of five probe replicas, not
  the simulator's median). Nothing is read from the replica profile: no knee, no speed.
- keda: KServe's documented KEDA setup for LLMs, a Prometheus trigger on
  `vllm:num_requests_running` with a target of 2 per pod, minReplicas 1 (hot) and KEDA's
  defaults otherwise (peers/keda.py).
- hpa: the Kubernetes vLLM example, an HPA on `vllm:num_requests_running` with an
  AverageValue of 4, and the HPA's defaults (300 s down-window, tolerance 0.1; peers/hpa.py).
- kpa: Knative's defaults (target 100 at 70% utilization, 60 s stable window; peers/knative.py).
- ray: Ray Serve's AutoscalingConfig defaults (2 ongoing requests, 30 s up and 600 s down
  delays; peers/ray_serve.py).

Floors follow the model's kind, as a user would configure each peer: a hot model gets at
least one replica from every peer (KEDA minReplicaCount 1, Knative min-scale 1, Ray
min_replicas 1; the HPA never goes below 1), a long-tail model may go to zero wherever the
peer can (the HPA cannot).

Tuning. Every contender, ours included, has the same two knobs: its main target and its main
delay (the scale-down window, cooldown or delay; for a model that can go to zero, the delay
before zero too), each over a grid of the same size. Tuned, the peers' HPA-based metrics are
running + waiting requests (what in flight means: running alone stops growing at the batch
cap). compare.tune picks per model the cheapest configuration that meets the SLO.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import product

from simulations.cluster import Cluster, SimModel
from simulations.peers.hpa import Hpa
from simulations.peers.keda import Keda
from simulations.peers.knative import Kpa
from simulations.peers.oracle import Oracle
from simulations.peers.ray_serve import RayServe
from simulations.simulate import Driver, OursDriver, PeerDriver, ours_config

MAX_REPLICAS = 100

# One grid for every contender's target (requests per replica, however each counts them) and
# one for its delay, so that each gets the same number of configurations. compare.tune widens
# a target grid past an edge where a model's best lies on it.
TARGET_GRID = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
DELAY_GRID_S = (30.0, 120.0, 300.0, 900.0)

Configuration = tuple[float, float]  # (target, delay_s)


@dataclass(frozen=True)
class Contender:
    name: str
    target: str  # the field its users set for the target, as they name it
    delay: str  # likewise for the delay
    default: Configuration  # the user configuration (see the module docstring)
    build: Callable[[SimModel, Configuration, bool], object] | None  # a peer for one model; None for ours
    floor: Callable[[SimModel], int] = lambda model: _floor(model)  # the least it keeps running
    targets: tuple[float, ...] = TARGET_GRID
    delays: tuple[float, ...] = DELAY_GRID_S

    def grid(self, targets: tuple[float, ...] | None = None) -> list[Configuration]:
        return list(product(targets or self.targets, self.delays))

    def label(self, configuration: Configuration) -> str:
        target, delay = configuration
        return f"{self.target}={target:g}, {self.delay}={delay:g}"


def _floor(model: SimModel) -> int:
    return 1 if model.setup.kind == "hot" else 0


def _keda(model: SimModel, configuration: Configuration, tuned: bool) -> Keda:
    threshold, delay_s = configuration
    # A KEDA user changes the HPA's down-window through advanced.horizontalPodAutoscalerConfig
    # .behavior, which sets behavior (and with it the default +4/+100% scale-up rules).
    return Keda(
        threshold=threshold,
        metric="in_flight" if tuned else "running",
        min_replica_count=_floor(model),
        max_replica_count=MAX_REPLICAS,
        cooldown_period_s=delay_s,
        hpa_downscale_stabilization_s=delay_s if tuned else 300.0,
        hpa_behavior_set=tuned,
    )


def _hpa(model: SimModel, configuration: Configuration, tuned: bool) -> Hpa:
    threshold, delay_s = configuration
    return Hpa(
        threshold=threshold,
        metric="in_flight" if tuned else "running",
        min_replicas=1,
        max_replicas=MAX_REPLICAS,
        downscale_stabilization_s=delay_s,
        behavior_set=tuned,  # spec.behavior.scaleDown.stabilizationWindowSeconds
    )


def _kpa(model: SimModel, configuration: Configuration, tuned: bool) -> Kpa:
    target, window_s = configuration
    return Kpa(target_concurrency=target, stable_window_s=window_s, min_replicas=_floor(model), max_replicas=MAX_REPLICAS)


def _ray(model: SimModel, configuration: Configuration, tuned: bool) -> RayServe:
    target, delay_s = configuration
    return RayServe(
        target_ongoing_requests=target,
        min_replicas=_floor(model),
        max_replicas=MAX_REPLICAS,
        downscale_delay_s=delay_s,
        # At the defaults the 1 -> 0 step waits downscale_delay_s too (to-zero delay unset).
        downscale_to_zero_delay_s=delay_s if tuned else None,
    )


OURS = Contender("ours", "target_running_per_replica", "scale_down_stabilization_s", (32.0, 300.0), None)
PEERS = {
    "keda": Contender("keda", "threshold", "cooldownPeriod", (2.0, 300.0), _keda),
    "hpa": Contender("hpa", "averageValue", "stabilizationWindowSeconds", (4.0, 300.0), _hpa,
                     floor=lambda model: 1),  # minReplicas >= 1 without the alpha HPAScaleToZero gate
    "kpa": Contender("kpa", "target", "stable-window", (100.0, 60.0), _kpa, delays=(10.0, 30.0, 60.0, 180.0)),
    "ray": Contender("ray", "target_ongoing_requests", "downscale_delay_s", (2.0, 600.0), _ray,
                     delays=(30.0, 120.0, 600.0, 1800.0)),
}
CONTENDERS = {"ours": OURS, **PEERS}
POLICIES = ("ours", *PEERS, "oracle")


def ours_overrides(configuration: Configuration) -> dict[str, dict[str, float]]:
    """Our policy's fields for one configuration: the in-flight target for every kind; the
    delay is the scale-down window, and for a long-tail model also its idle timeout."""
    target, delay_s = configuration
    return {
        "hot": {"target_running_per_replica": target, "scale_down_stabilization_s": delay_s},
        "long-tail": {"target_running_per_replica": target, "scale_down_stabilization_s": delay_s, "idle_timeout_s": delay_s},
    }


def driver_for(
    policy: str,
    setups,
    *,
    configuration: Configuration | None = None,
    overrides=None,
    oracle_scale: dict[str, float] | None = None,
    oracle_hold_s: dict[str, float] | None = None,
) -> Callable[[Cluster], Driver]:
    """A factory that builds the policy's driver for a fresh cluster. `configuration`: a point
    of the tuning grid (None: the user configuration). `overrides`: our policy's fields by
    kind (ours_config), for policy work. `oracle_scale`, `oracle_hold_s`: the oracle's capacity
    factor and hold by model (1.0 and 0 if absent; see peers.oracle)."""
    if policy == "ours":
        if configuration is not None:
            overrides = ours_overrides(configuration)
        config = ours_config(setups, overrides=overrides)
        return lambda cluster: OursDriver(cluster, config)
    if policy == "oracle":
        scales, holds = oracle_scale or {}, oracle_hold_s or {}
        return lambda cluster: PeerDriver(cluster, lambda m: Oracle(
            m, floor=_floor(m), horizon_s=_horizon(m), scale=scales.get(m.setup.name, 1.0), hold_s=holds.get(m.setup.name, 0.0)))
    if policy not in PEERS:
        raise ValueError(f"unknown policy {policy!r}; known: {', '.join(POLICIES)}")
    contender = PEERS[policy]
    chosen, tuned = (contender.default, False) if configuration is None else (configuration, True)
    assert contender.build is not None
    build = contender.build
    return lambda cluster: PeerDriver(cluster, lambda m: build(m, chosen, tuned), floor=contender.floor)


def _horizon(model: SimModel) -> float:
    arrival = model.requests.arrival_s
    return (float(arrival[-1]) if len(arrival) else 0.0) + 3600.0

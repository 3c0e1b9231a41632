"""Every autoscaler the simulator can run, at its documented defaults or with its main target
set: ours (the daemon's Controller), the peers, and the oracle.

Floors follow the model's kind, as a user would configure each peer: a hot model gets at
least one replica from every peer (KEDA minReplicaCount 1, Knative min-scale 1, Ray
min_replicas 1; the HPA never goes below 1), a long-tail model may go to zero wherever the
peer can (the HPA cannot). Everything else is the peer's default, cited in its module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from simulations.cluster import Cluster, SimModel
from simulations.peers.hpa import Hpa
from simulations.peers.keda import Keda
from simulations.peers.knative import Kpa
from simulations.peers.oracle import Oracle
from simulations.peers.ray_serve import RayServe
from simulations.simulate import Driver, OursDriver, PeerDriver, ours_config

MAX_REPLICAS = 100


@dataclass(frozen=True)
class Contender:
    name: str
    knob: str | None  # the main target swept when tuning, or None
    default: float | None
    sweep: tuple[float, ...]
    build: Callable[[SimModel, float | None], object] | None  # a peer for one model, given the knob
    floor: Callable[[SimModel], int] = lambda model: _floor(model)  # the least it keeps running


def _floor(model: SimModel) -> int:
    return 1 if model.setup.kind == "hot" else 0


PEERS = {
    "keda": Contender(
        "keda", "threshold", 5.0, (1, 2, 3, 5, 8, 12, 20, 32),
        lambda m, v: Keda(threshold=v, min_replica_count=_floor(m), max_replica_count=MAX_REPLICAS),
    ),
    "hpa": Contender(
        "hpa", "threshold", 5.0, (1, 2, 3, 5, 8, 12, 20, 32),
        lambda m, v: Hpa(threshold=v, min_replicas=1, max_replicas=MAX_REPLICAS),
        floor=lambda model: 1,  # minReplicas >= 1 without the alpha HPAScaleToZero gate
    ),
    "kpa": Contender(
        "kpa", "target_concurrency", 100.0, (4, 6, 8, 12, 16, 24, 32, 48, 64, 100),
        lambda m, v: Kpa(target_concurrency=v, min_replicas=_floor(m), max_replicas=MAX_REPLICAS),
    ),
    "ray": Contender(
        "ray", "target_ongoing_requests", 2.0, (1, 2, 4, 6, 8, 12, 16, 24, 32),
        lambda m, v: RayServe(target_ongoing_requests=v, min_replicas=_floor(m), max_replicas=MAX_REPLICAS),
    ),
}
POLICIES = ("ours", *PEERS, "oracle")


def driver_for(policy: str, setups, *, knob: float | None = None, overrides=None) -> Callable[[Cluster], Driver]:
    """A factory that builds the policy's driver for a fresh cluster. `overrides`: our policy's
    fields by kind (ours_config)."""
    if policy == "ours":
        config = ours_config(setups, overrides=overrides)
        return lambda cluster: OursDriver(cluster, config)
    if policy == "oracle":
        return lambda cluster: PeerDriver(cluster, lambda m: Oracle(m, floor=_floor(m), horizon_s=_horizon(m)))
    if policy not in PEERS:
        raise ValueError(f"unknown policy {policy!r}; known: {', '.join(POLICIES)}")
    contender = PEERS[policy]
    value = contender.default if knob is None else knob
    return lambda cluster: PeerDriver(cluster, lambda m: contender.build(m, value), floor=contender.floor)


def _horizon(model: SimModel) -> float:
    arrival = model.requests.arrival_s
    return (float(arrival[-1]) if len(arrival) else 0.0) + 3600.0

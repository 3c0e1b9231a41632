"""GPU pools in the tick: what each pool holds, and the arbitration of the models in it.

The capacity of a `capacity_gpus` pool is its config; a `node_selector` pool's comes through
the PoolCapacity boundary (autoscaler/nodes.py reads the cluster's nodes; replay and the
simulator have none, and their pools use capacity_gpus). The arbitration itself is pure (policies/arbitration.py); this module
only turns the tick's outcomes into its claims and back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Protocol

from autoscaler.config import Config, ModelConfig
from autoscaler.outcome import Outcome
from autoscaler.targets import TargetState
from policies.arbitration import Capacity, Claim, Stamped, arbitrate, pool_capacity
from policies.decision import Reason
from policies.reasons import ReasonCode


class PoolCapacity(Protocol):
    def read_capacities(self, *, now: float) -> Mapping[str, int]:
        """GPUs of each node_selector pool that could be read this tick; a pool absent from
        the result is unknown (the nodes could not be listed)."""
        ...


class NoNodes:
    """For runs without a cluster (replay, tests): no node_selector pool can be read."""

    def read_capacities(self, *, now: float) -> Mapping[str, int]:
        return {}


class PoolKeeper:
    """Each pool's capacity this tick. A `capacity_gpus` pool's is its config; a node pool's
    comes from its readings through policies.arbitration.pool_capacity, which keeps a drop from
    acting before it has lasted the pool's capacity_drop_stabilization_s and takes a reading
    of 0 GPUs, or none, as no data: the last reading stands. Capacity changes when nodes join
    or leave, which takes minutes, so the last read is a better guess than either zero (which
    would cut every model to its floor on an API blip) or no limit. The readings are the
    keeper's state, passed to the pure function and back, as Controller.states is for the
    policies."""

    def __init__(self, source: PoolCapacity) -> None:
        self._source = source
        self.readings: dict[str, tuple[Stamped, ...]] = {}  # pool -> readings still in play

    def capacities(self, config: Config, *, now: float) -> dict[str, Capacity]:
        read = self._source.read_capacities(now=now) if config.node_pools else {}
        result: dict[str, Capacity] = {}
        for pool in config.pools:
            if pool.capacity_gpus is not None:
                result[pool.name] = Capacity(pool.capacity_gpus, "capacity_gpus")
                continue
            result[pool.name], self.readings[pool.name] = pool_capacity(
                self.readings.get(pool.name, ()),
                read.get(pool.name),
                window_s=pool.capacity_drop_stabilization_s,
                now=now,
            )
        return result


def arbitrate_outcomes(
    config: Config,
    outcomes: Sequence[Outcome],
    *,
    targets: Mapping[str, TargetState],
    capacities: Mapping[str, Capacity],
) -> list[Outcome]:
    """The outcomes with each pool's decisions arbitrated (same order). A model whose target
    could not be read this tick has no decision and is left out: it is absent (404) or the
    API is failing for its namespace, and its GPUs are counted as free."""
    by_name = {model.name: model for model in config.models}
    result = list(outcomes)
    for pool in config.pools:
        members = [i for i, o in enumerate(outcomes) if o.decision is not None and by_name[o.model].pool == pool.name]
        if not members:
            continue
        capacity = capacities[pool.name]
        origin = capacity.origin
        if capacity.gpus is None:
            # Not arbitrated: the scheduler decides as it would without us (pods Pending when
            # the pool is full). Holding every scale-up instead would freeze the pool's hot
            # models for as long as the nodes cannot be read, e.g. for good without the RBAC rule.
            why = Reason(ReasonCode.PoolCapacityUnknown, f"pool {pool.name}: {origin}; not arbitrated this tick")
            for i in members:
                decision = outcomes[i].decision
                result[i] = dataclasses.replace(outcomes[i], decision=dataclasses.replace(decision, reasons=decision.reasons + (why,)))
            continue
        claims = [_claim(by_name[outcomes[i].model], outcomes[i], targets[outcomes[i].model]) for i in members]
        decisions = arbitrate(claims, pool=pool.name, capacity_gpus=capacity.gpus)
        # The nodes read less than the capacity arbitrated on (a drop not yet lasted, or 0 as no
        # data), and the models want more than that reading: each decision says the reading was
        # not acted on, cut or not. Example: 16 GPUs read a minute ago, 8 now, the models want 14.
        # A decision cut on a node pool says where its capacity came from, in a reason of its own
        # (the arbitration's message stays what policies.arbitration wrote); PoolCapacityHeld
        # says it already where it applies.
        held = None
        if capacity.read_now is not None and sum(c.wanted_gpus for c in claims) > capacity.read_now:
            held = Reason(ReasonCode.PoolCapacityHeld, f"pool {pool.name}: arbitrated on {origin}")
        read = Reason(ReasonCode.PoolCapacityFromNodes, f"pool {pool.name}: capacity from {origin}")
        for i, decision in zip(members, decisions):
            if held is not None:
                decision = dataclasses.replace(decision, reasons=decision.reasons + (held,))
            elif (
                pool.capacity_gpus is None
                and decision is not outcomes[i].decision
                and ReasonCode.PoolArbitration in decision.reason_codes
            ):
                decision = dataclasses.replace(decision, reasons=decision.reasons + (read,))
            result[i] = dataclasses.replace(outcomes[i], decision=decision)
    return result


def _claim(model: ModelConfig, outcome: Outcome, target: TargetState) -> Claim:
    observation = outcome.observation
    if observation.waiting.usable and observation.running.usable:
        pressure = observation.waiting.value
    elif observation.ready_replicas == 0 and observation.wake.usable:
        # No pod ready, so no vLLM series: the demand seen at the gateway is the queue.
        pressure = observation.wake.value
    else:
        pressure = None
    minimum = model.policy.min_replicas
    return Claim(
        model=model.name,
        kind=model.policy.kind,
        # From the pod template: a rollout to a revision that needs more GPUs per replica is
        # counted at the new size from the tick its template changes, before its pods land.
        gpus_per_replica=target.gpus_per_replica,
        minimum=max(minimum, 1) if model.policy.kind == "hot" else minimum,
        pressure=pressure,
        decision=outcome.decision,
        load_unknown=observation.spec_replicas > 0 and not (
            observation.waiting.usable and observation.running.usable and observation.unreported() is None
        ),
    )

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
from policies.arbitration import Claim, arbitrate
from policies.decision import Reason


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
    """Each pool's capacity this tick, and the last one read for a node pool whose nodes
    cannot be read now. Capacity changes when nodes join or leave, which takes minutes, so
    the last read is a better guess than either zero (which would cut every model to its
    minimum on an API blip) or no limit."""

    def __init__(self, source: PoolCapacity) -> None:
        self._source = source
        self.last_read: dict[str, tuple[float, int]] = {}  # pool -> (when, GPUs)

    def capacities(self, config: Config, *, now: float) -> dict[str, tuple[int | None, str]]:
        """pool -> (GPUs or None when unknown, where the number comes from)."""
        read = self._source.read_capacities(now=now) if config.node_pools else {}
        result: dict[str, tuple[int | None, str]] = {}
        for pool in config.pools:
            if pool.capacity_gpus is not None:
                result[pool.name] = (pool.capacity_gpus, "capacity_gpus")
            elif pool.name in read:
                self.last_read[pool.name] = (now, read[pool.name])
                result[pool.name] = (read[pool.name], "the nodes' allocatable nvidia.com/gpu")
            elif pool.name in self.last_read:
                when, gpus = self.last_read[pool.name]
                result[pool.name] = (gpus, f"as last read {now - when:.0f} s ago; the nodes cannot be read now")
            else:
                result[pool.name] = (None, "the nodes could not be read and no earlier read is known")
        return result


def arbitrate_outcomes(
    config: Config,
    outcomes: Sequence[Outcome],
    *,
    targets: Mapping[str, TargetState],
    capacities: Mapping[str, tuple[int | None, str]],
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
        capacity, origin = capacities[pool.name]
        if capacity is None:
            # Not arbitrated: the scheduler decides as it would without us (pods Pending when
            # the pool is full). Holding every scale-up instead would freeze the pool's hot
            # models for as long as the nodes cannot be read, e.g. for good without the RBAC rule.
            why = Reason("PoolCapacityUnknown", f"pool {pool.name}: {origin}; not arbitrated this tick")
            for i in members:
                decision = outcomes[i].decision
                result[i] = dataclasses.replace(outcomes[i], decision=dataclasses.replace(decision, reasons=decision.reasons + (why,)))
            continue
        claims = [_claim(by_name[outcomes[i].model], outcomes[i], targets[outcomes[i].model]) for i in members]
        decisions = arbitrate(claims, pool=pool.name, capacity_gpus=capacity)
        for i, decision in zip(members, decisions):
            if decision is not outcomes[i].decision and origin != "capacity_gpus":
                last = decision.reasons[-1]
                decision = dataclasses.replace(
                    decision, reasons=decision.reasons[:-1] + (Reason(last.code, f"{last.message}; capacity from {origin}"),)
                )
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
    )

"""Scale targets that write nothing to a cluster: dry-run and replay use them.

DryRunTargets reads the real cluster through another target and records what it would have
done. InMemoryTargets is a cluster of its own: counts it keeps, and replicas that become ready
one cold start after they were asked for, so that a replay sees starting replicas as the
daemon would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from autoscaler.config import ModelConfig
from autoscaler.targets import Action, Fence, ScaleTarget, TargetState, unfenced
from policies.decision import Decision


class DryRunTargets:
    def __init__(self, inner: ScaleTarget) -> None:
        self._inner = inner
        self.actions: list[Action] = []

    def read_states(self, *, now: float) -> Mapping[str, TargetState]:
        return self._inner.read_states(now=now)

    def apply(self, model: ModelConfig, decision: Decision, *, now: float) -> Action:
        if decision.direction == "hold":
            action = Action(model.name, "unchanged", f"would stay at {decision.current_replicas}")
        else:
            action = Action(
                model.name, "recorded", f"would scale from {decision.current_replicas} to {decision.desired_replicas}"
            )
        self.actions.append(action)
        return action


@dataclass
class _Replicas:
    spec: int
    # Instants at which each replica asked for and not yet ready becomes ready.
    ready_at: list[float] = field(default_factory=list)
    ready: int = 0
    state: TargetState = TargetState(spec_replicas=0, ready_replicas=0)


class InMemoryTargets:
    """`fence` as for KubernetesTargets: asked before each write, so that the daemon's stack
    (FailoverController, Controller, this) can be run through leadership changes in tests."""

    def __init__(self, models: Mapping[str, ModelConfig], *, initial: Mapping[str, int], fence: Fence = unfenced) -> None:
        self._models = dict(models)
        self._fence = fence
        self._replicas = {name: _Replicas(spec=count, ready=count) for name, count in initial.items()}

    def read_states(self, *, now: float) -> Mapping[str, TargetState]:
        states = {}
        for name, replicas in self._replicas.items():
            if replicas.ready_at:
                done = [t for t in replicas.ready_at if t <= now]
                replicas.ready_at = [t for t in replicas.ready_at if t > now]
                replicas.ready = min(replicas.ready + len(done), replicas.spec)
            # The state is built again only when a count moved: replay reads every model at
            # every tick, and most hold.
            if (replicas.state.spec_replicas, replicas.state.ready_replicas) != (replicas.spec, replicas.ready):
                replicas.state = TargetState(spec_replicas=replicas.spec, ready_replicas=replicas.ready)
            states[name] = replicas.state
        return states

    def apply(self, model: ModelConfig, decision: Decision, *, now: float) -> Action:
        replicas = self._replicas[model.name]
        desired = decision.desired_replicas
        if desired == replicas.spec:
            return Action(model.name, "unchanged", f"already at {desired}")
        if not self._fence():
            return Action(model.name, "standby", "lost the leader lease before this write; nothing written")
        before = replicas.spec
        if desired > replicas.spec:
            cold_start_s = model.policy.cold_start_s
            replicas.ready_at += [now + cold_start_s] * (desired - replicas.spec)
        else:
            # Kubernetes removes starting pods before ready ones.
            starting = len(replicas.ready_at)
            drop_starting = min(starting, replicas.spec - desired)
            replicas.ready_at = sorted(replicas.ready_at)[: starting - drop_starting]
            replicas.ready = min(replicas.ready, desired)
        replicas.spec = desired
        return Action(model.name, "patched", f"from {before} to {desired}")

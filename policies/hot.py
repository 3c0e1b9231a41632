"""The hot policy: a model with steady traffic. Always warm (never below max(min, 1)), quick
to scale up (no up-stabilization, up to +100% per step), slow to scale down (300 s window),
and with headroom for bursts once its queue has shown them (steps.burst_headroom)."""

from __future__ import annotations

from policies.decision import Decision, PolicyState
from policies.pipeline import scale_on_load
from policies.signals import Observation
from policies.spec import HotSpec


def decide(observation: Observation, state: PolicyState, spec: HotSpec, *, now: float) -> tuple[Decision, PolicyState]:
    floor = max(spec.min_replicas, 1)
    return scale_on_load(
        observation, state, spec, now=now, floor=floor, floor_why=f"a hot model keeps at least {floor} warm"
    )

"""The scale-target boundary: read each model's replicas, and apply a decision.

Real adapter: kubernetes.py (a Deployment's scale subresource, or a KEDA ScaledObject).
In-package fakes used by dry-run and replay: recording.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable
from typing import Literal, Mapping, Protocol

from autoscaler.config import ModelConfig
from policies.decision import Decision

Outcome = Literal["patched", "unchanged", "recorded", "missing", "forbidden", "failed", "refused", "standby"]


# Asked right before each write request: may this process still write (it holds the Lease)?
# A target that writes takes one; a write it forbids is the Action "standby".
Fence = Callable[[], bool]


def unfenced() -> bool:
    """The fence of the only writer (no leader election): it may always write."""
    return True


@dataclass(frozen=True, slots=True)
class TargetState:
    """`gpus_per_replica` is what one replica may hold: the pod template's nvidia.com/gpu, or
    during a rollout the most that any revision still running or starting asks for."""

    spec_replicas: int
    ready_replicas: int
    gpus_per_replica: int = 0


@dataclass(frozen=True, slots=True)
class Action:
    """What applying a decision did ("patched" means the cluster was written)."""

    model: str
    outcome: Outcome
    detail: str


class ScaleTarget(Protocol):
    def read_states(self, *, now: float) -> Mapping[str, TargetState]:
        """Current replicas of every configured model that could be read; a model absent
        from the result has no readable target this tick (deleted, forbidden, API down)."""
        ...

    def apply(self, model: ModelConfig, decision: Decision, *, now: float) -> Action:
        ...

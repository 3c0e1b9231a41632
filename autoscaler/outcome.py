"""What one tick did for one model. Its own module so that the controller, which makes
outcomes, and the pool arbitration (autoscaler/pools.py), which the controller calls to cut
them to what a pool holds, both import it one way instead of importing each other."""

from __future__ import annotations

from dataclasses import dataclass

from autoscaler.targets import Action
from policies import Decision, Observation


@dataclass(frozen=True, slots=True)
class Outcome:
    """One model at one tick: the decision and what acting on it did, or why it was skipped."""

    now: float
    model: str
    observation: Observation | None
    decision: Decision | None
    action: Action | None
    skipped: str | None = None

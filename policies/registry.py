"""One entry point for every policy kind: `decide(observation, state, spec, now=...)`."""

from __future__ import annotations

from policies import batch, hot, long_tail
from policies.decision import Decision, PolicyState
from policies.signals import Observation
from policies.spec import AnySpec, BatchSpec, HotSpec, LongTailSpec


def decide(observation: Observation, state: PolicyState, spec: AnySpec, *, now: float) -> tuple[Decision, PolicyState]:
    if isinstance(spec, HotSpec):
        return hot.decide(observation, state, spec, now=now)
    if isinstance(spec, LongTailSpec):
        return long_tail.decide(observation, state, spec, now=now)
    if isinstance(spec, BatchSpec):
        return batch.decide(observation, state, spec, now=now)
    raise TypeError(f"no policy for spec {type(spec).__name__}")

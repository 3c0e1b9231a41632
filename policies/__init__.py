"""Pure decision logic for the autoscaler.

Contract: everything in this package is purely computational. No Prometheus, no Kubernetes,
no clock, no logging, no hidden state. A policy is a function of
(observation, previous state, spec, now) that returns (decision, new state); the daemon,
dry-run, replay and the simulator all call the same functions. A test enforces that nothing
here imports an I/O library.
"""

from policies.decision import Decision, PolicyState, Reason
from policies.reasons import ReasonCode
from policies.signals import Dependency, Freshness, Observation, Reading
from policies.spec import BatchSpec, HotSpec, LongTailSpec, PolicySpec
from policies.registry import decide

__all__ = [
    "BatchSpec",
    "Decision",
    "Dependency",
    "Freshness",
    "HotSpec",
    "LongTailSpec",
    "Observation",
    "PolicySpec",
    "PolicyState",
    "Reading",
    "Reason",
    "ReasonCode",
    "decide",
]

"""Running as two replicas: only the leader ticks, it starts from the state the last leader
saved, and it saves its own after every tick.

A standby does nothing but take part in the election (autoscaler.leader). On taking over it
reads the stored state (autoscaler.state_store) before its first tick, and does not act until
it could read it: acting from a blank state is what would scale an idle-but-young model to
zero early or drop one held by its scale-down window. Leadership is checked again before each
write, so a Lease lost in the middle of a tick stops the writes that remain.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import structlog

from autoscaler.config import Config, ModelConfig
from autoscaler.controller import Controller, Outcome
from autoscaler.state_store import StateStore, StateUnavailable, record_of, restore
from autoscaler.targets import Action, ScaleTarget, TargetState
from policies.decision import Decision

log = structlog.get_logger(__name__)


class Leadership(Protocol):
    def is_leader(self, *, now: float) -> bool: ...


class _HasController(Protocol):  # autoscaler.reload.ReloadingController
    config: Config
    controller: Controller

    def tick(self, *, now: float) -> list[Outcome]: ...


class FailoverController:
    def __init__(
        self, inner: _HasController, *, leadership: Leadership | None, store: StateStore | None
    ) -> None:
        self._inner = inner
        self._leadership = leadership
        self._store = store
        self._restored = store is None
        self._records: dict[str, dict] = {}

    @property
    def controller(self) -> Controller:
        return self._inner.controller

    def tick(self, *, now: float) -> list[Outcome]:
        if self._leadership is not None and not self._leadership.is_leader(now=now):
            self._restored = self._store is None  # read the state again when we next lead
            return []
        if not self._restored:
            try:
                records = self._store.load()
            except StateUnavailable as err:
                log.error("not acting until the stored policy state can be read", error=str(err))
                return []
            models = {m.name for m in self._inner.config.models}
            self._records = {name: r for name, r in records.items() if name in models}
            self.controller.states = {name: restore(r, now=now) for name, r in self._records.items()}
            self._restored = True
            log.info("policy state restored", models=len(self.controller.states))
        outcomes = self._inner.tick(now=now)
        if self._store is not None:
            self._save(outcomes, now=now)
        return outcomes

    def _save(self, outcomes: list[Outcome], *, now: float) -> None:
        states = self.controller.states
        decided = {
            o.model: record_of(o.model, states[o.model], desired=o.decision.desired_replicas, now=now)
            for o in outcomes
            if o.decision is not None and o.model in states
        }
        # A model skipped this tick (its target unreadable) keeps its last record.
        self._records = {m: r for m, r in self._records.items() if m in states} | decided
        self._store.save(self._records)


class LeaderGatedTargets:
    """Writes only while leading; reads always. Wraps the real actuator."""

    def __init__(self, targets: ScaleTarget, leadership: Leadership, now: Callable[[], float]) -> None:
        self._targets = targets
        self._leadership = leadership
        self._now = now

    def read_states(self, *, now: float) -> Mapping[str, TargetState]:
        return self._targets.read_states(now=now)

    def apply(self, model: ModelConfig, decision: Decision, *, now: float) -> Action:
        # The clock is read again here, not `now` of the tick: the tick may have run long.
        if not self._leadership.is_leader(now=self._now()):
            detail = "lost the leader lease during this tick; nothing written"
            log.warning("not the leader; skipping the write", model=model.name, detail=detail)
            return Action(model.name, "standby", detail)
        return self._targets.apply(model, decision, now=now)

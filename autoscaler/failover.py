"""Running as two replicas: only the leader ticks, it starts from the state the last leader
saved, and it saves its own after every tick.

A standby does nothing but take part in the election (autoscaler.leader). On taking over it
reads the stored state (autoscaler.state_store) before its first tick, and does not act until
it could read it: acting from a blank state is what would scale an idle-but-young model to
zero early or drop one held by its scale-down window. What the stored records hold is bounded
and re-anchored on this leader's clock (state_store.restore_all); what is refused is logged and
counted (`on_refused`). Leadership is checked again before each write request (the targets'
fence, autoscaler.targets), so a Lease lost in the middle of a tick stops the writes that remain.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import structlog

from autoscaler.config import Config
from autoscaler.controller import Controller, Outcome
from autoscaler.settings import LeaderSettings
from autoscaler.state_store import StateStore, StateTaken, StateUnavailable, record_of, restore_all, vouch_s
from autoscaler.targets import Fence, unfenced

log = structlog.get_logger(__name__)


class Leadership(Protocol):
    def is_leader(self, *, now: float) -> bool: ...


class _HasController(Protocol):  # autoscaler.reload.ReloadingController
    config: Config
    controller: Controller

    def tick(self, *, now: float) -> list[Outcome]: ...


class FailoverController:
    def __init__(
        self,
        inner: _HasController,
        *,
        leadership: Leadership | None,
        store: StateStore | None,
        on_refused: Callable[[str, str], None] | None = None,
        timings: LeaderSettings = LeaderSettings(),
        fence: Fence = unfenced,
    ) -> None:
        self._timings = timings
        self._fence = fence  # asked right before the save, as the targets ask before each write
        self._inner = inner
        self._leadership = leadership
        self._store = store
        self._on_refused = on_refused  # (field, kind): Telemetry.state_refused
        self._restored = store is None
        self._records: dict[str, dict] = {}
        self._watched_since: dict[str, float] = {}  # by model: since when leaders watched it without a break

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
            config = self._inner.config
            restored, refusals = restore_all(records, now=now, vouch_s=vouch_s(config.tick_interval_s, self._timings))
            for refusal in refusals:
                # A stale record is an outage or a clock far off, not damage: said, not warned.
                emit = log.info if refusal.kind == "stale" else log.warning
                emit("refused a stored policy state value", key=refusal.key, field=refusal.field, kind=refusal.kind,
                     detail=refusal.detail)
                if self._on_refused is not None:
                    self._on_refused(refusal.field, refusal.kind)
            models = {m.name for m in config.models}
            restored = {name: r for name, r in restored.items() if name in models}
            self.controller.states = {name: r.state for name, r in restored.items()}
            self._watched_since = {name: r.watched_since for name, r in restored.items()}
            # Saved again on this leader's clock, the refused values left out.
            self._records = {
                name: record_of(name, r.state, desired=r.desired, now=now, watched_since=r.watched_since)
                for name, r in restored.items()
            }
            self._restored = True
            log.info("policy state restored", models=len(self.controller.states))
        outcomes = self._inner.tick(now=now)
        if self._store is not None:
            self._save(outcomes, now=now)
        return outcomes

    def _save(self, outcomes: list[Outcome], *, now: float) -> None:
        states = self.controller.states
        self._watched_since = {m: t for m, t in self._watched_since.items() if m in states}
        decided = {
            o.model: record_of(
                o.model, states[o.model], desired=o.decision.desired_replicas, now=now,
                watched_since=self._watched_since.setdefault(o.model, now),
            )
            for o in outcomes
            if o.decision is not None and o.model in states
        }
        # A model skipped this tick (its target unreadable) keeps its last record.
        self._records = {m: r for m, r in self._records.items() if m in states} | decided
        if not self._fence():
            log.warning("lost the leader lease during this tick; the policy state is not saved")
            self._restored = False
            return
        try:
            self._store.save(self._records)
        except StateTaken as err:
            # A new leader saved in between: its state, not this process's, is the one to act
            # from, should this process lead again.
            log.error("not saving the policy state: another leader wrote it", error=str(err))
            self._restored = False

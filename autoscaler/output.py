"""Decisions as a person reads them (a table) or a program does (JSON lines)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import TextIO

from autoscaler.controller import Outcome


def outcome_record(outcome: Outcome) -> dict:
    record: dict = {"time": outcome.now, "model": outcome.model}
    if outcome.decision is None:
        return record | {"skipped": outcome.skipped}
    decision = outcome.decision
    return record | {
        "current": decision.current_replicas,
        "desired": decision.desired_replicas,
        "direction": decision.direction,
        "reasons": [{"code": r.code, "message": r.message} for r in decision.reasons],
        "action": outcome.action.outcome if outcome.action else None,
    }


class DecisionPrinter:
    def __init__(self, out: TextIO, *, fmt: str = "table", clock_format: str = "iso") -> None:
        self._out = out
        self._fmt = fmt
        self._clock_format = clock_format
        self._header_done = False

    def print(self, outcome: Outcome) -> None:
        if self._fmt == "json":
            self._out.write(json.dumps(outcome_record(outcome)) + "\n")
            return
        if not self._header_done:
            self._out.write(f"{'time':<20} {'model':<24} {'replicas':<10} {'action':<9} reasons\n")
            self._header_done = True
        when = self._time(outcome.now)
        if outcome.decision is None:
            self._out.write(f"{when:<20} {outcome.model:<24} {'-':<10} {'skipped':<9} {outcome.skipped}\n")
            return
        decision = outcome.decision
        replicas = f"{decision.current_replicas}->{decision.desired_replicas}"
        action = outcome.action.outcome if outcome.action else "-"
        self._out.write(f"{when:<20} {outcome.model:<24} {replicas:<10} {action:<9} {decision.explain()}\n")

    def _time(self, now: float) -> str:
        if self._clock_format == "relative":
            return f"t={now:>9.1f}s"
        return datetime.fromtimestamp(now, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

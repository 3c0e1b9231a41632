"""The loop: a tick every tick_interval_s until SIGTERM or SIGINT, which stop it after the
tick in progress, never in the middle of one."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

import structlog

from autoscaler.clock import Clock
from autoscaler.controller import Controller, Outcome

log = structlog.get_logger(__name__)


def run_loop(
    controller: Controller,
    *,
    clock: Clock,
    interval_s: float,
    stop: threading.Event,
    on_outcomes: Callable[[list[Outcome], float], None] = lambda outcomes, duration_s: None,
    max_ticks: int | None = None,
) -> int:
    """Run ticks until `stop` is set (or `max_ticks` ran); returns the number of ticks."""
    ticks = 0
    while not stop.is_set() and (max_ticks is None or ticks < max_ticks):
        started = clock.now()
        try:
            outcomes = controller.tick(now=started)
        except Exception:  # a bug must not kill the loop silently: log it whole, try next tick
            log.exception("tick failed")
            outcomes = []
        on_outcomes(outcomes, clock.now() - started)
        ticks += 1
        if max_ticks is not None and ticks >= max_ticks:
            break
        stop.wait(max(interval_s - (clock.now() - started), 0.0))
    log.info("loop stopped", ticks=ticks)
    return ticks


def stop_on_signals(stop: threading.Event) -> None:
    def handle(signum: int, _frame) -> None:
        log.info("stopping after the current tick", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)

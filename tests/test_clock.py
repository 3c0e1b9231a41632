"""The system clock steps (NTP, an operator's `date -s`); durations inside the daemon must not.

These run the real loop and the real health check on `SystemClock` with the wall clock stepped
under it: `time.time` is replaced, as the kernel's clock would change, while the monotonic
clock runs on.
"""

from __future__ import annotations

import threading
import time

import pytest

from autoscaler.clock import SystemClock
from autoscaler.daemon import run_loop
from autoscaler.telemetry import Telemetry
from tests.test_daemon import ScriptedController


@pytest.fixture
def step_wall_clock(monkeypatch):
    """Returns a function that steps `time.time` by the given seconds from then on."""
    offset = [0.0]
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + offset[0])

    def step(seconds: float) -> None:
        offset[0] += seconds

    return step


def test_a_wall_clock_stepped_back_an_hour_does_not_freeze_the_loop(step_wall_clock):
    clock = SystemClock()
    controller = ScriptedController()
    stop = threading.Event()
    stepped = threading.Timer(0.05, step_wall_clock, args=(-3600.0,))
    stepped.start()
    started = time.monotonic()
    ticks = run_loop(controller, clock=clock, interval_s=0.2, stop=stop, max_ticks=4)
    assert ticks == 4
    assert time.monotonic() - started < 3  # four ticks at 0.2 s, not an hour
    gaps = [b - a for a, b in zip(controller.instants, controller.instants[1:], strict=False)]
    assert all(0.15 < gap < 1.0 for gap in gaps), gaps


def test_a_wall_clock_stepped_ahead_does_not_make_a_ticking_loop_unhealthy(step_wall_clock):
    clock = SystemClock()
    telemetry = Telemetry(clock=clock, interval_s=10.0)
    telemetry.record_tick([], duration_s=0.01)
    step_wall_clock(+3600.0)
    assert telemetry.healthy()


def test_a_loop_that_stopped_ticking_is_unhealthy_whatever_the_wall_clock_says(step_wall_clock):
    monotonic = [1000.0]
    clock = SystemClock(monotonic=lambda: monotonic[0])
    telemetry = Telemetry(clock=clock, interval_s=10.0)
    telemetry.record_tick([], duration_s=0.01)
    step_wall_clock(-3600.0)  # a step back would once have made the stuck loop look fresh
    monotonic[0] += 3 * 10.0 + 31
    assert not telemetry.healthy()


def test_the_clock_reads_as_the_epoch():
    assert abs(SystemClock().now() - time.time()) < 1.0

"""The one module that reads the system's clocks. Everything else is handed `now`.

`SystemClock.now()` is the wall clock read once, at start, carried forward by the monotonic
clock. Inside one process every duration (an idle timeout, a stabilization window, the Lease's
expiry, the loop's sleep, the health check) is then measured on a clock that never steps: an
NTP correction or an operator's `date -s` an hour back does not freeze the loop for that hour,
make a standby and a leader overlap, or hold a scale-up for as long as the clock jumped. The
figure stays close to the epoch (a monotonic clock runs within some parts per million of the
wall clock), so logs, Events and instants written for another process still read as dates.
Instants from another process are never compared with ours as they are: `state_store`
re-anchors them at takeover.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...


class SystemClock:
    def __init__(
        self,
        *,
        wall: Callable[[], float] | None = None,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        self._monotonic = monotonic or time.monotonic
        self._anchor = (wall or time.time)() - self._monotonic()

    def now(self) -> float:
        return self._anchor + self._monotonic()


class ManualClock:
    """A clock tests and replays move by hand."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

"""A lower bound with perfect knowledge of future arrivals and of each cold start.

How it is computed. Each request, served the moment it arrives, occupies one of a replica's
K slots for its prefill plus its output tokens at the step time of a batch of K, where K is
the replica's throughput/latency knee (a/b, at least 1): slot_s = c*prompt + output*(a + b*K).
Adding those intervals over time gives the slots the load needs each second; needed(t) =
ceil(slots(t) / K). The oracle asks at t for the most it will need before a replica it
starts now could be ready: max(needed) over [t, t + the next cold start]. So capacity is
ready exactly when the load comes, idle capacity is released at once, and a gap shorter than
a cold start is bridged (restarting could not be ready in time). It scales in 1 s steps and
pays cold starts like every other policy, so its GPU-hours and latency are measured in the
same closed loop.
"""

from __future__ import annotations

import math

import numpy as np

from simulations.cluster import SimModel
from simulations.peers import PeerView


class Oracle:
    name = "oracle"
    period_s = 1.0

    def __init__(self, model: SimModel, *, floor: int, horizon_s: float) -> None:
        self._model = model
        self._floor = floor
        profile = model.setup.profile
        slots = max(1, round(profile.step_base_s / profile.step_per_seq_s))
        requests = model.setup.requests
        busy_s = profile.prefill_per_token_s * requests.prompt + requests.output * profile.step_s(slots)
        seconds = int(math.ceil(horizon_s)) + 2
        occupancy = np.zeros(seconds + 1)
        start, end = requests.arrival_s, requests.arrival_s + busy_s
        # Fractional slot-seconds per whole second, by integrating a step function.
        np.add.at(occupancy, np.minimum(start.astype(int), seconds), 1.0)
        np.add.at(occupancy, np.minimum(end.astype(int), seconds), -1.0)
        self.needed = np.ceil(np.cumsum(occupancy)[:seconds] / slots).astype(int)
        self.slots = slots

    def decide(self, view: PeerView) -> int:
        second = int(view.now)
        lookahead = int(math.ceil(self._model.peek_cold_start_s())) + 1
        window = self.needed[second : second + lookahead]
        return max(int(window.max()) if len(window) else 0, self._floor)

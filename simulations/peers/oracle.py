"""The cheapest schedule with perfect knowledge of future arrivals and of each cold start.

Its shape is the load's per-second need below, held for `hold_s` after each peak (0: released
at once; longer: capacity kept between bursts, cheaper than a cold start per burst); its size
is a capacity factor `scale` (replicas = ceil(scale x need)). compare.fit_oracle sets both per
model against the simulator: for each hold of ORACLE_HOLDS_S, the least factor (by bisection)
at which the run keeps the SLO target, and of those the cheapest. The factor absorbs
what the need leaves out (queueing, prefill stalls of decode, the TPOT limit), so the
schedule is the cheapest of its family that is known to keep the SLO, and 10% less capacity
does not (tests/simulations/test_simulate.py). work_bound_gpu_hours is the physical floor
beside it: the engine seconds of the requests at the best batch, with no idle time at all.

How it is computed. A replica can hold at most max_num_seqs requests and kv_capacity_tokens
of prompts and outputs, and its engine time is spent on prefills (c per prompt token, the
replica to itself) and decode steps (a + b*B for a batch of B, shared by the B). At the
largest batch the cache allows, B*, a request of p prompt and o output tokens costs the
engine w = c*p + o*(b + a/B*) seconds, the least it can cost. Served the moment it arrives,
it is in flight for d = c*p + o*(a + b*B*). Each second the load then needs
ceil(max(in flight / max_num_seqs, KV tokens in flight / kv_capacity, sum of w/d in flight))
replicas at scale 1: fewer could not keep up at all, though keeping up is not yet keeping
the SLO. The oracle asks at t for the most it will need before a replica started now could
be ready: max(needed) over [t, t + the next cold start, known in advance]. Capacity is ready
when the load comes, idle capacity is released at once, and a gap shorter than a cold start
is bridged (a restart could not be ready in time). It pays cold starts like every other
policy, and runs in the same closed loop, so its latency is measured, not assumed.
"""

from __future__ import annotations

import math

import numpy as np

from simulations.cluster import SimModel
from simulations.peers import PeerView
from simulations.replica import ReplicaProfile

RESOLUTION = 10  # cells per second


def work_bound_gpu_hours(prompt_tokens: np.ndarray, output_tokens: np.ndarray, profile: ReplicaProfile) -> float:
    """GPU-hours of engine work if every request were served at the largest batch the KV cache
    holds (its w below), with no replica ever idle or starting: no schedule spends less."""
    fits = prompt_tokens + output_tokens <= profile.max_model_len
    prompt, output = prompt_tokens[fits].astype(float), np.maximum(output_tokens[fits], 1).astype(float)
    if not len(prompt):
        return 0.0
    batch = min(profile.max_num_seqs, max(1.0, profile.kv_capacity_tokens / max(float(np.mean(prompt + output)), 1.0)))
    work_s = profile.prefill_per_token_s * prompt + output * (profile.step_per_seq_s + profile.step_base_s / batch)
    return float(work_s.sum()) * profile.gpus / 3600.0


def needed_per_second(
    arrival_s: np.ndarray, prompt_tokens: np.ndarray, output_tokens: np.ndarray, profile: ReplicaProfile, *, horizon_s: float
) -> np.ndarray:
    """Replicas the load needs in each whole second of [0, horizon_s), served on arrival."""
    return np.ceil(load_per_second(arrival_s, prompt_tokens, output_tokens, profile, horizon_s=horizon_s) - 1e-9).astype(int)


def load_per_second(
    arrival_s: np.ndarray, prompt_tokens: np.ndarray, output_tokens: np.ndarray, profile: ReplicaProfile, *, horizon_s: float
) -> np.ndarray:
    """The load in replicas, before rounding up, in each whole second of [0, horizon_s)."""
    fits = prompt_tokens + output_tokens <= profile.max_model_len
    prompt, output = prompt_tokens[fits].astype(float), np.maximum(output_tokens[fits], 1).astype(float)
    tokens = prompt + output
    batch = min(profile.max_num_seqs, max(1.0, profile.kv_capacity_tokens / max(float(np.mean(tokens)) if len(tokens) else 1.0, 1.0)))
    work_s = profile.prefill_per_token_s * prompt + output * (profile.step_per_seq_s + profile.step_base_s / batch)
    duration_s = profile.prefill_per_token_s * prompt + output * profile.step_s(int(batch))
    # Each request's interval is placed on a 0.1 s grid, then averaged over whole seconds.
    seconds = int(math.ceil(horizon_s)) + 1
    cells = seconds * RESOLUTION
    start = np.minimum((arrival_s[fits] * RESOLUTION).astype(int), cells)
    end = np.minimum(((arrival_s[fits] + duration_s) * RESOLUTION).astype(int) + 1, cells)

    def load(per_request: np.ndarray | float) -> np.ndarray:
        amount = np.broadcast_to(np.asarray(per_request, dtype=float), start.shape)
        change = np.zeros(cells + 1)
        np.add.at(change, start, amount)
        np.add.at(change, end, -amount)
        return np.cumsum(change)[:cells].reshape(seconds, RESOLUTION).mean(axis=1)

    return np.maximum.reduce([
        load(1.0) / profile.max_num_seqs,
        load(tokens) / profile.kv_capacity_tokens,
        load(work_s / duration_s),
    ])


class Oracle:
    name = "oracle"
    period_s = 1.0

    def __init__(self, model: SimModel, *, floor: int, horizon_s: float, scale: float = 1.0, hold_s: float = 0.0) -> None:
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        if hold_s < 0:
            raise ValueError(f"hold_s must be >= 0, got {hold_s!r}")
        self._model = model
        self._floor = floor
        self._hold = int(hold_s)
        requests = model.requests
        load = load_per_second(requests.arrival_s, requests.prompt, requests.output, model.setup.profile, horizon_s=horizon_s)
        self.needed = np.ceil(scale * load - 1e-9).astype(int)

    def decide(self, view: PeerView) -> int:
        second = int(view.now)
        lookahead = int(math.ceil(self._model.peek_cold_start_s())) + 1
        # hold_s keeps capacity for bursts that recur: the most needed over the last hold_s too.
        window = self.needed[max(second - self._hold, 0) : second + lookahead]
        return max(int(window.max()) if len(window) else 0, self._floor)

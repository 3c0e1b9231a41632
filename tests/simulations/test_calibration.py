"""The replica model against the real recording: the fit, and the error of replaying each
run's requests into one simulated replica (pinned; the report states the same figures)."""

from __future__ import annotations

import pytest

from simulations.calibration import A100_8B, SCALES, burstgpt_profile, fit_step_time, validate
from simulations.replica import ModelQueue, Replica, ServedRequests

import numpy as np


def test_fit_reproduces_the_recorded_throughput_at_each_batch_size():
    fit = fit_step_time()
    assert 0.003 < fit.step_base_s < 0.006 and 0.0002 < fit.step_per_seq_s < 0.0004
    profile = burstgpt_profile()
    # Recorded medians of generation throughput at these batch sizes (tokens/s).
    for batch, recorded in [(1, 199), (32, 2387), (64, 2911), (256, 3062)]:
        assert batch / profile.step_s(batch) == pytest.approx(recorded, rel=0.15)


# Per run: (largest mean absolute error of the running count, of the waiting count, least
# correlation of running). Measured: running MAE 4.2 / 27.9 / 42.0 / 27.6 against recorded
# means 31 / 140 / 170 / 192 (correlation 0.98 / 0.90 / 0.79 / 0.90); waiting MAE
# 0.0 / 7.1 / 10.9 / 15.1 against recorded means 0 / 15 / 31 / 60.
BOUNDS = {100: (6, 1, 0.95), 500: (32, 9, 0.85), 1000: (46, 13, 0.75), 2000: (31, 18, 0.85)}


@pytest.mark.parametrize("scale", SCALES)
def test_replaying_the_recorded_requests_tracks_the_recorded_counts(scale):
    result = validate(burstgpt_profile(), scale=scale)
    running_mae, waiting_mae, correlation = BOUNDS[scale]
    assert result.running_mae < running_mae
    assert result.waiting_mae < waiting_mae
    assert result.running_correlation > correlation


def test_one_request_takes_prefill_plus_one_step_per_token():
    requests = ServedRequests(np.array([0.0]), np.array([1000]), np.array([101]))
    replica = Replica(A100_8B)
    replica.advance(0.0, 60.0, ModelQueue(requests))
    prefill = A100_8B.step_s(0, 1000)
    assert requests.first_token_s[0] == pytest.approx(prefill)
    assert requests.finished_s[0] == pytest.approx(prefill + 100 * A100_8B.step_s(1))
    assert replica.busy_s == pytest.approx(requests.finished_s[0])


def test_batching_shares_steps_and_the_seq_cap_queues_the_rest():
    profile = A100_8B.__class__(**{**A100_8B.__dict__, "max_num_seqs": 2, "prefill_per_token_s": 0.0})
    requests = ServedRequests(np.zeros(3), np.ones(3), np.array([11, 11, 11]))
    queue = ModelQueue(requests)
    replica = Replica(profile)
    replica.advance(0.0, 1.0, queue)
    assert not queue.waiting and not np.isnan(requests.admitted_s[2])
    # Two run together (10 steps at batch 2), the third waits for a slot.
    assert requests.finished_s[0] == pytest.approx(profile.step_s(0, 1) * 1 + 10 * profile.step_s(2), rel=0.05)
    assert requests.admitted_s[2] == pytest.approx(requests.finished_s[0])


def test_kv_capacity_limits_admission():
    profile = A100_8B.__class__(**{**A100_8B.__dict__, "kv_capacity_tokens": 1500})
    requests = ServedRequests(np.zeros(2), np.array([1000, 1000]), np.array([5, 5]))
    queue = ModelQueue(requests)
    replica = Replica(profile)
    replica.advance(0.0, 0.001, queue)
    assert replica.running == 1 and len(queue.waiting) == 1

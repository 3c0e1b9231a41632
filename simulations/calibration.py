"""Replica profiles: fitted on the real vLLM recording, or taken from ANCHORS.md's figures,
and the check of the replica model against the recording.

The fit. Each ~0.5 s sample of vllm_log_scaleN.csv reports generation and prompt throughput
at a batch of B running requests. With a step of `a + b*B + c*prefill_tokens` seconds,
producing B output tokens, a second of engine time satisfies

    1 = a * (gen / B) + b * gen + c * prompt

(gen/B steps per second, each costing a, plus b per token generated and c per prompt token).
Least squares over every sample with B > 0 gives a, b, c at once.

The check. detail_log_scaleN.json lists the requests behind each metric log (arrival =
record_time - total_chunk_time); replayed into one simulated replica, its running and waiting
counts are compared with the recorded ones at the recorded instants.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from simulations.replica import ModelQueue, Replica, ReplicaProfile, ServedRequests
from simulations.workload import resolve_traces_dir

SCALES = (100, 500, 1000, 2000)


RECORDING_FILES = tuple(
    f"vllm-burstgpt/{kind}_scale{scale}.{ext}" for scale in SCALES for kind, ext in (("vllm_log", "csv"), ("detail_log", "json"))
)
"""What fitting and checking the replica model read, relative to the traces directory."""


def burstgpt_dir(traces: Path | None = None) -> Path:
    """The vllm-burstgpt recording: `traces` if given, else under the traces directory
    ($AUTOSCALER_TRACES, or the traces shipped in simulations/traces)."""
    return traces if traces is not None else resolve_traces_dir() / "vllm-burstgpt"


@dataclass(frozen=True)
class Fit:
    step_base_s: float
    step_per_seq_s: float
    prefill_per_token_s: float
    samples: int
    residual_std: float  # of the per-second time identity (0 = every sample explained)


def engine_log(traces: Path, scale: int) -> np.ndarray:
    """Columns: timestamp, num_running, num_pending, generation and prompt throughput, KV %."""
    with open(traces / f"vllm_log_scale{scale}.csv") as f:
        rows = [
            (float(r["timestamp"]), float(r["num_running"]), float(r["num_pending"]),
             float(r["generation_throughput"]), float(r["prompt_throughput"]), float(r["gpu_kvcache_usage"]))
            for r in csv.DictReader(f)
        ]
    return np.asarray(rows)


def fit_step_time(traces: Path | None = None) -> Fit:
    log = np.vstack([engine_log(burstgpt_dir(traces), scale) for scale in SCALES])
    running, generation, prompt = log[:, 1], log[:, 3], log[:, 4]
    used = (running > 0) & (generation > 0)
    features = np.column_stack([generation[used] / running[used], generation[used], prompt[used]])
    (a, b, c), *_ = np.linalg.lstsq(features, np.ones(used.sum()), rcond=None)
    residual = np.ones(used.sum()) - features @ np.array([a, b, c])
    return Fit(float(a), float(b), float(c), int(used.sum()), float(residual.std()))


@lru_cache(maxsize=4)
def burstgpt_profile(traces: Path | None = None) -> ReplicaProfile:
    """Llama-3.2-1B on a 24 GB GPU, fitted on the recording. max_num_seqs is vLLM's default
    (256, the most the log shows running). KV capacity: the median, over the samples above 5%
    use, of the simulated tokens in flight divided by the recorded use is 475,000 tokens;
    Llama-3.2-1B stores 32 KiB a token (16 layers x 8 KV heads x 64 x K,V x 2 bytes), so the
    ~19 GB a 24 GB GPU leaves would hold ~620,000: the same order."""
    fit = fit_step_time(traces)
    return ReplicaProfile(
        name="burstgpt-llama-3.2-1b",
        step_base_s=fit.step_base_s,
        step_per_seq_s=fit.step_per_seq_s,
        prefill_per_token_s=fit.prefill_per_token_s,
        max_num_seqs=256,
        kv_capacity_tokens=475_000,
        max_batched_tokens=8192,
        max_model_len=131_072,  # Llama-3.2's context
        source=f"fitted on vllm-burstgpt, {fit.samples} samples, residual std {fit.residual_std:.2f}",
    )


# An 8B-class model on an A100-40G, from ANCHORS.md: serving 1,024-in/128-out requests it
# reaches its throughput/latency knee at about 8 concurrent requests. The knee of
# B / (a + b*B) sits near B = a/b, so a/b = 8; a = 12 ms (a memory-bound decode step of 16 GB
# of weights at ~1.5 TB/s, plus overhead) gives b = 1.5 ms: 24 ms per token at the knee,
# 333 tok/s. Prefill at ~6,700 tok/s (c = 150 us) and a KV cache of 80,000 tokens (about 10 GB
# at 128 KiB per token) are typical for that pair. max_model_len 65,536: vLLM refuses to start
# unless one sequence of max_model_len fits the cache; it refuses 47 of Mooncake's 3,993.
A100_8B = ReplicaProfile(
    name="a100-40g-8b",
    step_base_s=0.012,
    step_per_seq_s=0.0015,
    prefill_per_token_s=150e-6,
    max_num_seqs=256,
    kv_capacity_tokens=80_000,
    max_batched_tokens=8192,
    max_model_len=65_536,
    source="published A100-40G figures: knee at ~8 concurrent 1,024-in/128-out requests",
)

# Name -> profile, given where the traces are (the fitted one is built from them on demand).
PROFILES = {"a100-8b": lambda traces: A100_8B, "burstgpt-1b": burstgpt_profile}


def profile_named(name: str, traces: Path | None = None) -> ReplicaProfile:
    if name in PROFILES:
        return PROFILES[name](traces)
    raise ValueError(f"unknown replica profile {name!r}; known: {', '.join(PROFILES)}")


@dataclass(frozen=True)
class Validation:
    scale: int
    samples: int
    running_mae: float
    waiting_mae: float
    recorded_running_mean: float
    recorded_waiting_mean: float
    running_correlation: float


def recorded_requests(traces: Path, scale: int) -> ServedRequests:
    """The run's requests in engine tokens. The client counted `out_len` in characters of
    streamed text, not tokens: over the four runs the engine generated 0.152 tokens per
    character counted (about 6.6 characters a token), and prefilled 0.80 prompt tokens per
    `in_len`. Each run's lengths are scaled by that run's own ratio of the tokens the engine
    log integrates to the sum the client counted."""
    details = list(json.loads((traces / f"detail_log_scale{scale}.json").read_text()).values())
    log = engine_log(traces, scale)
    interval = np.diff(log[:, 0])
    generated, prefilled = (log[1:, 3] * interval).sum(), (log[1:, 4] * interval).sum()
    arrival = np.array([d["record_time"] - d["total_chunk_time"] for d in details])
    prompt = np.array([d["in_len"] for d in details], dtype=float)
    output = np.array([d["out_len"] for d in details], dtype=float)
    return ServedRequests(arrival, prompt * prefilled / prompt.sum(), output * generated / output.sum())


def validate(profile: ReplicaProfile, traces: Path | None = None, scale: int = 500) -> Validation:
    """Replay one run's requests into one replica; compare running and waiting counts."""
    traces = burstgpt_dir(traces)
    log = engine_log(traces, scale)
    requests = recorded_requests(traces, scale)
    queue = ModelQueue(requests)
    replica = Replica(profile)
    start = min(float(requests.arrival_s[0]), float(log[0, 0])) - 1.0
    simulated = []
    now = start
    for instant in log[:, 0]:
        replica.advance(now, float(instant), queue)
        queue.arrive_until(float(instant), cold=False)
        simulated.append((replica.running, len(queue.waiting)))
        now = float(instant)
    simulated = np.asarray(simulated, dtype=float)
    recorded_running, recorded_waiting = log[:, 1], log[:, 2]
    return Validation(
        scale=scale,
        samples=len(log),
        running_mae=float(np.abs(simulated[:, 0] - recorded_running).mean()),
        waiting_mae=float(np.abs(simulated[:, 1] - recorded_waiting).mean()),
        recorded_running_mean=float(recorded_running.mean()),
        recorded_waiting_mean=float(recorded_waiting.mean()),
        running_correlation=float(np.corrcoef(simulated[:, 0], recorded_running)[0, 1]),
    )

"""Hot, long-tail and batch models sharing one GPU pool, scaled three ways.

    .venv/bin/python -m simulations.pools            # the scenario and its table (~30 s)
    .venv/bin/python -m simulations.pools --pool-gpus 24 --batch-requests 30000

The pool holds a fixed number of GPUs. A replica asked for beyond it is a Pending pod, and
the scheduler binds Pending pods first come, first served as GPUs free up (simulations.cluster).

- ours, arbitrated: the daemon with every model in one `pools:` entry. Each policy decides,
  then policies.arbitration cuts the decisions to the pool: hot before long-tail before
  batch, and batch gives back its GPUs to an interactive scale-up.
- ours, independent: the same policies, no pool in the config: each model scales alone and
  the scheduler's first come, first served decides who gets the GPUs.
- KEDA, independent: KEDA's Prometheus trigger on waiting requests for every model, as
  users deploy it (ScaledObject per model; the batch model's maxReplicaCount 100). No peer
  knows about a shared pool, so this is what KEDA or the HPA do on a full one.

The scenario (seeded, so one seed gives one table):
- chat (hot): Azure's conversation trace, one hour, 5.5 req/s (Splitwise, ISCA 2024).
- code (hot): Azure's code trace, one hour, 2.6 req/s.
- tail (long-tail): three 3-minute bursts at 0.5 req/s, idle in between.
- summarize (batch): one job of `batch_requests` 1,000-in/200-out requests submitted at
  600 s, due `deadline_s` later.

The pool is sized so that it does not hold the hot models' peaks and the batch job's plan at
once (20 GPUs: the hot models alone keep 14 replicas ready on average and 18 at their peak,
the job's deadline asks for about 5): someone must give way.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass

import numpy as np

from autoscaler.logs import configure_logging
from simulations.calibration import A100_8B
from simulations.cluster import ColdStart, ModelSetup
from simulations.compare import warm_start
from simulations.peers.keda import Keda
from simulations.simulate import ModelResult, OursDriver, PeerDriver, Slo, ours_config, run
from simulations.workload import Requests, load_workload

BATCH_SUBMITTED_S = 600.0
INTERACTIVE = Slo(queue_wait_s=2.0, ttft_s=5.0)


@dataclass(frozen=True)
class Scenario:
    setups: list[ModelSetup]
    pool_gpus: int
    end_s: float

    @property
    def batch(self) -> ModelSetup | None:
        return next((s for s in self.setups if s.kind == "batch"), None)


def batch_job(count: int, *, submitted_s: float, prompt: int = 1000, output: int = 200) -> Requests:
    """One offline job: `count` requests submitted within one second (a client that pushes a
    file of prompts), all of one shape."""
    arrival = submitted_s + np.linspace(0.0, 1.0, count, endpoint=False)
    return Requests(arrival, np.full(count, prompt), np.full(count, output), name="summarize", source="synthetic batch job")


def bursts(starts_s: list[float], *, duration_s: float, rate_rps: float, seed: int, span_s: float) -> Requests:
    """A long-tail model's load: Poisson bursts, nothing in between."""
    rng = np.random.default_rng(seed)
    arrivals = [start + np.cumsum(rng.exponential(1.0 / rate_rps, int(duration_s * rate_rps * 2))) for start in starts_s]
    arrival = np.sort(np.concatenate([a[a < start + duration_s] for a, start in zip(arrivals, starts_s)]))
    prompt = rng.integers(200, 2000, len(arrival))
    output = rng.integers(50, 400, len(arrival))
    return Requests(arrival, prompt, output, name="tail", source="synthetic bursts", span_s=span_s)


def standard_scenario(*, pool_gpus: int = 20, batch_requests: int = 20_000, deadline_s: float = 2400.0,
                      seed: int = 1, slice_s: float | None = None) -> Scenario:
    """The shared-pool scenario. `slice_s` keeps the first seconds of the hot traces (tests)."""
    profile, cold = A100_8B, ColdStart()
    chat, code = load_workload("azure-conv", seed=seed), load_workload("azure-code", seed=seed)
    if slice_s is not None:
        chat, code = chat.slice(0.0, slice_s), code.slice(0.0, slice_s)
    span_s = max(chat.duration_s, code.duration_s)
    tail = bursts([300.0, 1500.0, 2700.0], duration_s=180.0, rate_rps=0.5, seed=seed, span_s=span_s)
    if slice_s is not None:
        tail = tail.slice(0.0, slice_s)
    job = batch_job(batch_requests, submitted_s=BATCH_SUBMITTED_S if slice_s is None else min(BATCH_SUBMITTED_S, slice_s / 4))
    setups = [
        ModelSetup("chat", chat, profile, cold, kind="hot", initial_replicas=warm_start(chat, profile, kind="hot")),
        ModelSetup("code", code, profile, cold, kind="hot", initial_replicas=warm_start(code, profile, kind="hot")),
        ModelSetup("tail", tail, profile, cold, kind="long-tail", initial_replicas=0),
        ModelSetup("summarize", job, profile, cold, kind="batch", initial_replicas=0, deadline_s=deadline_s),
    ]
    end_s = max(span_s, float(job.arrival_s[0]) + deadline_s) + 600.0
    return Scenario(setups, pool_gpus, end_s)


MODES = ("ours, arbitrated", "ours, independent", "KEDA, independent")


def run_mode(scenario: Scenario, mode: str, *, seed: int) -> list[ModelResult]:
    setups, pool = scenario.setups, scenario.pool_gpus
    if mode == "ours, arbitrated":
        config = ours_config(setups, pool_gpus=pool)
        driver = lambda cluster: OursDriver(cluster, config)  # noqa: E731
    elif mode == "ours, independent":
        config = ours_config(setups)
        driver = lambda cluster: OursDriver(cluster, config)  # noqa: E731
    elif mode == "KEDA, independent":
        # The common KEDA example, a trigger on waiting requests (5 a replica, llm-d's
        # saturation rule), for every model, batch included: what a greedy neighbour does.
        driver = lambda cluster: PeerDriver(cluster, lambda m: Keda(  # noqa: E731
            threshold=5.0, metric="waiting", min_replica_count=1 if m.setup.kind == "hot" else 0, max_replica_count=100),
            floor=lambda m: 1 if m.setup.kind == "hot" else 0)
    else:
        raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    return run(setups, driver, policy=mode, seed=seed, slo=INTERACTIVE, end_s=scenario.end_s, pool_gpus=pool)


@dataclass(frozen=True)
class BatchOutcome:
    done_by_deadline: float  # share of the job finished by its deadline
    finished_after_s: float  # from submission to the last request done (nan: not all done)


def batch_outcome(result: ModelResult, setup: ModelSetup) -> BatchOutcome:
    submitted = float(setup.workload.arrival_s[0])
    deadline = submitted + (setup.deadline_s or math.inf)
    line = result.timeline
    done = max((c for t, c in zip(line["t"], line["completed"]) if t <= deadline), default=0)
    all_done = result.completed >= len(setup.workload)
    return BatchOutcome(done / len(setup.workload), result.last_finished_s - submitted if all_done else math.nan)


def format_table(scenario: Scenario, results: dict[str, list[ModelResult]]) -> str:
    batch = scenario.batch
    lines = [
        f"pool: {scenario.pool_gpus} GPUs ({scenario.setups[0].profile.name}, 1 GPU per replica); "
        f"SLO: {INTERACTIVE.describe()}",
    ]
    if batch is not None:
        lines.append(f"batch job: {len(batch.workload):,} requests at {batch.workload.arrival_s[0]:.0f} s, "
                     f"deadline {batch.deadline_s:.0f} s later")
    lines.append(f"{'model':<11}{'kind':<11}{'mode':<20}{'GPU-h':>7}{'SLO met':>9}{'wait p95':>10}{'pending':>9}{'batch':>26}")
    lines.append(f"{'':<51}{'s':>10}{'rep-min':>9}{'done by deadline, took':>26}")
    for setup in scenario.setups:
        for mode, rows in results.items():
            row = next(r for r in rows if r.model == setup.name)
            if setup.kind == "batch":
                outcome = batch_outcome(row, setup)
                took = "unfinished" if math.isnan(outcome.finished_after_s) else f"{outcome.finished_after_s / 60:.0f} min"
                slo, wait, extra = "", "", f"{outcome.done_by_deadline:.1%}, {took}"
            else:
                slo, wait, extra = f"{row.slo_attainment:.1%}", f"{row.queue_wait_p95_s:.2f}", ""
            lines.append(f"{setup.name:<11}{setup.kind:<11}{mode:<20}{row.gpu_hours:>7.2f}{slo:>9}{wait:>10}"
                         f"{row.pending_replica_s / 60:>9.0f}{extra:>26}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Hot, long-tail and batch models on one GPU pool: arbitrated vs independent.")
    parser.add_argument("--pool-gpus", type=int, default=20)
    parser.add_argument("--batch-requests", type=int, default=20_000)
    parser.add_argument("--deadline-s", type=float, default=2400.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    configure_logging(level="warning")
    scenario = standard_scenario(pool_gpus=args.pool_gpus, batch_requests=args.batch_requests,
                                 deadline_s=args.deadline_s, seed=args.seed)
    results = {}
    for mode in MODES:
        started = time.perf_counter()
        results[mode] = run_mode(scenario, mode, seed=args.seed)
        print(f"  {mode:<20} {time.perf_counter() - started:5.1f} s", file=sys.stderr)
    print(format_table(scenario, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

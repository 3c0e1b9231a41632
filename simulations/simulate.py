"""Closed-loop simulation: an autoscaler (ours, a peer, or the oracle) scales simulated vLLM
replicas serving a real request trace; the report says what that cost in GPU-hours and latency.

Each second the cluster serves (simulations.cluster); every scrape_interval_s it is scraped;
each autoscaler acts at its own control-loop period. Ours is the daemon's Controller itself,
through the same MetricsSource and ScaleTarget protocols (simulations.sim_adapters).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from autoscaler.config import Config, parse_config
from autoscaler.controller import Controller
from simulations.cluster import Cluster, ModelSetup, SimModel
from simulations.sim_adapters import SimulatedPrometheus, SimulatedTargets, peer_view

SCRAPE_INTERVAL_S = 15.0  # a common Prometheus scrape interval for vLLM pods (the default is 60 s)
TIMELINE_STEP_S = 10.0


@dataclass(frozen=True)
class Slo:
    """A request meets the SLO when its queue wait, its time to first token and its time per
    output token (TPOT) all do. TPOT counts decode speed, which grows with the requests a
    replica runs at once: a policy that packs replicas past their knee shows it here, not in
    TTFT. The 50 ms default sits between MLPerf Inference's interactive limit (40 ms for
    Llama-2-70B) and its server limit for Llama-3.1-8B (100 ms): about 20 tokens a second,
    faster than people read (docs/benchmark.md, "The SLO")."""

    queue_wait_s: float = 2.0
    ttft_s: float = 5.0
    tpot_s: float = 0.05

    def describe(self) -> str:
        return f"queue wait <= {self.queue_wait_s:g} s, TTFT <= {self.ttft_s:g} s and TPOT <= {self.tpot_s * 1e3:g} ms"


@dataclass(frozen=True)
class RequestLatencies:
    """Per request of one model's run (those that arrived and were not refused), in seconds.

    queue_wait -- arrival to admission; a request never admitted waited until the end of the run.
    ttft       -- arrival to first token; likewise, never served counts the run's end.
    tpot       -- per output token after the first: (finished - first token) / (output - 1);
                  0 for one-token outputs (nothing to decode); a request still decoding at the
                  end counts the run's end, a lower bound, as for the wait.
    """

    queue_wait: np.ndarray
    ttft: np.ndarray
    tpot: np.ndarray

    def meets(self, slo: Slo) -> np.ndarray:
        return (self.queue_wait <= slo.queue_wait_s) & (self.ttft <= slo.ttft_s) & (self.tpot <= slo.tpot_s)


def request_latencies(requests, *, end: float) -> tuple[np.ndarray, RequestLatencies]:
    """The requests counted (arrived before `end`, not refused) and their latencies."""
    counted = (requests.arrival_s < end) & ~requests.rejected
    admitted = np.where(np.isnan(requests.admitted_s), end, requests.admitted_s)
    first = np.where(np.isnan(requests.first_token_s), end, requests.first_token_s)
    finished = np.where(np.isnan(requests.finished_s), end, requests.finished_s)
    decoded = np.maximum(requests.output - 1.0, 0.0)
    tpot = np.where(decoded > 0, (finished - first) / np.maximum(decoded, 1.0), 0.0)
    latencies = RequestLatencies(
        queue_wait=(admitted - requests.arrival_s)[counted],
        ttft=(first - requests.arrival_s)[counted],
        tpot=tpot[counted],
    )
    return counted, latencies


@dataclass
class ModelResult:
    model: str
    policy: str
    requests: int
    gpu_hours: float
    slo_attainment: float
    queue_wait_p50_s: float
    queue_wait_p95_s: float
    queue_wait_p99_s: float
    ttft_p95_s: float
    tpot_p95_s: float  # time per output token after the first, per request (nan: none decoded)
    # GPU-hours after the run's last arrival, up to its end: what a policy keeps once traffic
    # has stopped (its scale-down window), included in gpu_hours.
    after_last_gpu_hours: float
    cold_start_requests: int
    rejected: int  # longer than max_model_len: refused by vLLM whatever the replica count
    unserved: int
    scaling_actions: int
    seconds_at_zero: float
    completed: int = 0
    last_finished_s: float = math.nan  # when the last request finished (nan: none did)
    pending_replica_s: float = 0.0  # replica-seconds asked for but Pending (a full GPU pool)
    timeline: dict[str, list[float]] = field(default_factory=dict, repr=False)


class Driver:
    """An autoscaler in the loop: acts every period_s."""

    period_s: float

    def act(self, now: float) -> None:
        raise NotImplementedError


class OursDriver(Driver):
    def __init__(self, cluster: Cluster, config: Config) -> None:
        self.period_s = config.tick_interval_s
        self._controller = Controller(config, metrics=SimulatedPrometheus(cluster), targets=SimulatedTargets(cluster))

    def act(self, now: float) -> None:
        self._controller.tick(now=now)


class PeerDriver(Driver):
    """One peer instance per model, all on the peer's own control-loop period. A model starts
    at no fewer replicas than the peer keeps (a Deployment under an HPA with minReplicas 1 is
    never found at zero, and the HPA would not act on one that was). Every model starts warm
    (compare.warm_start), so a peer starts as one that has run at that count: a peer with
    `assume_running` gets its history filled (an HPA's window, Ray's look-back); Knative's
    KPA does the same itself (it starts in panic mode over one pod). Without it the first
    scrape, taken before the first request, would read an idle service."""

    def __init__(
        self, cluster: Cluster, make_peer: Callable[[SimModel], object], *, floor: Callable[[SimModel], int] = lambda m: 0
    ) -> None:
        for model in cluster.models.values():
            if model.spec_replicas < floor(model):
                model.set_replicas(floor(model), now=0.0, ready_at_once=True)
                model.scaling_actions = 0
        self._peers = {name: make_peer(model) for name, model in cluster.models.items()}
        for name, peer in self._peers.items():
            assume = getattr(peer, "assume_running", None)
            if assume is not None and cluster.models[name].spec_replicas > 0:
                assume(cluster.models[name].spec_replicas, now=0.0)
        self._cluster = cluster
        self.period_s = min(peer.period_s for peer in self._peers.values())

    def act(self, now: float) -> None:
        for name, peer in self._peers.items():
            model = self._cluster.models[name]
            model.set_replicas(peer.decide(peer_view(model, now)), now=now)


def ours_config(
    setups: list[ModelSetup], *, pool_gpus: int | None = None, overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> Config:
    """Our policy at its defaults, given only what a user knows about each model: its kind,
    and a cold start measured as the daemon could measure it (measured_cold_start_s: the
    readiness of a few replicas started before the run, not the simulator's median and not a
    draw of the run). The in-flight target per replica is the policy's documented default:
    no knee is read from the replica profile. A batch model also gets its deadline and a
    replica's throughput at a full batch (batch_throughput_rps: a load test's figure). With
    `pool_gpus` every model shares one pool of that many GPUs. `overrides`: policy fields by
    kind, set on every model of that kind ({"hot": {"scale_down_stabilization_s": 600}}),
    for tuning and policy work (simulations.contenders, simulations.explore)."""
    models = []
    for setup in setups:
        cold_start_s = measured_cold_start_s(setup)
        if setup.kind == "batch":
            policy = {
                "kind": "batch",
                "max_replicas": 100,
                "cold_start_s": cold_start_s,
                "replica_throughput_rps": batch_throughput_rps(setup),
                "drain_deadline_s": setup.deadline_s or 3600.0,
            }
        else:
            policy = {"kind": setup.kind, "max_replicas": 100, "cold_start_s": cold_start_s}
        policy.update((overrides or {}).get(setup.kind, {}))
        model = {"name": setup.name, "namespace": "sim", "target": {"kind": "Deployment", "name": setup.name}, "policy": policy}
        if setup.kind == "long-tail":
            model["wake_query"] = "sum(rate(gateway_requests_total[1m]))"
        if setup.kind == "batch":
            model["wake_query"] = "sum(gateway_queue_length)"
        if pool_gpus is not None:
            model["pool"] = "shared"
        models.append(model)
    pools = [{"name": "shared", "capacity_gpus": pool_gpus}] if pool_gpus is not None else []
    return parse_config({"pools": pools, "models": models})


COLD_START_PROBES = 5
COLD_START_PROBE_SEED = 20_260_101  # not a run's seed: the probes are not the run's replicas


def measured_cold_start_s(setup: ModelSetup, *, probes: int = COLD_START_PROBES) -> float:
    """What a user (or the daemon, from Deployment status) measures before relying on the
    figure: start `probes` replicas of the model on an idle cluster and read, each second,
    when each turns ready; the median of those readiness times, in whole seconds as status
    shows them. They are other replicas than the run's, drawn from the same distribution, so
    the figure is as wrong as three real measurements would be, not the true median."""
    probe = SimModel(replace(setup, initial_replicas=0), np.random.default_rng(COLD_START_PROBE_SEED))
    probe.set_replicas(probes, now=0.0)
    seen: list[float] = []
    second = 0.0
    while len(seen) < probes:
        second += 1.0
        seen += [second] * (len(probe.ready(second)) - len(seen))
    return float(np.median(seen))


def batch_throughput_rps(setup: ModelSetup) -> float:
    """Requests per second one replica completes with as many of the workload's median requests
    running as its KV cache and max_num_seqs allow: what a user would measure in a load test
    and put in replica_throughput_rps. Each request costs its prefill, and `output` decode
    steps shared by the batch. Example (the A100 8B profile, 1,000-in/200-out): 66 at once,
    66 x 1,000 x 150 us = 9.9 s of prefill + 200 steps x (12 + 1.5 x 66) ms = 22.2 s: 2.06 req/s."""
    profile, workload = setup.profile, setup.workload
    prompt, output = float(np.median(workload.prompt_tokens)), float(np.median(workload.output_tokens))
    batch = max(1, min(profile.max_num_seqs, int(profile.kv_capacity_tokens // (prompt + output))))
    cycle_s = batch * prompt * profile.prefill_per_token_s + output * profile.step_s(batch)
    return batch / cycle_s


def run(
    setups: list[ModelSetup],
    driver_for: Callable[[Cluster], Driver],
    *,
    policy: str,
    seed: int,
    slo: Slo = Slo(),
    dt_s: float = 1.0,
    end_s: float | None = None,
    progress: Callable[[float, float], None] | None = None,
    pool_gpus: int | None = None,
) -> list[ModelResult]:
    cluster = Cluster(setups, seed=seed, pool_gpus=pool_gpus)
    driver = driver_for(cluster)
    last_arrival = max((float(s.workload.arrival_s[-1]) for s in setups if len(s.workload)), default=0.0)
    end = end_s if end_s is not None else last_arrival + 300.0
    timelines = {
        name: {"t": [], "arrivals": [], "replicas": [], "ready": [], "queue": [], "completed": []} for name in cluster.models
    }
    now, next_scrape, next_act, next_sample = 0.0, 0.0, 0.0, 0.0
    at_last_arrival: dict[str, float] | None = None  # GPU-seconds by model when the last request arrived
    while now < end:
        if at_last_arrival is None and now >= last_arrival:
            at_last_arrival = {name: model.gpu_seconds for name, model in cluster.models.items()}
        if now >= next_scrape:
            cluster.take_scrape(now)
            next_scrape += SCRAPE_INTERVAL_S
        if now >= next_act:
            driver.act(now)
            next_act += driver.period_s
        cluster.step(now, now + dt_s)
        now += dt_s
        if now >= next_sample:
            for name, model in cluster.models.items():
                line = timelines[name]
                line["t"].append(now)
                line["arrivals"].append(model.arrivals_between(now - TIMELINE_STEP_S, now) / TIMELINE_STEP_S)
                line["replicas"].append(model.spec_replicas)
                line["ready"].append(len(model.ready(now)))
                line["queue"].append(len(model.queue.waiting))
                line["completed"].append(model.requests.completed)
            next_sample += TIMELINE_STEP_S
            if progress is not None:
                progress(now, end)
    return [
        summarize(
            model,
            policy=policy,
            slo=slo,
            end=end,
            timeline=timelines[name],
            gpu_seconds_at_last_arrival=(at_last_arrival or {}).get(name, model.gpu_seconds),
        )
        for name, model in cluster.models.items()
    ]


def summarize(
    model: SimModel, *, policy: str, slo: Slo, end: float, timeline: dict, gpu_seconds_at_last_arrival: float
) -> ModelResult:
    requests = model.requests
    arrived, latencies = request_latencies(requests, end=end)
    wait, ttft = latencies.queue_wait, latencies.ttft
    met = latencies.meets(slo)
    return ModelResult(
        model=model.setup.name,
        policy=policy,
        requests=int(arrived.sum()),
        gpu_hours=model.gpu_seconds / 3600.0,
        slo_attainment=float(met.mean()) if len(met) else math.nan,
        queue_wait_p50_s=_percentile(wait, 50),
        queue_wait_p95_s=_percentile(wait, 95),
        queue_wait_p99_s=_percentile(wait, 99),
        ttft_p95_s=_percentile(ttft, 95),
        tpot_p95_s=_percentile(_time_per_output_token(requests, arrived), 95),
        after_last_gpu_hours=(model.gpu_seconds - gpu_seconds_at_last_arrival) / 3600.0,
        cold_start_requests=int(requests.cold[arrived].sum()),
        rejected=int((requests.rejected & (requests.arrival_s < end)).sum()),
        unserved=int(np.isnan(requests.first_token_s[arrived]).sum()),
        scaling_actions=model.scaling_actions,
        seconds_at_zero=model.seconds_at_zero,
        completed=int((~np.isnan(requests.finished_s)).sum()),
        last_finished_s=float(np.nanmax(requests.finished_s)) if (~np.isnan(requests.finished_s)).any() else math.nan,
        pending_replica_s=model.pending_seconds,
        timeline=timeline,
    )


def _time_per_output_token(requests, counted: np.ndarray) -> np.ndarray:
    """Seconds per output token after the first, per request that finished with two or more:
    how fast the batch decoded it, which grows with the number of requests sharing a step."""
    decoded = counted & (requests.output > 1) & ~np.isnan(requests.finished_s)
    return (requests.finished_s[decoded] - requests.first_token_s[decoded]) / (requests.output[decoded] - 1)


def _percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else math.nan


def result_record(result: ModelResult) -> dict:
    record = asdict(result)
    record.pop("timeline")
    return record

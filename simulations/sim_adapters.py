"""The daemon's own boundaries, served by the simulated cluster: our Controller runs in the
simulator exactly as in the cluster, through MetricsSource and ScaleTarget."""

from __future__ import annotations

from collections.abc import Mapping

from autoscaler.config import ModelConfig
from autoscaler.metrics import ModelSignals, Signals
from autoscaler.targets import Action, TargetState
from policies.decision import Decision
from policies.signals import Reading
from simulations.cluster import Cluster, SimModel
from simulations.peers import PeerView

WAKE_RATE_WINDOW_S = 60.0  # sum(rate(gateway_requests_total[1m])): the gateway's request rate


class SimulatedPrometheus:
    """Readings from the last scrape: per-pod series summed (queue, running), the fullest pod
    (KV), the mean GPU duty cycle, the pods scraped; none at all while no pod is ready. The wake signal is the
    gateway's request rate, which exists at zero replicas too."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    def fetch_signals(self, *, now: float) -> Signals:
        return Signals(models={name: self._signals(model, now) for name, model in self._cluster.models.items()})

    @staticmethod
    def _signals(model: SimModel, now: float) -> ModelSignals:
        if model.setup.kind == "batch":
            # A batch model's wake query reads the backlog at the gateway, in requests.
            wake = Reading.of(float(len(model.queue.waiting)))
        else:
            wake = Reading.of(model.arrivals_between(now - WAKE_RATE_WINDOW_S, now) / WAKE_RATE_WINDOW_S)
        scrape = model.scrape
        if not scrape.running:
            return ModelSignals(wake=wake)
        age_s = now - scrape.at
        rate = model.completion_rate()
        return ModelSignals(
            completion_rate=Reading.of(rate, age_s=age_s) if rate is not None else Reading.missing(),
            waiting=Reading.of(sum(scrape.waiting), age_s=age_s),
            running=Reading.of(sum(scrape.running), age_s=age_s),
            kv_cache_usage=Reading.of(max(scrape.kv_usage), age_s=age_s),
            gpu_utilization=Reading.of(sum(scrape.gpu_utilization) / len(scrape.gpu_utilization), age_s=age_s),
            wake=wake,
            reporting_pods=Reading.of(float(len(scrape.running)), age_s=age_s),
        )


class SimulatedTargets:
    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    def read_states(self, *, now: float) -> Mapping[str, TargetState]:
        return {
            name: TargetState(
                spec_replicas=model.spec_replicas,
                ready_replicas=len(model.ready(now)),
                gpus_per_replica=model.setup.profile.gpus,
            )
            for name, model in self._cluster.models.items()
        }

    def apply(self, model: ModelConfig, decision: Decision, *, now: float) -> Action:
        simulated = self._cluster.models[model.name]
        if decision.desired_replicas == simulated.spec_replicas:
            return Action(model.name, "unchanged", "")
        simulated.set_replicas(decision.desired_replicas, now=now)
        return Action(model.name, "patched", "")


def peer_view(model: SimModel, now: float) -> PeerView:
    """What a peer autoscaler sees: Prometheus's last scrape for queue metrics (no series at
    zero ready pods), live per-pod concurrency for Knative's queue-proxy, live ongoing requests
    for Ray Serve's handles, and the requests buffered at the gateway or activator."""
    ready = model.ready(now)
    scrape = model.scrape
    running_now = sum(r.running for r in ready)
    queued = len(model.queue.waiting)
    return PeerView(
        now=now,
        spec_replicas=model.spec_replicas,
        ready_replicas=len(ready),
        waiting=sum(scrape.waiting) if scrape.running else None,
        running=sum(scrape.running) if scrape.running else None,
        in_flight_per_pod=(running_now + queued) / len(ready) if ready else None,
        ongoing=float(model.in_flight()),
        buffered=0 if ready else queued,
    )

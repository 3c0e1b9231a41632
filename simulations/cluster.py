"""A simulated cluster of vLLM replicas that reacts to the replica counts an autoscaler sets.

Per model: the router's FIFO (simulations.replica.ModelQueue), replicas that become ready one
cold start after they are asked for (drawn per replica; a starting replica holds its GPU and
serves nothing), and replicas that drain on scale-down (no new requests; what is still running
after Kubernetes' 30 s termination grace is served again elsewhere). Metrics reach autoscalers
as Prometheus would deliver them: per pod, sampled at each scrape, DCGM utilization from the
busy time since the last scrape, and no series at all while a model has no ready replica.

With a GPU pool (`Cluster(pool_gpus=N)`), a replica asked for is a Pending pod until the pool
has its GPUs free: the scheduler binds Pending pods first come, first served (kube-scheduler
orders pods of equal priority by creation time), and the cold start begins at binding. A
draining replica holds its GPUs until it is gone.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from simulations.replica import ModelQueue, Replica, ReplicaProfile, ServedRequests
from simulations.workload import Requests

TERMINATION_GRACE_S = 30.0  # Kubernetes' default terminationGracePeriodSeconds
RATE_WINDOW_S = 60.0  # the range of rate(...[1m]) in the daemon's queries


@dataclass(frozen=True)
class ColdStart:
    """Seconds from a scale-up to ready, drawn per replica from a log-normal distribution.
    Defaults from ANCHORS.md: 2 to 7 minutes is commonly reported, 82 s for an 8B model with
    local caches, 294 s uncached; median 120 s with sigma 0.4 puts 90% of starts in 62..232 s."""

    median_s: float = 120.0
    sigma: float = 0.4
    min_s: float = 30.0
    max_s: float = 420.0

    def draw(self, rng: np.random.Generator) -> float:
        return float(np.clip(self.median_s * np.exp(self.sigma * rng.standard_normal()), self.min_s, self.max_s))


@dataclass(frozen=True)
class ModelSetup:
    """One model of a simulation: its workload, its replicas' speed and cold starts, its kind
    (which of our policies it gets, and the floor every peer is given: 1 for hot)."""

    name: str
    workload: Requests
    profile: ReplicaProfile
    cold_start: ColdStart = field(default_factory=ColdStart)
    kind: str = "hot"
    initial_replicas: int = 1
    deadline_s: float | None = None  # batch: seconds from a job's first request to when it should be done


@dataclass(frozen=True)
class Scrape:
    """What one scrape of the model's pods returned (empty tuples: no ready pod, no series)."""

    at: float
    waiting: tuple[float, ...]
    running: tuple[float, ...]
    kv_usage: tuple[float, ...]
    gpu_utilization: tuple[float, ...]
    completed: int = 0  # the model's request_success_total, summed over pods, at the scrape


class SimModel:
    def __init__(self, setup: ModelSetup, rng: np.random.Generator) -> None:
        self.setup = setup
        self.requests = ServedRequests.of(setup.workload)
        self.queue = ModelQueue(self.requests, max_model_len=setup.profile.max_model_len)
        self._rng = rng
        self.replicas: list[Replica] = []  # ready, or starting while ready_at > now
        self.draining: list[Replica] = []
        self.pooled = False  # set by a Cluster with a GPU pool: new replicas wait to be bound
        self.pending: list[float] = []  # instants at which each Pending replica was asked for
        self.pending_seconds = 0.0  # replica-seconds spent Pending (asked for, no GPU free)
        self.gpu_seconds = 0.0
        self.scaling_actions = 0
        self.seconds_at_zero = 0.0
        self.scrape: Scrape = Scrape(0.0, (), (), (), ())
        self.scrapes: deque[Scrape] = deque()  # the last minute of scrapes, for rate()
        self._busy_at_scrape: dict[int, float] = {}
        self._arrival_times = self.requests.arrival_s
        self._next_cold_start_s = setup.cold_start.draw(rng)
        self.set_replicas(setup.initial_replicas, now=0.0, ready_at_once=True)
        self.scaling_actions = 0

    # -- what autoscalers see and do ----------------------------------------------------------

    @property
    def spec_replicas(self) -> int:
        return len(self.replicas) + len(self.pending)

    @property
    def gpus_held(self) -> int:
        return (len(self.replicas) + len(self.draining)) * self.setup.profile.gpus

    def bind(self, now: float) -> None:
        """The scheduler placed the oldest Pending replica: its cold start begins now."""
        self.pending.pop(0)
        self.replicas.append(Replica(self.setup.profile, ready_at=now + self._take_cold_start()))

    def ready(self, now: float) -> list[Replica]:
        return [r for r in self.replicas if r.ready_at <= now]

    def set_replicas(self, count: int, *, now: float, ready_at_once: bool = False) -> None:
        count = max(int(count), 0)
        if count == self.spec_replicas:
            return
        self.scaling_actions += 1
        if count > self.spec_replicas:
            for _ in range(count - self.spec_replicas):
                if self.pooled and not ready_at_once:
                    self.pending.append(now)
                    continue
                ready_at = now if ready_at_once else now + self._take_cold_start()
                self.replicas.append(Replica(self.setup.profile, ready_at=ready_at))
            return
        # The ReplicaSet controller deletes unscheduled pods first, the newest first.
        unbound = min(len(self.pending), self.spec_replicas - count)
        del self.pending[len(self.pending) - unbound:]
        if count == self.spec_replicas:
            return
        # Kubernetes removes not-ready pods first, then (with pod-deletion-cost unset) the
        # youngest; we remove the least loaded ready ones, the kindest choice for every policy.
        starting = [r for r in self.replicas if r.ready_at > now]
        ready = sorted((r for r in self.replicas if r.ready_at <= now), key=lambda r: r.running)
        removed = (sorted(starting, key=lambda r: -r.ready_at) + ready)[: len(self.replicas) - count]
        for replica in removed:
            self.replicas.remove(replica)
            if replica.ready_at <= now and replica.running:
                replica.draining_since = now
                self.draining.append(replica)

    def peek_cold_start_s(self) -> float:
        """The next replica's cold start: what an oracle with perfect knowledge would know."""
        return self._next_cold_start_s

    def _take_cold_start(self) -> float:
        taken, self._next_cold_start_s = self._next_cold_start_s, self.setup.cold_start.draw(self._rng)
        return taken

    def arrivals_between(self, start: float, end: float) -> int:
        times = self._arrival_times
        return int(np.searchsorted(times, end, side="right") - np.searchsorted(times, start, side="right"))

    def in_flight(self) -> int:
        return sum(r.running for r in self.replicas) + len(self.queue.waiting)

    # -- time ---------------------------------------------------------------------------------

    def step(self, start: float, end: float, turn: int) -> None:
        ready = [r for r in self.replicas if r.ready_at < end]
        if not any(r.ready_at <= start for r in self.replicas):
            # Nobody serves at the start of the tick: what arrives waits at the gateway and
            # meets a cold start (or a model that every replica has left).
            first_ready = min((r.ready_at for r in ready), default=end)
            self.queue.arrive_until(first_ready, cold=True)
        if ready:
            offset = turn % len(ready)  # rotate who admits first, so no replica is favoured
            for replica in ready[offset:] + ready[:offset]:
                replica.advance(max(start, replica.ready_at), end, self.queue)
        for replica in list(self.draining):
            replica.advance(start, end, self.queue, admit=False)
            if not replica.running:
                self.draining.remove(replica)
            elif end - replica.draining_since >= TERMINATION_GRACE_S:
                self.queue.requeue_front(replica.evict())
                self.draining.remove(replica)
        self.gpu_seconds += self.gpus_held * (end - start)
        self.pending_seconds += len(self.pending) * (end - start)
        if not self.replicas:
            self.seconds_at_zero += end - start

    def take_scrape(self, now: float) -> None:
        ready = self.ready(now)
        waiting = len(self.queue.waiting)
        share = waiting / len(ready) if ready else 0.0
        utilization = []
        for replica in ready:
            # DCGM's duty cycle over the scrape interval, or since the replica became ready.
            since = max(self.scrape.at, replica.ready_at)
            busy = replica.busy_s - self._busy_at_scrape.get(id(replica), 0.0)
            utilization.append(min(busy / max(now - since, 1e-9), 1.0) * 100.0)
        self._busy_at_scrape = {id(r): r.busy_s for r in ready}
        self.scrape = Scrape(
            at=now,
            waiting=tuple(share for _ in ready),  # the router's line, as each pod's vLLM queue
            running=tuple(float(r.running) for r in ready),
            kv_usage=tuple(r.kv_usage() for r in ready),
            gpu_utilization=tuple(utilization),
            completed=self.requests.completed,
        )
        self.scrapes.append(self.scrape)
        while self.scrapes and now - self.scrapes[0].at > RATE_WINDOW_S:
            self.scrapes.popleft()

    def completion_rate(self) -> float | None:
        """rate(request_success_total[1m]) as of the last scrape: None with fewer than two
        samples in the window, as Prometheus returns nothing then."""
        if len(self.scrapes) < 2:
            return None
        first, last = self.scrapes[0], self.scrapes[-1]
        return (last.completed - first.completed) / (last.at - first.at)


class Cluster:
    def __init__(self, setups: list[ModelSetup], *, seed: int, pool_gpus: int | None = None) -> None:
        rng = np.random.default_rng(seed)
        self.models = {setup.name: SimModel(setup, np.random.default_rng(rng.integers(2**63))) for setup in setups}
        self.pool_gpus = pool_gpus
        self._turn = 0
        if pool_gpus is not None:
            held = sum(model.gpus_held for model in self.models.values())
            if held > pool_gpus:
                raise ValueError(f"the models start with {held} GPUs, more than the pool's {pool_gpus}")
            for model in self.models.values():
                model.pooled = True

    def step(self, start: float, end: float) -> None:
        self._turn += 1
        if self.pool_gpus is not None:
            self._schedule(start)
        for model in self.models.values():
            model.step(start, end, self._turn)

    def _schedule(self, now: float) -> None:
        """Bind Pending replicas oldest first while the pool has their GPUs. A pod that does
        not fit does not block a smaller one behind it (the scheduler tries each in turn)."""
        free = self.pool_gpus - sum(model.gpus_held for model in self.models.values())
        waiting = sorted(
            (asked, index, name)
            for index, (name, model) in enumerate(self.models.items())
            for asked in model.pending
        )
        for _, _, name in waiting:
            model = self.models[name]
            if model.setup.profile.gpus <= free:
                model.bind(now)
                free -= model.setup.profile.gpus

    def take_scrape(self, now: float) -> None:
        for model in self.models.values():
            model.take_scrape(now)

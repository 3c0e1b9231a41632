"""One tick: observe, decide, arbitrate shared GPU pools, act, keep state. The same code runs
in the daemon, dry-run, replay and the simulator; only the metrics source, the scale target
and the source of node pools' capacity differ."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from queue import Empty, SimpleQueue

from autoscaler.config import Config, ModelConfig
from autoscaler.metrics import MetricsSource, Signals
from autoscaler.outcome import Outcome  # also importable from here, where it was defined before
from autoscaler.pools import NoNodes, PoolCapacity, PoolKeeper, arbitrate_outcomes
from autoscaler.targets import ScaleTarget, TargetState
from policies import Dependency, Observation, PolicyState, decide

_FRESH = PolicyState()  # frozen: one instance starts every model


class Controller:
    def __init__(
        self,
        config: Config,
        *,
        metrics: MetricsSource,
        targets: ScaleTarget,
        pools: PoolCapacity | None = None,
        write_workers: int = 1,
    ) -> None:
        """`write_workers` above 1 applies the decisions from that many threads: `targets`
        must then be safe to call from several threads (KubernetesTargets is)."""
        if write_workers < 1:
            raise ValueError(f"write_workers: {write_workers} is not allowed; at least 1")
        self._config = config
        self._write_workers = write_workers
        self._metrics = metrics
        self._targets = targets
        self._pools = PoolKeeper(pools or NoNodes())
        self._dependency_levels = {d.name: d.saturated_at for d in config.dependencies}
        self.states: dict[str, PolicyState] = {}

    def tick(self, *, now: float) -> list[Outcome]:
        signals = self._metrics.fetch_signals(now=now)
        targets = self._targets.read_states(now=now)
        outcomes = [self._decide(model, signals, targets, now=now) for model in self._config.models]
        if self._config.pools:
            # Each policy decided alone; models sharing a pool are cut to what it holds before
            # anything is written. Policy states keep what each model wanted, not what it got,
            # so stabilization windows remember real demand across a shortfall (and a scale-up
            # the pool held still starts the policy's scale_up_period_s, 0 s for hot models).
            capacities = self._pools.capacities(self._config, now=now)
            outcomes = arbitrate_outcomes(self._config, outcomes, targets=targets, capacities=capacities)
        return self._act_all(outcomes, now=now)

    def _act_all(self, outcomes: list[Outcome], *, now: float) -> list[Outcome]:
        """Each model has one decision a tick and is applied once, and the tick ends when every
        write has, so a model's writes keep their order from tick to tick whatever the threads.
        Why threads: a write waits on the API server, and a first tick at 1,000 models changes
        about 120 counts; at 9 ms a PATCH that is 1.1 s one after another. The HPA controller
        syncs 5 at once (--concurrent-horizontal-pod-autoscaler-syncs). Each thread takes the
        next model from one queue until none is left, so a few slow writes do not hold up the
        rest. A queue rather than a task per model: most models hold, and a hold costs a few
        microseconds, while handing a task to a pool costs about 20 (ThreadPoolExecutor.map
        took 47-69 ms of a steady tick at 1,000 models, in which nothing was written; the queue
        14-22 ms, README "Scale"). A write that raises (a bug: API errors are Actions) does not
        stop the others: every model is attempted once, then the first error in config order
        is raised."""
        pairs = list(zip(self._config.models, outcomes))
        if self._write_workers == 1 or len(pairs) < 2:
            return [self._act(model, outcome, now=now) for model, outcome in pairs]
        acted = list(outcomes)  # each replaced by what acting on it did
        errors: dict[int, Exception] = {}
        queue: SimpleQueue[int] = SimpleQueue()
        for index in range(len(pairs)):
            queue.put(index)

        def drain() -> None:
            while True:
                try:
                    index = queue.get_nowait()
                except Empty:
                    return
                try:
                    acted[index] = self._act(*pairs[index], now=now)
                except Exception as err:  # noqa: BLE001 - raised below, once every model has been attempted
                    errors[index] = err

        workers = min(self._write_workers, len(pairs))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="write") as pool:
            for _ in range(workers):
                pool.submit(drain)
        if errors:
            raise errors[min(errors)]
        return acted

    def _decide(self, model: ModelConfig, signals: Signals, targets: Mapping[str, TargetState], *, now: float) -> Outcome:
        target = targets.get(model.name)
        if target is None:
            return Outcome(now, model.name, None, None, None, skipped="target could not be read this tick")
        observation = observe(model, signals, target, self._dependency_levels)
        # The default is built once: states.get(name, PolicyState()) would build one for every
        # model at every tick, to use it on the first.
        decision, self.states[model.name] = decide(
            observation, self.states.get(model.name, _FRESH), model.policy, now=now
        )
        return Outcome(now, model.name, observation, decision, None)

    def _act(self, model: ModelConfig, outcome: Outcome, *, now: float) -> Outcome:
        if outcome.decision is None:
            return outcome
        # Decisions are returned, not logged here: dry-run and replay print them, and the
        # actuator logs every change with its reasons. Built directly: dataclasses.replace
        # costs 3 us, a twentieth of a replayed model-tick.
        action = self._targets.apply(model, outcome.decision, now=now)
        return Outcome(outcome.now, outcome.model, outcome.observation, outcome.decision, action)


def observe(
    model: ModelConfig, signals: Signals, target: TargetState, dependency_levels: Mapping[str, float]
) -> Observation:
    readings = signals.for_model(model.name)
    # Most models depend on nothing, and an empty generator costs 0.6 us per model and tick.
    return Observation(
        spec_replicas=target.spec_replicas,
        ready_replicas=target.ready_replicas,
        waiting=readings.waiting,
        running=readings.running,
        kv_cache_usage=readings.kv_cache_usage,
        gpu_utilization=readings.gpu_utilization,
        completion_rate=readings.completion_rate,
        wake=readings.wake,
        reporting_pods=readings.reporting_pods,
        dependencies=tuple(
            Dependency(name, signals.for_dependency(name), dependency_levels[name]) for name in model.dependencies
        )
        if model.dependencies
        else (),
    )

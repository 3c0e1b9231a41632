"""Run several policies on the same workloads and gather one report.

Each contender (ours and every peer) runs twice: at its user configuration
(simulations.contenders), and tuned: a grid of its target and its delay, and for each model
the cheapest configuration (fewest GPU-hours) whose SLO attainment reaches the target; when
none does, the one with the highest attainment. Tuning uses one seed; the choice is then run
on held-out seeds, which is what the report shows beside it. Models in one run are
independent (own queue, own replicas), so one sweep tunes every model at once.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import product

from simulations.cluster import ColdStart, ModelSetup
from simulations.contenders import CONTENDERS, Configuration, driver_for
from simulations.peers.oracle import needed_per_second
from simulations.replica import ReplicaProfile
from simulations.simulate import ModelResult, Slo, run
from simulations.workload import Requests, load_workload


@dataclass(frozen=True)
class TraceSpec:
    """`SPEC[@kind]`: a workload spec (simulations.workload.load_workload) and the model kind."""

    spec: str
    kind: str = "hot"

    @classmethod
    def parse(cls, text: str) -> TraceSpec:
        spec, _, kind = text.partition("@")
        kind = kind or "hot"
        if kind not in ("hot", "long-tail"):
            raise ValueError(f"trace {text!r}: kind {kind!r} after '@' must be hot or long-tail")
        return cls(spec, kind)


def setups_for(
    traces: Sequence[TraceSpec],
    *,
    profile: ReplicaProfile,
    seed: int,
    cold_start: ColdStart = ColdStart(),
    slice_s: float | None = None,
) -> list[ModelSetup]:
    """One model per trace; `slice_s` keeps only each trace's first seconds."""
    setups, names = [], set()
    for trace in traces:
        workload = load_workload(trace.spec, seed=seed)
        if slice_s is not None:
            workload = workload.slice(0.0, slice_s)
        name = _model_name(workload.name, names)
        names.add(name)
        initial = warm_start(workload, profile, kind=trace.kind)
        setups.append(ModelSetup(name, workload, profile, cold_start, kind=trace.kind, initial_replicas=initial))
    return setups


# Traces whose lengths differ by less than this share of the longest are the same length (a
# sliced run, or two ServeGen windows that end a few seconds apart).
LENGTH_TOLERANCE = 0.05


def length_mismatch(setups: Sequence[ModelSetup]) -> str | None:
    """One line when the traces of one run differ in length, else None. Every model is run
    until the last request of any trace (simulate.run), so a model whose trace is shorter
    keeps its replicas, and is charged their GPU-hours, for the rest of the longest."""
    if len(setups) < 2:
        return None
    lengths = [(setup.name, setup.workload.duration_s) for setup in setups]
    longest = max(length for _, length in lengths)
    if min(length for _, length in lengths) >= longest * (1 - LENGTH_TOLERANCE):
        return None
    listed = ", ".join(f"{name} {_hours(length)}" for name, length in lengths)
    return (f"warning: the traces differ in length ({listed}): every model is simulated as long as the longest, {_hours(longest)}, "
            "so a shorter trace's model is charged GPU-hours after its load ends; slice or choose traces of one length")


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds:.0f} s"


WARM_START_WINDOW_S = 300.0


def warm_start(workload: Requests, profile: ReplicaProfile, *, kind: str) -> int:
    """Every policy starts a model at what its load needs in the first five minutes (at least
    one for a hot model): a service that is already running, not one that the first cold start
    of the run would hurt for every policy alike."""
    needed = needed_per_second(
        workload.arrival_s, workload.prompt_tokens, workload.output_tokens, profile, horizon_s=WARM_START_WINDOW_S
    )
    return max(int(needed.max()) if len(needed) else 0, 1 if kind == "hot" else 0)


def _model_name(workload_name: str, taken: set[str]) -> str:
    """The workload's name as a model key (an RFC 1123 label), made unique within the run."""
    base = "".join(c if c.isalnum() else "-" for c in workload_name.lower()).strip("-")[:40].strip("-") or "model"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name


def compare(
    setups: list[ModelSetup],
    policies: Sequence[str],
    *,
    seed: int,
    slo: Slo,
    tuned: bool,
    slo_target: float = 0.95,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> list[ModelResult]:
    """Every policy on one seed: each contender at its user configuration and, with `tuned`,
    at its best point of the grid (tune); the oracle fitted to the SLO target (fit_oracle)."""
    return [
        standing.tuning
        for standing in benchmark(setups, policies, seed=seed, slo=slo, tuned=tuned, slo_target=slo_target, log=log)
    ]


@dataclass
class Standing:
    """One contender on one model: how it was configured, what it did on the tuning seed, and
    what the same configuration did on each held-out seed."""

    model: str
    policy: str  # as reported: "ours", "ray-tuned", "oracle", ...
    configuration: str
    tuning: ModelResult
    held_out: list[ModelResult] = field(default_factory=list)
    configurations_run: int = 1
    on_edge: bool = False  # tuned: the best point still lies on the widened grid's edge


def benchmark(
    setups: list[ModelSetup],
    policies: Sequence[str],
    *,
    seed: int,
    slo: Slo,
    tuned: bool,
    slo_target: float = 0.95,
    held_out: Mapping[int, list[ModelSetup]] | None = None,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> list[Standing]:
    """Tune on `setups` (seed `seed`); report each choice there and on every held-out seed's
    setups (`held_out`: seed -> the same models on that seed). The oracle is fitted on each
    seed, as it knows each seed's future."""
    held_out = held_out or {}
    standings: list[Standing] = []

    def replay(policy: str, chosen: list[Configuration | None], **kwargs) -> list[list[ModelResult]]:
        """The per-model choices run on every held-out seed, one run per distinct choice."""
        per_seed = []
        for other_seed, other in held_out.items():
            out: list[ModelResult | None] = [None] * len(other)
            for configuration in dict.fromkeys(chosen):
                results = run(other, driver_for(policy, other, configuration=configuration, **kwargs),
                              policy=policy, seed=other_seed, slo=slo)
                for index, result in enumerate(results):
                    if chosen[index] == configuration:
                        out[index] = result
            per_seed.append([r for r in out if r is not None])
        return [[seed_results[index] for seed_results in per_seed] for index in range(len(setups))]

    for policy in policies:
        if policy == "oracle":
            scales, results = fit_oracle(setups, seed=seed, slo=slo, slo_target=slo_target, log=log)
            fitted = [fit_oracle(other, seed=s, slo=slo, slo_target=slo_target, log=log)[1] for s, other in held_out.items()]
            for index, result in enumerate(results):
                standings.append(Standing(result.model, "oracle", scales[result.model].label(), result,
                                          [f[index] for f in fitted]))
            continue
        results = _timed(log, policy, lambda progress, policy=policy: run(
            setups, driver_for(policy, setups), policy=policy, seed=seed, slo=slo, progress=progress))
        contender = CONTENDERS[policy]
        again = replay(policy, [None] * len(setups))
        for index, result in enumerate(results):
            standings.append(Standing(result.model, policy, contender.label(contender.default), result, again[index]))
        if tuned:
            picks, count = tune(setups, policy, seed=seed, slo=slo, slo_target=slo_target, log=log)
            again = replay(policy, [pick.configuration for pick in picks])
            for index, pick in enumerate(picks):
                standings.append(Standing(pick.result.model, f"{policy}-tuned", contender.label(pick.configuration),
                                          replace(pick.result, policy=f"{policy}-tuned"), again[index], count, pick.on_edge))
    return standings


@dataclass(frozen=True)
class Pick:
    configuration: Configuration
    result: ModelResult
    on_edge: bool


MAX_WIDENINGS = 3
LEAST_DELAY_S = 6.0  # Knative's least stable window; no contender's delay goes below it
LEAST_TARGET = 0.25


def tune(
    setups: list[ModelSetup], policy: str, *, seed: int, slo: Slo, slo_target: float, log: Callable[[str], None]
) -> tuple[list[Pick], int]:
    """Each model's best configuration of the contender's grid (target x delay): the cheapest
    that meets `slo_target`, else the best attainment (and among equals the cheapest). Where
    a model's best lies on an edge of the grid, the grid is widened past that edge (half or
    twice the target, a third or three times the delay) and the new points run, up to
    MAX_WIDENINGS times: the same rule for every contender. Returns the picks and the number
    of configurations run."""
    contender = CONTENDERS[policy]
    targets, delays = list(contender.targets), list(contender.delays)
    results: dict[Configuration, list[ModelResult]] = {}
    picks: list[Pick] = []
    for widening in range(MAX_WIDENINGS + 1):
        for configuration in product(targets, delays):
            if configuration not in results:
                results[configuration] = _timed(log, f"{policy} {contender.label(configuration)}", lambda progress, c=configuration: run(
                    setups, driver_for(policy, setups, configuration=c), policy=policy, seed=seed, slo=slo, progress=progress))
        picks = []
        widen: set[str] = set()
        for index in range(len(setups)):
            configuration, result = _best([(c, r[index]) for c, r in results.items()], slo_target)
            target, delay = configuration
            edges = {
                "target-low": target == targets[0],
                "target-high": target == targets[-1],
                "delay-low": delay == delays[0],
                "delay-high": delay == delays[-1],
            }
            widen |= {edge for edge, on in edges.items() if on}
            picks.append(Pick(configuration, result, any(edges.values())))
        # The least target (a quarter request a replica) and delay (Knative's least window)
        # have nothing below them to try; such a pick stays marked as on the edge.
        if targets[0] / 2 < LEAST_TARGET:
            widen.discard("target-low")
        if delays[0] <= LEAST_DELAY_S:
            widen.discard("delay-low")
        if not widen or widening == MAX_WIDENINGS:
            break
        if "target-low" in widen:
            targets.insert(0, targets[0] / 2)
        if "target-high" in widen:
            targets.append(targets[-1] * 2)
        if "delay-low" in widen:
            delays.insert(0, max(delays[0] / 3, LEAST_DELAY_S))
        if "delay-high" in widen:
            delays.append(delays[-1] * 3)
    return picks, len(results)


def _best(candidates: list[tuple[Configuration, ModelResult]], slo_target: float) -> tuple[Configuration, ModelResult]:
    meeting = [c for c in candidates if c[1].slo_attainment >= slo_target]
    if meeting:
        return min(meeting, key=lambda c: c[1].gpu_hours)
    return max(candidates, key=lambda c: (round(c[1].slo_attainment, 4), -c[1].gpu_hours))


ORACLE_RANGE = (0.25, 8.0)  # capacity factors searched
ORACLE_STEPS = 7  # bisections: the factor is found to within 8 ** (1 / 2 ** 7) - 1, about 3%
ORACLE_HOLDS_S = (0.0, 300.0, 900.0, 2700.0)  # how long capacity is kept after a peak


@dataclass(frozen=True)
class OracleFit:
    scale: float
    hold_s: float

    def label(self) -> str:
        return f"capacity x{self.scale:.3g}, hold {self.hold_s:g} s"


def fit_oracle(
    setups: list[ModelSetup], *, seed: int, slo: Slo, slo_target: float, log: Callable[[str], None],
    holds_s: Sequence[float] = ORACLE_HOLDS_S,
) -> tuple[dict[str, OracleFit], list[ModelResult]]:
    """Per model, the cheapest oracle schedule that keeps `slo_target` of requests in SLO: for
    each hold, the least capacity factor that does, by geometric bisection over ORACLE_RANGE
    (models are independent in a run, so one run bisects them all); of those, the fewest
    GPU-hours. Where no hold reaches the target even at the top of the range, the best
    attainment there."""
    names = [s.name for s in setups]
    fits: dict[str, OracleFit] = {}
    chosen: dict[str, ModelResult] = {}

    def better(result: ModelResult, than: ModelResult | None) -> bool:
        if than is None:
            return True
        meets, was = result.slo_attainment >= slo_target, than.slo_attainment >= slo_target
        if meets != was:
            return meets
        return result.gpu_hours < than.gpu_hours if meets else result.slo_attainment > than.slo_attainment

    for hold_s in holds_s:
        holds = dict.fromkeys(names, hold_s)
        low = dict.fromkeys(names, ORACLE_RANGE[0])
        high = dict.fromkeys(names, ORACLE_RANGE[1])

        def attempt(scales: dict[str, float], holds=holds, hold_s=hold_s) -> list[ModelResult]:
            label = f"oracle hold {hold_s:g} s x" + ",".join(f"{scales[n]:.3g}" for n in names)
            return _timed(log, label, lambda progress: run(
                setups, driver_for("oracle", setups, oracle_scale=scales, oracle_hold_s=holds), policy="oracle",
                seed=seed, slo=slo, progress=progress))

        best = {result.model: result for result in attempt(high)}
        for _ in range(ORACLE_STEPS):
            middle = {n: (low[n] * high[n]) ** 0.5 for n in names}
            for result in attempt(middle):
                if result.slo_attainment >= slo_target:
                    high[result.model], best[result.model] = middle[result.model], result
                else:
                    low[result.model] = middle[result.model]
        for name in names:
            if better(best[name], chosen.get(name)):
                chosen[name], fits[name] = best[name], OracleFit(high[name], hold_s)
    return fits, [chosen[n] for n in names]


PROGRESS_EVERY_S = 5.0


def _timed(
    log: Callable[[str], None], label: str, work: Callable[[Callable[[float, float], None]], list[ModelResult]]
) -> list[ModelResult]:
    """Run `work`, saying how far it is every few seconds of a long run, then how long it took."""
    started = time.perf_counter()
    next_report = started + PROGRESS_EVERY_S

    def progress(simulated_s: float, end_s: float) -> None:
        nonlocal next_report
        if time.perf_counter() >= next_report:
            log(f"  {label:<32} {simulated_s / end_s:5.0%} of {end_s / 3600:.1f} simulated hours")
            next_report = time.perf_counter() + PROGRESS_EVERY_S

    results = work(progress)
    log(f"  {label:<32} {time.perf_counter() - started:6.1f} s")
    return results

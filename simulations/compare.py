"""Run several policies on the same workloads and gather one report.

Each peer runs twice: at its documented defaults (as users deploy it), and tuned: its main
target swept, and for each model the cheapest setting (fewest GPU-hours) whose SLO attainment
reaches the target; when none does, the one with the highest attainment. Models in one run
are independent (own queue, own replicas), so one sweep tunes every model at once.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from simulations.cluster import ColdStart, ModelSetup
from simulations.contenders import PEERS, driver_for
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
    results: list[ModelResult] = []
    for policy in policies:
        results += _timed(log, policy, lambda progress, policy=policy: run(
            setups, driver_for(policy, setups), policy=policy, seed=seed, slo=slo, progress=progress))
        if tuned and policy in PEERS:
            results += tune(setups, policy, seed=seed, slo=slo, slo_target=slo_target, log=log)
    return results


def tune(
    setups: list[ModelSetup], policy: str, *, seed: int, slo: Slo, slo_target: float, log: Callable[[str], None]
) -> list[ModelResult]:
    contender = PEERS[policy]
    sweeps = {
        value: _timed(log, f"{policy} {contender.knob}={value:g}", lambda progress, v=value: run(
            setups, driver_for(policy, setups, knob=v), policy=policy, seed=seed, slo=slo, progress=progress))
        for value in contender.sweep
    }
    best = []
    for index in range(len(setups)):
        candidates = [(value, results[index]) for value, results in sweeps.items()]
        meeting = [c for c in candidates if c[1].slo_attainment >= slo_target]
        if meeting:
            value, result = min(meeting, key=lambda c: c[1].gpu_hours)
        else:  # the best attainment, and among equals the cheapest
            value, result = max(candidates, key=lambda c: (round(c[1].slo_attainment, 4), -c[1].gpu_hours))
        best.append(replace(result, policy=f"{policy}-tuned({value:g})"))
    return best


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

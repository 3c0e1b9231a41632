"""Arbitration between the models that share one GPU pool.

Each model's policy decides alone; when what they want together does not fit the pool, this
cuts the decisions down to what does, and every cut decision says so (`PoolArbitration`).
Pure: the tick's decisions and the pool's capacity in, adjusted decisions out.

GPUs are handed out in stages, one replica at a time, and each stage only after the one
before it is done:

  1. minimums: hot, then long-tail, then batch (a hot model's minimum is at least 1)
  2. running replicas of hot models, then those of long-tail models that their load needs now
  3. scale-ups of hot, then long-tail models with requests waiting
  4. running replicas of long-tail models that their load no longer needs, kept only by a
     scale-down stabilization window (Decision.needed_replicas)
  5. running replicas of batch models above their minimum
  6. scale-ups of hot, then long-tail models with nothing waiting (or no data)
  7. replicas hot models keep ahead of bursts (Decision.headroom_replicas)
  8. scale-ups of batch models

So arbitration limits growth first: a scale-up only competes for GPUs nobody holds, or that
a lower kind holds without a load that needs them. Two kinds of running replica are taken
away, and only for an interactive model under pressure (requests waiting):
(a) batch replicas above the batch minimum, because a batch request can wait minutes and an
interactive one cannot; (b) long-tail replicas that only a stabilization window keeps (a
model woken to a backlog of 90 runs 7 replicas for 0.5 req/s while its 300 s window runs
out). A scale-up with nothing waiting (sized from requests in flight, ahead of a queue) grows
into free GPUs only: a batch replica cut loses the requests in its batch and a cold start to
come back: taking them for such scale-ups too left the shared-pool scenario's batch job
(simulations/pools.py, seeds 1 and 2) with 3 and 14 points less of it done by its deadline,
for no gain to the hot models. A hot model's window is kept whole:
its load comes back within minutes, and lending those replicas cost the scenario's hot models
2 to 5 points of SLO. Running replicas that an interactive load needs are cut only when the
pool itself no longer holds them (a node left it), lowest kind first.

Inside a stage the next replica goes to the model with the most requests waiting per GPU it
has been granted so far (a model with none granted comes first), which spreads a shortfall
so that queue pressure per GPU evens out. Waiting, not in flight: a queue is what a missing
replica causes, while running requests only show the replicas at work. A model with no load data ranks after those with
data; ties go by model name, so the result never depends on input order.

The pool is counted in GPUs, not packed onto nodes: a 4-GPU replica needs 4 free GPUs on
one node, so the scheduler may still leave it Pending when the free GPUs are spread out.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from policies.decision import Decision, Reason

PRIORITY = {"hot": 0, "long-tail": 1, "batch": 2}


@dataclass(frozen=True, slots=True)
class Claim:
    """One model's decision this tick, as the pool sees it.

    `minimum` is the count the model keeps whatever its load (a hot model's is at least 1);
    `pressure` is its requests waiting (vLLM's queue), None without fresh data.
    """

    model: str
    kind: str
    gpus_per_replica: int
    minimum: int
    pressure: float | None
    decision: Decision

    def __post_init__(self) -> None:
        if self.kind not in PRIORITY:
            raise ValueError(f"kind {self.kind!r} is not one of {', '.join(PRIORITY)}")
        if self.gpus_per_replica < 0 or self.minimum < 0:
            raise ValueError(f"{self.model}: gpus_per_replica and minimum must be >= 0")

    @property
    def wanted_gpus(self) -> int:
        return self.decision.desired_replicas * self.gpus_per_replica


def _stages(claims: Sequence[Claim]) -> list[tuple[str, list[tuple[Claim, int]]]]:
    """(stage name, [(claim, replicas it may reach in this stage)]) in the order they are served."""

    def of(kinds: tuple[str, ...], target, *, queued: bool | None = None) -> list[tuple[Claim, int]]:
        return [(c, target(c)) for c in claims if c.kind in kinds and (queued is None or _queued(c) == queued)]

    desired = lambda c: c.decision.desired_replicas  # noqa: E731
    load = lambda c: desired(c) - c.decision.headroom_replicas  # noqa: E731
    minimum = lambda c: min(c.minimum, desired(c))  # noqa: E731
    running = lambda c: max(min(c.decision.current_replicas, desired(c)), minimum(c))  # noqa: E731
    needed = lambda c: max(min(running(c), c.decision.needed), minimum(c))  # noqa: E731
    growth = lambda c: desired(c) if desired(c) > c.decision.current_replicas else needed(c)  # noqa: E731
    return [
        ("minimum", of(("hot",), minimum)),
        ("minimum", of(("long-tail",), minimum)),
        ("minimum", of(("batch",), minimum)),
        ("running", of(("hot",), running)),
        ("running", of(("long-tail",), needed)),
        ("scale-up", of(("hot",), load, queued=True)),
        ("scale-up", of(("long-tail",), growth, queued=True)),
        ("unneeded", of(("long-tail",), desired, queued=True)),
        ("running", of(("batch",), running)),
        ("scale-up", of(("hot",), load, queued=False)),
        ("scale-up", of(("long-tail",), growth, queued=False)),
        ("unneeded", of(("long-tail",), desired, queued=False)),
        ("headroom", of(("hot",), desired)),
        ("scale-up", of(("batch",), desired)),
    ]


def arbitrate(claims: Sequence[Claim], *, pool: str, capacity_gpus: int) -> tuple[Decision, ...]:
    """The claims' decisions, cut where the pool cannot hold them all (same order as given)."""
    wanted = sum(c.wanted_gpus for c in claims)
    if wanted <= capacity_gpus:
        return tuple(c.decision for c in claims)

    granted = {c.model: 0 for c in claims}
    stopped_in: dict[str, str] = {}  # the stage in which a model stopped short
    free = capacity_gpus
    for stage, targets in _stages(claims):
        free = _fill(targets, granted, free, stopped_in, stage)

    summary = ", ".join(f"{c.model} {granted[c.model]}x{c.gpus_per_replica}" for c in _ranked(claims))
    decisions = []
    for claim in claims:
        decision = claim.decision
        got = granted[claim.model]
        if got >= decision.desired_replicas:
            decisions.append(decision)
            continue
        change = f"cut {decision.current_replicas}->{got}" if got < decision.current_replicas else f"held at {got}"
        message = (
            f"pool {pool}: {capacity_gpus} GPUs, its models want {wanted}; {claim.model} ({claim.kind}, "
            f"{claim.gpus_per_replica} GPU per replica) gets {got} of {decision.desired_replicas} replicas, "
            f"{change}: {_why(claim, stopped_in[claim.model])} (granted: {summary})"
        )
        decisions.append(
            dataclasses.replace(
                decision,
                desired_replicas=got,
                floor=min(decision.floor, got),
                cap=min(decision.cap, got),
                reasons=decision.reasons + (Reason("PoolArbitration", message),),
            )
        )
    return tuple(decisions)


def _fill(
    targets: list[tuple[Claim, int]], granted: dict[str, int], free: int, stopped_in: dict[str, str], stage: str
) -> int:
    """Grant replicas one at a time up to each target while GPUs last; returns the GPUs left."""
    open_ = [(c, target) for c, target in targets if granted[c.model] < target]
    while open_:
        fits = [(c, t) for c, t in open_ if c.gpus_per_replica <= free]
        if not fits:
            break
        claim, target = min(fits, key=lambda ct: _rank(ct[0], granted[ct[0].model]))
        if claim.gpus_per_replica == 0:  # takes no GPU: nothing to share
            granted[claim.model] = target
        else:
            granted[claim.model] += 1
            free -= claim.gpus_per_replica
        open_ = [(c, t) for c, t in open_ if granted[c.model] < t]
    for claim, _ in open_:
        stopped_in.setdefault(claim.model, stage)
    return free


def _queued(claim: Claim) -> bool:
    return claim.pressure is not None and claim.pressure > 0


def _rank(claim: Claim, granted: int) -> tuple[bool, float, str]:
    """Who gets the next replica: most requests waiting per granted GPU first (none granted
    counts as infinite), models without load data after those with, then by name. Example:
    chat with 40 waiting on 4 GPUs (10 per GPU) goes before code with 18 on 2 (9 per GPU)."""
    if claim.pressure is None:
        return True, 0.0, claim.model
    held = granted * claim.gpus_per_replica
    per_gpu = math.inf if held == 0 else claim.pressure / held
    return False, -per_gpu, claim.model


def _ranked(claims: Sequence[Claim]) -> list[Claim]:
    return sorted(claims, key=lambda c: (PRIORITY[c.kind], c.model))


def _why(claim: Claim, stage: str) -> str:
    if stage == "minimum":
        return f"the pool does not hold its minimum of {min(claim.minimum, claim.decision.desired_replicas)} beside the minimums ranked ahead (hot, then long-tail, then batch)"
    if stage == "unneeded":
        return (
            f"its load needs {claim.decision.needed} now; the replicas above that, kept by its scale-down "
            "stabilization, go to models whose load needs them"
        )
    if stage == "headroom":
        return (
            f"its load asks for {claim.decision.desired_replicas - claim.decision.headroom_replicas}; the "
            f"{claim.decision.headroom_replicas} it keeps ahead of bursts come after every model's load"
        )
    if stage == "running":
        if claim.kind == "batch":
            return "batch yields its GPUs to interactive models first"
        return "the pool no longer holds every running replica; lower kinds and fewer requests waiting per GPU are cut first"
    if claim.kind == "batch":
        return "batch grows only into GPUs no interactive model wants"
    if not _queued(claim):
        return "nothing waiting, so its scale-up grows only into free GPUs and takes none from running batch replicas"
    return "no free GPUs left for its scale-up after the models ranked ahead (hot, then long-tail, then by requests waiting per GPU)"

"""Arbitration between the models that share one GPU pool.

Each model's policy decides alone; when what they want together does not fit the pool, this
cuts the decisions down to what does, and every cut decision says so (`PoolArbitration`).
Pure: the tick's decisions and the pool's capacity in, adjusted decisions out.

Every model first keeps its floor: its minimum (a hot model's is at least 1), whatever the
pool holds; and a model without load data, or with data from only some of its pods, keeps
the replicas it runs, since missing is not zero: nobody can tell that they serve nothing (in a day's soak a hot model with stale
readings was cut 5 -> 4 when a node left the pool). A floor is a promise of the config
(min_replicas), of the kind (a hot model is never at zero) or of the data, and no shortfall
breaks it: when the floors alone need more GPUs than the pool
holds, the pool is over-committed, every decision in it says so (`PoolOverCommitted`), and the
replicas that do not fit wait Pending for the scheduler, as they would without us. Cutting a
hot model with 40 requests waiting to zero because its pool read 0 GPUs would serve nobody.

The rest of the GPUs are handed out in stages, one replica at a time, and each stage only
after the one before it is done:

  1. running replicas of hot models, then those of long-tail models that their load needs now
  2. scale-ups of hot, then long-tail models with requests waiting
  3. running replicas of long-tail models that their load no longer needs, kept only by a
     scale-down stabilization window (Decision.needed_replicas)
  4. running replicas of batch models above their minimum
  5. scale-ups of hot, then long-tail models with nothing waiting (or no data)
  6. replicas hot models keep ahead of bursts (Decision.headroom_replicas)
  7. scale-ups of batch models

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

What a node pool holds comes from `pool_capacity`: its highest reading of the last `window_s`
(as the HPA's scale-down stabilization takes the highest recommendation of its window), so a
sudden drop does not act at once as a cut; and a reading of 0 GPUs is no data, not an empty
pool.

The pool is counted in GPUs, not packed onto nodes: a 4-GPU replica needs 4 free GPUs on
one node, so the scheduler may still leave it Pending when the free GPUs are spread out.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from policies.decision import Decision, Reason
from policies.reasons import ReasonCode

PRIORITY = {"hot": 0, "long-tail": 1, "batch": 2}


@dataclass(frozen=True, slots=True)
class Claim:
    """One model's decision this tick, as the pool sees it.

    `minimum` is the count the model keeps whatever its load (a hot model's is at least 1);
    `pressure` is its requests waiting (vLLM's queue, or at no ready pod the gateway's), None
    without fresh data; `load_unknown` says that its policy could not read the load of the
    replicas it has (no fresh vLLM series, or series from only some of its pods), whatever
    stands in for the queue.
    """

    model: str
    kind: str
    gpus_per_replica: int
    minimum: int
    pressure: float | None
    decision: Decision
    load_unknown: bool = False

    @property
    def load_known(self) -> bool:
        return self.pressure is not None and not self.load_unknown

    def __post_init__(self) -> None:
        if self.kind not in PRIORITY:
            raise ValueError(f"kind {self.kind!r} is not one of {', '.join(PRIORITY)}")
        if self.gpus_per_replica < 0 or self.minimum < 0:
            raise ValueError(f"{self.model}: gpus_per_replica and minimum must be >= 0")

    @property
    def wanted_gpus(self) -> int:
        return self.decision.desired_replicas * self.gpus_per_replica


# The replicas a claim may reach in one stage of the arbitration.
Target = Callable[[Claim], int]


def _stages(claims: Sequence[Claim]) -> list[tuple[str, list[tuple[Claim, int]]]]:
    """(stage name, [(claim, replicas it may reach in this stage)]) in the order they are served."""

    def of(kinds: tuple[str, ...], target: Target, *, queued: bool | None = None) -> list[tuple[Claim, int]]:
        return [(c, target(c)) for c in claims if c.kind in kinds and (queued is None or _queued(c) == queued)]

    desired: Target = lambda c: c.decision.desired_replicas  # noqa: E731
    load: Target = lambda c: desired(c) - c.decision.headroom_replicas  # noqa: E731
    minimum: Target = lambda c: min(c.minimum, desired(c))  # noqa: E731
    running: Target = lambda c: max(min(c.decision.current_replicas, desired(c)), minimum(c))  # noqa: E731
    needed: Target = lambda c: max(min(running(c), c.decision.needed), minimum(c))  # noqa: E731
    growth: Target = lambda c: desired(c) if desired(c) > c.decision.current_replicas else needed(c)  # noqa: E731
    return [
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


def floor_of(claim: Claim) -> int:
    """The count arbitration never cuts below: the model's minimum, or what it asks for when
    that is less (a long-tail model going to zero after its idle timeout asks for nothing);
    without whole load data (`load_known`), the replicas it runs too, as far as it asks for them."""
    floor = min(claim.minimum, claim.decision.desired_replicas)
    if not claim.load_known:
        floor = max(floor, min(claim.decision.current_replicas, claim.decision.desired_replicas))
    return floor


def arbitrate(claims: Sequence[Claim], *, pool: str, capacity_gpus: int) -> tuple[Decision, ...]:
    """The claims' decisions, cut where the pool cannot hold them all (same order as given),
    never below a model's floor (floor_of)."""
    wanted = sum(c.wanted_gpus for c in claims)
    if wanted <= capacity_gpus:
        return tuple(c.decision for c in claims)

    granted = {c.model: floor_of(c) for c in claims}
    floors_gpus = sum(granted[c.model] * c.gpus_per_replica for c in claims)
    stopped_in: dict[str, str] = {}  # the stage in which a model stopped short
    # Over-committed by floors: nothing is left to hand out, and the floors stand. Example: a
    # pool that reads 8 GPUs under hot models with minimums of 6 and 4 at 1 GPU each grants
    # them 6 and 4, and 2 of those 10 pods wait Pending.
    free = max(capacity_gpus - floors_gpus, 0)
    for stage, targets in _stages(claims):
        free = _fill(targets, granted, free, stopped_in, stage)
    over = None
    if floors_gpus > capacity_gpus:
        floors = ", ".join(f"{c.model} {floor_of(c)}x{c.gpus_per_replica}" for c in _ranked(claims) if floor_of(c) and c.gpus_per_replica)
        over = Reason(
            ReasonCode.PoolOverCommitted,
            f"pool {pool}: {capacity_gpus} GPUs, its models' floors alone need {floors_gpus} ({floors}); every floor is "
            f"kept (min_replicas, a hot model's at least 1, and what a model without load data runs), and the replicas "
            f"that do not fit wait for the scheduler",
        )

    summary = ", ".join(f"{c.model} {granted[c.model]}x{c.gpus_per_replica}" for c in _ranked(claims))
    decisions = []
    for claim in claims:
        decision = claim.decision
        got = granted[claim.model]
        if got >= decision.desired_replicas:
            decisions.append(decision if over is None else dataclasses.replace(decision, reasons=decision.reasons + (over,)))
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
                reasons=decision.reasons + (Reason(ReasonCode.PoolArbitration, message),) + ((over,) if over else ()),
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


# -- what a pool holds ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stamped:
    """A pool's reading: `gpus` read from its nodes at `at` (seconds, the caller's clock)."""

    at: float
    gpus: int


@dataclass(frozen=True, slots=True)
class Capacity:
    """The GPUs to arbitrate a pool on this tick (None: unknown, not arbitrated), and why."""

    gpus: int | None
    origin: str
    # Set when the capacity stands above what the nodes read now (a drop being stabilized, or
    # a reading of 0 taken as no data): what they read, for the reason the decisions carry.
    read_now: int | None = None


def pool_capacity(
    readings: tuple[Stamped, ...], read: int | None, *, window_s: float, now: float
) -> tuple[Capacity, tuple[Stamped, ...]]:
    """The capacity of a node pool this tick, and the readings to keep for the next.

    `read` is what the nodes read now (None: they could not be listed). A drop acts only once
    no reading of the last `window_s` is higher: the capacity is the highest reading in the
    window, as the HPA's scale-down stabilization takes the highest recommendation of its
    window. Rises act at once. Example, window 300 s: 16 GPUs read at t=0, 8 from t=100 (a node
    NotReady, or cordoned for a drain): arbitrated on 16 until t=300, on 8 from then. Its pods are not evicted before the
    node has been NotReady for 300 s (the default not-ready toleration), and a drain moves them
    one eviction at a time: cutting their Deployments at once frees no GPU and throws away warm
    replicas that the node's return, or the rest of the pool, would have kept.

    A reading of 0 is no data, not an empty pool: every node NotReady or cordoned at once is
    an outage or an upgrade, and a pool that truly went to zero nodes (a node group scaled
    down) needs Pending pods to be scaled back up. The last reading then stands, however old,
    as it does when the nodes cannot be read; with none, the pool is unknown."""
    if read is not None and read > 0:
        kept = [r for r in readings if now - r.at <= window_s and r.gpus > read]
        # Only a reading higher than every later one can be a window's highest: 16, 12, 8 is
        # kept whole while in the window, 8, 12, 16 is just 16.
        readings = (*kept, Stamped(now, read))
        highest = max(readings, key=lambda r: r.gpus)
        if highest.gpus == read:
            return Capacity(read, "the nodes' allocatable nvidia.com/gpu"), readings
        return Capacity(
            highest.gpus,
            f"{highest.gpus} as read {now - highest.at:.0f} s ago: the nodes read {read} now, and a pool's capacity "
            f"is the highest it read in the last {window_s:g} s",
            read_now=read,
        ), readings
    if not readings:
        why = "the nodes could not be read" if read is None else "the nodes read 0 GPUs (none Ready and schedulable), which is no data"
        return Capacity(None, f"{why} and no earlier read is known"), readings
    # Within the window the highest reading stands; past it, the last one.
    recent = [r for r in readings if now - r.at <= window_s]
    standing = max(recent, key=lambda r: r.gpus) if recent else readings[-1]
    if read is None:
        origin = f"{standing.gpus} as last read {now - standing.at:.0f} s ago; the nodes cannot be read now"
    else:
        origin = (
            f"{standing.gpus} as last read {now - standing.at:.0f} s ago: the nodes read 0 GPUs now (none Ready and "
            "schedulable), which is no data, not an empty pool"
        )
    return Capacity(standing.gpus, origin, read_now=read), readings

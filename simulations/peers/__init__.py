"""The peers' autoscaling algorithms, reproduced from their source and documentation for the
closed-loop simulator (ANCHORS.md section 2 gives the rules; each module cites its origin).

A peer sees a model the way its real deployment would (a PeerView, built by the simulator at
the peer's own control-loop period) and answers a desired replica count. Peers keep their own
windows and timers as instance state: they simulate other systems, not our policy, so they
follow those systems' shapes. Every time they use is view.now, never the wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class PeerView:
    """One model at one instant, as a peer autoscaler can see it.

    now             -- simulated seconds.
    spec_replicas   -- the count the Deployment asks for now.
    ready_replicas  -- replicas that serve (started ones are not ready during their cold start).
    waiting         -- sum of vllm:num_requests_waiting as Prometheus returns it now (last
                       scrape), or None when no series exists (the model has no ready pod).
    running         -- sum of vllm:num_requests_running likewise, or None.
    in_flight_per_pod -- mean concurrency per ready pod (running + waiting), as Knative's
                       queue-proxy reports it every second; None with no ready pod.
    ongoing         -- requests running plus queued anywhere for the model (replicas and the
                       router), as Ray Serve's handles and replicas report; 0.0 at rest.
    buffered        -- requests held at the gateway/activator because no replica is ready.
    """

    now: float
    spec_replicas: int
    ready_replicas: int
    waiting: float | None
    running: float | None
    in_flight_per_pod: float | None
    ongoing: float
    buffered: int


# The vLLM series a KEDA trigger or an HPA metric sums over the model's pods:
# "waiting" = vllm:num_requests_waiting, "running" = vllm:num_requests_running (what KServe's
# KEDA example and the Kubernetes vLLM HPA example scale on), "in_flight" = the two summed.
QUEUE_METRICS = ("waiting", "running", "in_flight")


def queue_metric(view: PeerView, metric: str) -> float | None:
    """The summed series now, or None when none exists (no ready pod)."""
    if metric == "waiting":
        return view.waiting
    if metric == "running":
        return view.running
    if metric == "in_flight":
        return None if view.waiting is None or view.running is None else view.waiting + view.running
    raise ValueError(f"metric {metric!r} unknown; choose from {', '.join(QUEUE_METRICS)}")


class Peer(Protocol):
    name: str
    period_s: float  # how often its control loop runs; the simulator calls decide() that often

    def decide(self, view: PeerView) -> int:
        """The desired replica count at view.now."""
        ...

"""GPU pools against kmock, an HTTP Kubernetes API emulator, through the official client: the
capacity read from the nodes, and whole ticks of the controller in which models sharing a pool
are arbitrated, including a rollout to a revision that needs more GPUs per replica.

kmock does not enforce label selectors: it returns every node whatever labelSelector says.
The reader filters by the labels itself as well, and these tests put non-matching nodes in
the cluster to check that it does."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from autoscaler.controller import Controller
from autoscaler.metrics import ModelSignals, Signals
from autoscaler.nodes import NodeCapacity
from autoscaler.targets.events import EventSender
from autoscaler.targets.kubernetes import KubernetesTargets
from autoscaler.targets.watching import WatchCache
from policies import Decision, Reading, ReasonCode
from tests.builders import config, deployment, model, node, scaled_object
from tests.support.kmock_harness import DEPLOYMENTS, SCALEDOBJECTS, status_body

A100 = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"}
H100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
NODES_PATH = "/api/v1/nodes"


def said(decision: Decision, code: ReasonCode) -> str:
    """The message of the reason `code` in `decision` (each step adds its own, once)."""
    (message,) = [reason.message for reason in decision.reasons if reason.code == code]
    return message


def pooled_config(*models: dict, selector: dict | None = None, capacity: int | None = None):
    pool = {"name": "a100"}
    pool.update({"capacity_gpus": capacity} if capacity is not None else {"node_selector": selector or A100})
    return config(*models, pools=[pool])


class FixedSignals:
    """Readings as Prometheus would return them, set per model by the test."""

    def __init__(self, **models: tuple[float, float]) -> None:
        self.models = models

    def fetch_signals(self, *, now: float) -> Signals:
        return Signals(models={
            # Pods not counted: this fake knows none (a count of "unknown" would hold every model).
            name: ModelSignals(waiting=Reading.of(waiting), running=Reading.of(running), reporting_pods=None)
            for name, (waiting, running) in self.models.items()
        })


def batch_model(name: str, **extra):
    entry = model(name, kind="batch", wake_query="sum(gateway_queue_length)", **extra)
    entry["policy"] = {"kind": "batch", "replica_throughput_rps": 2.0, "max_replicas": 20}
    return entry


# -- capacity from the nodes ---------------------------------------------------------------


def test_capacity_sums_allocatable_gpus_of_matching_ready_schedulable_nodes(kmock_cluster):
    for item in (
        node("a1", gpus=8, labels=A100),
        node("a2", gpus=8, labels=A100),
        node("a3", gpus=4, labels=A100),
        node("a-cordoned", gpus=8, labels=A100, unschedulable=True),
        node("a-notready", gpus=8, labels=A100, ready=False),
        node("a-cpu", gpus=None, labels=A100),
        node("h1", gpus=8, labels=H100),  # another pool: kmock returns it anyway
    ):
        kmock_cluster.put(item)
    cfg = pooled_config(model("chat", pool="a100"))
    assert NodeCapacity(cfg, kmock_cluster.api_client).read_capacities(now=0.0) == {"a100": 20}
    (listed,) = kmock_cluster.requests("GET", NODES_PATH)
    assert listed.params.get("labelSelector") == "nvidia.com/gpu.product=NVIDIA-A100-SXM4-40GB"


def test_a_forbidden_node_list_leaves_the_pool_unknown_and_names_the_rbac_rule(kmock_cluster):
    kmock_cluster.put(node("a1", labels=A100))
    kmock_cluster.fail_next("GET", NODES_PATH, 403, status_body(403, 'nodes is forbidden: cannot list resource "nodes"'))
    cfg = pooled_config(model("chat", pool="a100"))
    with capture_logs() as logs:
        assert NodeCapacity(cfg, kmock_cluster.api_client).read_capacities(now=0.0) == {}
    (entry,) = [e for e in logs if e["event"] == "cannot list the pool's nodes"]
    assert entry["status"] == 403 and entry["hint"] == (
        'the service account needs RBAC: apiGroups [""], resources [nodes], verbs [list] cluster-wide (a ClusterRole)'
    )


# -- whole ticks -------------------------------------------------------------------------------


_caches: list[WatchCache] = []
_senders: list[EventSender] = []


@pytest.fixture(autouse=True)
def _stop_caches(kmock_cluster):
    """Watches and Event posts must end before kmock does (it waits for open requests)."""
    yield
    while _caches:
        _caches.pop().stop()
    while _senders:
        _senders.pop().stop(timeout_s=5)


def targets_for(cluster, cfg) -> KubernetesTargets:
    """Over a cache that has listed the config's namespaces, as the daemon's first tick is."""
    cache = WatchCache(cluster.api_client)
    _caches.append(cache)
    cache.follow(cfg.namespaces)
    assert cache.wait_synced(timeout_s=10)
    _senders.append(EventSender(cluster.api_client))
    return KubernetesTargets(cfg, cluster.api_client, cache=cache, events=_senders[-1])


def controller_for(cluster, cfg, signals):
    return Controller(cfg, metrics=signals, targets=targets_for(cluster, cfg),
                      pools=NodeCapacity(cfg, cluster.api_client))


def test_a_tick_gives_batch_gpus_to_a_hot_scale_up(kmock_cluster):
    """8 GPUs on one A100 node. chat (hot) runs 2 and its queue asks for 6; embed (batch) runs
    6 on a backlog that asks for 9. chat gets its 6, embed what is left: 2."""
    kmock_cluster.put(node("a1", gpus=8, labels=A100))
    kmock_cluster.put(node("h1", gpus=8, labels=H100))
    kmock_cluster.put(deployment("chat", replicas=2))
    kmock_cluster.put(deployment("embed", replicas=6))
    cfg = pooled_config(model("chat", pool="a100"), batch_model("embed", pool="a100"))
    # chat: 24 waiting at 4 per replica -> 6 (one step may add max(4, 100%) = 4).
    # embed: 60,000 in flight at 2 req/s per replica over 3,480 s -> 9.
    signals = FixedSignals(chat=(24, 32), embed=(59_950, 50))
    chat, embed = controller_for(kmock_cluster, cfg, signals).tick(now=1000.0)

    assert chat.decision.desired_replicas == 6 and "PoolArbitration" not in chat.decision.reason_codes
    assert embed.decision.desired_replicas == 2
    assert said(embed.decision, ReasonCode.PoolArbitration).startswith(
        "pool a100: 8 GPUs, its models want 15; embed (batch, 1 GPU per replica) gets 2 of 9 replicas, cut 6->2: "
        "batch yields its GPUs to interactive models first"
    )
    # Where the capacity came from is a reason of its own, after the cut: the cut's message is arbitration's.
    assert embed.decision.reason_codes[-2:] == (ReasonCode.PoolArbitration, ReasonCode.PoolCapacityFromNodes)
    assert said(embed.decision, ReasonCode.PoolArbitration).endswith("(granted: chat 6x1, embed 2x1)")
    assert said(embed.decision, ReasonCode.PoolCapacityFromNodes) == "pool a100: capacity from the nodes' allocatable nvidia.com/gpu"
    assert kmock_cluster.get(DEPLOYMENTS, "ml", "chat")["spec"]["replicas"] == 6
    assert kmock_cluster.get(DEPLOYMENTS, "ml", "embed")["spec"]["replicas"] == 2


def in_rollout(body: dict, *, gpus: int) -> dict:
    """A Deployment whose template was just changed to a revision needing `gpus` per replica:
    the controller has not observed it yet and no replica runs the new template."""
    body["metadata"]["generation"] = 2
    body["status"].update(observedGeneration=1, updatedReplicas=0)
    body["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = str(gpus)
    return body


def test_a_revision_that_needs_more_gpus_is_counted_at_its_new_size_before_it_lands(kmock_cluster):
    """chat's new revision needs 2 GPUs per replica instead of 1. Its 4 replicas count as 8
    GPUs from the tick the template changes, so embed is cut to the 4 left of 12 before the
    new pods are scheduled, rather than leaving them Pending behind batch replicas."""
    kmock_cluster.put(node("a1", gpus=8, labels=A100))
    kmock_cluster.put(node("a2", gpus=4, labels=A100))
    kmock_cluster.put(in_rollout(deployment("chat", replicas=4), gpus=2))
    kmock_cluster.put(deployment("embed", replicas=8))
    cfg = pooled_config(model("chat", pool="a100"), batch_model("embed", pool="a100"))
    signals = FixedSignals(chat=(0, 60), embed=(59_950, 50))  # chat holds at 4; embed asks for 9
    chat, embed = controller_for(kmock_cluster, cfg, signals).tick(now=1000.0)

    assert chat.decision.desired_replicas == 4
    assert embed.decision.desired_replicas == 4
    assert "(batch, 1 GPU per replica) gets 4 of 9 replicas, cut 8->4" in said(embed.decision, ReasonCode.PoolArbitration)
    assert "granted: chat 4x2, embed 4x1" in said(embed.decision, ReasonCode.PoolArbitration)


def replica_set(deployment_body: dict, revision: str, *, replicas: int, gpus: int) -> dict:
    """A ReplicaSet of `deployment_body` at one revision, as the Deployment controller makes it."""
    template = {**deployment_body["spec"]["template"]}
    template["spec"] = {"containers": [{"name": "vllm", "image": "vllm/vllm-openai",
                                        "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]}
    name = deployment_body["metadata"]["name"]
    return {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": f"{name}-{revision}", "namespace": deployment_body["metadata"]["namespace"],
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": f"uid-{name}",
                                          "controller": True}]},
        "spec": {"replicas": replicas, "selector": deployment_body["spec"]["selector"], "template": template},
        "status": {"replicas": replicas},
    }


def test_mid_rollout_every_replica_counts_at_the_largest_revision_still_running(kmock_cluster):
    """The new revision needs 1 GPU a replica, the old one 2, and 3 old pods still run beside 2
    new ones. Counting 1 per replica would hand embed GPUs the old pods still hold; each of
    chat's 4 replicas counts 2 until the old ReplicaSet is gone."""
    kmock_cluster.put(node("a1", gpus=12, labels=A100))
    chat = in_rollout(deployment("chat", replicas=4), gpus=1)
    chat["status"].update(observedGeneration=2, updatedReplicas=2, replicas=5)
    kmock_cluster.put(chat)
    kmock_cluster.put(replica_set(chat, "old", replicas=3, gpus=2))
    kmock_cluster.put(replica_set(chat, "new", replicas=2, gpus=1))
    kmock_cluster.put(replica_set(chat, "older", replicas=0, gpus=8))  # scaled to zero: holds nothing
    kmock_cluster.put(deployment("embed", replicas=8))
    cfg = pooled_config(model("chat", pool="a100"), batch_model("embed", pool="a100"))
    targets = targets_for(kmock_cluster, cfg)
    assert targets.read_states(now=0.0)["chat"].gpus_per_replica == 2
    assert len(kmock_cluster.requests("GET", "/apis/apps/v1/namespaces/ml/replicasets")) == 1

    signals = FixedSignals(chat=(0, 60), embed=(59_950, 50))
    chat_outcome, embed = controller_for(kmock_cluster, cfg, signals).tick(now=1000.0)
    assert chat_outcome.decision.desired_replicas == 4 and embed.decision.desired_replicas == 4
    assert "granted: chat 4x2, embed 4x1" in said(embed.decision, ReasonCode.PoolArbitration)


def test_no_replica_set_is_listed_outside_a_rollout(kmock_cluster):
    kmock_cluster.put(deployment("chat", replicas=4))
    cfg = pooled_config(model("chat", pool="a100"))
    targets_for(kmock_cluster, cfg).read_states(now=0.0)
    assert not kmock_cluster.requests("GET", "/apis/apps/v1/namespaces/ml/replicasets")


def test_an_unreadable_pool_uses_the_last_capacity_read_and_says_so(kmock_cluster):
    kmock_cluster.put(node("a1", gpus=8, labels=A100))
    kmock_cluster.put(deployment("chat", replicas=2))
    kmock_cluster.put(deployment("embed", replicas=6))
    cfg = pooled_config(model("chat", pool="a100"), batch_model("embed", pool="a100"))
    controller = controller_for(kmock_cluster, cfg, FixedSignals(chat=(24, 32), embed=(59_950, 50)))
    controller.tick(now=1000.0)
    kmock_cluster.fail_next("GET", NODES_PATH, 503)
    _, embed = controller.tick(now=1010.0)
    assert embed.decision.desired_replicas == 2
    assert said(embed.decision, ReasonCode.PoolCapacityFromNodes) == (
        "pool a100: capacity from 8 as last read 10 s ago; the nodes cannot be read now"
    )


def test_a_pool_never_read_is_not_arbitrated_and_every_decision_says_so(kmock_cluster):
    """Holding every scale-up instead would freeze the pool's hot models for as long as the
    nodes cannot be read: for good, if the ClusterRole is missing."""
    kmock_cluster.put(deployment("chat", replicas=2))
    kmock_cluster.put(deployment("embed", replicas=6))
    kmock_cluster.fail_next("GET", NODES_PATH, 403)
    cfg = pooled_config(model("chat", pool="a100"), batch_model("embed", pool="a100"))
    chat, embed = controller_for(kmock_cluster, cfg, FixedSignals(chat=(24, 32), embed=(59_950, 50))).tick(now=1000.0)
    assert (chat.decision.desired_replicas, embed.decision.desired_replicas) == (6, 9)
    for outcome in (chat, embed):
        assert outcome.decision.reason_codes[-1] == "PoolCapacityUnknown"
        assert "pool a100: the nodes could not be read and no earlier read is known; not arbitrated this tick" in outcome.decision.explain()


def test_a_configured_capacity_needs_no_node_read(kmock_cluster):
    kmock_cluster.put(deployment("chat", replicas=2))
    kmock_cluster.put(deployment("embed", replicas=6))
    cfg = pooled_config(model("chat", pool="a100"), batch_model("embed", pool="a100"), capacity=7)
    _, embed = controller_for(kmock_cluster, cfg, FixedSignals(chat=(24, 32), embed=(59_950, 50))).tick(now=1000.0)
    assert embed.decision.desired_replicas == 1
    assert not kmock_cluster.requests("GET", NODES_PATH)


def test_models_without_a_pool_are_not_arbitrated(kmock_cluster):
    kmock_cluster.put(node("a1", gpus=2, labels=A100))
    kmock_cluster.put(deployment("chat", replicas=2))
    kmock_cluster.put(deployment("embed", replicas=6))
    cfg = pooled_config(model("chat", pool="a100"), batch_model("embed"))
    chat, embed = controller_for(kmock_cluster, cfg, FixedSignals(chat=(24, 32), embed=(59_950, 50))).tick(now=1000.0)
    assert embed.decision.desired_replicas == 9
    assert chat.decision.desired_replicas == 2  # 2 GPUs hold 2 replicas of chat, not 6


def test_a_long_tail_wake_counts_its_gateway_demand_as_pressure_and_takes_a_batch_replica(kmock_cluster):
    """At zero no vLLM series exist: the wake signal is the model's queue, so a wake is an
    interactive model under pressure and batch gives way."""
    kmock_cluster.put(node("a1", gpus=4, labels=A100))
    kmock_cluster.put(deployment("tail", replicas=0))
    kmock_cluster.put(deployment("embed", replicas=4))

    class WithWake(FixedSignals):
        def fetch_signals(self, *, now: float) -> Signals:
            signals = super().fetch_signals(now=now)
            return Signals(models={**signals.models, "tail": ModelSignals(wake=Reading.of(0.5))})

    cfg = pooled_config(model("tail", kind="long-tail", pool="a100"), batch_model("embed", pool="a100"))
    tail, embed = controller_for(kmock_cluster, cfg, WithWake(embed=(59_950, 50))).tick(now=1000.0)
    assert tail.decision.desired_replicas == 1
    assert embed.decision.desired_replicas == 3
    assert "cut 4->3: batch yields its GPUs to interactive models first" in said(embed.decision, ReasonCode.PoolArbitration)


# -- the pool's nodes going NotReady or cordoned (issue 19, item 1) ----------------------------


def notready_pool(kmock_cluster):
    """Two 8-GPU A100 nodes. chat (hot, min_replicas 2) runs 8 with 40 waiting; code (hot,
    min_replicas 2) runs 4 through a ScaledObject in bounds mode. Together they want 16 of 16."""
    kmock_cluster.put(node("a1", gpus=8, labels=A100))
    kmock_cluster.put(node("a2", gpus=8, labels=A100))
    kmock_cluster.put(deployment("chat", replicas=8))
    kmock_cluster.put(deployment("code", replicas=4))
    kmock_cluster.put(scaled_object("code-so", deployment="code"))
    cfg = pooled_config(
        model("chat", pool="a100", policy={"min_replicas": 2, "max_replicas": 12, "burst_headroom_step": 0}),
        model("code", pool="a100", policy={"min_replicas": 2}, target={"kind": "ScaledObject", "name": "code-so", "mode": "bounds"}),
    )
    # chat: 40 waiting / 4 -> 10, 168 in flight / 16 -> 11; code: 64 in flight / 16 -> 4.
    signals = FixedSignals(chat=(40, 128), code=(0, 64))
    return cfg, controller_for(kmock_cluster, cfg, signals)


def scaled_object_bounds(kmock_cluster) -> tuple[int, int]:
    spec = kmock_cluster.get(SCALEDOBJECTS, "ml", "code-so")["spec"]
    return spec["minReplicaCount"], spec["maxReplicaCount"]


@pytest.mark.parametrize("fault", ["NotReady", "cordoned"])
def test_a_pool_whose_nodes_all_go_notready_or_cordoned_cuts_nothing(kmock_cluster, fault):
    """Both nodes of the pool go NotReady (or are cordoned before a drain): they read 0 GPUs,
    which is no data, so the pool stays arbitrated on the 16 last read and nothing is cut;
    before the fix chat went 11 -> 0 in one tick and code's ScaledObject was patched to 0..0.
    Rests on kmock for: serving the Node objects' Ready condition and spec.unschedulable as
    the API server would, and storing the Deployment scale and ScaledObject patches."""
    cfg, controller = notready_pool(kmock_cluster)
    chat, code = controller.tick(now=1000.0)
    assert (chat.decision.desired_replicas, code.decision.desired_replicas) == (11, 4)
    for name in ("a1", "a2"):
        kmock_cluster.put(node(name, gpus=8, labels=A100, ready=fault != "NotReady", unschedulable=fault == "cordoned"))

    with capture_logs() as logs:
        controller.tick(now=1005.0)
    assert {"event": "none of the pool's nodes is Ready and schedulable; its 0 GPUs are read as no data, not an empty pool",
            "pool": "a100", "nodes": 2, "log_level": "warning"} in logs
    for now in (1010.0, 1400.0, 5000.0):  # however long: 0 GPUs is never an empty pool
        chat, code = controller.tick(now=now)
        assert chat.decision.desired_replicas == 11, chat.decision.explain()
        assert code.decision.desired_replicas == 4, code.decision.explain()
        assert kmock_cluster.get(DEPLOYMENTS, "ml", "chat")["spec"]["replicas"] == 11
        assert scaled_object_bounds(kmock_cluster) == (2, 10)
        for outcome in (chat, code):
            assert outcome.decision.reason_codes[-1] == "PoolCapacityHeld"
            assert "the nodes read 0 GPUs now (none Ready and schedulable), which is no data, not an empty pool" in (
                outcome.decision.reasons[-1].message
            )


def test_a_daemon_started_while_the_pool_reads_0_does_not_arbitrate_it(kmock_cluster):
    """No earlier reading to stand: the pool is unknown, as when its nodes cannot be listed,
    and the scheduler decides (Pending pods are also what brings a node group back)."""
    kmock_cluster.put(node("a1", gpus=8, labels=A100, ready=False))
    kmock_cluster.put(deployment("chat", replicas=8))
    cfg = pooled_config(model("chat", pool="a100", policy={"min_replicas": 2, "max_replicas": 12, "burst_headroom_step": 0}))
    (chat,) = controller_for(kmock_cluster, cfg, FixedSignals(chat=(40, 128))).tick(now=1000.0)
    assert chat.decision.desired_replicas == 11
    assert chat.decision.reason_codes[-1] == "PoolCapacityUnknown"
    assert "the nodes read 0 GPUs (none Ready and schedulable), which is no data and no earlier read is known" in chat.decision.explain()


def test_half_the_pool_going_notready_cuts_only_after_the_window_and_never_below_a_floor(kmock_cluster):
    """One node of two goes NotReady: the pool reads 8 of 16. For capacity_drop_stabilization_s
    (300 s) nothing is cut; then the 8 GPUs are arbitrated, chat cut 11 -> 6 and code 4 -> 2,
    code's floor, which its ScaledObject keeps as minReplicaCount. Rests on kmock for the Node
    objects and for storing the scale and ScaledObject patches."""
    cfg, controller = notready_pool(kmock_cluster)
    controller.tick(now=1000.0)
    kmock_cluster.put(node("a2", gpus=8, labels=A100, ready=False))
    chat, code = controller.tick(now=1010.0)
    assert (chat.decision.desired_replicas, code.decision.desired_replicas) == (11, 4)
    assert "16 as read 10 s ago: the nodes read 8 now, and a pool's capacity is the highest it read in the last 300 s" in (
        chat.decision.reasons[-1].message
    )
    chat, code = controller.tick(now=1299.0)
    assert (chat.decision.desired_replicas, code.decision.desired_replicas) == (11, 4)
    chat, code = controller.tick(now=1301.0)
    assert (chat.decision.desired_replicas, code.decision.desired_replicas) == (6, 2)
    assert "cut 4->2" in code.decision.explain() and "PoolCapacityHeld" not in code.decision.reason_codes
    assert kmock_cluster.get(DEPLOYMENTS, "ml", "chat")["spec"]["replicas"] == 6
    assert scaled_object_bounds(kmock_cluster) == (2, 2)

"""The GPUs a node_selector pool holds: the sum of `status.allocatable["nvidia.com/gpu"]` over
the nodes whose labels match, read once per tick (one list of nodes per pool).

Counted: nodes that are schedulable and Ready. A cordoned node (`spec.unschedulable`) is
being drained or upgraded, and its GPU pods will need room elsewhere; a NotReady node's pods
are evicted after 300 s (the default not-ready toleration) and need room too. Counting
either would leave the pool short by their GPUs exactly when those pods come back Pending.

A pool whose nodes are all NotReady or cordoned reads 0 GPUs. That 0 is no data, not an empty
pool (policies.arbitration.pool_capacity): the last reading stands, and nothing is cut on it.
Likewise a drop acts only once the pool's capacity_drop_stabilization_s has passed.

Allocatable, not capacity: allocatable is what the scheduler may place pods on (the device
plugin leaves out unhealthy GPUs). GPUs that pods the daemon does not scale hold on those
nodes are not subtracted: give such a pool a `capacity_gpus` instead, or label its nodes apart.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog
from kubernetes import client as k8s

from autoscaler.config import Config
from autoscaler.kube_errors import Failed, Forbidden, Rule, Unreachable, translated
from autoscaler.settings import ApiSettings

log = structlog.get_logger(__name__)

GPU_RESOURCE = "nvidia.com/gpu"


class NodeCapacity:
    def __init__(self, config: Config, api_client: k8s.ApiClient, *, api: ApiSettings = ApiSettings()) -> None:
        self._config = config
        self._request_timeout_s = api.request_timeout_s
        self._core = k8s.CoreV1Api(api_client)

    def read_capacities(self, *, now: float) -> Mapping[str, int]:
        capacities = {}
        for pool in self._config.node_pools:
            selector = ",".join(f"{key}={value}" for key, value in sorted(pool.node_selector.items()))
            try:
                with translated(Rule("", "nodes", ("list",), None)):
                    nodes = self._core.list_node(label_selector=selector, _request_timeout=self._request_timeout_s).items
            except Unreachable as err:
                log.error("Kubernetes API unreachable; the pool's nodes are not read this tick", pool=pool.name, error=str(err))
                continue
            except Failed as err:
                hint = err.hint if isinstance(err, Forbidden) else ""
                log.error("cannot list the pool's nodes", pool=pool.name, status=err.status, detail=err.message, hint=hint)
                continue
            # The API server filters by label_selector; filtering again here keeps the count
            # right where it does not (the kmock emulator the tests run ignores selectors).
            matching = [n for n in nodes if _matches(n, pool.node_selector)]
            usable = [n for n in matching if _usable(n)]
            capacities[pool.name] = sum(_allocatable_gpus(node, pool=pool.name) for node in usable)
            if matching and not usable:
                log.warning(
                    "none of the pool's nodes is Ready and schedulable; its 0 GPUs are read as no data, not an empty pool",
                    pool=pool.name,
                    nodes=len(matching),
                )
        return capacities


def _matches(node, selector: Mapping[str, str]) -> bool:
    labels = node.metadata.labels or {}
    return all(labels.get(key) == value for key, value in selector.items())


def _usable(node) -> bool:
    if node.spec is not None and node.spec.unschedulable:
        return False
    conditions = (node.status.conditions if node.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _allocatable_gpus(node, *, pool: str) -> int:
    allocatable = (node.status.allocatable if node.status else None) or {}
    value = allocatable.get(GPU_RESOURCE)
    if value is None:
        return 0
    if not str(value).isdigit():
        log.warning("node's allocatable GPUs are not a count; counting none", pool=pool, node=node.metadata.name, value=value)
        return 0
    return int(value)

"""The scale benchmark's machinery at small sizes, against the session's real Prometheus and
kmock: the PromQL queries of a tick do not grow with the models, and a tick on which no count
changes sends nothing to the API. The figures themselves come from ./dev bench-scale."""

from __future__ import annotations

import json

from kubernetes import client as k8s
from kubernetes.watch.watch import iter_resp_lines

from simulations.bench_scale import counters_advancing, fleet, measure_in_process, publish, steady_ticks, wait_until_scraped
from tests.support.kmock_harness import KmockCluster
from tests.builders import deployment
from tests.support.prom_harness import unique_name


def test_queries_per_tick_stay_flat_and_a_steady_tick_writes_nothing(prometheus_stack, kmock_cluster):
    exporter, prometheus = prometheus_stack
    fleets = [fleet(size, prefix=unique_name("s"), namespaces=5) for size in (10, 30)]
    for f in fleets:
        publish(f, exporter=exporter, cluster=kmock_cluster)
    with counters_advancing(exporter, fleets):
        wait_until_scraped(prometheus, fleets)
        small, large = (measure_in_process(f, cluster=kmock_cluster, prometheus_url=prometheus.url, ticks=3) for f in fleets)

    for m in (small, large):
        assert all(t["skipped"] == 0 for t in m.ticks)
        # Counted by Prometheus and by the adapter alike.
        assert [t["promql_server"] for t in m.ticks] == [t["promql"] for t in m.ticks]
        # The first tick scales the hot models and wakes the long-tail ones with demand...
        first = m.ticks[0]
        assert first["changes"] > 0 and first["api"]["PATCH"] == first["changes"]
        # ...and then nothing changes, and nothing is asked of the API at all.
        assert steady_ticks(m) == m.ticks[1:]
        assert all(sum(t["api"].values()) == 0 for t in m.ticks[1:])
        assert m.sync_requests["LIST"] == 3 * m.namespaces  # Deployments, ScaledObjects and HPAs, once
    assert {t["promql"] for t in small.ticks} == {t["promql"] for t in large.ticks}
    assert large.ticks[0]["changes"] > small.ticks[0]["changes"]


def test_an_open_watch_leaves_kmocks_request_log_while_it_streams():
    # kmock filters its request log once per reaction it tries, for every request: the scale
    # benchmark's 100 open watches, left in it, made each PATCH of /scale cost it 3 ms instead
    # of 1 (tests/support/kmock_harness.py). Out of the log, the watch must still see the writes.
    with KmockCluster(forget_served=True) as cluster:
        cluster.put(deployment("chat", replicas=1))
        apps = k8s.AppsV1Api(cluster.api_client)
        stream = apps.list_namespaced_deployment("ml", watch=True, _preload_content=False, _request_timeout=(3, 10))
        try:
            lines = iter_resp_lines(stream)
            assert json.loads(next(lines))["type"] == "ADDED"
            assert cluster.call(lambda: list(cluster.emulator)) == []  # kmock's log: the watch is not in it
            assert [r.params.get("watch") for r in cluster.requests()] == ["true"]  # the harness's: it is
            apps.patch_namespaced_deployment_scale("chat", "ml", {"spec": {"replicas": 3}})
            event = json.loads(next(lines))
            assert (event["type"], event["object"]["spec"]["replicas"]) == ("MODIFIED", 3)
        finally:
            stream.close()  # the server ends a watch when its client goes

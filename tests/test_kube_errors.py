"""The Kubernetes API's failures as typed errors, and the one spelling of the RBAC hint
(autoscaler/kube_errors.py). The error answers come from kmock, the HTTP API emulator (injected,
as the API server would send them); an unreachable server is a closed port. Each adapter's use
of the hint is pinned beside it: test_targets_kubernetes.py (writes, Events), test_watching.py
(lists and watches), test_pools.py (nodes), test_failover.py (the state ConfigMap)."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s

from autoscaler.kube_errors import (
    Conflict,
    Failed,
    Forbidden,
    Gone,
    NotFound,
    Rule,
    Unreachable,
    failure,
    rbac_hint,
    translated,
)
from tests.support.kmock_harness import status_body

RULE = Rule("apps", "deployments/scale", ("patch",), "ml")


@pytest.mark.parametrize(
    "rule, hint",
    [
        (RULE, "the service account needs RBAC: apiGroups [apps], resources [deployments/scale], verbs [patch] in namespace ml"),
        (Rule("", "nodes", ("list",), None),
         'the service account needs RBAC: apiGroups [""], resources [nodes], verbs [list] cluster-wide (a ClusterRole)'),
        (Rule("keda.sh", "scaledobjects", ("list", "watch"), "ml"),
         "the service account needs RBAC: apiGroups [keda.sh], resources [scaledobjects], verbs [list, watch] in namespace ml"),
    ],
)
def test_the_rbac_hint_names_group_resource_verbs_and_scope(rule, hint):
    assert rbac_hint(rule) == hint


@pytest.mark.parametrize(
    "status, kind",
    [(403, Forbidden), (404, NotFound), (409, Conflict), (410, Gone), (422, Failed), (500, Failed), (None, Failed)],
)
def test_each_status_maps_to_its_error(status, kind):
    error = failure(status, "Reason", "the message", rule=RULE)
    assert type(error) is kind
    assert error.status == (status or 0) and error.message == "the message" and error.rule == RULE
    assert str(error) == f"API error {status or 0} Reason: the message"


def test_an_answer_with_an_error_status_is_raised_typed_with_the_status_bodys_message(kmock_cluster):
    kmock_cluster.fail_next("GET", "/api/v1/namespaces/ml/configmaps/x", 409, status_body(409, "the object has been modified"))
    with pytest.raises(Conflict) as raised, translated(Rule("", "configmaps", ("get",), "ml")):
        k8s.CoreV1Api(kmock_cluster.api_client).read_namespaced_config_map("x", "ml")
    assert raised.value.status == 409 and raised.value.message == "the object has been modified"


def test_no_answer_is_unreachable():
    closed = k8s.ApiClient(k8s.Configuration(host="http://127.0.0.1:9"))
    closed.configuration.retries = 0
    with pytest.raises(Unreachable), translated(RULE):
        k8s.CoreV1Api(closed).list_node(_request_timeout=(1.0, 1.0))

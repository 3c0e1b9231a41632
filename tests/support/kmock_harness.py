"""The kmock harness lives in simulations/harness/kmock.py, which the scale benchmark shares
with the tests; here are its pytest fixture and the names the tests import."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from simulations.harness.kmock import DEPLOYMENTS, NODES, REPLICASETS, SCALEDOBJECTS, KmockCluster, status_body

__all__ = ["DEPLOYMENTS", "NODES", "REPLICASETS", "SCALEDOBJECTS", "KmockCluster", "kmock_cluster", "status_body"]


@pytest.fixture
def kmock_cluster() -> Iterator[KmockCluster]:
    """A fresh emulator + ApiClient per test; the thread and loop are gone after the test."""
    with KmockCluster() as cluster:
        yield cluster

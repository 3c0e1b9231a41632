from __future__ import annotations

import pytest

from tests.support.kmock_harness import kmock_cluster  # noqa: F401  (fixture)
from tests.support.prom_harness import MetricsExporter, run_prometheus


@pytest.fixture(scope="session")
def prometheus_stack():
    """One exporter scraped every second by one real Prometheus for the whole session: its
    first sample takes about 5 s to show, so tests share it and use their own label values."""
    with MetricsExporter() as exporter, run_prometheus([exporter], scrape_interval="1s") as prometheus:
        prometheus.wait_for("up == 1")
        yield exporter, prometheus

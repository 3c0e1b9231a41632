from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import structlog
import yaml
from hypothesis import settings

from autoscaler.targets.events import EventSender

from tests.builders import deployment, kubeconfig, model
from tests.support.controlplane_harness import control_plane  # noqa: F401  (fixture)
from tests.support.kmock_harness import kmock_cluster  # noqa: F401  (fixture)
from tests.support.prom_harness import MetricsExporter, run_prometheus, unique_name, vllm_labels

# The property tests draw the same examples on every run, so CI is reproducible. Before a
# change lands, search with fresh randomness too: HYPOTHESIS_PROFILE=explore ./dev test.
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture(autouse=True)
def _structlog_restored() -> Iterator[None]:
    """A CLI's main() run in-process configures structlog to print to the stream of the moment,
    which pytest closes after the test; every test gets back the configuration it started with."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def events(kmock_cluster) -> Iterator[EventSender]:
    """The actuator's Event sender on kmock; `events.flush(5)` before looking for the POSTs.
    Stopped before kmock is (it would wait for a post in flight)."""
    sender = EventSender(kmock_cluster.api_client)
    yield sender
    sender.stop(timeout_s=5)


@pytest.fixture(scope="session")
def prometheus_stack():
    """One exporter scraped every second by one real Prometheus for the whole session: its
    first sample takes about 5 s to show, so tests share it and use their own label values."""
    with MetricsExporter() as exporter, run_prometheus([exporter], scrape_interval="1s") as prometheus:
        prometheus.wait_for("up == 1")
        yield exporter, prometheus


def busy_chat(prometheus_stack, kmock_cluster) -> str:
    """A model `chat` with 20 waiting and 8 running in the real Prometheus, and its Deployment
    at 1 replica in kmock, in a fresh namespace, which is returned."""
    exporter, prometheus = prometheus_stack
    ns = unique_name("ns")
    exporter.set("vllm:num_requests_waiting", vllm_labels("chat", ns), 20)
    exporter.set("vllm:num_requests_running", vllm_labels("chat", ns), 8)
    prometheus.wait_for(f'vllm:num_requests_running{{namespace="{ns}"}}')
    kmock_cluster.put(deployment("chat", namespace=ns, replicas=1))
    return ns


@pytest.fixture
def daemon_files(prometheus_stack, kmock_cluster, tmp_path):
    """For `autoscaler run` in a subprocess: a model with 20 waiting and 8 running in the real
    Prometheus, its Deployment at 1 replica in kmock, and (config, kubeconfig) paths for it
    with a 1 s tick. Yields (config path, kubeconfig path, namespace)."""
    exporter, prometheus = prometheus_stack
    ns = busy_chat(prometheus_stack, kmock_cluster)
    config, kube = tmp_path / "config.yaml", tmp_path / "kubeconfig"
    config.write_text(
        yaml.safe_dump({"prometheus": {"url": prometheus.url}, "tick_interval_s": 1, "models": [model("chat", namespace=ns)]})
    )
    kube.write_text(yaml.safe_dump(kubeconfig(kmock_cluster.url)))
    yield config, kube, ns

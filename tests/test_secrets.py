"""No token or secret in any log line: the daemon runs at debug level with a Prometheus bearer
token and a Kubernetes token, once with everything answering and once with both servers
refusing it (401 and 403), and its whole output must not contain either token."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tests.builders import kubeconfig, model
from tests.conftest import busy_chat
from tests.support.faulty_proxy import FaultyProxy

PROMETHEUS_TOKEN = "prom-s3cret-7f1c2e"
KUBERNETES_TOKEN = "kube-s3cret-9a4b5d"


@pytest.mark.parametrize("refused", [False, True], ids=["answered", "refused"])
def test_no_token_reaches_the_logs(refused, prometheus_stack, kmock_cluster, tmp_path):
    _, prometheus = prometheus_stack
    ns = busy_chat(prometheus_stack, kmock_cluster)
    if refused:
        kmock_cluster.fail_next("get", f"/apis/apps/v1/namespaces/{ns}/deployments", 403)
    token_file = tmp_path / "token"
    token_file.write_text(PROMETHEUS_TOKEN)
    with FaultyProxy(prometheus.url) as proxy:
        proxy.status = 401 if refused else None
        cfg = {"prometheus": {"url": proxy.url, "auth": {"bearer_token_file": str(token_file)}},
               "models": [model("chat", namespace=ns)]}
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
        (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kubeconfig(kmock_cluster.url, token=KUBERNETES_TOKEN)))
        run = subprocess.run(
            [sys.executable, "-m", "autoscaler.cli", "--log-level", "debug", "run", "--config", str(tmp_path / "config.yaml"),
             "--kubeconfig", str(tmp_path / "kubeconfig"), "--once", "--metrics-port", "0", "--namespace", "llm-autoscaler"],
            capture_output=True, text=True, timeout=60,
        )
    output = run.stdout + run.stderr
    # Refused, the one tick could not read Prometheus: --once says so in its exit status.
    assert run.returncode == (1 if refused else 0), output
    assert ("forbidden by RBAC" in output) == refused and ("prometheus query failed" in output) == refused
    # The tokens were sent: kmock saw the Kubernetes one (the Prometheus one is tested in test_metrics_prometheus).
    assert any(r.headers.get("Authorization") == f"Bearer {KUBERNETES_TOKEN}" for r in kmock_cluster.requests())
    assert PROMETHEUS_TOKEN not in output and KUBERNETES_TOKEN not in output

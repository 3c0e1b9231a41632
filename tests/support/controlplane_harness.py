"""A real Kubernetes control plane for the tests: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and KWOK, on loopback ports, from the binaries tests/support/controlplane.py builds.

Why: kmock (tests/support/kmock_harness.py) emulates the API's paths and Status errors, but
enforces no resourceVersion conflicts, no RBAC, no schema, and its watches never expire. The
guarantees that rest on those are asserted here, against the API server itself:

* authentication: ServiceAccount tokens (TokenRequest, signed with a key pair made per
  session) for the daemon; a client certificate in ``system:masters`` for the tests' own
  admin calls (and for the controller manager, scheduler and KWOK);
* authorization: RBAC only, so a call outside deploy/rbac.yaml's Roles is a real 403;
* storage: etcd, whose revisions are the resourceVersions; ``compact_etcd()`` compacts them
  away, so a watch from an old one is answered 410 by the API server. The API server's watch
  cache is off for Deployments (``--watch-cache-sizes=deployments.apps#0``): their watches
  are served from etcd itself, which answers a compacted revision at once, where the watch
  cache would notice the compaction only at its next poll of etcd;
* controllers: the Deployment, ReplicaSet, ServiceAccount, token, namespace and garbage
  collector controllers, so a scale write turns into pods; the scheduler places them on the
  KWOK nodes by their allocatable ``nvidia.com/gpu``; KWOK marks them Running and Ready after
  the delay the pod template's annotation asks (tests/controlplane/kwok-stages.yaml);
* the KEDA ScaledObject CRD from tests/controlplane/scaledobject-crd.yaml, so ScaledObject
  writes are checked against a structural schema.

Every process is started on a free loopback port, its readiness polled (``/readyz`` or
``/healthz``), never waited for by a sleep, and ended when the session ends. Logs stay in the
session's directory; a process that does not come up fails the session with its log's tail.

Test code, not shipped.
"""
from __future__ import annotations

import base64
import json
import os
import pathlib
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import trustme
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from kubernetes import client as k8s

from tests.support.controlplane import binary
from tests.support.prom_harness import free_port

REPO = pathlib.Path(__file__).resolve().parents[2]
CRD = REPO / "tests" / "controlplane" / "scaledobject-crd.yaml"
KWOK_STAGES = REPO / "tests" / "controlplane" / "kwok-stages.yaml"
KWOK_NODE = {"kwok.x-k8s.io/node": "fake"}  # the annotation by which KWOK knows its nodes
READY_DELAY = "pod-ready.stage.kwok.x-k8s.io/delay"  # on a pod template: its cold start ("3s")
GPUS_PER_NODE = 8
NODES = 2


class ControlPlaneFailed(RuntimeError):
    pass


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen
    log_path: pathlib.Path

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout_s)


@dataclass
class ControlPlane:
    """The running control plane: its API server's URL, the CA that signed its certificate,
    and an admin identity for the tests' own calls."""

    url: str
    etcd_url: str
    workdir: pathlib.Path
    ca_file: pathlib.Path
    admin_cert_file: pathlib.Path
    admin_key_file: pathlib.Path
    admin_kubeconfig: pathlib.Path
    processes: list[_Process] = field(default_factory=list)
    _clients: list[k8s.ApiClient] = field(default_factory=list)

    # -- clients ---------------------------------------------------------------------------

    def admin_client(self) -> k8s.ApiClient:
        """An ApiClient in system:masters: for arranging a test and checking its outcome."""
        configuration = self._configuration(self.url)
        configuration.cert_file, configuration.key_file = str(self.admin_cert_file), str(self.admin_key_file)
        return self._keep(k8s.ApiClient(configuration))

    def token_client(self, token: str, *, url: str | None = None) -> k8s.ApiClient:
        """An ApiClient that authenticates with a bearer token, as the daemon's pod does with
        its ServiceAccount's. `url`: another way to the same server (a relay)."""
        configuration = self._configuration(url or self.url)
        configuration.api_key = {"authorization": token}
        configuration.api_key_prefix = {"authorization": "Bearer"}
        return self._keep(k8s.ApiClient(configuration))

    def service_account_token(self, namespace: str, name: str, *, expiration_s: int = 3600) -> str:
        """A token for ServiceAccount `namespace/name` from the TokenRequest API, signed with the
        session's key: what the kubelet mounts into the daemon's pod."""
        request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": expiration_s}}
        answer = k8s.CoreV1Api(self.admin_client()).create_namespaced_service_account_token(name, namespace, request)
        return answer.status.token

    def kubeconfig_for(self, token: str, path: pathlib.Path) -> pathlib.Path:
        """A kubeconfig file that reaches the server with `token`, for a daemon in a subprocess."""
        path.write_text(yaml.safe_dump(_kubeconfig(self.url, self.ca_file, {"token": token})))
        return path

    # -- tools -----------------------------------------------------------------------------

    def add_nodes(self, nodes: Sequence[Mapping[str, Any]]) -> None:
        """Create Nodes for KWOK (gpu_node) and wait until they are Ready and schedulable. The
        API server taints a new Node not-ready; the node lifecycle controller, which would
        lift it, is not run (it would also want kubelet heartbeats), so it is lifted here."""
        names = [node["metadata"]["name"] for node in nodes]
        self.kubectl("apply", "-f", "-", input="---\n".join(yaml.safe_dump(dict(node)) for node in nodes))
        self.kubectl("wait", "--for=condition=Ready", *(f"node/{name}" for name in names), "--timeout=60s")
        for name in names:
            taints = k8s.CoreV1Api(self.admin_client()).read_node(name).spec.taints or []
            if any(t.key == "node.kubernetes.io/not-ready" for t in taints):
                self.kubectl("taint", "node", name, "node.kubernetes.io/not-ready-")

    def kubectl(self, *args: str, check: bool = True, input: str | None = None, timeout_s: float = 120) -> subprocess.CompletedProcess:
        """kubectl as admin; fails the test with kubectl's own words when it fails."""
        done = subprocess.run([str(binary("kubectl")), f"--kubeconfig={self.admin_kubeconfig}", *args],
                              capture_output=True, text=True, input=input, timeout=timeout_s)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def etcd_revision(self) -> int:
        return int(self._etcd("/v3/kv/range", {"key": base64.b64encode(b"/registry/").decode()})["header"]["revision"])

    def compact_etcd(self) -> int:
        """Compact etcd's history up to its current revision (physically, so a watch from an
        older resourceVersion cannot be served); returns that revision."""
        revision = self.etcd_revision()
        self._etcd("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        return revision

    def _etcd(self, path: str, body: Mapping[str, Any]) -> dict:
        # etcd's gRPC gateway: the same API as etcdctl's, as JSON over HTTP on the client port.
        request = urllib.request.Request(self.etcd_url + path, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    def _configuration(self, url: str) -> k8s.Configuration:
        configuration = k8s.Configuration(host=url)
        configuration.ssl_ca_cert = str(self.ca_file)
        return configuration

    def _keep(self, api_client: k8s.ApiClient) -> k8s.ApiClient:
        self._clients.append(api_client)
        return api_client

    def close_clients(self) -> None:
        for api_client in self._clients:
            api_client.close()
        self._clients.clear()


def _kubeconfig(url: str, ca_file: pathlib.Path, user: Mapping[str, str]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": url, "certificate-authority": str(ca_file)}}],
        "users": [{"name": "test", "user": dict(user)}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
        "current-context": "test",
    }


# -- starting it -------------------------------------------------------------------------------


def _start(name: str, args: Sequence[str], workdir: pathlib.Path) -> _Process:
    log_path = workdir / f"{name}.log"
    with open(log_path, "ab") as log:
        popen = subprocess.Popen([str(binary(name)), *args], stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, cwd=workdir)
    return _Process(name, popen, log_path)


def _wait_ready(process: _Process, url: str, *, context: ssl.SSLContext | None, timeout_s: float) -> None:
    """Poll `url` until it answers 200; fail with the process's log if it exits or never does."""
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise ControlPlaneFailed(f"{process.name} exited with {process.popen.returncode}:\n{process.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as answer:
                if answer.status == 200:
                    return
        except urllib.error.HTTPError as err:
            last = f"HTTP {err.code}: {err.read()[:300]!r}"
        except (urllib.error.URLError, OSError) as err:
            last = str(err)
        time.sleep(0.1)  # a poll interval, not a wait for readiness
    raise ControlPlaneFailed(f"{process.name} not ready at {url} within {timeout_s:.0f} s ({last}):\n{process.tail()}")


def _pki(workdir: pathlib.Path) -> dict[str, pathlib.Path]:
    """A CA, the API server's serving certificate (for 127.0.0.1), an admin client certificate
    in system:masters, and the RSA key pair that signs ServiceAccount tokens."""
    pki = workdir / "pki"
    pki.mkdir()
    ca = trustme.CA()
    files = {name: pki / name for name in ("ca.crt", "server.crt", "server.key", "admin.crt", "admin.key", "sa.key", "sa.pub")}
    files["ca.crt"].write_bytes(ca.cert_pem.bytes())
    server = ca.issue_cert("127.0.0.1", "localhost", "kubernetes.default.svc", common_name="kube-apiserver")
    files["server.crt"].write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    files["server.key"].write_bytes(server.private_key_pem.bytes())
    admin = ca.issue_cert("admin", common_name="admin", organization_name="system:masters")
    files["admin.crt"].write_bytes(admin.cert_chain_pems[0].bytes())
    files["admin.key"].write_bytes(admin.private_key_pem.bytes())
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    files["sa.key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                                  serialization.NoEncryption()))
    files["sa.pub"].write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    return files


@dataclass(frozen=True)
class StartupTimes:
    """Seconds from each start to its readiness, for docs/testing.md."""

    seconds: dict[str, float]


def start_control_plane(workdir: pathlib.Path, *, nodes: int = NODES, gpus_per_node: int = GPUS_PER_NODE) -> tuple[ControlPlane, StartupTimes]:
    """Start everything in `workdir` and wait until each part is ready. The caller stops it
    with `stop_control_plane`, also when this raises (the processes started are in the
    exception's `control_plane` attribute)."""
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kubectl"):
        binary(name)  # build what is missing before any clock starts
    files = _pki(workdir)
    times: dict[str, float] = {}
    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    cp = ControlPlane(
        url=f"https://127.0.0.1:{api_port}", etcd_url=f"http://127.0.0.1:{etcd_port}", workdir=workdir,
        ca_file=files["ca.crt"], admin_cert_file=files["admin.crt"], admin_key_file=files["admin.key"],
        admin_kubeconfig=workdir / "admin.kubeconfig",
    )
    cp.admin_kubeconfig.write_text(yaml.safe_dump(_kubeconfig(
        cp.url, cp.ca_file, {"client-certificate": str(cp.admin_cert_file), "client-key": str(cp.admin_key_file)})))
    admin_tls = ssl.create_default_context(cafile=str(cp.ca_file))
    admin_tls.load_cert_chain(str(cp.admin_cert_file), str(cp.admin_key_file))
    insecure = ssl.create_default_context()
    insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE  # the components' own self-signed health ports
    try:
        started = time.monotonic()
        etcd = _start("etcd", [
            "--name=test", f"--data-dir={workdir / 'etcd'}",
            f"--listen-client-urls={cp.etcd_url}", f"--advertise-client-urls={cp.etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}", f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=test=http://127.0.0.1:{peer_port}",
            # Test data: durability across a power cut is not needed, and fsync is the slow part.
            "--unsafe-no-fsync", "--log-level=warn",
        ], workdir)
        cp.processes.append(etcd)
        _wait_ready(etcd, f"{cp.etcd_url}/readyz", context=None, timeout_s=30)
        times["etcd"] = time.monotonic() - started

        started = time.monotonic()
        apiserver = _start("kube-apiserver", [
            f"--etcd-servers={cp.etcd_url}",
            "--bind-address=127.0.0.1", f"--secure-port={api_port}", "--advertise-address=127.0.0.1",
            f"--cert-dir={workdir / 'apiserver'}",
            f"--tls-cert-file={files['server.crt']}", f"--tls-private-key-file={files['server.key']}",
            f"--client-ca-file={files['ca.crt']}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={files['sa.pub']}", f"--service-account-signing-key-file={files['sa.key']}",
            "--authorization-mode=RBAC",
            # The address range Services would take their IPs from; no traffic goes there.
            "--service-cluster-ip-range=10.0.0.0/24",
            # 127.0.0.1 may not be an Endpoints address: no endpoints for the `kubernetes` Service.
            "--endpoint-reconciler-type=none",
            "--watch-cache-sizes=deployments.apps#0",
            "--profiling=false",
        ], workdir)
        cp.processes.append(apiserver)
        _wait_ready(apiserver, f"{cp.url}/readyz", context=admin_tls, timeout_s=120)
        times["kube-apiserver"] = time.monotonic() - started

        started = time.monotonic()
        health_ports = {"kube-controller-manager": free_port(), "kube-scheduler": free_port(), "kwok": free_port()}
        manager = _start("kube-controller-manager", [
            f"--kubeconfig={cp.admin_kubeconfig}",
            "--controllers=deployment,replicaset,serviceaccount,serviceaccount-token,namespace,garbagecollector",
            f"--service-account-private-key-file={files['sa.key']}", f"--root-ca-file={files['ca.crt']}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1", f"--secure-port={health_ports['kube-controller-manager']}",
            f"--cert-dir={workdir / 'controller-manager'}",
            "--authorization-always-allow-paths=/healthz,/readyz,/livez",
        ], workdir)
        cp.processes.append(manager)
        scheduler = _start("kube-scheduler", [
            f"--kubeconfig={cp.admin_kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1", f"--secure-port={health_ports['kube-scheduler']}",
            f"--cert-dir={workdir / 'scheduler'}",
            "--authorization-always-allow-paths=/healthz,/readyz,/livez",
        ], workdir)
        cp.processes.append(scheduler)
        kwok = _start("kwok", [
            f"--kubeconfig={cp.admin_kubeconfig}", f"--config={KWOK_STAGES}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=" + ",".join(f"{k}={v}" for k, v in KWOK_NODE.items()),
            f"--server-address=127.0.0.1:{health_ports['kwok']}",
        ], workdir)
        cp.processes.append(kwok)
        for process in (manager, scheduler):
            _wait_ready(process, f"https://127.0.0.1:{health_ports[process.name]}/healthz", context=insecure, timeout_s=60)
        _wait_ready(kwok, f"http://127.0.0.1:{health_ports['kwok']}/healthz", context=None, timeout_s=60)
        times["controllers, scheduler and kwok"] = time.monotonic() - started

        started = time.monotonic()
        cp.kubectl("apply", "-f", str(CRD))
        cp.kubectl("wait", "--for=condition=Established", "crd/scaledobjects.keda.sh", "--timeout=60s")
        cp.add_nodes([gpu_node(f"kwok-gpu-{index}", gpus=gpus_per_node) for index in range(nodes)])
        times["CRD and nodes"] = time.monotonic() - started
    except BaseException as err:
        err.control_plane = cp  # type: ignore[attr-defined]
        raise
    return cp, StartupTimes({name: round(seconds, 1) for name, seconds in times.items()})


def gpu_node(name: str, *, gpus: int) -> dict:
    """A Node that KWOK plays the kubelet of, with the device plugin's allocatable nvidia.com/gpu."""
    resources = {"cpu": "96", "memory": "1000Gi", "pods": "110", "nvidia.com/gpu": str(gpus)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "annotations": dict(KWOK_NODE),
                     "labels": {"kubernetes.io/hostname": name, "type": "kwok", "gpu": "a100"}},
        "status": {"allocatable": resources, "capacity": resources},
    }


def stop_control_plane(cp: ControlPlane) -> None:
    cp.close_clients()
    for process in reversed(cp.processes):  # KWOK and the controllers first, etcd last
        process.stop()


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory) -> Iterator[ControlPlane]:
    """One control plane for the session: started once (building what the cache lacks), torn
    down at the end. Tests share it, so each works in names of its own."""
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="controlplane-"))
    try:
        cp, times = start_control_plane(workdir)
    except BaseException as err:
        started = getattr(err, "control_plane", None)
        if started is not None:
            stop_control_plane(started)
        raise
    (workdir / "startup-times.json").write_text(json.dumps(times.seconds, indent=1) + "\n")
    try:
        yield cp
    finally:
        stop_control_plane(cp)
        if os.environ.get("KEEP_CONTROLPLANE_DIR") is None:
            shutil.rmtree(workdir, ignore_errors=True)


__all__ = ["READY_DELAY", "ControlPlane", "control_plane", "gpu_node", "start_control_plane", "stop_control_plane"]

"""`autoscaler rbac`, through the CLI as a user runs it: the Roles a config's namespaces need,
their writes narrowed to its targets. (That the daemon's calls fit these Roles is
tests/test_rbac_calls.py, against the kmock API emulator.)"""

from __future__ import annotations

import subprocess
import sys

import yaml

from tests.builders import model


def rbac(tmp_path, *models, args=()):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"prometheus": {"url": "http://prometheus:9090"}, "models": list(models)}))
    return subprocess.run([sys.executable, "-m", "autoscaler.cli", "rbac", str(path), *args], capture_output=True, text=True)


def test_each_namespace_gets_a_role_whose_writes_name_only_its_targets(tmp_path):
    done = rbac(
        tmp_path,
        model("chat", namespace="a"),
        model("tail", namespace="a", target={"kind": "ScaledObject", "name": "tail-so", "mode": "pin"}),
        model("embed", namespace="b"),
        args=("-n", "autoscaling"),
    )
    assert done.returncode == 0, done.stderr
    documents = [d for d in yaml.safe_load_all(done.stdout) if d]
    roles = {d["metadata"]["namespace"]: d["rules"] for d in documents if d["kind"] == "Role"}
    assert set(roles) == {"a", "b"}
    writes = {ns: {(r["resources"][0], tuple(r.get("resourceNames", ()))) for r in rules if "patch" in r["verbs"]}
              for ns, rules in roles.items()}
    assert writes == {
        "a": {("deployments/scale", ("chat",)), ("scaledobjects", ("tail-so",))},
        "b": {("deployments/scale", ("embed",))},  # no ScaledObject target there: no ScaledObject write
    }
    bindings = [d for d in documents if d["kind"] == "RoleBinding"]
    assert {b["subjects"][0]["namespace"] for b in bindings} == {"autoscaling"}


def test_a_bad_config_is_one_clear_error_and_exit_2(tmp_path):
    done = rbac(tmp_path, {**model("chat"), "namespace": "Not_A_Name"})
    assert done.returncode == 2
    assert "namespace" in done.stderr and "Traceback" not in done.stderr

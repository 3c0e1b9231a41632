from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from autoscaler.config import ConfigError, load_config, parse_config
from tests.builders import model

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(REPO.glob("autoscaler/data/*.yaml")) + sorted(REPO.glob("examples/*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_config_loads(path):
    assert load_config(path).models


def test_defaults_come_from_the_policy_spec():
    cfg = parse_config({"models": [model("chat")]})
    policy = cfg.models[0].policy
    assert policy.kind == "hot" and policy.min_replicas == 1
    assert policy.scale_down_stabilization_s == 300
    assert cfg.tick_interval_s == 10
    assert cfg.metrics.waiting == "vllm:num_requests_waiting"


def test_long_tail_idle_timeout_is_derived_from_cold_start():
    cfg = parse_config({"models": [model("tail", kind="long-tail", policy={"cold_start_s": 90})]})
    assert cfg.models[0].policy.effective_idle_timeout_s == 360


def errors_of(data) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config(data, source="c.yaml")
    return str(err.value)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda m: m["policy"].update(max_replicas=0), "models[0].policy.max_replicas: Input should be greater than or equal to 1 (got 0)"),
        (lambda m: m["policy"].update(min_replicas=5, max_replicas=2), "min_replicas (5) must not exceed max_replicas (2)"),
        (lambda m: m["policy"].update(kind="warm"), "models[0].policy"),
        (lambda m: m["policy"].update(min_replicas=0), "models[0].policy.min_replicas: Input should be greater than or equal to 1 (got 0)"),
        (lambda m: m.update(namespace="ML_Prod"), "namespace 'ML_Prod' must be a lower-case RFC 1123 label"),
        (lambda m: m.update(name='x"}) or vector(1'), "must be a lower-case RFC 1123 label"),
        # `$` in a Python regex also matches before a trailing newline: "prod\n" passed, and no
        # namespace by that name exists, so every model in it held for good.
        (lambda m: m.update(namespace="prod\n"), "namespace 'prod\\n' must be a lower-case RFC 1123 label"),
        (lambda m: m.update(name="chat\n"), "name 'chat\\n' must be a lower-case RFC 1123 label"),
        (lambda m: m.update(target={"kind": "Deployment", "name": "chat\n"}), "target.name"),
        (lambda m: m.update(replicas=3), "models[0].replicas: unknown field"),
        (lambda m: m["policy"].update(scale_down_stabilisation_s=60), "models[0].policy.scale_down_stabilisation_s: unknown field"),
        (lambda m: m.update(target={"kind": "ScaledObject", "name": "x"}), "a ScaledObject target needs mode: bounds or pin"),
        (lambda m: m.update(target={"kind": "Deployment", "name": "x", "mode": "pin"}), "mode 'pin' applies only to kind ScaledObject"),
        (lambda m: m.update(dependencies=["vector-db"]), "models[0].dependencies: 'vector-db' is not defined"),
        (lambda m: m["policy"].update(target_waiting_per_replica=-1), "target_waiting_per_replica: Input should be greater than 0 (got -1)"),
    ],
)
def test_errors_name_the_field_the_value_and_what_is_allowed(mutate, expected):
    entry = model("chat")
    mutate(entry)
    message = errors_of({"models": [entry]})
    assert expected in message
    assert message.startswith("c.yaml: ")


def test_long_tail_to_zero_needs_a_wake_signal():
    entry = model("tail", kind="long-tail")
    del entry["wake_query"]
    assert "wake_query is not set" in errors_of({"models": [entry]})


def test_duplicate_models_are_rejected():
    assert "models[].name: 'chat' appears more than once" in errors_of({"models": [model("chat"), model("chat")]})


def test_every_problem_is_reported_at_once():
    bad = model("chat")
    bad["policy"]["max_replicas"] = 0
    bad["policy"]["tolerance"] = 2
    message = errors_of({"models": [bad], "tick_interval_s": 0})
    assert "max_replicas" in message and "tolerance" in message and "tick_interval_s" in message


@pytest.mark.parametrize(
    "data, expected",
    [
        ([1, 2], "the top level must be a mapping"),
        ({"models": []}, "models: Tuple should have at least 1 item"),
        ({"models": [model("chat")], "prometheus": {"url": "prometheus:9090"}}, "must be an http:// or https:// URL"),
        ({"models": [model("chat")], "metrics": {"waiting": "vllm num waiting"}}, "is not a Prometheus metric name"),
    ],
)
def test_top_level_errors(data, expected):
    assert expected in errors_of(data)


def test_one_bad_model_is_not_also_reported_as_no_models():
    bad = model("chat")
    bad["policy"]["nope"] = 1
    assert errors_of({"models": [bad]}).splitlines() == [
        "c.yaml: models[0].policy.nope: unknown field (value 1); check the spelling against the reference in README"
    ]


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the config"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+, column \d+"):
        load_config(bad)


def test_config_is_frozen():
    cfg = parse_config({"models": [model("chat")]})
    with pytest.raises(ValidationError, match="frozen"):
        cfg.models[0].policy.max_replicas = 3


def test_a_batch_model_loads_and_needs_a_throughput():
    entry = model("embed", kind="batch", policy={"replica_throughput_rps": 2.0}, wake_query="sum(gateway_queue)")
    for key in ("target_waiting_per_replica", "target_running_per_replica"):
        entry["policy"].pop(key)
    policy = parse_config({"models": [entry]}).models[0].policy
    assert policy.kind == "batch" and policy.min_replicas == 0 and policy.drain_deadline_s == 3600
    entry["policy"].pop("replica_throughput_rps")
    assert "models[0].policy.replica_throughput_rps: required field is missing" in errors_of({"models": [entry]})


POOL_ERRORS = {
    "both sources": ([{"name": "a100", "capacity_gpus": 8, "node_selector": {"gpu": "a100"}}], None,
                     "pools[0]: pool 'a100': set exactly one of capacity_gpus (a fixed count of GPUs) or node_selector"),
    "neither source": ([{"name": "a100"}], None, "got neither"),
    "negative capacity": ([{"name": "a100", "capacity_gpus": -1}], None,
                          "pools[0].capacity_gpus: -1 is not allowed: a pool holds at least 1 GPU"),
    # Issue 19, item 1: a pool of 0 GPUs held every model at its floor, or cut it to zero.
    "zero capacity": ([{"name": "a100", "capacity_gpus": 0}], None,
                      "pools[0].capacity_gpus: 0 is not allowed: a pool holds at least 1 GPU; for a pool whose nodes come "
                      "and go, set node_selector instead, or drop the pool"),
    "negative drop window": ([{"name": "a100", "node_selector": {"gpu": "a100"}, "capacity_drop_stabilization_s": -1}], None,
                             "pools[0].capacity_drop_stabilization_s: Input should be greater than or equal to 0 (got -1)"),
    "empty selector": ([{"name": "a100", "node_selector": {}}], None, "pools[0].node_selector"),
    "bad name": ([{"name": "A100", "capacity_gpus": 8}], None, "name 'A100' must be a lower-case RFC 1123 label"),
    "duplicate pools": ([{"name": "a100", "capacity_gpus": 8}, {"name": "a100", "capacity_gpus": 4}], None,
                        "pools[].name: 'a100' appears more than once"),
    "undefined pool": ([{"name": "a100", "capacity_gpus": 8}], "h100",
                       "models[0].pool: 'h100' is not defined in pools[]; defined: ['a100']"),
    "pool without pools": ([], "a100", "models[0].pool: 'a100' is not defined in pools[]; defined: none"),
}


@pytest.mark.parametrize(("pools", "pool", "expected"), POOL_ERRORS.values(), ids=POOL_ERRORS.keys())
def test_pool_errors_name_the_field_and_value(pools, pool, expected):
    message = errors_of({"pools": pools, "models": [model("chat", pool=pool)]})
    assert expected in message


def test_pools_load_and_models_without_one_stay_valid():
    cfg = parse_config({
        "pools": [{"name": "a100", "capacity_gpus": 16}, {"name": "h100", "node_selector": {"nvidia.com/gpu.product": "H100"}}],
        "models": [model("chat", pool="a100"), model("code")],
    })
    assert [m.pool for m in cfg.models] == ["a100", None]
    assert [p.name for p in cfg.node_pools] == ["h100"]


# -- what YAML would accept without a word --------------------------------------------------


@pytest.mark.parametrize(
    "where, value, expected",
    [
        # Lax pydantic read each of these as a number: `true` as one replica.
        ("policy.max_replicas", True, "models[0].policy.max_replicas: must be a whole number (got True)"),
        ("policy.max_replicas", "3", "models[0].policy.max_replicas: must be a whole number (got '3')"),
        ("policy.min_replicas", 2.0, "models[0].policy.min_replicas: must be a whole number (got 2.0)"),
        ("policy.cold_start_s", False, "models[0].policy.cold_start_s: must be a number (got False)"),
        ("policy.cold_start_s", float("inf"), "models[0].policy.cold_start_s: Input should be a finite number (got inf)"),
        ("tick_interval_s", "10", "tick_interval_s: must be a number (got '10')"),
        ("prometheus.timeout_s", True, "prometheus.timeout_s: must be a number (got True)"),
    ],
)
def test_a_number_field_takes_numbers_only(where, value, expected):
    data = {"models": [model("chat")]}
    target = data["models"][0] if where.startswith("policy.") else data
    *parents, field = where.split(".")
    for parent in parents:
        target = target.setdefault(parent, {})
    target[field] = value
    assert errors_of(data).splitlines() == [f"c.yaml: {expected}"]


def test_loose_numbers_are_reported_beside_every_other_error():
    bad = model("chat", policy={"max_replicas": True, "tolerance": 2})
    lines = errors_of({"models": [bad], "tick_interval_s": "10"}).splitlines()
    assert len(lines) == 3 and any("max_replicas" in line for line in lines) and any("tolerance" in line for line in lines)
    # Numbers as numbers still load: an int where a float belongs too.
    cfg = parse_config({"models": [model("chat", policy={"cold_start_s": 90, "tolerance": 0.1})], "tick_interval_s": 5})
    assert cfg.models[0].policy.cold_start_s == 90.0 and cfg.tick_interval_s == 5.0


def test_a_key_given_twice_is_an_error_naming_both_lines(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("models:\n  - name: chat\n    namespace: ml\n    namespace: prod\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (
        f"{path}: not valid YAML at line 4, column 5: key 'namespace' appears twice in one mapping (first at line 3)"
    )
    # A merge key (`<<: *anchor`) and a key overriding what it merged are not duplicates.
    path.write_text(
        "models:\n  - name: chat\n    namespace: ml\n    target: {kind: Deployment, name: chat}\n"
        "    policy: {<<: {kind: hot, max_replicas: 4, target_waiting_per_replica: 4}, max_replicas: 6}\n"
    )
    assert load_config(path).models[0].policy.max_replicas == 6


def test_a_binary_file_is_named_as_such(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00\xff\xfe")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: not a text file (byte 8 is not UTF-8); the config is YAML"


# -- a ConfigMap manifest holding the config --------------------------------------------------


CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: llm-autoscaler-config
data:
  config.yaml: |
    tick_interval_s: 20
    models:
      - name: chat
        namespace: ml
        target: {kind: Deployment, name: chat}
        policy: {kind: hot, max_replicas: 4, target_waiting_per_replica: 4}
"""


def test_a_configmap_manifest_is_read_through_its_config_key(tmp_path):
    path = tmp_path / "configmap.yaml"
    path.write_text(CONFIGMAP)
    cfg = load_config(path)
    assert cfg.tick_interval_s == 20 and [m.name for m in cfg.models] == ["chat"]


def test_errors_inside_a_configmap_name_its_key_and_the_files_line(tmp_path):
    path = tmp_path / "configmap.yaml"
    path.write_text(CONFIGMAP.replace("max_replicas: 4", "max_replicas: 0"))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).splitlines() == [
        f"{path} data.config.yaml: models[0].policy.max_replicas: Input should be greater than or equal to 1 (got 0)"
    ]
    path.write_text(CONFIGMAP.replace("        namespace: ml\n", "        namespace: [ml\n"))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path} data.config.yaml: not valid YAML at line ")
    assert "(line 11 of the file)" in str(err.value)  # where `target:` sits in the manifest


def test_a_configmap_without_a_config_key_lists_what_it_has(tmp_path):
    path = tmp_path / "configmap.yaml"
    path.write_text(CONFIGMAP.replace("  config.yaml: |", "  other.yaml: |\n    x: 1\n  settings.yaml: |"))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (
        f"{path}: a ConfigMap (llm-autoscaler-config) whose data has no config to read: expected the key config.yaml "
        "(or a single key) holding the config as text; found other.yaml, settings.yaml"
    )

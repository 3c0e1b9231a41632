"""Policy parameters: validated, frozen, closed to unknown fields, with errors that name the
field and the value."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from policies import HotSpec, LongTailSpec, PolicySpec
from policies.spec import SPEC_BY_KIND

ALL_KINDS = [PolicySpec, HotSpec, LongTailSpec]


@pytest.mark.parametrize("spec_class", ALL_KINDS)
def test_min_above_max_is_rejected_naming_both_values(spec_class):
    with pytest.raises(ValidationError) as error:
        spec_class(min_replicas=5, max_replicas=3)
    message = str(error.value)
    assert "min_replicas (5)" in message
    assert "max_replicas (3)" in message


@pytest.mark.parametrize("spec_class", ALL_KINDS)
def test_min_equal_to_max_is_accepted(spec_class):
    spec = spec_class(min_replicas=3, max_replicas=3)
    assert (spec.min_replicas, spec.max_replicas) == (3, 3)


def test_hot_with_min_replicas_zero_is_rejected():
    with pytest.raises(ValidationError) as error:
        HotSpec(min_replicas=0)
    assert "min_replicas" in str(error.value)
    assert error.value.errors()[0]["input"] == 0


def test_long_tail_may_have_min_replicas_zero():
    assert LongTailSpec(min_replicas=0).min_replicas == 0


@pytest.mark.parametrize("spec_class", ALL_KINDS)
def test_unknown_field_is_rejected(spec_class):
    with pytest.raises(ValidationError) as error:
        spec_class(downscale_delay=30)
    assert "downscale_delay" in str(error.value)
    assert error.value.errors()[0]["type"] == "extra_forbidden"


def test_a_field_of_another_kind_is_rejected():
    # idle_timeout_s belongs to long-tail models only.
    with pytest.raises(ValidationError, match="idle_timeout_s"):
        HotSpec(idle_timeout_s=600)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("target_waiting_per_replica", -1),
        ("target_waiting_per_replica", 0),
        ("target_running_per_replica", -8),
        ("min_replicas", -1),
        ("max_replicas", 0),
        ("cold_start_s", -90),
        ("tolerance", -0.1),
        ("tolerance", 1.0),
        ("stuck_start_factor", 0.5),
        ("scale_down_max_step_percent", 101),
        ("kv_cache_hold_down_above", 1.5),
        ("idle_gpu_utilization_percent", 101),
    ],
)
def test_out_of_range_values_are_rejected_naming_field_and_value(field, value):
    with pytest.raises(ValidationError) as error:
        LongTailSpec(**{field: value})
    [detail] = error.value.errors()
    assert detail["loc"] == (field,)
    assert detail["input"] == value
    assert field in str(error.value) and str(value) in str(error.value)


@pytest.mark.parametrize(("field", "value"), [("idle_timeout_s", 0), ("idle_timeout_s", -60), ("wake_threshold", -1)])
def test_long_tail_fields_are_validated(field, value):
    with pytest.raises(ValidationError, match=field):
        LongTailSpec(**{field: value})


@pytest.mark.parametrize("spec_class", ALL_KINDS)
def test_specs_are_frozen(spec_class):
    spec = spec_class()
    with pytest.raises(ValidationError, match="frozen"):
        spec.max_replicas = 3
    assert spec.max_replicas == 10


def test_specs_are_hashable_values():
    # Frozen models compare by value, so a spec can key a cache or be compared across reloads.
    assert HotSpec(max_replicas=4) == HotSpec(max_replicas=4)
    assert hash(HotSpec(max_replicas=4)) == hash(HotSpec(max_replicas=4))


@pytest.mark.parametrize(("kind", "spec_class"), [("hot", HotSpec), ("long-tail", LongTailSpec)])
def test_kinds(kind, spec_class):
    assert SPEC_BY_KIND[kind] is spec_class
    assert spec_class().kind == kind
    with pytest.raises(ValidationError):
        spec_class(kind="batch")


def test_kind_defaults_differ_where_documented():
    assert HotSpec().min_replicas == 1
    assert LongTailSpec().min_replicas == 0
    assert HotSpec().scale_up_period_s == 0.0
    assert LongTailSpec().scale_up_period_s == 30.0
    assert LongTailSpec().idle_timeout_s is None


def test_specs_load_from_plain_mappings():
    # What a config loader hands over after parsing YAML.
    spec = LongTailSpec.model_validate({"kind": "long-tail", "cold_start_s": 90, "max_replicas": 2})
    assert spec.effective_idle_timeout_s == 360.0


@pytest.mark.parametrize(
    ("field", "value"),
    [("burst_headroom_step", -0.5), ("burst_headroom_step", 11), ("burst_headroom_max", -1), ("burst_headroom_decay_s", 0)],
)
def test_hot_burst_headroom_fields_are_validated(field, value):
    with pytest.raises(ValidationError, match=field):
        HotSpec(**{field: value})

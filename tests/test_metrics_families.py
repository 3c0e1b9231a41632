"""Which wake queries make one family (one selector for all their models), and which keep a
term of their own; each family is PromQL that a real Prometheus accepts. The readings are
compared with each query's own in test_metrics_prometheus.py."""

from __future__ import annotations

import pytest

from autoscaler.metrics.families import group


def pair(template: str) -> dict[str, str]:
    return {"a": template.format(v="ns-a"), "b": template.format(v="ns-b")}


FAMILIES = [
        'gateway_requests_waiting{{model="{v}"}}',
        'sum(rate(gateway_requests_total{{model="{v}"}}[1m]))',
        'sum(rate(envoy_rq{{envoy_cluster_name="{v}", zone="z1"}}[1m])) + sum(rate(envoy_none{{envoy_cluster_name="{v}"}}[1m]))',
        'max_over_time(queue{{model="{v}"}}[5m] offset 1m) * 1e-3',
        'sum(redis_key_size{{key="batch:{v}"}})',
]


@pytest.mark.parametrize("template", FAMILIES)
def test_alike_but_for_one_labels_value_is_one_family(template):
    families, singles = group(pair(template))
    assert not singles
    [family] = families
    assert family.members in ({"ns-a": ("a",), "ns-b": ("b",)}, {"batch:ns-a": ("a",), "batch:ns-b": ("b",)})
    assert family.promql.startswith(f"sum by ({family.label}) (")
    assert "=~" in family.promql and "ns-a|" in family.promql.replace("batch:", "")


def test_every_family_is_promql_that_prometheus_evaluates(prometheus_stack):
    _, prometheus = prometheus_stack
    for template in FAMILIES:
        [family], _ = group(pair(template))
        prometheus.query(family.promql)  # raises on a parse error


@pytest.mark.parametrize(
    "template, why",
    [
        ('sum by (pod) (x{{model="{v}"}})', "a grouping of its own"),
        ('max(x{{model="{v}"}})', "an aggregation other than sum"),
        ('sum(x{{model="{v}"}}) + sum(total_queue)', "a selector without the varying label is summed across values"),
        ('sum(x{{model="{v}"}}) and on() vector(1)', "vector matching"),
        ('sum(x{{model=~"{v}"}})', "a regex matcher"),
        ('sum(x{{model="{v}", route="{v}-r"}})', "two values a member"),
        ("sum(x{{model='{v}'}})", "a single-quoted string"),
        ('histogram_quantile(0.9, sum(rate(x{{model="{v}"}}[1m])))', "a function across series"),
        ('sum(rate({{__name__="{v}", route="r"}}[1m]))', "the metric's name: rate() drops it, and the series collide"),
    ],
)
def test_anything_else_keeps_a_term_of_its_own(template, why):
    expressions = pair(template)
    families, singles = group(expressions)
    assert not families, why
    assert singles == {expressions["a"]: ("a",), expressions["b"]: ("b",)}


def test_identical_expressions_share_one_term_and_a_family_takes_each_value_once():
    families, singles = group({"a": "sum(queue)", "b": "sum(queue)", "c": 'q{m="x"}', "d": 'q{m="y"}', "e": 'q{m="x"}'})
    assert singles == {"sum(queue)": ("a", "b")}
    [family] = families
    assert family.members == {"x": ("c", "e"), "y": ("d",)}
    assert family.promql.count('"x|y"') == 1


def test_values_are_escaped_for_the_regex_so_a_dot_matches_only_a_dot():
    [family], _ = group({"a": 'q{m="llama-3.1"}', "b": 'q{m="qwen(2)"}'})
    # In the PromQL string, "\\." is the regex's "\.": Prometheus's set lookup reads it back.
    assert r'"llama-3\\.1|qwen\\(2\\)"' in family.promql

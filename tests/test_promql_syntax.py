"""The pure-Python PromQL check (autoscaler/promql_syntax.py) against Prometheus 2.42's own
parser: for every expression of the table, both accept it or both refuse it. Prometheus is
asked through /api/v1/query; a parse error is its 400 with "parse error" in the text (an
expression that parses but fails to evaluate is a 422, and counts as parsed)."""

from __future__ import annotations

import pytest
import requests

from autoscaler.promql_syntax import VECTOR, PromQLError, check

VALID = [
    'gateway_queue{model="chat"}',
    'sum(rate(gateway_requests_total{model="chat", code!~"5.."}[1m]))',
    "sum by (model) (rate(x[5m])) / on (model) group_left () sum by (model) (y)",
    "sum(x) by (a, b,)",
    "sum without (pod) (x)",
    "SUM(x)",
    "topk(3, x)",
    'count_values("v", x)',
    "quantile(0.9, x)",
    "histogram_quantile(0.99, sum by (le) (rate(latency_bucket[5m])))",
    "max_over_time(queue[10m:30s] offset 1m)",
    "max_over_time((x + y)[5m:])",
    "x offset 5m",
    "x offset -5m",
    "x @ 1700000000",
    "x @ start()",
    "rate(x[1h30m])",
    "-x ^ 2",
    "x > bool 3",
    "1 + 2 * 3",
    "x and y or z unless w",
    "x > on (a) group_left (b) y",
    "vector(1)",
    "scalar(x) * 2",
    "time() - timestamp(x)",
    'label_replace(x, "a", "$1", "b", "(.*)")',
    'label_join(x, "a", ",", "b", "c")',
    'absent(nope{job="x"})',
    "round(x)",
    "round(x, 0.5)",
    "hour()",
    "clamp(x, 0, 1)",
    "0x1F + 1e3 + .5 + Inf - NaN",
    '{__name__="x", a="b"}',
    "x{a=~\"b|c\"}",
    "x{a=`raw\\d`}",
    "deriv(x[5m])",
    "predict_linear(x[1h], 3600)",
    "holt_winters(x[1h], 0.5, 0.5)",
    "x * on() group_left y",
    "(x)",
    'x{a=~"\\\\p{Greek}+"}',  # RE2's, not Python's: Prometheus decides
    "sum",  # a metric's name, as Prometheus reads it alone
    "by",
    "sum(x{on=\"a\"})",
]
INVALID = [
    'sum(x) # the trailing comment of issue 19',
    "sum(x",
    "sum(x))",
    "rate(x)",
    "rate(x[5m]",
    "x[5m] + 1",
    "(x)[5m]",
    "x[5m][1m]",
    "x offset",
    "(x) offset 5m",
    "sum(x) offset 5m",
    "x offset 5m offset 1m",
    "1 > 2",
    "x and 1",
    "1 + on (a) 2",
    "x + bool y",
    "x and on(a) group_left y",
    "{}",
    '{a=""}',
    'x{__name__="y"}',
    "x{a=b}",
    'x{a~"b"}',
    "topk(x)",
    "sum(x, y)",
    'count_values(x, y)',
    "sum by x (y)",
    "nosuchfunction(x)",
    "RATE(x[5m])",
    "clamp(x, 1)",
    "vector(x)",
    "-x[5m]",
    'x + "string"',
    "x[1.5m]",
    "x @",
    "x y",
    "rate(x[5m:1m:1m])",
    "x ==",
    "rate(x[5m],)",
    "x[0m]",
    "x offset 0s",
    "max_over_time(x[5m:0s])",
    'x{a=~"(b|c"}',
    'x{a=~"[b"}',
    'x{a="\\p"}',  # an escape Go's strings do not have
    "",
]


@pytest.mark.parametrize("expression", VALID)
def test_accepts_what_prometheus_parses(expression):
    check(expression)


@pytest.mark.parametrize("expression", INVALID)
def test_refuses_what_prometheus_cannot_parse_saying_where(expression):
    with pytest.raises(PromQLError, match=r"^at character \d+: "):
        check(expression)


def test_agrees_with_prometheus_on_every_expression_of_the_table(prometheus_stack):
    _, prometheus = prometheus_stack
    disagreements = []
    for expression in VALID + INVALID:
        if "#" in expression:
            continue  # the daemon's own rule: Prometheus accepts a comment
        answer = requests.get(f"{prometheus.url}/api/v1/query", params={"query": expression}, timeout=5)
        refused = answer.status_code == 400 and "parse error" in answer.json().get("error", "")
        try:
            check(expression)
            ours = False
        except PromQLError:
            ours = True
        if refused != ours:
            disagreements.append((expression, answer.status_code, answer.json().get("error")))
    assert not disagreements


@pytest.mark.parametrize(
    "expression, kind",
    [("sum(x)", VECTOR), ("x", VECTOR), ("x[5m]", "range vector"), ("scalar(x)", "scalar"), ('"s"', "string"), ("1", "scalar")],
)
def test_tells_the_type_a_wake_query_must_have(expression, kind):
    assert check(expression) == kind


def test_never_refuses_what_prometheus_parses_among_the_tables_expressions_each_less_a_character(prometheus_stack):
    """Every valid expression of the table with one character deleted (about 900 near
    misses: an unclosed brace, a lost comma, a duration without its unit). Refusing what
    Prometheus parses would refuse a good config, so that direction must never happen; the
    other is allowed only for regular expressions, which RE2 judges (syntax.py)."""
    _, prometheus = prometheus_stack
    session = requests.Session()
    mutants = sorted({e[:i] + e[i + 1:] for e in VALID for i in range(len(e))} - {""})
    wrong_refusals, wrong_accepts = [], []
    for expression in mutants:
        answer = session.get(f"{prometheus.url}/api/v1/query", params={"query": expression}, timeout=5)
        error = answer.json().get("error", "") if answer.status_code == 400 else ""
        try:
            check(expression)
        except PromQLError as err:
            if "parse error" not in error:
                wrong_refusals.append((expression, str(err)))
            continue
        if "parse error" in error and "regexp" not in error:
            wrong_accepts.append((expression, error))
    assert len(mutants) > 800
    assert not wrong_refusals
    assert not wrong_accepts

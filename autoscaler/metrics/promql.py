"""PromQL for all models at once: one query per signal per tick, whatever the number of models.

Each pod-level signal is one query that returns, per (namespace, model_name), both the
aggregated value and the oldest sample timestamp behind it, told apart by an
`autoscaler_stat` label. The age decides "stale" (a sample Prometheus still returns within
its 5-minute lookback but that no scrape has refreshed).

Safety: the only values placed inside these strings are namespaces and model keys, which the
config restricts to RFC 1123 labels ([a-z0-9-]), and metric or label names restricted to
Prometheus's own grammar. vLLM's model_name values, which may hold any character, never
enter PromQL: results are grouped by them and matched in Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from autoscaler.config import Config
from autoscaler.metrics import families

STAT = "autoscaler_stat"
KEY = "autoscaler_key"


@dataclass(frozen=True, slots=True)
class Term:
    """One part of a keyed query, a valid query alone: asked alone when the whole fails, so
    one model's failing expression costs that model's reading, not every model's."""

    promql: str
    keys: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class SignalQuery:
    signal: str
    promql: str
    keyed: bool  # True: one value per KEY label; False: per (namespace, model_name)
    # Keyed only: a KEY value -> the models (or dependencies) whose reading it is.
    keys: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    terms: tuple[Term, ...] = ()  # keyed only: the parts `promql` joins with `or`
    # Pod-level only: the models whose reading this query gives; None: every model. The
    # completion rate is one query per distinct completion_window_s, each for its models.
    models: frozenset[str] | None = None


def build_queries(config: Config) -> list[SignalQuery]:
    names, labels = config.metrics, config.labels
    selector = "{" + f'{labels.namespace}=~"{"|".join(config.namespaces)}"' + "}"
    by = f"{labels.namespace}, {labels.model}"

    def pod_signal(signal: str, metric: str, aggregation: str, *, window_s: float | None = None) -> SignalQuery:
        series = f"{metric}{selector}"
        value = f"rate({series}[{_duration(window_s)}])" if window_s is not None else series
        return SignalQuery(signal, _with_age(f"{aggregation} by ({by}) ({value})", f"min by ({by}) (timestamp({series}))"), False)

    # completion_window_s is the range of each model's completion rate. Models almost always
    # share one (the default 60 s: four samples at a 15 s scrape, enough for rate(), short
    # enough to follow load), so one query serves them all; each other window adds one.
    windows: dict[float, list[str]] = {}
    for m in config.models:
        windows.setdefault(m.policy.completion_window_s, []).append(m.name)
    completion = [
        replace(pod_signal("completion_rate", names.completions, "sum", window_s=window_s),
                models=None if len(windows) == 1 else frozenset(models))
        for window_s, models in windows.items()
    ]
    # How many pods answered, as the HPA counts the pods that have metrics before it trusts
    # their sum: a pod whose scrape fails drops out of every sum, and its load with it, so 3
    # of 4 pods reporting read as a quarter less load (or all of it, for the one busy pod of
    # a long-tail model). Counted on the running series, one per pod once `group` merges a
    # data-parallel pod's engines; its age is that of the running series it counts.
    running = f"{names.running}{selector}"
    reporting_pods = SignalQuery(
        "reporting_pods",
        _with_age(f"count by ({by}) (group by ({by}, {labels.pod}) ({running}))", f"min by ({by}) (timestamp({running}))"),
        False,
    )
    queries = [
        pod_signal("waiting", names.waiting, "sum"),
        pod_signal("running", names.running, "sum"),
        reporting_pods,
        pod_signal("kv_cache_usage", names.kv_cache_usage, "max"),
        *completion,
        SignalQuery("gpu_utilization", _gpu_utilization(config, selector, by), False),
    ]
    wake = {m.name: m.wake_query for m in config.models if m.wake_query}
    if wake:
        queries.append(_keyed("wake", wake))
    saturation = {d.name: d.saturation_query for d in config.dependencies}
    if saturation:
        queries.append(_keyed("dependencies", saturation))
    return queries


def _duration(seconds: float) -> str:
    """A PromQL range: whole seconds where they are ("60s"), else milliseconds ("1500ms"), as
    PromQL durations are integers of one unit."""
    millis = max(round(seconds * 1000), 1)
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def _with_age(value: str, timestamp: str) -> str:
    return f'label_replace({value}, "{STAT}", "value", "", "") or label_replace({timestamp}, "{STAT}", "timestamp", "", "")'


def _gpu_utilization(config: Config, selector: str, by: str) -> str:
    """DCGM series carry the GPU's pod, not the model: rename DCGM's pod labels to vLLM's and
    join on (namespace, pod) with the pods that export vLLM series, taking model_name across.
    `group` gives 1 per pod whatever the vLLM value is, so a NaN gauge cannot poison the join."""
    labels = config.labels
    gpu = config.metrics.gpu_utilization

    def renamed(series: str) -> str:
        return (
            f'label_replace(label_replace({series}, "{labels.pod}", "$1", "{labels.gpu_pod}", "(.+)"), '
            f'"{labels.namespace}", "$1", "{labels.gpu_namespace}", "(.+)")'
        )

    pods = f"group by ({labels.namespace}, {labels.pod}, {labels.model}) ({config.metrics.running}{selector})"
    join = f" * on ({labels.namespace}, {labels.pod}) group_left ({labels.model}) {pods}"
    # timestamp() sits directly on the selector: on a function's result it would give the
    # evaluation time, not the scrape time.
    joined, stamped = f"({renamed(gpu)}{join})", f"({renamed(f'timestamp({gpu})')}{join})"
    return _with_age(f"avg by ({by}) {joined}", f"min by ({by}) {stamped}")


def _keyed(signal: str, expressions: dict[str, str]) -> SignalQuery:
    """One query for many user expressions (by model or dependency name), each summed to one
    value and tagged with a key. `sum` of an empty result is empty, so an expression with no
    data stays missing. Expressions alike but for one label's value are one term, summed by
    that label and keyed "<family>/<value>" (families.py says when and why); an expression
    that several names share is one term, keyed by the first name."""
    grouped, singles = families.group(expressions)
    terms = []
    for index, family in enumerate(grouped):
        promql = f'label_replace({family.promql}, "{KEY}", "{index}/$1", "{family.label}", "(.*)")'
        terms.append(Term(promql, {f"{index}/{value}": names for value, names in family.members.items()}))
    for expr, names in singles.items():
        terms.append(Term(f'label_replace(sum({expr}), "{KEY}", "{names[0]}", "", "")', {names[0]: names}))
    keys = {key: names for term in terms for key, names in term.keys.items()}
    return SignalQuery(signal, _any_of([term.promql for term in terms]), True, keys, tuple(terms))


def _any_of(terms: list[str]) -> str:
    """`a or b or c ...` as a balanced tree. A flat chain is a left-deep tree whose every `or`
    re-matches all the series to its left: n(n-1)/2 label matches for n terms, and 640 ms for
    900 wake expressions in Prometheus 2.42, against 300 ms balanced (simulations/bench_scale.py;
    the benchmark's 900 now make one family, one term). The result is the same: each term
    carries its own keys, so no two terms share a series."""
    if len(terms) <= 2:
        return " or ".join(terms)
    middle = len(terms) // 2
    return f"({_any_of(terms[:middle])}) or ({_any_of(terms[middle:])})"

"""Many models' wake queries as a few selectors: queries alike but for one label's value.

Why: a fleet's wake queries are usually one expression per model that differs only in the
model's value of one label, e.g. `sum(rate(gateway_requests_total{model="m0001"}[1m]))` for
every model. Sent as one term each (`label_replace(sum(<expr>), ...) or ...`), Prometheus 2.42
looks up, sums and relabels 900 selectors one by one: 0.3-0.5 s of a tick at 1,000 models,
the tick's largest cost (simulations/bench_scale.py). The same family as one expression,
`sum by (model) (rate(gateway_requests_total{model=~"m0001|m0002|..."}[1m]))`, reads every
member's value at once in 10-30 ms: Prometheus resolves a regex that is an alternation of
literals as a set of postings lookups, not by scanning every value of the label.

When the two are the same: every selector of the expression carries the varying label as an
equality matcher (`model="m0001"`), and nothing between a selector and the outer sum mixes
series across values of that label: only `sum` without by/without (rewritten to `sum by
(label)`), functions that act on each series alone and keep its labels (`rate`, `*_over_time`
...), arithmetic and comparison between such vectors or with numbers, `offset`. Then every
series the wider expression reads has exactly one member's value, vectors match one-to-one
on the same labels as before plus that value, and the sum for a value is the member's own
expression. Anything else (`by`, `on`, `and`, `max`, `histogram_quantile`, a selector
without the label, a value with an escape) keeps a term of its own: correct, only slower.
Members whose expressions are identical share one term.

Pure: strings in, strings out. promql.py places the results in the tick's one wake query.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

# Each keeps a series' labels and reads only that series.
PER_SERIES = frozenset({
    "rate", "irate", "increase", "delta", "idelta", "deriv", "abs", "ceil", "floor", "round",
    "avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time", "last_over_time",
})
_TOKEN = re.compile(
    r'\s*(?:(?P<string>"[^"\\]*")|(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)|(?P<number>0x[0-9a-fA-F]+|[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?(?:(?:ms|[smhdwy])[0-9]*)*)'
    r'|(?P<op>=~|!~|!=|==|>=|<=|[-+*/%^(){}\[\],=<>@]))'
)
# RE2's metacharacters, escaped as Go's regexp.QuoteMeta does (Prometheus's set lookup reads
# back exactly these escapes; Python's re.escape also escapes "-", which would defeat it).
_META = re.compile(r"([.+*?()|\[\]{}^$\\])")


@dataclass(frozen=True, slots=True)
class Family:
    """One expression for several members: `promql` is summed by `label`, whose value in
    each resulting series names the members in `members` (value -> member keys)."""

    promql: str
    label: str
    members: Mapping[str, tuple[str, ...]]


def group(expressions: Mapping[str, str]) -> tuple[list[Family], dict[str, tuple[str, ...]]]:
    """Expressions by member key -> the families found, and the rest as expression -> the
    member keys that share it (each to be a term of its own)."""
    alike: dict[tuple, list[tuple[str, list[str]]]] = defaultdict(list)
    singles: dict[str, list[str]] = defaultdict(list)
    for key, expression in expressions.items():
        tokens = _tokens(expression)
        if tokens is None:
            singles[expression].append(key)
            continue
        skeleton = tuple("\0" if t.startswith('"') else t for t in tokens)
        alike[skeleton].append((key, tokens))
    families = []
    for members in alike.values():
        family = _family(members) if len({tuple(tokens) for _, tokens in members}) > 1 else None
        if family is not None:
            families.append(family)
            continue
        for key, _ in members:
            singles[expressions[key]].append(key)
    return families, {expression: tuple(keys) for expression, keys in singles.items()}


def _tokens(expression: str) -> list[str] | None:
    tokens, position = [], 0
    expression = expression.strip()
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None or match.end() == position:
            return None  # a single-quoted string, an escape, a comment: not ours to rewrite
        tokens.append(match.group(match.lastgroup))
        position = match.end()
    return tokens


def _family(members: list[tuple[str, list[str]]]) -> Family | None:
    """Members of one skeleton: the string positions whose value differs between them must all
    be one label's equality matcher, holding in each member one value, and the skeleton must
    keep to the grammar above."""
    first = members[0][1]
    varying = [i for i, token in enumerate(first) if token.startswith('"') and any(tokens[i] != token for _, tokens in members)]
    if not all(i >= 2 and first[i - 1] == "=" for i in varying) or len({first[i - 2] for i in varying}) != 1:
        return None
    label = first[varying[0] - 2]
    if label == "__name__":
        # Members that differ in the metric's name are different series families: a function
        # drops the name, so `rate({__name__=~"a|b"}[1m])` gives two series with one label
        # set, which Prometheus refuses ("vector cannot contain metrics with the same
        # labelset"), and `sum by (__name__)` of the result has no name left to key by.
        return None
    values: dict[str, list[str]] = defaultdict(list)
    for key, tokens in members:
        own = {tokens[i] for i in varying}
        if len(own) != 1:
            return None
        values[own.pop()[1:-1]].append(key)
    rewritten = _rewrite(first, varying=set(varying), label=label, values=list(values))
    if rewritten is None:
        return None
    return Family(f"sum by ({label}) ({rewritten})", label, {value: tuple(keys) for value, keys in values.items()})


def _rewrite(tokens: list[str], *, varying: set[int], label: str, values: list[str]) -> str | None:
    """The skeleton with each varying matcher widened to the set of values and each sum kept
    by the label, or None where the grammar is not kept."""
    alternation = '"' + "|".join(_META.sub(r"\\\\\1", value) for value in values) + '"'
    out: list[str] = []
    braces = brackets = 0
    selector_has_label = True
    for i, token in enumerate(tokens):
        following = tokens[i + 1] if i + 1 < len(tokens) else ""
        if token == "{":
            braces, selector_has_label = braces + 1, False
        elif token == "}":
            if not selector_has_label:
                return None  # a selector without the varying label would be summed across values
            braces -= 1
        elif token in ("[", "]"):
            brackets += 1 if token == "[" else -1
        elif braces or brackets or token.startswith('"') or token[0].isdigit():
            pass  # label names and matchers, durations, numbers
        elif token[0].isalpha() or token[0] in "_:":
            if following == "(" and token == "sum":
                out.append(f"sum by ({label})")
                continue
            if following == "(" and token not in PER_SERIES:
                return None
            if following not in ("(", "{") and token != "offset":
                return None  # by, without, on, and, or a metric without a selector
        elif token not in ("(", ")", "+", "-", "*", "/", ">", "<", ">=", "<=", "==", "!=", ","):
            return None
        if i in varying:
            if braces != 1:
                return None
            out[-1] = "=~"
            out.append(alternation)
            selector_has_label = True
            continue
        out.append(token)
    return _render(out)


def _render(tokens: list[str]) -> str:
    """Tokens as PromQL, a space only between two words (`offset 1m`, `sum by`)."""
    text = tokens[0]
    for previous, token in zip(tokens, tokens[1:]):
        word = (previous[-1].isalnum() or previous[-1] in "_:") and (token[0].isalnum() or token[0] in "_:")
        text += (" " if word else "") + token
    return text

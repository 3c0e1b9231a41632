"""Whether a user's PromQL expression parses, as Prometheus 2.42's parser decides, and what type
it gives: pure, so `check-config` and a reload refuse a bad wake or saturation query with no
server at hand.

Why here and not Prometheus: check-config runs where no Prometheus is (CI, a laptop), and a
reload must not depend on the server it is about to read being up. `promtool` would answer
exactly, but the image does not carry it. So this is a parser of PromQL's grammar (lexer,
operator precedence, selectors, ranges, subqueries, offset and @, aggregations with by or
without, vector matching, the functions and their argument types), checked against a real
Prometheus in tests/test_promql_syntax.py. Where it is unsure it accepts: a regular
expression is checked by Prometheus only (RE2 is not Python's re), and a function newer
than 2.42 passes by name. What it lets through, the daemon's fallback still confines to the
models whose expressions fail (prometheus.py asks a refused query's terms one by one).

Beyond the grammar, one rule of the daemon's own: no `#` comment. Prometheus accepts one,
but a comment runs to the end of the line, and the daemon writes each expression inside a
larger query (`label_replace(sum(<expr>), ...) or ...`), where a trailing comment swallows
the rest and breaks every model's wake query at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SCALAR, VECTOR, MATRIX, STRING = "scalar", "instant vector", "range vector", "string"

_V, _M, _S, _T = VECTOR, MATRIX, SCALAR, STRING
# name -> (argument types, how many of the last may be left out (-1: the last repeats), result)
FUNCTIONS: dict[str, tuple[tuple[str, ...], int, str]] = {
    **{name: ((_V,), 0, _V) for name in (
        "abs", "absent", "acos", "acosh", "asin", "asinh", "atan", "atanh", "ceil", "cos", "cosh", "deg", "exp",
        "floor", "histogram_count", "histogram_sum", "ln", "log10", "log2", "rad", "sgn", "sin", "sinh", "sort",
        "sort_desc", "sqrt", "tan", "tanh", "timestamp",
    )},
    **{name: ((_M,), 0, _V) for name in (
        "absent_over_time", "avg_over_time", "changes", "count_over_time", "delta", "deriv", "idelta", "increase",
        "irate", "last_over_time", "max_over_time", "min_over_time", "present_over_time", "rate", "resets",
        "stddev_over_time", "stdvar_over_time", "sum_over_time",
    )},
    **{name: ((_V,), 1, _V) for name in (
        "day_of_month", "day_of_week", "day_of_year", "days_in_month", "hour", "minute", "month", "year",
    )},
    "clamp": ((_V, _S, _S), 0, _V),
    "clamp_max": ((_V, _S), 0, _V),
    "clamp_min": ((_V, _S), 0, _V),
    "histogram_fraction": ((_S, _S, _V), 0, _V),
    "histogram_quantile": ((_S, _V), 0, _V),
    "holt_winters": ((_M, _S, _S), 0, _V),
    "label_join": ((_V, _T, _T, _T), -1, _V),
    "label_replace": ((_V, _T, _T, _T, _T), 0, _V),
    "pi": ((), 0, _S),
    "predict_linear": ((_M, _S), 0, _V),
    "quantile_over_time": ((_S, _M), 0, _V),
    "round": ((_V, _S), 1, _V),
    "scalar": ((_V,), 0, _S),
    "time": ((), 0, _S),
    "vector": ((_S,), 0, _V),
}
# Functions of later Prometheus releases: accepted by name, their arguments not checked, so a
# config written for a newer server is not refused here.
NEWER_FUNCTIONS = frozenset({
    "double_exponential_smoothing", "histogram_avg", "histogram_stddev", "histogram_stdvar", "info",
    "mad_over_time", "sort_by_label", "sort_by_label_desc", "ts_of_max_over_time", "ts_of_min_over_time",
    "ts_of_last_over_time", "first_over_time", "ts_of_first_over_time", "limitk", "limit_ratio",
})
AGGREGATIONS = {
    "sum": None, "avg": None, "count": None, "min": None, "max": None, "group": None, "stddev": None,
    "stdvar": None, "topk": SCALAR, "bottomk": SCALAR, "quantile": SCALAR, "count_values": STRING,
}
# Binary operators by precedence, lowest first, as in Prometheus's grammar.
_PRECEDENCE = {
    "or": 1, "and": 2, "unless": 2,
    "==": 3, "!=": 3, "<=": 3, "<": 3, ">=": 3, ">": 3,
    "+": 4, "-": 4, "*": 5, "/": 5, "%": 5, "atan2": 5, "^": 6,
}
_COMPARISONS = frozenset({"==", "!=", "<=", "<", ">=", ">"})
_SET_OPERATORS = frozenset({"and", "or", "unless"})

_TOKENS = re.compile(
    r"""(?P<space>\s+)
      | (?P<comment>\#)
      | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`[^`]*`)
      | (?P<duration>(?:[0-9]+(?:ms|[smhdwy]))+(?![a-zA-Z0-9_.]))
      | (?P<number>(?:0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)(?![a-zA-Z0-9_:.]))
      | (?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)
      | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^(){}\[\],=<>@:])""",
    re.VERBOSE,
)
_COLON = re.compile(":")
# Go's escapes in a quoted string: a backslash before anything else is refused.
_BAD_ESCAPE = re.compile(r"""(?:^|[^\\])(?:\\\\)*(\\(?![abfnrtv\\'"]|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3}).)""")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class PromQLError(ValueError):
    """Where (1-based character) and what is wrong in the expression."""


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # string, duration, number, name, op, end
    text: str
    at: int  # offset in the expression


def check(expression: str) -> str:
    """The expression's type (SCALAR, VECTOR, MATRIX, STRING), or PromQLError saying what is
    wrong where."""
    parser = _Parser(_lex(expression))
    kind = parser.expression()
    parser.expect_end()
    return kind


def _lex(expression: str) -> list[_Token]:
    tokens, position = [], 0
    while position < len(expression):
        match = _TOKENS.match(expression, position)
        if match is None:
            raise PromQLError(f"at character {position + 1}: unexpected {expression[position]!r}")
        kind = match.lastgroup
        if expression[position] == ":" and tokens and tokens[-1].kind == "duration":
            kind, match = "op", _COLON.match(expression, position)  # [5m:1m], not a name ":1m"
        if kind == "comment":
            raise PromQLError(
                f"at character {position + 1}: a '#' comment; the daemon places the expression inside a larger query, "
                "where a comment would swallow the rest of it: remove the comment"
            )
        if kind == "string" and match.group()[0] != "`" and (bad := _BAD_ESCAPE.search(match.group())):
            raise PromQLError(f"at character {position + bad.start(1) + 1}: unknown escape sequence {bad.group(1)!r}")
        if kind != "space":
            tokens.append(_Token(kind, match.group(), position))
        position = match.end()
    tokens.append(_Token("end", "", len(expression)))
    return tokens


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens, self._index = tokens, 0

    # --- tokens
    @property
    def _next(self) -> _Token:
        return self._tokens[self._index]

    def _take(self) -> _Token:
        token = self._tokens[self._index]
        self._index += 1
        return token

    def _is(self, text: str) -> bool:
        token = self._next
        return token.kind in ("op", "name") and (token.text if token.kind == "op" else token.text.lower()) == text

    def _expect(self, text: str, what: str) -> _Token:
        if not self._is(text):
            self._fail(f"expected {text!r} {what}")
        return self._take()

    def _fail(self, message: str, token: _Token | None = None) -> None:
        """A syntax error at the next token (what was found is said), or, given the token it
        concerns, a type or rule error there."""
        if token is not None:
            raise PromQLError(f"at character {token.at + 1}: {message}")
        token = self._next
        found = "the end of the expression" if token.kind == "end" else repr(token.text)
        raise PromQLError(f"at character {token.at + 1}: {message}, found {found}")

    def expect_end(self) -> None:
        if self._next.kind != "end":
            self._fail("expected an operator or the end of the expression")

    # --- expressions
    def expression(self, min_precedence: int = 1) -> str:
        left = self._unary()
        while True:
            token = self._next
            op = token.text.lower() if token.kind == "name" else token.text if token.kind == "op" else ""
            precedence = _PRECEDENCE.get(op)
            if precedence is None or precedence < min_precedence:
                return left
            self._take()
            returns_bool = False
            if self._is("bool"):
                self._take()
                if op not in _COMPARISONS:
                    self._fail("bool modifier can only be used on comparison operators", token)
                returns_bool = True
            matching = self._vector_matching(op)
            # ^ is right-associative: its right side may hold another ^.
            right = self.expression(precedence if op == "^" else precedence + 1)
            left = self._binary(op, left, right, returns_bool=returns_bool, matching=matching, token=token)

    def _vector_matching(self, op: str) -> str | None:
        if not (self._is("on") or self._is("ignoring")):
            return None
        matching = self._take().text.lower()
        self._labels("on/ignoring")
        if self._is("group_left") or self._is("group_right"):
            group = self._take()
            if op in _SET_OPERATORS:
                self._fail(f"no grouping allowed for {op!r} operation", group)
            if self._is("("):
                self._labels(group.text)
        return matching

    def _binary(self, op: str, left: str, right: str, *, returns_bool: bool, matching: str | None, token: _Token) -> str:
        for side in (left, right):
            if side not in (SCALAR, VECTOR):
                self._fail(f"binary expression must contain only scalar and instant vector types, not a {side}", token)
        if matching is not None and not (left == right == VECTOR):
            self._fail("vector matching only allowed between instant vectors", token)
        if op in _SET_OPERATORS and not (left == right == VECTOR):
            self._fail(f"set operator {op!r} not allowed in binary scalar expression", token)
        if op in _COMPARISONS and left == right == SCALAR and not returns_bool:
            self._fail("comparisons between scalars must use BOOL modifier", token)
        return VECTOR if VECTOR in (left, right) else SCALAR

    def _unary(self) -> str:
        if self._is("-") or self._is("+"):
            token = self._take()
            # Unary minus binds as * does: -a ^ b is -(a ^ b), -a * b is (-a) * b.
            kind = self.expression(_PRECEDENCE["^"])
            if kind not in (SCALAR, VECTOR):
                self._fail(f"unary expression only allowed on expressions of type scalar or instant vector, not a {kind}", token)
            return kind
        return self._postfix(self._primary())

    def _postfix(self, primary: tuple[str, str]) -> str:
        """Ranges, subqueries, offset and @ after a primary. `what` tells selectors (which
        take a range) from other expressions (which take only a subquery)."""
        kind, what = primary
        offset = at = False
        while True:
            token = self._next
            if self._is("["):
                self._take()
                if kind != VECTOR:
                    self._fail(f"subquery is only allowed on instant vector, got {kind}", token)
                self._duration("in the range")
                if self._is(":"):
                    self._take()
                    if self._next.kind == "duration":
                        self._duration("as the step")
                    kind, what = MATRIX, "subquery"
                else:
                    if what != "selector":
                        self._fail("ranges only allowed for vector selectors", token)
                    if offset or at:
                        self._fail("no offset or @ modifiers allowed before range", token)
                    kind, what = MATRIX, "matrix"
                self._expect("]", "to close the range")
                offset = at = False
            elif self._is("offset"):
                self._take()
                if what not in ("selector", "matrix", "subquery"):
                    self._fail("offset modifier must be preceded by an instant vector selector or range vector selector or a subquery", token)
                if offset:
                    self._fail("offset may not be set multiple times", token)
                if self._is("-") or self._is("+"):
                    self._take()
                self._duration("after offset")
                offset = True
            elif self._is("@"):
                self._take()
                if what not in ("selector", "matrix", "subquery"):
                    self._fail("@ modifier must be preceded by an instant vector selector or range vector selector or a subquery", token)
                if at:
                    self._fail("@ <timestamp> may not be set multiple times", token)
                if (self._is("start") or self._is("end")) and self._tokens[self._index + 1].text == "(":
                    self._take(), self._take()
                    self._expect(")", "after start( or end(")
                else:
                    if self._is("-") or self._is("+"):
                        self._take()
                    if self._next.kind != "number":
                        self._fail("expected a timestamp after @")
                    self._take()
                at = True
            else:
                return kind

    def _duration(self, where: str) -> None:
        if self._next.kind != "duration":
            self._fail(f"expected a duration {where} (e.g. 5m)")
        token = self._take()
        if not any(c in "123456789" for c in token.text):
            self._fail("duration must be greater than 0", token)

    def _primary(self) -> tuple[str, str]:
        token = self._next
        if token.kind == "number":
            self._take()
            return SCALAR, "number"
        if token.kind == "string":
            self._take()
            return STRING, "string"
        if token.kind == "duration":
            self._fail("a duration is not a number here")
        if self._is("("):
            self._take()
            kind = self.expression()
            self._expect(")", "to close the parenthesis")
            return kind, "parens"
        if self._is("{"):
            self._selector(None)
            return VECTOR, "selector"
        if token.kind == "name":
            word = token.text.lower()
            if word in ("inf", "nan"):
                self._take()
                return SCALAR, "number"
            following = self._tokens[self._index + 1]
            if word in AGGREGATIONS and following.text.lower() in ("(", "by", "without"):
                return self._aggregation(), "aggregation"
            if following.text == "(":
                return self._call(), "call"
            # Any other word is a metric's name, keywords too: Prometheus reads `sum` or `by`
            # alone as a selector.
            self._take()
            self._selector(token.text) if self._is("{") else None
            return VECTOR, "selector"
        self._fail("expected an expression")
        raise AssertionError  # unreachable: _fail raises

    def _selector(self, name: str | None) -> None:
        opening = self._expect("{", "to open the label matchers")
        has_name, matches_something = name is not None, name is not None
        while not self._is("}"):
            label = self._take()
            if label.kind != "name" or not _LABEL_NAME.match(label.text):
                self._fail(f"expected a label name in the matchers, found {label.text!r}", label)
            op = self._next
            if op.text not in ("=", "!=", "=~", "!~"):
                self._fail("expected a label matcher operator (=, !=, =~, !~)")
            self._take()
            value = self._next
            if value.kind != "string":
                self._fail("expected a quoted string as the matcher's value")
            self._take()
            if label.text == "__name__":
                if has_name:
                    self._fail("metric name must not be set twice", label)
                has_name = op.text == "="
            if op.text in ("=~", "!~") and (problem := _regex_problem(_unquote(value.text))):
                self._fail(f"error parsing regexp: {problem}", value)
            matches_something = matches_something or not _matches_empty(op.text, _unquote(value.text))
            if not self._is(","):
                break
            self._take()
        self._expect("}", "to close the label matchers")
        if not matches_something:
            self._fail("vector selector must contain at least one non-empty matcher", opening)

    def _call(self) -> str:
        token = self._take()
        name = token.text
        self._expect("(", f"after {name}")
        kinds, tokens = [], []
        while not self._is(")"):
            tokens.append(self._next)
            kinds.append(self.expression())
            if not self._is(","):
                break
            comma = self._take()
            if self._is(")"):
                self._fail("trailing commas not allowed in function call args", comma)
        self._expect(")", f"to close the call to {name}")
        if name in NEWER_FUNCTIONS:
            return VECTOR
        if name not in FUNCTIONS:
            self._fail(f"unknown function with name {name!r}", token)
        wanted, optional, result = FUNCTIONS[name]
        least = len(wanted) - (optional if optional > 0 else 0)
        if len(kinds) < least or (optional >= 0 and len(kinds) > len(wanted)):
            expected = f"{least} to {len(wanted)}" if least != len(wanted) else f"at least {least}" if optional < 0 else str(least)
            self._fail(f"expected {expected} argument(s) in call to {name!r}, got {len(kinds)}", token)
        for i, (kind, where) in enumerate(zip(kinds, tokens)):
            expected = wanted[min(i, len(wanted) - 1)]
            if kind != expected:
                self._fail(f"expected type {expected} in call to function {name!r}, got {kind}", where)
        return result

    def _aggregation(self) -> str:
        token = self._take()
        word = token.text.lower()
        grouped = self._grouping()
        self._expect("(", f"after {word}")
        parameter = AGGREGATIONS[word]
        if parameter is not None:
            at = self._next
            kind = self.expression()
            if kind != parameter:
                self._fail(f"expected type {parameter} in aggregation parameter, got {kind}", at)
            self._expect(",", f"after the parameter of {word}")
        at = self._next
        kind = self.expression()
        if kind != VECTOR:
            self._fail(f"expected type instant vector in aggregation expression, got {kind}", at)
        self._expect(")", f"to close {word}(")
        if not grouped:
            self._grouping()
        return VECTOR

    def _grouping(self) -> bool:
        if not (self._is("by") or self._is("without")):
            return False
        word = self._take().text.lower()
        self._labels(word)
        return True

    def _labels(self, after: str) -> None:
        self._expect("(", f"after {after}")
        while not self._is(")"):
            label = self._take()
            if label.kind != "name" or not _LABEL_NAME.match(label.text):
                self._fail(f"expected a label name in the grouping, found {label.text!r}", label)
            if not self._is(","):
                break
            self._take()
        self._expect(")", "to close the label list")


def _unquote(text: str) -> str:
    if text.startswith("`"):
        return text[1:-1]
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def _matches_empty(op: str, value: str) -> bool:
    if op == "=":
        return value == ""
    if op == "!=":
        return value != ""
    try:
        matches = re.fullmatch(value, "") is not None
    except re.error:
        return False  # RE2 is Prometheus's to judge; do not refuse on Python's dialect
    return matches if op == "=~" else not matches


# Python's re and Prometheus's RE2 differ in their extensions (RE2 has \\p{Greek} and no
# possessive a*+), but not in these: an expression that leaves a group or a class open.
_UNBALANCED = ("missing )", "unbalanced parenthesis", "unterminated character set")


def _regex_problem(pattern: str) -> str | None:
    try:
        re.compile(pattern)
    except re.error as err:
        return str(err) if str(err).startswith(_UNBALANCED) else None
    return None

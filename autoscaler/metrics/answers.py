"""Prometheus's instant-query answer, checked before anything in it is believed: pure, bytes in,
samples out.

An answer that is not what Prometheus sends for an instant vector (not JSON, a scalar or a
matrix, no `data`, a null metric, a value that is not a number in a string) is refused whole,
as MalformedAnswer: one part of it wrong says the rest cannot be trusted either, and the
signal reads "no data" this tick. A well-formed answer's values that our signals cannot be
(NaN, infinities, negatives) are refused one by one later, by the adapter, since Prometheus
does send those (a NaN gauge, a division by zero).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping


class MalformedAnswer(ValueError):
    """The answer is not a Prometheus instant vector; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Sample:
    metric: Mapping[str, str]
    value: str  # as Prometheus wrote it: "12", "NaN", "+Inf"; checked to parse as a float


def parse_vector(body: bytes) -> list[Sample]:
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise MalformedAnswer(f"not JSON: {err}") from None
    if not isinstance(answer, dict):
        raise MalformedAnswer(f"the answer is a JSON {_kind(answer)}, not an object")
    if answer.get("status") != "success":
        raise MalformedAnswer(f"status is {answer.get('status')!r}, not 'success'")
    data = answer.get("data")
    if not isinstance(data, dict):
        raise MalformedAnswer(f"'data' is {_kind(data)}, not an object")
    if data.get("resultType") != "vector":
        raise MalformedAnswer(f"resultType is {data.get('resultType')!r}, not 'vector' (an instant vector)")
    result = data.get("result")
    if not isinstance(result, list):
        raise MalformedAnswer(f"'data.result' is {_kind(result)}, not a list")
    return [_sample(i, item) for i, item in enumerate(result)]


def _sample(i: int, item: Any) -> Sample:
    where = f"data.result[{i}]"
    if not isinstance(item, dict):
        raise MalformedAnswer(f"{where} is {_kind(item)}, not an object")
    metric = item.get("metric")
    if not isinstance(metric, dict) or not all(isinstance(v, str) for v in metric.values()):
        raise MalformedAnswer(f"{where}.metric is {_kind(metric)}, not an object of label names to strings")
    pair = item.get("value")
    if not (isinstance(pair, list) and len(pair) == 2):
        raise MalformedAnswer(f"{where}.value is {_kind(pair)}, not a [time, \"value\"] pair")
    at, value = pair
    if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
        raise MalformedAnswer(f"{where}.value's time {at!r} is not a finite number")
    if not isinstance(value, str):
        raise MalformedAnswer(f"{where}.value's sample is {_kind(value)}, not a number in a string")
    try:
        float(value)
    except ValueError:
        raise MalformedAnswer(f"{where}.value's sample {value[:40]!r} is not a number") from None
    return Sample(metric, value)


def _kind(value: Any) -> str:
    if value is None:
        return "null (or absent)"
    return {dict: "object", list: "list", str: "string", bool: "boolean"}.get(type(value), "number")

"""Signals from a recorded trace, for replay: the same readings Prometheus would have given.

Native format (CSV, optionally gzipped), one sample per row, header required:

    time_s,name,signal,value
    0.0,chat,waiting,3
    0.0,chat,running,41
    0.0,vector-db,saturation,0.42

- time_s: seconds (any origin; replay runs from the first to the last sample).
- name: the model key from the config, or a dependency name for the `saturation` signal.
- signal: waiting, running, kv_cache_usage (0..1), gpu_utilization (percent, 0..100),
  completion_rate (requests finished per second), wake, replicas (the recorded count, for
  comparison), or saturation.
- value: a finite, non-negative number.

A sample holds until the next one of its series, as in Prometheus: older than the config's
prometheus.stale_after_s it reads as stale, older than Prometheus's 5-minute lookback as no
data. Rows may come in any order.

No pods are counted (reporting_pods is None, the partial-data guard off): replay compares
no recorded pod count with its own replicas (autoscaler/replay.py says why).

Also read: Prometheus `query_range` responses saved as one JSON object keyed by signal name
(`{"waiting": <response>, "running": <response>, ...}`), each series naming its model by the
configured (namespace, model_name) labels or by an `autoscaler_key` label (a model's name, or
a key of the daemon's own wake query, which names the models it stands for).
"""

from __future__ import annotations

import csv
import gzip
from bisect import bisect_right
import io
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autoscaler.config import Config
from autoscaler.metrics import SIGNALS, ModelSignals, Signals
from autoscaler.metrics.promql import KEY, build_queries
from policies.signals import Freshness, Reading

LOOKBACK_S = 300.0  # Prometheus's default --query.lookback-delta
# Every model signal but the pod count, in SIGNALS's order (ModelSignals's fields).
RECORDED = tuple(signal for signal in SIGNALS if signal != "reporting_pods")
MODEL_SIGNALS = frozenset(RECORDED)
ALL_SIGNALS = MODEL_SIGNALS | {"replicas", "saturation"}
COLUMNS = ("time_s", "name", "signal", "value")
# The most a signal can be, beside the floor of 0 every signal has: a KV-cache use of 7 or a
# GPU at 500% is a unit mistake (percent for a fraction, a sum over GPUs), and read as it is it
# would hold every scale-down of that model.
MAXIMA = {"kv_cache_usage": (1.0, "a fraction of the KV cache, 0 to 1"), "gpu_utilization": (100.0, "a percent, 0 to 100")}


class TraceError(Exception):
    """A bad trace file: the message names the file, the line or series, and what is allowed."""


@dataclass(frozen=True)
class Series:
    times: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        # Plain lists for lookups: bisect on a list costs a fraction of a numpy call for one
        # value, and replay makes one lookup per model, signal and tick.
        object.__setattr__(self, "_times", self.times.tolist())
        object.__setattr__(self, "_values", self.values.tolist())

    def at(self, now: float) -> tuple[float, float] | None:
        """The last sample at or before `now`, as (age_s, value)."""
        i = bisect_right(self._times, now) - 1
        if i < 0:
            return None
        return now - self._times[i], self._values[i]


@dataclass(frozen=True)
class RecordedTrace:
    series: dict[tuple[str, str], Series]

    @property
    def start_s(self) -> float:
        return min(float(s.times[0]) for s in self.series.values())

    @property
    def end_s(self) -> float:
        return max(float(s.times[-1]) for s in self.series.values())

    @property
    def names(self) -> set[str]:
        return {name for name, _ in self.series}

    def recorded_replicas(self, name: str) -> Series | None:
        return self.series.get((name, "replicas"))


def load_trace(path: Path | str, config: Config | None = None) -> RecordedTrace:
    path = Path(path)
    if path.suffix == ".json":
        if config is None:
            raise TraceError(f"{path}: a query_range JSON trace needs a config to map series to models")
        return load_query_range_json(path, config)
    return load_native_csv(path)


def load_native_csv(path: Path) -> RecordedTrace:
    try:
        raw = path.read_bytes()
        text = gzip.decompress(raw).decode() if raw[:2] == b"\x1f\x8b" else raw.decode()
    except (OSError, gzip.BadGzipFile, UnicodeDecodeError) as err:
        raise TraceError(f"{path}: cannot read the trace: {err}") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != COLUMNS:
        raise TraceError(f"{path}: line 1: the header must be {','.join(COLUMNS)}, got {','.join(header or [])!r}")
    samples: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != 4:
            raise TraceError(f"{path}: line {line}: expected 4 fields ({','.join(COLUMNS)}), got {len(row)}")
        time_text, name, signal, value_text = (field.strip() for field in row)
        time_s = _number(path, f"line {line}", "time_s", time_text, allow_negative=True)
        if signal not in ALL_SIGNALS:
            raise TraceError(f"{path}: line {line}: signal {signal!r} is not one of {', '.join(sorted(ALL_SIGNALS))}")
        if not name:
            raise TraceError(f"{path}: line {line}: name is empty; it must name a model or a dependency")
        samples[(name, signal)].append((time_s, _number(path, f"line {line}", "value", value_text, signal=signal)))
    if not samples:
        raise TraceError(f"{path}: the trace holds no samples")
    return RecordedTrace({key: _series(points) for key, points in samples.items()})


def load_query_range_json(path: Path, config: Config) -> RecordedTrace:
    try:
        responses = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise TraceError(f"{path}: cannot read the trace as JSON: {err}") from None
    if not isinstance(responses, dict):
        raise TraceError(f"{path}: expected an object keyed by signal name ({', '.join(sorted(ALL_SIGNALS))})")
    by_labels = {(m.namespace, m.label_value): m.name for m in config.models}
    keys = {key: names for query in build_queries(config) for key, names in query.keys.items()}
    labels = config.labels
    samples: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for signal, response in responses.items():
        if signal not in ALL_SIGNALS:
            raise TraceError(f"{path}: key {signal!r} is not a signal; allowed: {', '.join(sorted(ALL_SIGNALS))}")
        try:
            result = response["data"]["result"]
            if response["data"]["resultType"] != "matrix":
                raise TypeError
        except (KeyError, TypeError):
            raise TraceError(f"{path}: {signal}: not a query_range response (data.resultType must be 'matrix')") from None
        for series in result:
            metric = series.get("metric", {})
            key = metric.get(KEY)
            if key is not None:  # the daemon's own keys name their models; any other is a name
                names = keys.get(key, (key,))
            else:
                name = by_labels.get((metric.get(labels.namespace), metric.get(labels.model)))
                if name is None:
                    continue
                names = (name,)
            for index, point in enumerate(series.get("values", [])):
                where = f"{signal} series {names[0]!r} point {index}"
                sample = (
                    _number(path, where, "time", point[0], allow_negative=True),
                    _number(path, where, "value", point[1], signal=signal),
                )
                for name in names:
                    samples[(name, signal)].append(sample)
    if not samples:
        raise TraceError(f"{path}: no series matched a configured model")
    return RecordedTrace({key: _series(points) for key, points in samples.items()})


def _number(
    path: Path, where: str, field: str, text: object, *, allow_negative: bool = False, signal: str | None = None
) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise TraceError(f"{path}: {where}: {field} {text!r} is not a number") from None
    if not math.isfinite(value) or (value < 0 and not allow_negative):
        allowed = "a finite number" if allow_negative else "a finite, non-negative number"
        raise TraceError(f"{path}: {where}: {field} {text!r} is not allowed; it must be {allowed}")
    if signal in MAXIMA and value > MAXIMA[signal][0]:
        raise TraceError(f"{path}: {where}: {signal} {field} {text!r} is not allowed; it must be {MAXIMA[signal][1]}")
    return value


def _series(points: list[tuple[float, float]]) -> Series:
    points.sort(key=lambda p: p[0])
    array = np.asarray(points, dtype=float)
    return Series(times=array[:, 0], values=array[:, 1])


class RecordedSource:
    """A MetricsSource over a RecordedTrace.

    A tick reads every series of every model at once: one numpy search over all the trace's
    series (`_Stacked`) rather than one bisect and a few Python calls per series, which cost
    about 35 us per model and tick, half of a replay's time (./dev bench). Replay, which knows
    its ticks up front, has them all searched at once (`prefetch`).
    """

    def __init__(self, trace: RecordedTrace, config: Config) -> None:
        self._stale_after_s = config.prometheus.stale_after_s
        self._models = [m.name for m in config.models]
        self._dependencies = [d.name for d in config.dependencies]
        keys = [(model, signal) for model in self._models for signal in RECORDED]
        keys += [(name, "saturation") for name in self._dependencies]
        self._stack = _Stacked([trace.series.get(key) for key in keys])

    def prefetch(self, instants: Sequence[float]) -> None:
        """Find the samples of all these instants in one search, for fetch_signals at each of
        them later: replay knows its ticks up front, and a search per tick costs about 60 us,
        more than a tick of 2 models spends deciding."""
        self._stack.prefetch(instants)

    def fetch_signals(self, *, now: float) -> Signals:
        readings = self._stack.readings(now, stale_after_s=self._stale_after_s)
        width = len(RECORDED)
        models = {
            model: ModelSignals(*readings[i * width : (i + 1) * width], reporting_pods=None)
            for i, model in enumerate(self._models)
        }
        first = len(self._models) * width
        dependencies = dict(zip(self._dependencies, readings[first:]))
        return Signals(models=models, dependencies=dependencies)


_MISSING = Reading.missing()  # frozen: one instance serves every missing reading


class _Stacked:
    """Many series searched at once: the last sample at or before `now` of each.

    All distinct series go end to end into one sorted array, each shifted by its own offset
    (series k by k x (span + 1), the span measured from the earliest sample), so that a single
    `searchsorted` with `now` shifted the same ways finds the position in every series. A
    position that falls before a series' first sample means no sample yet. Rounding may make
    a sample a hair after `now` compare equal once shifted; those are stepped back, so every
    reading is the one `Series.at` gives.
    """

    def __init__(self, series: list[Series | None]) -> None:
        # Replay of copied models shares Series objects: stack each one once. `_which[i]` is
        # the stacked index of series[i], or -1 when there is none.
        unique: dict[int, int] = {}
        stacked: list[Series] = []
        self._which: list[int] = []
        for s in series:
            if s is not None and id(s) not in unique:
                unique[id(s)] = len(stacked)
                stacked.append(s)
            self._which.append(-1 if s is None else unique[id(s)])
        if not stacked:
            return
        self._origin = min(float(s.times[0]) for s in stacked)
        self._span = max(float(s.times[-1]) for s in stacked) - self._origin
        self._shifts = np.arange(len(stacked), dtype=float) * (self._span + 1.0)
        lengths = np.array([len(s.times) for s in stacked])
        self._starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        self._times = np.concatenate([s.times for s in stacked])
        self._values = np.concatenate([s.values for s in stacked])
        self._shifted = (self._times - self._origin) + np.repeat(self._shifts, lengths)
        self._ahead: dict[float, int] = {}

    def prefetch(self, instants: Sequence[float]) -> None:
        if max(self._which, default=-1) < 0:
            return
        nows = np.asarray(instants, dtype=float)
        self._ahead = {now: row for row, now in enumerate(nows.tolist())}
        self._found, self._sampled_at, self._sampled = self._find(nows)

    def readings(self, now: float, *, stale_after_s: float) -> list[Reading]:
        if max(self._which, default=-1) < 0:
            return [_MISSING] * len(self._which)
        row = self._ahead.get(now)
        if row is None:
            found, times, values = (column[0] for column in self._find(np.array([now])))
        else:
            found, times, values = self._found[row], self._sampled_at[row], self._sampled[row]
        unique = [
            _reading(value, now - sampled_at, stale_after_s) if ok else _MISSING
            for ok, sampled_at, value in zip(found.tolist(), times.tolist(), values.tolist())
        ]
        return [unique[w] if w >= 0 else _MISSING for w in self._which]

    def _find(self, nows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each instant (a row) and stacked series (a column): whether a sample is at or
        before it, and that sample's time and value."""
        nows = nows[:, np.newaxis]
        # Clamped into [-1, span] so that no query reaches into the next series' range.
        relative = np.clip(nows - self._origin, -1.0, self._span)
        position = np.searchsorted(self._shifted, relative + self._shifts, side="right") - 1
        times = self._times[position]  # where no sample is found yet, any sample: not read
        found = position >= self._starts
        after = found & (times > nows)
        while after.any():
            position = position - after
            times = self._times[position]
            found = position >= self._starts
            after = found & (times > nows)
        return found, times, self._values[position]


def _reading(value: float, age_s: float, stale_after_s: float) -> Reading:
    """As Prometheus answers: nothing past its lookback, stale past stale_after_s. Values were
    checked (finite, non-negative) when the trace was loaded."""
    if age_s > LOOKBACK_S:
        return _MISSING
    return Reading(value=value, freshness=Freshness.STALE if age_s > stale_after_s else Freshness.OK, age_s=age_s)

from __future__ import annotations

import gzip
import json

import pytest

from autoscaler.metrics.recorded import RecordedSource, TraceError, load_trace
from policies import Freshness
from tests.builders import config, model

CFG = config(model("chat"), dependencies=[{"name": "vdb", "saturation_query": "vdb_saturation", "saturated_at": 0.8}])


def write(tmp_path, text: str, name: str = "t.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_native_csv_holds_samples_until_stale_then_missing(tmp_path):
    path = write(tmp_path, "time_s,name,signal,value\n0,chat,waiting,3\n0,chat,running,7\n0,vdb,saturation,0.5\n")
    source = RecordedSource(load_trace(path), CFG)
    fresh = source.fetch_signals(now=30.0)
    assert fresh.for_model("chat").waiting.value == 3 and fresh.for_model("chat").waiting.usable
    assert fresh.for_dependency("vdb").value == 0.5
    assert source.fetch_signals(now=120.0).for_model("chat").waiting.freshness is Freshness.STALE  # > 90 s
    assert source.fetch_signals(now=301.0).for_model("chat").waiting.freshness is Freshness.MISSING  # > lookback
    assert fresh.for_model("chat").kv_cache_usage.freshness is Freshness.MISSING  # never recorded
    assert source.fetch_signals(now=-1.0).for_model("chat").waiting.freshness is Freshness.MISSING  # before the trace


def test_a_trace_replays_with_its_pods_uncounted(tmp_path):
    """Replay compares no recorded pod count with its own replicas (autoscaler/replay.py says
    why): every model reads None, the partial-data guard off, and a trace that names a pod
    count is told the signal is not one of its own."""
    path = write(tmp_path, "time_s,name,signal,value\n0,chat,waiting,3\n0,chat,running,7\n")
    signals = RecordedSource(load_trace(path), CFG).fetch_signals(now=10.0)
    assert signals.for_model("chat").reporting_pods is None
    assert signals.for_model("chat").running.value == 7
    with pytest.raises(TraceError, match="line 2: signal 'reporting_pods' is not one of"):
        load_trace(write(tmp_path, "time_s,name,signal,value\n0,chat,reporting_pods,3\n"))


def test_gzipped_csv_in_any_row_order(tmp_path):
    path = tmp_path / "t.csv.gz"
    path.write_bytes(gzip.compress(b"time_s,name,signal,value\n10,chat,waiting,5\n0,chat,waiting,1\n"))
    trace = load_trace(path)
    source = RecordedSource(trace, CFG)
    assert (trace.start_s, trace.end_s) == (0.0, 10.0)
    assert source.fetch_signals(now=5.0).for_model("chat").waiting.value == 1
    assert source.fetch_signals(now=10.0).for_model("chat").waiting.value == 5


@pytest.mark.parametrize(
    "body, expected",
    [
        ("time,model,signal,value\n", "line 1: the header must be time_s,name,signal,value"),
        ("time_s,name,signal,value\n0,chat,waiting,nan\n", "line 2: value 'nan' is not allowed; it must be a finite, non-negative number"),
        ("time_s,name,signal,value\n0,chat,waiting,inf\n", "value 'inf' is not allowed"),
        ("time_s,name,signal,value\n0,chat,waiting,-2\n", "value '-2' is not allowed"),
        ("time_s,name,signal,value\n0,chat,queue,2\n", "line 2: signal 'queue' is not one of"),
        ("time_s,name,signal,value\nabc,chat,waiting,2\n", "line 2: time_s 'abc' is not a number"),
        ("time_s,name,signal,value\n0,chat,waiting\n", "line 2: expected 4 fields"),
        ("time_s,name,signal,value\n", "the trace holds no samples"),
    ],
)
def test_bad_trace_files_name_the_line_field_and_value(tmp_path, body, expected):
    with pytest.raises(TraceError) as err:
        load_trace(write(tmp_path, body))
    assert expected in str(err.value)


def test_query_range_json_maps_series_by_labels_or_key(tmp_path):
    def matrix(series):
        return {"status": "success", "data": {"resultType": "matrix", "result": series}}

    responses = {
        "waiting": matrix([{"metric": {"namespace": "ml", "model_name": "chat"}, "values": [[100, "2"], [110, "6"]]}]),
        "wake": matrix([{"metric": {"autoscaler_key": "chat"}, "values": [[100, "0.5"]]}]),
        "running": matrix([{"metric": {"namespace": "other", "model_name": "chat"}, "values": [[100, "9"]]}]),
    }
    path = write(tmp_path, json.dumps(responses), "t.json")
    source = RecordedSource(load_trace(path, CFG), CFG)
    signals = source.fetch_signals(now=110.0)
    assert signals.for_model("chat").waiting.value == 6
    assert signals.for_model("chat").wake.value == 0.5
    assert not signals.for_model("chat").running.usable  # another namespace's series


def test_query_range_json_rejects_nan_and_wrong_shape(tmp_path):
    nan = {"waiting": {"data": {"resultType": "matrix", "result": [{"metric": {"autoscaler_key": "chat"}, "values": [[1, "NaN"]]}]}}}
    with pytest.raises(TraceError, match="waiting series 'chat' point 0: value 'NaN' is not allowed"):
        load_trace(write(tmp_path, json.dumps(nan), "nan.json"), CFG)
    vector = {"waiting": {"data": {"resultType": "vector", "result": []}}}
    with pytest.raises(TraceError, match="not a query_range response"):
        load_trace(write(tmp_path, json.dumps(vector), "v.json"), CFG)


@pytest.mark.parametrize("prefetched", [False, True], ids=["one search per instant", "prefetched"])
@pytest.mark.parametrize("seed", range(5))
def test_every_reading_is_the_last_sample_at_or_before_now(seed, prefetched):
    """RecordedSource searches all series at once (numpy, shifted end to end), and with
    prefetch all instants at once too; each reading must be the one a plain per-series lookup
    gives: the same sample, age and freshness. Epoch-sized times with sub-millisecond parts,
    instants on, between, before and after samples, a series shared by two models, and series
    that are absent."""
    import numpy as np

    from autoscaler.metrics.recorded import LOOKBACK_S, RECORDED, RecordedTrace, Series

    rng = np.random.default_rng(seed)
    cfg = config(model("a"), model("b"), model("c"), dependencies=[{"name": "vdb", "saturation_query": "x", "saturated_at": 1}])
    start = 1.7e9 + rng.random()

    def random_series() -> Series:
        times = np.sort(start + rng.uniform(0, 2000, size=int(rng.integers(1, 40))).round(4))
        return Series(times=times, values=rng.uniform(0, 50, size=len(times)).round(2))

    series = {("a", s): random_series() for s in RECORDED if rng.random() < 0.8}
    series.update({("b", s): random_series() for s in RECORDED[:3]})
    series[("c", "waiting")] = series[("b", "waiting")]  # copied models share a Series
    series[("vdb", "saturation")] = random_series()
    trace = RecordedTrace(series)
    source = RecordedSource(trace, cfg)
    samples = np.concatenate([s.times for s in series.values()])
    instants = np.concatenate([rng.choice(samples, 30), start + rng.uniform(-100, 2500, 60)])
    if prefetched:
        source.prefetch(instants[::2].tolist())  # the others still searched one by one

    for now in instants.tolist():
        signals = source.fetch_signals(now=now)
        got = {(m, s): getattr(signals.for_model(m), s) for m in "abc" for s in RECORDED}
        got[("vdb", "saturation")] = signals.for_dependency("vdb")
        for key, reading in got.items():
            sample = series[key].at(now) if key in series else None
            if sample is None or sample[0] > LOOKBACK_S:
                assert reading.freshness is Freshness.MISSING, (key, now)
            else:
                age_s, value = sample
                stale = age_s > cfg.prometheus.stale_after_s
                assert (reading.value, reading.age_s) == (value, age_s), (key, now)
                assert reading.freshness is (Freshness.STALE if stale else Freshness.OK), (key, now)

"""Workload traces: the real files load with the figures simulations/traces/SOURCES.md states,
ServeGen synthesis is deterministic and matches each window's rate, and a bad file fails with a
WorkloadError naming the file, line and field.

Synthesis is checked on small hand-written archives (known rates and shapes); the real ServeGen
archive is read once per session (about 2 s) and its tests sit together, so the in-process cache
is still warm for all of them."""

from __future__ import annotations

import csv
import gzip
import io
import math
import tarfile

import numpy as np
import pytest

from simulations.workload import (
    AZURE_CODE,
    AZURE_CONV,
    MOONCAKE,
    SERVEGEN_ARCHIVE,
    WINDOW_S,
    Requests,
    WorkloadError,
    list_servegen_clients,
    load_azure,
    load_mooncake,
    load_requests_csv,
    load_requests_jsonl,
    load_servegen,
    load_workload,
    resolve_traces_dir,
    write_requests,
)

TRACES = resolve_traces_dir()

LENGTHS = Requests(np.zeros(3), [100, 2000, 30], [10, 5, 700], name="three-pairs", source="test")


def build_archive(path, clients: dict[tuple[str, str], list[str]]):
    """A ServeGen-shaped tar.xz: {(model, client): rows}, rows as the archive writes them."""
    with tarfile.open(path, "w:xz") as tar:
        for (model, client), rows in clients.items():
            data = "".join(row + "\n" for row in rows).encode()
            info = tarfile.TarInfo(f"data/language/{model}/chunk-{client}-trace.csv")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def windows(*specs: tuple[float, str, float, float], repeat: int = 1) -> list[str]:
    """Rows from (rate, pattern, shape, scale) tuples cycled `repeat` times, 600 s apart."""
    rows = []
    for rate, pattern, shape, scale in [spec for _ in range(repeat) for spec in specs]:
        cv = 1 / math.sqrt(shape) if pattern == "Gamma" else (1.0 if pattern else 0)
        rows.append(f"{len(rows) * 600},{rate},{cv},{pattern},{shape},{scale}")
    return rows


def expected_count_and_sd(rate, pattern, shape, seconds):
    """Mean and (renewal-theory) standard deviation of a window's count: n and sqrt(n) cv."""
    n = rate * seconds
    if pattern == "Gamma":
        cv2 = 1 / shape
    else:
        cv2 = math.gamma(1 + 2 / shape) / math.gamma(1 + 1 / shape) ** 2 - 1
    return n, math.sqrt(n * cv2)


# --- Requests ------------------------------------------------------------------------------


def test_requests_are_read_only_and_validated():
    requests = Requests([0.0, 1.5, 1.5], [1, 2, 3], [4, 5, 6], name="r", source="test")
    assert len(requests) == 3 and requests.arrival_s.dtype == np.float64 and requests.prompt_tokens.dtype == np.int64
    with pytest.raises(ValueError):
        requests.arrival_s[0] = 9.0
    with pytest.raises(ValueError, match="sorted"):
        Requests([1.0, 0.0], [1, 1], [1, 1], name="r", source="test")
    with pytest.raises(ValueError, match="one length"):
        Requests([0.0], [1, 2], [1], name="r", source="test")
    with pytest.raises(ValueError, match=">= 0"):
        Requests([0.0], [-1], [1], name="r", source="test")


def test_slice_rebases_and_keeps_the_idle_tail():
    requests = Requests([0.0, 10.0, 20.0, 30.0], [1, 2, 3, 4], [1, 1, 1, 1], name="r", source="test")
    middle = requests.slice(10.0, 25.0)
    assert middle.arrival_s.tolist() == [0.0, 10.0] and middle.prompt_tokens.tolist() == [2, 3]
    assert middle.duration_s == 15.0  # the idle 5 s at the end count
    assert requests.slice(15.0).arrival_s.tolist() == [5.0, 15.0]
    assert len(requests.slice(31.0, 40.0)) == 0 and requests.slice(31.0, 40.0).duration_s == 9.0


def test_scaled_thins_deterministically():
    requests = Requests(np.arange(100_000) * 0.01, np.ones(100_000), np.ones(100_000), name="r", source="test")
    quarter = requests.scaled(0.25, seed=1)
    assert abs(len(quarter) - 25_000) < 5 * math.sqrt(100_000 * 0.25 * 0.75)
    assert np.array_equal(quarter.arrival_s, requests.scaled(0.25, seed=1).arrival_s)
    assert not np.array_equal(quarter.arrival_s, requests.scaled(0.25, seed=2).arrival_s)
    assert quarter.duration_s == requests.duration_s
    with pytest.raises(ValueError, match="thinning"):
        requests.scaled(2.0, seed=1)


# --- generic request files ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["trace.csv", "trace.jsonl", "trace.jsonl.gz"])
def test_request_files_round_trip_bit_for_bit(tmp_path, name):
    rng = np.random.default_rng(0)
    original = Requests(
        np.sort(rng.random(500) * 3600), rng.integers(0, 30_000, 500), rng.integers(0, 4000, 500), name="x", source="t"
    )
    write_requests(original, tmp_path / name)
    loaded = load_workload(str(tmp_path / name), seed=0)
    assert loaded.name == "trace" and loaded.source == str(tmp_path / name)
    for field in ("arrival_s", "prompt_tokens", "output_tokens"):
        assert np.array_equal(getattr(loaded, field), getattr(original, field))


def test_rows_in_any_order_are_sorted_with_their_tokens(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("output_tokens,arrival_s,prompt_tokens,model\n7,2.5,70,a\n5,0.5,50,b\n\n6,1.0,60,c\n")
    requests = load_requests_csv(path)
    assert requests.arrival_s.tolist() == [0.5, 1.0, 2.5]  # kept as written, not rebased
    assert requests.prompt_tokens.tolist() == [50, 60, 70] and requests.output_tokens.tolist() == [5, 6, 7]


HEADER = "arrival_s,prompt_tokens,output_tokens\n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("", "empty file; the first line must be a header naming arrival_s, prompt_tokens, output_tokens"),
        ("arrival_s,prompt_tokens\n0,1\n", "line 1: header lacks column(s) output_tokens"),
        (HEADER, "no requests after the header"),
        (HEADER + "0,1,1\nnan,1,1\n", "line 3: arrival_s = 'nan': must be a finite number >= 0"),
        (HEADER + "0,1,1\ninf,1,1\n", "line 3: arrival_s = 'inf'"),
        (HEADER + "-1,1,1\n", "line 2: arrival_s = '-1'"),
        (HEADER + "0,1,1\n1,-3,1\n", "line 3: prompt_tokens = '-3': must be an integer >= 0"),
        (HEADER + "0,1,1.5\n", "line 2: output_tokens = '1.5': must be an integer >= 0"),
        (HEADER + "0,1,\n", "line 2: output_tokens = ''"),
        (HEADER + "0,1,1\n0,1\n", "line 3: 2 fields, the header has 3"),
    ],
)
def test_bad_request_csv_names_line_and_field(tmp_path, body, expected):
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(WorkloadError) as err:
        load_requests_csv(path)
    assert str(err.value).startswith(f"{path}: {expected}")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"arrival_s": 0, "prompt_tokens": 1, "output_tokens": 1}\n{"arrival_s": 1\n', "line 2: not valid JSON"),
        ("[1, 2, 3]\n", "line 1: expected a JSON object"),
        ('{"arrival_s": 0, "prompt_tokens": 1}\n', "line 1: missing field 'output_tokens'"),
        ('{"arrival_s": NaN, "prompt_tokens": 1, "output_tokens": 1}\n', "line 1: arrival_s = NaN: must be a finite"),
        ('{"arrival_s": 0, "prompt_tokens": -4, "output_tokens": 1}\n', "line 1: prompt_tokens = -4"),
        ('{"arrival_s": 0, "prompt_tokens": "12", "output_tokens": 1}\n', 'line 1: prompt_tokens = "12"'),
        ('{"arrival_s": 0, "prompt_tokens": true, "output_tokens": 1}\n', "line 1: prompt_tokens = true"),
        ('{"arrival_s": 0, "prompt_tokens": 1, "output_tokens": 2.5}\n', "line 1: output_tokens = 2.5: must be an int"),
        ("\n\n", "no requests"),
    ],
)
def test_bad_request_jsonl_names_line_and_field(tmp_path, body, expected):
    path = tmp_path / "bad.jsonl"
    path.write_text(body)
    with pytest.raises(WorkloadError) as err:
        load_requests_jsonl(path)
    assert str(err.value).startswith(f"{path}: {expected}")


def test_unreadable_files_are_workload_errors(tmp_path):
    with pytest.raises(WorkloadError, match="no such file"):
        load_requests_csv(tmp_path / "missing.csv")
    (tmp_path / "broken.jsonl.gz").write_bytes(b"not gzip at all")
    with pytest.raises(WorkloadError, match="cannot read"):
        load_requests_jsonl(tmp_path / "broken.jsonl.gz")
    (tmp_path / "latin1.csv").write_bytes(HEADER.encode() + b"0,1,1 \xe9\n")
    with pytest.raises(WorkloadError, match="not UTF-8"):
        load_requests_csv(tmp_path / "latin1.csv")


def test_azure_and_mooncake_formats_from_small_files(tmp_path):
    azure = tmp_path / "a.csv"
    azure.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:17:04.0319600,20,2\n2023-11-16 18:17:03.9799600,10,1\n2023-11-16 18:18:03.9799600,30,3\n"
    )
    requests = load_azure(azure)
    assert requests.arrival_s == pytest.approx([0.0, 0.052, 60.0], abs=1e-9)
    assert requests.prompt_tokens.tolist() == [10, 20, 30] and "AzurePublicDataset" in requests.source
    azure.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:04.0319600,20,2\nyesterday,1,1\n")
    with pytest.raises(WorkloadError, match=r"line 3: TIMESTAMP = 'yesterday': must be a date and time like"):
        load_azure(azure)
    azure.write_text("TIMESTAMP,ContextTokens\n2023-11-16 18:17:04.0319600,20\n")
    with pytest.raises(WorkloadError, match="line 1: header lacks column.s. GeneratedTokens"):
        load_azure(azure)

    mooncake = tmp_path / "m.jsonl.gz"
    mooncake.write_bytes(
        gzip.compress(b'{"timestamp": 1500, "input_length": 9, "output_length": 2, "hash_ids": [1]}\n'
                      b'{"timestamp": 0, "input_length": 8, "output_length": 1, "hash_ids": []}\n')
    )
    requests = load_mooncake(mooncake)
    assert requests.arrival_s.tolist() == [0.0, 1.5] and requests.prompt_tokens.tolist() == [8, 9]
    mooncake.write_bytes(gzip.compress(b'{"timestamp": 0, "input_length": 8}\n'))
    with pytest.raises(WorkloadError, match="line 1: missing field 'output_length'"):
        load_mooncake(mooncake)


# --- ServeGen synthesis on hand-written archives -------------------------------------------------


@pytest.fixture
def archive(tmp_path):
    """m-test: client 1 bursty Gamma alternating with idle windows, client 2 Weibull,
    client 3 sparse and very bursty (12 requests a window, cv 3.2)."""
    return build_archive(
        tmp_path / "sg.tar.xz",
        {
            ("m-test", "1"): windows((2.0, "Gamma", 0.5, 1.0), (0, "", 0, 0), repeat=100),
            ("m-test", "2"): windows((1.0, "Weibull", 0.6, 0.7), repeat=200),
            ("m-test", "3"): windows((0.02, "Gamma", 0.1, 3.0), repeat=1000),
        },
    )


def test_idle_windows_get_no_arrivals_and_busy_ones_their_rate(archive):
    requests = load_servegen(archive, model="m-test", clients=["1"], seed=7, lengths=LENGTHS)
    counts = np.bincount((requests.arrival_s // WINDOW_S).astype(int), minlength=200)
    assert counts[1::2].sum() == 0
    n, sd = expected_count_and_sd(2.0, "Gamma", 0.5, WINDOW_S)
    assert abs(counts[0::2].mean() - n) < 5 * sd / math.sqrt(100)
    assert np.all(np.abs(counts[0::2] - n) < 6 * sd)
    assert requests.duration_s == 200 * WINDOW_S  # span of the windows, not the last arrival
    # the archive's scale (1.0 s) would give a mean gap of 0.5 s, i.e. the stated 2 req/s;
    # gaps keep the window's burstiness: cv = 1/sqrt(0.5)
    gaps = np.diff(requests.arrival_s[requests.arrival_s < WINDOW_S])
    assert gaps.std() / gaps.mean() == pytest.approx(1 / math.sqrt(0.5), rel=0.15)


@pytest.mark.parametrize(
    ("client", "rate", "pattern", "shape", "windows_used"),
    [
        ("2", 1.0, "Weibull", 0.6, 200),  # archive scale 0.7 would give 0.67 req/s: rescaled to 1.0
        ("3", 0.02, "Gamma", 0.1, 1000),  # a fresh (non-stationary) start would add ~4.5 a window (+37%)
    ],
)
def test_mean_count_per_window_is_rate_times_600(archive, client, rate, pattern, shape, windows_used):
    for seed in (1, 2, 3):
        requests = load_servegen(archive, model="m-test", clients=[client], seed=seed, lengths=LENGTHS)
        n, sd = expected_count_and_sd(rate, pattern, shape, WINDOW_S)
        assert abs(len(requests) - n * windows_used) < 5 * sd * math.sqrt(windows_used)


def test_same_seed_same_requests_other_seed_other_requests(archive):
    one = load_servegen(archive, model="m-test", clients=["1", "2"], seed=11, lengths=LENGTHS)
    again = load_servegen(archive, model="m-test", clients=["1", "2"], seed=11, lengths=LENGTHS)
    other = load_servegen(archive, model="m-test", clients=["1", "2"], seed=12, lengths=LENGTHS)
    for field in ("arrival_s", "prompt_tokens", "output_tokens"):
        assert np.array_equal(getattr(one, field), getattr(again, field))
    assert not np.array_equal(one.arrival_s[:100], other.arrival_s[:100])
    # each client has its own stream: alone, it is exactly its share of the pair
    alone = load_servegen(archive, model="m-test", clients=["2"], seed=11, lengths=LENGTHS)
    assert np.isin(alone.arrival_s, one.arrival_s).all()


def test_lengths_are_pairs_from_the_given_source(archive):
    requests = load_servegen(archive, model="m-test", clients=["2"], seed=3, end_s=3000, lengths=LENGTHS)
    pairs = set(zip(requests.prompt_tokens.tolist(), requests.output_tokens.tolist()))
    assert pairs == {(100, 10), (2000, 5), (30, 700)}
    assert "lengths sampled from three-pairs" in requests.source and "seed 3" in requests.source


def test_range_and_rate_scale(archive):
    # a range starting and ending mid-window: rebased to 0, its expected count is rate * length
    part = load_servegen(archive, model="m-test", clients=["2"], seed=5, start_s=900, end_s=60_900, lengths=LENGTHS)
    assert part.duration_s == 60_000 and part.arrival_s.min() >= 0 and part.arrival_s.max() < 60_000
    n, sd = expected_count_and_sd(1.0, "Weibull", 0.6, 60_000)
    assert abs(len(part) - n) < 5 * sd
    half = load_servegen(archive, model="m-test", clients=["2"], seed=5, rate_scale=0.5, lengths=LENGTHS)
    n, sd = expected_count_and_sd(0.5, "Weibull", 0.6, WINDOW_S)
    assert abs(len(half) - 200 * n) < 5 * sd * math.sqrt(200)


def test_clients_and_guards(archive):
    clients = list_servegen_clients(archive, "m-test")
    assert [c.client for c in clients] == ["1", "2", "3"]  # busiest first: mean rate 1.0 (half idle), 1.0, 0.02
    assert clients[0].idle_fraction == 0.5 and clients[0].mean_rate_rps == 1.0 and clients[0].peak_rate_rps == 2.0
    with pytest.raises(WorkloadError, match="no model 'm-other'; the archive has m-test"):
        load_servegen(archive, model="m-other", clients=None, seed=0, lengths=LENGTHS)
    with pytest.raises(WorkloadError, match="has no client.s. 9; it has 3: 1, 2, 3"):
        load_servegen(archive, model="m-test", clients=["9"], seed=0, lengths=LENGTHS)
    with pytest.raises(WorkloadError, match="about 240,000 requests expected .* more than max_requests 1,000"):
        load_servegen(archive, model="m-test", clients=["1", "2"], seed=0, lengths=LENGTHS, max_requests=1000)
    with pytest.raises(WorkloadError, match="need 0 <= start_s < end_s <= 600000"):
        load_servegen(archive, model="m-test", clients=None, seed=0, end_s=1e9, lengths=LENGTHS)


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (["0,1,1,Gamma,1,1", "600,1,1,Poisson,1,1"], "line 2: pattern = 'Poisson': must be Gamma, Weibull or empty"),
        (["0,nan,1,Gamma,1,1"], "line 1: rate = 'nan': must be a finite number >= 0"),
        (["0,-1,1,Gamma,1,1"], "line 1: rate = '-1'"),
        (["0,1,1,Gamma,1"], "line 1: 5 fields, expected 6 (window_start_s, rate, cv, pattern, shape, scale)"),
        (["0,1,1,,0,0"], "line 1: pattern = '': a window with rate > 0 needs a pattern"),
        (["0,1,1,Weibull,0,1"], "line 1: shape = '0': must be > 0 in a window with rate > 0"),
        (["0,0,0,,0,0", "900,0,0,,0,0"], "line 2: window_start_s = 900: windows must be 600 s apart"),
    ],
)
def test_bad_servegen_rows_name_member_line_and_field(tmp_path, rows, expected):
    path = build_archive(tmp_path / "bad.tar.xz", {("m-test", "5"): rows})
    with pytest.raises(WorkloadError) as err:
        list_servegen_clients(path, "m-test")
    assert str(err.value).startswith(f"{path.resolve()}: data/language/m-test/chunk-5-trace.csv: {expected}")


def test_not_an_archive(tmp_path):
    (tmp_path / "x.tar.xz").write_bytes(b"plain text")
    with pytest.raises(WorkloadError, match="cannot read the archive"):
        list_servegen_clients(tmp_path / "x.tar.xz", "m-large")


# --- load_workload specs ----------------------------------------------------------------------


@pytest.fixture
def traces(tmp_path, archive):
    """A traces directory laid out like simulations/traces with tiny files."""
    root = tmp_path / "traces"
    (root / "azure-2023").mkdir(parents=True)
    (root / "servegen").mkdir()
    (root / "mooncake").mkdir()
    azure = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,11,1\n2023-11-16 18:17:05.0,22,2\n"
    (root / AZURE_CONV).write_text(azure)
    (root / AZURE_CODE).write_text(azure.replace("11,1", "33,3"))
    (root / MOONCAKE).write_bytes(gzip.compress(b'{"timestamp": 0, "input_length": 5, "output_length": 6}\n'))
    build_archive(
        root / SERVEGEN_ARCHIVE,
        {("m-large", str(c)): windows((rate, "Gamma", 1.0, 1.0), repeat=12) for c, rate in ((1, 0.5), (2, 2.0), (3, 1.0))},
    )
    return root


@pytest.mark.parametrize(
    ("spec", "name", "count"),
    [
        ("azure-conv", "azure-conv", 2),
        ("azure-code", "azure-code", 2),
        ("mooncake", "mooncake", 1),
        ("servegen:m-large:client=2", "servegen-m-large-client-2", None),
        ("servegen:m-large:client=1,3:end=1200", "servegen-m-large-client-1,3", None),
        ("servegen:m-large:top=1:start=600:end=1800:scale=0.5", "servegen-m-large-client-2x0.5", None),
        ("servegen:m-large:sum", "servegen-m-large-all-clients", None),
    ],
)
def test_specs_resolve_against_the_traces_dir(traces, spec, name, count):
    requests = load_workload(spec, seed=1, traces_dir=traces)
    assert requests.name == name
    if count is not None:
        assert len(requests) == count
    else:  # ServeGen lengths come from the directory's Azure conv file
        assert set(requests.prompt_tokens.tolist()) <= {11, 22} and len(requests) > 0


def test_env_var_points_at_the_traces_dir(traces, monkeypatch):
    monkeypatch.setenv("AUTOSCALER_TRACES", str(traces))
    assert load_workload("azure-code", seed=0).prompt_tokens.tolist() == [33, 22]
    monkeypatch.setenv("AUTOSCALER_TRACES", str(traces / "nowhere"))
    with pytest.raises(WorkloadError, match="nowhere/azure-2023/AzureLLMInferenceTrace_code.csv: no such file .*AUTOSCALER_"):
        load_workload("azure-code", seed=0)


def test_paths_are_recognized_by_their_columns(traces, tmp_path):
    assert load_workload(str(traces / AZURE_CONV), seed=0).name == "azure-conv"
    assert load_workload(str(traces / MOONCAKE), seed=0).prompt_tokens.tolist() == [5]
    with pytest.raises(WorkloadError, match="no such file"):
        load_workload(str(tmp_path / "absent.csv"), seed=0)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("azure", "unknown workload spec 'azure'; allowed: azure-conv, azure-code"),
        ("trace.parquet", "allowed: .*a path to a .csv, .jsonl or .jsonl.gz request file"),
        ("servegen:m-large", "expected servegen:<model>:<selector>"),
        ("servegen:m-large:everything", "unknown field 'everything'"),
        ("servegen:m-large:top=1:sum", "got two selectors"),
        ("servegen:m-large:end=600", "no selector"),
        ("servegen:m-large:top=0", "top = '0' must be a whole number >= 1"),
        ("servegen:m-large:sum:end=soon", "end = 'soon' is not a number"),
        ("servegen:m-small:sum", "no model 'm-small'; the archive has m-large"),
        ("servegen:m-large:client=7", "has no client.s. 7; it has 3: 1, 2, 3"),
    ],
)
def test_bad_specs_say_what_is_allowed(traces, spec, expected):
    with pytest.raises(WorkloadError, match=expected):
        load_workload(spec, seed=0, traces_dir=traces)


# --- the real traces (SOURCES.md figures) --------------------------------------------------------


@pytest.fixture(scope="session")
def conv():
    return load_azure(TRACES / AZURE_CONV)


@pytest.fixture(scope="session")
def real_archive():
    """Reads (and caches in-process) the whole ServeGen archive once: about 2 s."""
    list_servegen_clients(TRACES / SERVEGEN_ARCHIVE, "m-large")
    return TRACES / SERVEGEN_ARCHIVE


@pytest.mark.parametrize(
    ("spec", "count", "minutes", "rate_rps", "median_prompt", "median_output"),
    [
        ("azure-code", 8_819, 57, 2.6, 1_469, 13),
        ("azure-conv", 19_366, 58, 5.5, 1_020, 129),
        ("mooncake", 3_993, 1_022 / 60, 3.9, 11_587, 69),
    ],
)
def test_real_traces_match_sources_md(spec, count, minutes, rate_rps, median_prompt, median_output):
    requests = load_workload(spec, seed=0)
    assert len(requests) == count
    assert requests.duration_s / 60 == pytest.approx(minutes, abs=1)
    assert requests.mean_rate_rps == pytest.approx(rate_rps, abs=0.05)
    assert np.median(requests.prompt_tokens) == median_prompt
    assert np.median(requests.output_tokens) == median_output
    assert requests.arrival_s[0] == 0.0


@pytest.mark.parametrize(("model", "clients", "mean_rps"), [("m-large", 162, 196), ("m-mid", 109, 1_790)])
def test_real_servegen_clients_add_up_to_the_per_model_rates(real_archive, model, clients, mean_rps):
    summaries = list_servegen_clients(real_archive, model)
    assert len(summaries) == clients
    assert sum(c.mean_rate_rps for c in summaries) == pytest.approx(mean_rps, abs=0.5)
    assert [c.mean_rate_rps for c in summaries] == sorted((c.mean_rate_rps for c in summaries), reverse=True)
    # window by window, the clients sum to the published per-model series (rounded to 4 decimals)
    with open(TRACES / "servegen/servegen_per_model_rate_10min.csv") as f:
        published = np.array([float(row[f"{model}_rps"]) for row in csv.DictReader(f)])
    from simulations.workload import _servegen_model  # the per-window arrays behind the summaries

    table = _servegen_model(real_archive, model)
    assert np.abs(sum(w.rate_rps for w in table.values()) - published).max() < 1e-4


def test_real_servegen_client_synthesis(real_archive, conv):
    from simulations.workload import _servegen_model

    client = "144"  # m-large: Gamma and Weibull windows with idle stretches between
    table = _servegen_model(real_archive, "m-large")[client]
    days = 2
    requests = load_servegen(real_archive, model="m-large", clients=[client], seed=4, end_s=days * 86400, lengths=conv)
    again = load_servegen(real_archive, model="m-large", clients=[client], seed=4, end_s=days * 86400, lengths=conv)
    assert np.array_equal(requests.arrival_s, again.arrival_s)
    windows_used = days * 144
    counts = np.bincount((requests.arrival_s // WINDOW_S).astype(int), minlength=windows_used)
    idle = table.pattern[:windows_used] == 0
    assert idle.any() and counts[idle].sum() == 0
    expected = variance = 0.0
    for rate, pattern, shape in zip(table.rate_rps[:windows_used], table.pattern[:windows_used], table.shape[:windows_used]):
        if pattern:
            n, sd = expected_count_and_sd(rate, "Gamma" if pattern == 1 else "Weibull", shape, WINDOW_S)
            expected += n
            variance += sd**2
    assert abs(len(requests) - expected) < 5 * math.sqrt(variance)
    assert "alibaba/ServeGen @ f891d118" in requests.source and "client 144" in requests.source


def test_real_servegen_specs(real_archive):
    hot = load_workload("servegen:m-large:sum:end=600:scale=0.1", seed=0)
    # the first window's summed rate is 212.78 req/s (servegen_per_model_rate_10min.csv)
    assert len(hot) == pytest.approx(212.78 * 600 * 0.1, rel=0.1)
    top = load_workload("servegen:m-large:top=1:end=3600", seed=0)
    assert top.name == f"servegen-m-large-client-{list_servegen_clients(real_archive, 'm-large')[0].client}"
    with pytest.raises(WorkloadError, match=r"about 23\d,\d{3},\d{3} requests expected"):
        load_workload("servegen:m-large:sum", seed=0)

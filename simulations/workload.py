"""Request traces for the closed-loop simulator: when each request arrives and how many prompt
and output tokens it carries.

Every loader returns a `Requests`: three sorted numpy arrays and a citation. Sources:

- `load_azure`: Azure LLM inference trace 2023 (code or conv), real per-request arrivals.
- `load_mooncake`: Mooncake FAST'25 synthetic trace, long prompts.
- `load_servegen`: arrivals synthesized from ServeGen's per-client 10-minute rate windows
  (14 days of Alibaba Model Studio traffic); token counts sampled from another trace.
- `load_requests_csv` / `load_requests_jsonl`: this project's own format (`arrival_s`,
  `prompt_tokens`, `output_tokens`), written by `write_requests`.
- `load_workload`: one CLI spec string (`azure-conv`, `servegen:m-large:top=1`, a path) to any
  of the above.

Contract: a trace that cannot be used raises `WorkloadError` naming the file, the line (or row)
and the field, and what is allowed; numpy and csv exceptions never escape. Synthesis is
deterministic: the same arguments and seed give identical arrays. The real trace files ship in
`simulations/traces/` (see its SOURCES.md for each file's source, commit and licence), overridable
with `AUTOSCALER_TRACES`.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import json
import lzma
import math
import os
import re
import tarfile
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WINDOW_S = 600.0
"""Length of a ServeGen rate window."""

DEFAULT_TRACES_DIR = Path(__file__).resolve().parent / "traces"
TRACES_ENV = "AUTOSCALER_TRACES"

AZURE_CONV = "azure-2023/AzureLLMInferenceTrace_conv.csv"
AZURE_CODE = "azure-2023/AzureLLMInferenceTrace_code.csv"
MOONCAKE = "mooncake/synthetic_trace.jsonl.gz"
SERVEGEN_ARCHIVE = "servegen/servegen_clients_m-large_m-mid.tar.xz"

_AZURE_CITATION = "Azure/AzurePublicDataset @ b469a113, data/{file} (CC-BY 4.0; cite Splitwise, ISCA 2024)"
_MOONCAKE_CITATION = (
    "kvcache-ai/Mooncake @ 3b5a5941, FAST25-release/traces/synthetic_trace.jsonl (Apache-2.0; cite Mooncake, FAST 2025)"
)
_SERVEGEN_CITATION = "alibaba/ServeGen @ f891d118, data/language/{model} (Apache-2.0; cite ServeGen, arXiv 2505.09999)"

REQUEST_COLUMNS = ("arrival_s", "prompt_tokens", "output_tokens")
SERVEGEN_COLUMNS = ("window_start_s", "rate", "cv", "pattern", "shape", "scale")
_IDLE, _GAMMA, _WEIBULL = 0, 1, 2

# Synthesis works through this many inter-arrival draws at a time, so memory stays bounded
# (about 60 bytes a draw) whatever the rate and range asked for.
_DRAWS_PER_CHUNK = 1_000_000


class WorkloadError(ValueError):
    """A trace file or workload spec that cannot be used. The message names the file, the line
    or row, the field and what is allowed."""


@dataclass(frozen=True, eq=False)
class Requests:
    """Requests in arrival order. `arrival_s` is float64 seconds from the trace start, sorted;
    token counts are int64 and non-negative. The arrays are read-only copies.

    `span_s` is the time the trace covers when that is known to extend past its last arrival
    (a ServeGen range that ends idle, a slice): a long-tail model's idle tail is part of the
    workload, so `duration_s` counts it.
    """

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    name: str
    source: str
    span_s: float | None = None

    def __post_init__(self) -> None:
        arrival = np.array(self.arrival_s, dtype=np.float64)
        prompt = np.array(self.prompt_tokens, dtype=np.int64)
        output = np.array(self.output_tokens, dtype=np.int64)
        if not (arrival.ndim == prompt.ndim == output.ndim == 1 and len(arrival) == len(prompt) == len(output)):
            raise ValueError(
                f"Requests {self.name!r}: arrival_s, prompt_tokens and output_tokens must be 1-D and of one length, "
                f"got shapes {arrival.shape}, {prompt.shape}, {output.shape}"
            )
        if not np.isfinite(arrival).all():
            raise ValueError(f"Requests {self.name!r}: arrival_s must be finite")
        if np.any(np.diff(arrival) < 0):
            raise ValueError(f"Requests {self.name!r}: arrival_s must be sorted")
        if (prompt < 0).any() or (output < 0).any():
            raise ValueError(f"Requests {self.name!r}: token counts must be >= 0")
        if self.span_s is not None and not (math.isfinite(self.span_s) and self.span_s >= 0):
            raise ValueError(f"Requests {self.name!r}: span_s must be finite and >= 0, got {self.span_s}")
        for array in (arrival, prompt, output):
            array.setflags(write=False)
        object.__setattr__(self, "arrival_s", arrival)
        object.__setattr__(self, "prompt_tokens", prompt)
        object.__setattr__(self, "output_tokens", output)

    def __len__(self) -> int:
        return len(self.arrival_s)

    def __repr__(self) -> str:
        return f"Requests({self.summary()})"

    @property
    def duration_s(self) -> float:
        last = float(self.arrival_s[-1]) if len(self) else 0.0
        return max(last, self.span_s or 0.0)

    @property
    def mean_rate_rps(self) -> float:
        return len(self) / self.duration_s if self.duration_s > 0 else 0.0

    def summary(self) -> str:
        if not len(self):
            return f"{self.name}: no requests over {self.duration_s:.0f} s"
        return (
            f"{self.name}: {len(self):,} requests over {self.duration_s:,.0f} s ({self.mean_rate_rps:.2f} req/s), "
            f"median prompt {np.median(self.prompt_tokens):,.0f} tokens, median output {np.median(self.output_tokens):,.0f}"
        )

    def slice(self, start_s: float, end_s: float | None = None) -> Requests:
        """The requests arriving in [start_s, end_s), with times rebased so start_s becomes 0."""
        end = self.duration_s if end_s is None else end_s
        if not (0 <= start_s <= end):
            raise ValueError(f"slice of {self.name!r}: need 0 <= start_s <= end_s, got {start_s} and {end}")
        low = np.searchsorted(self.arrival_s, start_s, side="left")
        high = len(self) if end_s is None else np.searchsorted(self.arrival_s, end_s, side="left")
        return Requests(
            self.arrival_s[low:high] - start_s,
            self.prompt_tokens[low:high],
            self.output_tokens[low:high],
            name=f"{self.name}[{start_s:g}:{end:g}]",
            source=self.source,
            span_s=end - start_s,
        )

    def scaled(self, rate_factor: float, *, seed: int) -> Requests:
        """Independent thinning: each request is kept with probability `rate_factor` (0 to 1).
        Thinning keeps the shape of bursts and the length mix and only lowers the rate; to
        raise a rate, pick a hotter source (ServeGen `rate_scale`, more clients)."""
        if not (0 < rate_factor <= 1):
            raise ValueError(f"rate_factor must be in (0, 1] (thinning only), got {rate_factor}")
        keep = np.random.Generator(np.random.PCG64(seed)).random(len(self)) < rate_factor
        return Requests(
            self.arrival_s[keep],
            self.prompt_tokens[keep],
            self.output_tokens[keep],
            name=f"{self.name}*{rate_factor:g}",
            source=self.source,
            span_s=self.duration_s,
        )


# ---------------------------------------------------------------------------------------------
# Reading and validating files


def _read_text(path: Path) -> str:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8") as f:
                return f.read()
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorkloadError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise WorkloadError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except (OSError, EOFError, zlib.error) as e:
        raise WorkloadError(f"{path}: cannot read: {e}") from None


def _read_csv(path: Path, required: Sequence[str]) -> tuple[dict[str, list[str]], list[int]]:
    """The required columns (by header name, any order, extra columns ignored) and the file
    line number of each row."""
    reader = csv.reader(io.StringIO(_read_text(path)))
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise WorkloadError(f"{path}: empty file; the first line must be a header naming {', '.join(required)}") from None
    except csv.Error as e:
        raise WorkloadError(f"{path}: line 1: not valid CSV: {e}") from None
    missing = [name for name in required if name not in header]
    if missing:
        raise WorkloadError(
            f"{path}: line 1: header lacks column(s) {', '.join(missing)}; "
            f"required: {', '.join(required)}; found: {', '.join(header) or '(nothing)'}"
        )
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise WorkloadError(f"{path}: line {reader.line_num}: {len(row)} fields, the header has {len(header)}")
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as e:
        raise WorkloadError(f"{path}: line {reader.line_num}: not valid CSV: {e}") from None
    if not rows:
        raise WorkloadError(f"{path}: no requests after the header")
    return {name: [row[header.index(name)] for row in rows] for name in required}, lines


def _float_column(where: str, values: Sequence[str], lines: Sequence[int], field: str) -> np.ndarray:
    """Finite numbers >= 0, parsed in one numpy call; the slow scan only runs to name the
    first bad row."""
    try:
        array = np.array(values, dtype=np.float64)
    except (ValueError, OverflowError):
        array = None
    if array is not None:
        bad = ~np.isfinite(array) | (array < 0)
        if not bad.any():
            return array
        index = int(np.argmax(bad))
    else:
        index = next(i for i, value in enumerate(values) if not _is_float(value))
    raise WorkloadError(f"{where}: line {lines[index]}: {field} = {values[index]!r}: must be a finite number >= 0")


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _count_column(where: str, values: Sequence[str], lines: Sequence[int], field: str) -> np.ndarray:
    try:
        array = np.array(values, dtype=np.int64)
    except (ValueError, OverflowError):
        array = None
    if array is not None:
        bad = array < 0
        if not bad.any():
            return array
        index = int(np.argmax(bad))
    else:
        index = next(i for i, value in enumerate(values) if not _is_count(value))
    raise WorkloadError(f"{where}: line {lines[index]}: {field} = {values[index]!r}: must be an integer >= 0")


def _is_count(text: str) -> bool:
    try:
        return int(text) >= 0
    except ValueError:
        return False


def _sorted(arrival: np.ndarray, prompt: np.ndarray, output: np.ndarray, **fields) -> Requests:
    """Traces are expected in time order but need not be: a stable sort keeps ties in file order."""
    order = np.argsort(arrival, kind="stable")
    return Requests(arrival[order], prompt[order], output[order], **fields)


def _read_jsonl(path: Path, keys: Sequence[str], integer: Sequence[bool]) -> list[np.ndarray]:
    """One array per key from JSON lines (blank lines skipped). Numbers are checked row by row
    in Python: JSON carries types (true, "12", null) that a bulk numpy cast would accept."""
    columns: list[list[float | int]] = [[] for _ in keys]
    for line_number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise WorkloadError(f"{path}: line {line_number}: not valid JSON: {e.msg} (column {e.colno})") from None
        if not isinstance(record, dict):
            raise WorkloadError(f"{path}: line {line_number}: expected a JSON object with {', '.join(keys)}")
        for column, key, whole in zip(columns, keys, integer):
            if key not in record:
                raise WorkloadError(f"{path}: line {line_number}: missing field {key!r}; each line needs {', '.join(keys)}")
            value = record[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise WorkloadError(
                    f"{path}: line {line_number}: {key} = {json.dumps(value)}: must be a finite number >= 0"
                )
            if whole and not float(value).is_integer():
                raise WorkloadError(f"{path}: line {line_number}: {key} = {json.dumps(value)}: must be an integer >= 0")
            column.append(value)
    if not columns[0]:
        raise WorkloadError(f"{path}: no requests")
    return [np.array(column, dtype=np.int64 if whole else np.float64) for column, whole in zip(columns, integer)]


# ---------------------------------------------------------------------------------------------
# Real per-request traces


def load_azure(path: str | Path, *, name: str | None = None) -> Requests:
    """Azure LLM inference trace 2023: `TIMESTAMP` (wall clock, e.g. `2023-11-16 18:17:03.9799600`),
    `ContextTokens`, `GeneratedTokens`. Arrivals are seconds since the earliest row.

    The timestamps go through one numpy datetime64[ns] cast rather than `datetime.strptime`,
    whose `%f` takes at most 6 of the 7 fractional digits; the conv file (19,366 rows) loads in
    about 40 ms."""
    path = Path(path)
    columns, lines = _read_csv(path, ("TIMESTAMP", "ContextTokens", "GeneratedTokens"))
    stamps = columns["TIMESTAMP"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy warns on (and ignores) a zone suffix
        try:
            times = np.array(stamps, dtype="datetime64[ns]")
        except ValueError:
            times = None
        if times is None or np.isnat(times).any():
            index = next(i for i, stamp in enumerate(stamps) if not _is_time(stamp))
            raise WorkloadError(
                f"{path}: line {lines[index]}: TIMESTAMP = {stamps[index]!r}: "
                "must be a date and time like 2023-11-16 18:17:03.9799600"
            )
    arrival = (times - times.min()).astype(np.int64) / 1e9
    prompt = _count_column(str(path), columns["ContextTokens"], lines, "ContextTokens")
    output = _count_column(str(path), columns["GeneratedTokens"], lines, "GeneratedTokens")
    if name is None:
        name = {"AzureLLMInferenceTrace_conv.csv": "azure-conv", "AzureLLMInferenceTrace_code.csv": "azure-code"}.get(
            path.name, path.stem
        )
    return _sorted(arrival, prompt, output, name=name, source=_AZURE_CITATION.format(file=path.name))


def _is_time(text: str) -> bool:
    try:
        return not np.isnat(np.datetime64(text, "ns"))
    except ValueError:
        return False


def load_mooncake(path: str | Path, *, name: str = "mooncake") -> Requests:
    """Mooncake trace, JSON lines (optionally gzipped): `timestamp` (ms from trace start),
    `input_length`, `output_length`; other fields (`hash_ids`) are ignored. Times are kept
    as recorded, converted to seconds."""
    path = Path(path)
    timestamp_ms, prompt, output = _read_jsonl(path, ("timestamp", "input_length", "output_length"), (False, True, True))
    return _sorted(timestamp_ms / 1000.0, prompt, output, name=name, source=_MOONCAKE_CITATION)


def load_requests_csv(path: str | Path, *, name: str | None = None) -> Requests:
    """This project's request CSV: a header naming `arrival_s` (seconds from the trace start,
    >= 0, kept as written: leading idle time is part of the workload), `prompt_tokens` and
    `output_tokens` (integers >= 0); other columns are ignored. Rows may be in any order."""
    path = Path(path)
    columns, lines = _read_csv(path, REQUEST_COLUMNS)
    where = str(path)
    arrival = _float_column(where, columns["arrival_s"], lines, "arrival_s")
    prompt = _count_column(where, columns["prompt_tokens"], lines, "prompt_tokens")
    output = _count_column(where, columns["output_tokens"], lines, "output_tokens")
    return _sorted(arrival, prompt, output, name=name or _stem(path), source=str(path))


def load_requests_jsonl(path: str | Path, *, name: str | None = None) -> Requests:
    """JSON lines (optionally .gz), one object a request with the keys of `load_requests_csv`."""
    path = Path(path)
    arrival, prompt, output = _read_jsonl(path, REQUEST_COLUMNS, (False, True, True))
    return _sorted(arrival, prompt, output, name=name or _stem(path), source=str(path))


def write_requests(requests: Requests, path: str | Path) -> None:
    """Write `requests` as .csv, .jsonl or .jsonl.gz (by suffix), readable by the loaders above.
    Times are written with repr, so they read back bit for bit."""
    path = Path(path)
    rows = zip(requests.arrival_s.tolist(), requests.prompt_tokens.tolist(), requests.output_tokens.tolist())
    if path.name.endswith(".csv"):
        text = ",".join(REQUEST_COLUMNS) + "\n" + "".join(f"{t!r},{p},{o}\n" for t, p, o in rows)
        path.write_text(text, encoding="utf-8")
    elif path.name.endswith((".jsonl", ".jsonl.gz")):
        text = "".join(f'{{"arrival_s": {t!r}, "prompt_tokens": {p}, "output_tokens": {o}}}\n' for t, p, o in rows)
        if path.name.endswith(".gz"):
            with gzip.open(path, "wt", encoding="utf-8") as f:
                f.write(text)
        else:
            path.write_text(text, encoding="utf-8")
    else:
        raise WorkloadError(f"{path}: unknown format; write .csv, .jsonl or .jsonl.gz")


def _stem(path: Path) -> str:
    return path.name.removesuffix(".gz").rsplit(".", 1)[0]


# ---------------------------------------------------------------------------------------------
# ServeGen: per-client rate windows, arrivals synthesized


@dataclass(frozen=True, eq=False)
class _ClientWindows:
    """One client's 10-minute windows, one entry per window (read-only arrays)."""

    start_s: np.ndarray
    rate_rps: np.ndarray
    cv: np.ndarray
    pattern: np.ndarray  # _IDLE, _GAMMA or _WEIBULL
    shape: np.ndarray
    scale: np.ndarray


@dataclass(frozen=True)
class ServeGenClient:
    """A ServeGen client (tenant) of one model, summarized over the whole 14 days."""

    client: str
    mean_rate_rps: float
    peak_rate_rps: float
    idle_fraction: float
    windows: int


_MEMBER = re.compile(r"(?:\./)?data/language/([^/]+)/chunk-([^/]+)-trace\.csv")


def _read_servegen(archive: Path) -> dict[str, dict[str, _ClientWindows]]:
    try:
        stat = archive.stat()
    except FileNotFoundError:
        raise WorkloadError(f"{archive}: no such file") from None
    except OSError as e:
        raise WorkloadError(f"{archive}: cannot read: {e}") from None
    return _read_servegen_cached(str(archive.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=2)
def _read_servegen_cached(path: str, mtime_ns: int, size: int) -> dict[str, dict[str, _ClientWindows]]:
    """Every client of every model in the archive. Keyed on mtime and size so an edited file is
    re-read. The first call takes about 2 s for the 6 MB archive (271 clients x 2,016 windows,
    23 MB of CSV): 0.6 s of xz, the rest splitting and converting text; later calls in the
    process take milliseconds."""
    models: dict[str, dict[str, _ClientWindows]] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                match = _MEMBER.fullmatch(member.name)
                if match is None or not member.isfile():
                    continue
                where = f"{path}: {member.name}"
                data = tar.extractfile(member).read()
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise WorkloadError(f"{where}: not UTF-8 text ({e.reason} at byte {e.start})") from None
                models.setdefault(match[1], {})[match[2]] = _parse_client(where, text)
    except (tarfile.TarError, lzma.LZMAError, zlib.error, EOFError, OSError) as e:
        raise WorkloadError(f"{path}: cannot read the archive: {e}") from None
    if not models:
        raise WorkloadError(f"{path}: no data/language/<model>/chunk-<client>-trace.csv members")
    return models


def _parse_client(where: str, text: str) -> _ClientWindows:
    rows = [line.split(",") for line in text.splitlines()]
    if not rows:
        raise WorkloadError(f"{where}: no rows")
    for line_number, row in enumerate(rows, start=1):
        if len(row) != len(SERVEGEN_COLUMNS):
            raise WorkloadError(
                f"{where}: line {line_number}: {len(row)} fields, expected {len(SERVEGEN_COLUMNS)} "
                f"({', '.join(SERVEGEN_COLUMNS)}), no header"
            )
    lines = range(1, len(rows) + 1)
    columns = dict(zip(SERVEGEN_COLUMNS, zip(*rows)))
    numbers = {
        field: _float_column(where, columns[field], lines, field) for field in SERVEGEN_COLUMNS if field != "pattern"
    }
    names = np.array(columns["pattern"])
    pattern = np.full(len(rows), -1, dtype=np.int8)
    for code, label in ((_IDLE, ""), (_GAMMA, "Gamma"), (_WEIBULL, "Weibull")):
        pattern[names == label] = code
    if (pattern < 0).any():
        index = int(np.argmax(pattern < 0))
        raise WorkloadError(
            f"{where}: line {index + 1}: pattern = {columns['pattern'][index]!r}: "
            "must be Gamma, Weibull or empty (idle window)"
        )
    start, rate, shape, scale = numbers["window_start_s"], numbers["rate"], numbers["shape"], numbers["scale"]
    steps = np.diff(start)
    if (steps != WINDOW_S).any():
        index = int(np.argmax(steps != WINDOW_S)) + 1
        raise WorkloadError(
            f"{where}: line {index + 1}: window_start_s = {columns['window_start_s'][index]}: "
            f"windows must be {WINDOW_S:g} s apart (the previous starts at {start[index - 1]:g})"
        )
    active = rate > 0
    checks = (
        (active & (pattern == _IDLE), "pattern", "a window with rate > 0 needs a pattern (Gamma or Weibull)"),
        (active & (shape <= 0), "shape", "must be > 0 in a window with rate > 0"),
        (active & (scale <= 0), "scale", "must be > 0 in a window with rate > 0"),
        # Gamma(1 + 1/shape) overflows a float below shape 0.006; the data's smallest is 0.15.
        (active & (pattern == _WEIBULL) & (shape < 0.01), "shape", "must be >= 0.01 for Weibull"),
    )
    for bad, field, rule in checks:
        if bad.any():
            index = int(np.argmax(bad))
            raise WorkloadError(f"{where}: line {index + 1}: {field} = {columns[field][index]!r}: {rule}")
    pattern[~active] = _IDLE
    arrays = (start, rate, numbers["cv"], pattern, shape, scale)
    for array in arrays:
        array.setflags(write=False)
    return _ClientWindows(*arrays)


def _servegen_model(archive: Path, model: str) -> dict[str, _ClientWindows]:
    models = _read_servegen(archive)
    if model not in models:
        raise WorkloadError(f"{archive}: no model {model!r}; the archive has {', '.join(sorted(models))}")
    return models[model]


def _client_order(client: str) -> tuple[int, int | str]:
    return (0, int(client)) if client.isdigit() else (1, client)


def list_servegen_clients(archive: str | Path, model: str) -> list[ServeGenClient]:
    """The model's clients, busiest first (mean rate over all windows, idle ones counted as 0),
    with the fraction of windows in which each was idle: pick hot clients from the top and
    long-tail stand-ins (low rate, mostly idle) from the bottom."""
    clients = _servegen_model(Path(archive), model)
    summaries = [
        ServeGenClient(
            client=client,
            mean_rate_rps=float(windows.rate_rps.mean()),
            peak_rate_rps=float(windows.rate_rps.max()),
            idle_fraction=float((windows.pattern == _IDLE).mean()),
            windows=len(windows.rate_rps),
        )
        for client, windows in clients.items()
    ]
    return sorted(summaries, key=lambda c: (-c.mean_rate_rps, _client_order(c.client)))


def load_servegen(
    archive: str | Path,
    *,
    model: str,
    clients: Sequence[str] | None,
    seed: int,
    start_s: float = 0.0,
    end_s: float | None = None,
    rate_scale: float = 1.0,
    lengths: Requests | None = None,
    traces_dir: str | Path | None = None,
    max_requests: int = 10_000_000,
) -> Requests:
    """Requests of the given clients of `model` (None: all of them, the model's whole load) over
    [start_s, end_s) of ServeGen's 14 days (window 0 starts at midnight), times rebased so
    start_s is 0. Each client is an independent arrival process; their superposition is the
    workload.

    Arrivals. Within each active 600 s window the inter-arrival times are drawn from the
    window's distribution (Gamma or Weibull, numpy's parametrization: shape k, scale in
    seconds), as a stationary renewal process: the first arrival comes after a forward-
    recurrence time (a uniform fraction of a length-biased gap: Gamma(k+1) for Gamma, scale *
    Gamma(1 + 1/k)**(1/k) for Weibull), so the expected count is exactly rate * 600 and a
    burst does not always start at the window's edge. Idle windows (rate 0, no pattern) have
    no arrivals.

    Scale: the archive's shape and scale are those of the inter-arrival distribution in
    seconds, but the scale is re-derived so the mean gap is exactly 1 / (rate * rate_scale):
    Gamma scale = 1 / (rate k), Weibull scale = 1 / (rate Gamma(1 + 1/k)). Measured over all
    206,224 active windows of m-large and m-mid (158,160 Gamma, 48,064 Weibull): for Gamma
    windows with 1,000 requests or more, mean gap (k * scale) * rate is 1.000 at the median
    (5th to 95th percentile 0.995 to 1.000) and 1/sqrt(k) equals the `cv` column, so the
    parameters are seconds; sparse Gamma windows drift (under 30 requests: median 0.88, 5th
    percentile 0.035, a fit to a handful of gaps), and Weibull windows (all with 100 requests
    or more) drift at every rate (median 1.16 to 1.26, about 3 at the 95th percentile; their
    shape implies a cv 0.77 to 0.86 times the `cv` column at the median). The rate is a plain
    count, so it is trusted; the shape is kept as the burstiness. `rate_scale` multiplies every window's rate (a hot model scaled to the fleet
    simulated): bursts keep their shape, compressed or stretched in time.

    Token lengths: the per-client trace has none, so each request takes a (prompt, output)
    pair drawn with replacement from `lengths` (pairs kept together, so their correlation
    survives); by default the Azure 2023 conv trace from the traces directory, a chat service
    like most of Model Studio's language traffic.

    Seeds: each client draws from its own stream, SeedSequence([seed, crc32(model/client)]),
    so one client's arrivals are the same alone or within a sum; lengths draw from a stream of
    their own, so changing `lengths` does not move arrivals. A client's windows are drawn in
    one vectorized pass, so another range or rate_scale is a fresh draw, not a cut of this one
    (`Requests.slice` gives cuts).

    Guard: a WorkloadError (before any drawing) when the expected count exceeds
    `max_requests`; m-large summed is about 237 million requests over 14 days.
    """
    archive = Path(archive)
    table = _servegen_model(archive, model)
    if clients is None:
        chosen = sorted(table, key=_client_order)
    else:
        chosen = [str(client) for client in clients]
        unknown = [client for client in chosen if client not in table]
        if unknown or not chosen:
            known = sorted(table, key=_client_order)
            raise WorkloadError(
                f"{archive}: model {model} has no client(s) {', '.join(unknown) or '(none given)'}; "
                f"it has {len(known)}: {', '.join(known[:30])}{', ...' if len(known) > 30 else ''} "
                "(list_servegen_clients shows their rates)"
            )
    trace_end_s = max(float(table[client].start_s[-1]) for client in chosen) + WINDOW_S
    end = trace_end_s if end_s is None else float(end_s)
    if not (0 <= start_s < end <= trace_end_s):
        raise WorkloadError(f"servegen {model}: need 0 <= start_s < end_s <= {trace_end_s:g}, got {start_s:g} and {end:g}")
    if not (math.isfinite(rate_scale) and rate_scale > 0):
        raise WorkloadError(f"servegen {model}: rate_scale must be a finite number > 0, got {rate_scale}")

    selections = []
    expected = 0.0
    for client in chosen:
        windows = table[client]
        take = (windows.pattern != _IDLE) & (windows.start_s < end) & (windows.start_s + WINDOW_S > start_s)
        overlap_s = np.minimum(windows.start_s[take] + WINDOW_S, end) - np.maximum(windows.start_s[take], start_s)
        expected += float((windows.rate_rps[take] * rate_scale * overlap_s).sum())
        selections.append((client, windows, take))
    if expected > max_requests:
        raise WorkloadError(
            f"servegen {model}: about {expected:,.0f} requests expected over [{start_s:g}, {end:g}) s with "
            f"{len(chosen)} client(s) at rate_scale {rate_scale:g}, more than max_requests {max_requests:,}; "
            "narrow the range (end_s), lower rate_scale or pick fewer clients"
        )

    parts = []
    for client, windows, take in selections:
        key = zlib.crc32(f"{model}/{client}".encode())
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, key])))
        times = _synthesize(
            rng,
            window_start_s=windows.start_s[take],
            rate_rps=windows.rate_rps[take] * rate_scale,
            pattern=windows.pattern[take],
            shape=windows.shape[take],
        )
        parts.append(times[(times >= start_s) & (times < end)])
    arrival = np.concatenate(parts) if parts else np.empty(0)
    arrival.sort()
    arrival -= start_s

    if lengths is None:
        lengths = load_azure(resolve_traces_dir(traces_dir) / AZURE_CONV)
    if not len(lengths):
        raise WorkloadError(f"servegen {model}: the lengths source {lengths.name!r} has no requests to sample")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, zlib.crc32(b"lengths")])))
    pick = rng.integers(len(lengths), size=len(arrival))
    if clients is None:
        who = "all clients"
    elif len(chosen) <= 5:
        who = "client " + ",".join(chosen)
    else:
        who = f"{len(chosen)} clients"
    return Requests(
        arrival,
        lengths.prompt_tokens[pick],
        lengths.output_tokens[pick],
        name=f"servegen-{model}-{who.replace(' ', '-')}" + (f"x{rate_scale:g}" if rate_scale != 1 else ""),
        source=(
            f"{_SERVEGEN_CITATION.format(model=model)}; {who}, [{start_s:g}, {end:g}) s, rate x{rate_scale:g}, "
            f"arrivals synthesized with seed {seed}; lengths sampled from {lengths.name} ({lengths.source})"
        ),
        span_s=end - start_s,
    )


def _synthesize(
    rng: np.random.Generator, *, window_start_s: np.ndarray, rate_rps: np.ndarray, pattern: np.ndarray, shape: np.ndarray
) -> np.ndarray:
    """Arrival times (absolute, not sorted across windows) of a stationary renewal process in
    each window, whose gaps have the window's distribution and shape and mean 1 / rate."""
    parts: list[np.ndarray] = []
    for code in (_GAMMA, _WEIBULL):
        take = pattern == code
        k, rate, start = shape[take], rate_rps[take], window_start_s[take]
        if code == _GAMMA:
            scale, cv = 1 / (rate * k), 1 / np.sqrt(k)
        else:
            log_g1 = np.array([math.lgamma(1 + 1 / x) for x in k])
            log_g2 = np.array([math.lgamma(1 + 2 / x) for x in k])
            scale, cv = np.exp(-log_g1) / rate, np.sqrt(np.expm1(log_g2 - 2 * log_g1))
        # Draws a window needs: its expected count plus 4 standard deviations (a renewal count
        # has variance about n cv^2), so a second round is rare; a window that still falls
        # short is continued where it stopped, never redrawn (a redraw would bias it down).
        expected = rate * WINDOW_S
        budget = np.ceil(expected + 4 * cv * np.sqrt(expected) + 4).astype(np.int64)
        first = 0
        while first < len(budget):
            last = first + max(1, int(np.searchsorted(np.cumsum(budget[first:]), _DRAWS_PER_CHUNK, side="right")))
            window = slice(first, last)
            parts.extend(_synthesize_chunk(rng, code, start[window], k[window], scale[window], budget[window]))
            first = last
    return np.concatenate(parts) if parts else np.empty(0)


def _draw_gaps(rng: np.random.Generator, code: int, k, scale, size=None) -> np.ndarray:
    if code == _GAMMA:
        return rng.standard_gamma(k, size) * scale
    return rng.weibull(k, size) * scale


def _synthesize_chunk(rng, code, start_s, k, scale, budget) -> list[np.ndarray]:
    gaps = _draw_gaps(rng, code, np.repeat(k, budget), np.repeat(scale, budget))
    heads = np.concatenate(([0], np.cumsum(budget)[:-1]))
    # The first arrival comes after a forward-recurrence time: a uniform fraction of a
    # length-biased gap. Length-biasing Gamma(k, s) gives Gamma(k + 1, s); for Weibull(k, s),
    # (X / s)^k is Exp(1), and weighting by X makes it Gamma(1 + 1/k, 1).
    if code == _GAMMA:
        biased = rng.standard_gamma(k + 1) * scale
    else:
        biased = rng.standard_gamma(1 + 1 / k) ** (1 / k) * scale
    gaps[heads] = rng.random(len(budget)) * biased
    ends = np.cumsum(gaps)
    local = ends - np.repeat(ends[heads] - gaps[heads], budget)
    reached = local[heads + budget - 1]
    keep = local < WINDOW_S
    parts = [np.repeat(start_s, budget)[keep] + local[keep]]
    for window in np.flatnonzero(reached < WINDOW_S):
        time = reached[window]
        while time < WINDOW_S:
            more = time + np.cumsum(_draw_gaps(rng, code, k[window], scale[window], budget[window]))
            parts.append(start_s[window] + more[more < WINDOW_S])
            time = more[-1]
    return parts


# ---------------------------------------------------------------------------------------------
# One spec string for the CLI


def resolve_traces_dir(traces_dir: str | Path | None = None) -> Path:
    """`traces_dir` if given, else $AUTOSCALER_TRACES, else the traces shipped in simulations/traces."""
    if traces_dir is not None:
        return Path(traces_dir)
    if os.environ.get(TRACES_ENV):
        return Path(os.environ[TRACES_ENV])
    return DEFAULT_TRACES_DIR


def require_traces(relatives: Sequence[str], traces_dir: str | Path | None = None) -> Path:
    """The traces directory (`resolve_traces_dir`), once it is known to hold every file of
    `relatives`; otherwise a WorkloadError naming the directory, where that directory came from
    and every file missing, so a run that needs several files fails before it starts, on the
    directory rather than on whichever flag happened to read the first one."""
    directory = resolve_traces_dir(traces_dir)
    missing = [relative for relative in dict.fromkeys(relatives) if not (directory / relative).is_file()]
    if missing:
        if traces_dir is not None:
            origin = "as passed"
        elif os.environ.get(TRACES_ENV):
            origin = f"from ${TRACES_ENV}"
        else:
            origin = f"the default, shipped with the repository; set ${TRACES_ENV} to use another"
        raise WorkloadError(
            f"traces directory {directory} ({origin}) lacks {', '.join(missing)}; "
            "it must hold the files simulations/traces/SOURCES.md lists"
        )
    return directory


SPEC_FORMS = (
    "azure-conv, azure-code (Azure 2023 traces)",
    "mooncake (Mooncake FAST'25 trace)",
    "servegen:<model>:<selector>[:start=S][:end=S][:scale=F] with model m-large or m-mid, selector "
    "client=ID[,ID...] | top=N (the N busiest clients) | sum (all clients: the hot model), start/end in "
    "seconds of the 14 days, scale multiplying the rate",
    "a path to a .csv, .jsonl or .jsonl.gz request file (arrival_s, prompt_tokens, output_tokens; "
    "Azure and Mooncake files are recognized by their columns)",
)


def load_workload(
    spec: str, *, seed: int, traces_dir: str | Path | None = None, max_requests: int = 10_000_000
) -> Requests:
    """The workload a CLI spec names (see SPEC_FORMS). Shorthand names and ServeGen read from the
    traces directory (`resolve_traces_dir`); `seed` only matters for ServeGen synthesis."""
    spec = spec.strip()
    directory = resolve_traces_dir(traces_dir)
    shorthands = {
        "azure-conv": lambda: load_azure(_trace_file(directory, AZURE_CONV)),
        "azure-code": lambda: load_azure(_trace_file(directory, AZURE_CODE)),
        "mooncake": lambda: load_mooncake(_trace_file(directory, MOONCAKE)),
    }
    if spec in shorthands:
        return shorthands[spec]()
    if spec.startswith("servegen:"):
        return _load_servegen_spec(spec, seed=seed, directory=directory, max_requests=max_requests)
    if spec.endswith((".csv", ".jsonl", ".jsonl.gz")):
        return _load_file(Path(spec))
    raise WorkloadError(f"unknown workload spec {spec!r}; allowed: " + "; ".join(SPEC_FORMS))


def _trace_file(directory: Path, relative: str) -> Path:
    path = directory / relative
    if not path.is_file():
        raise WorkloadError(
            f"{path}: no such file (traces directory {directory}; set {TRACES_ENV} or pass traces_dir to use another)"
        )
    return path


def _load_file(path: Path) -> Requests:
    first_line = _first_line(path)
    if path.name.endswith(".csv"):
        if "TIMESTAMP" in first_line and "ContextTokens" in first_line:
            return load_azure(path)
        return load_requests_csv(path)
    if '"input_length"' in first_line and '"arrival_s"' not in first_line:
        return load_mooncake(path, name=_stem(path))
    return load_requests_jsonl(path)


def _first_line(path: Path) -> str:
    """The first non-blank line, to tell formats apart without reading the whole file."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") if path.name.endswith(".gz") else open(path, encoding="utf-8") as f:
            return next((line for line in f if line.strip()), "")
    except FileNotFoundError:
        raise WorkloadError(f"{path}: no such file") from None
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as e:
        raise WorkloadError(f"{path}: cannot read: {e}") from None


def _load_servegen_spec(spec: str, *, seed: int, directory: Path, max_requests: int) -> Requests:
    usage = f"servegen spec {spec!r}: expected {SPEC_FORMS[2]}"
    fields = spec.split(":")
    if len(fields) < 3 or not fields[1]:
        raise WorkloadError(usage)
    model = fields[1]
    selector: tuple[str, str] | None = None
    options: dict[str, float] = {}
    for field in fields[2:]:
        key, _, value = field.partition("=")
        if key in ("client", "top", "sum"):
            if selector is not None:
                raise WorkloadError(f"{usage}; got two selectors")
            if (key == "sum") != (value == ""):
                raise WorkloadError(f"{usage}; {field!r} is not a selector")
            selector = (key, value)
        elif key in ("start", "end", "scale"):
            try:
                options[key] = float(value)
            except ValueError:
                raise WorkloadError(f"{usage}; {key} = {value!r} is not a number") from None
        else:
            raise WorkloadError(f"{usage}; unknown field {field!r}")
    if selector is None:
        raise WorkloadError(f"{usage}; no selector")
    archive = _trace_file(directory, SERVEGEN_ARCHIVE)
    kind, value = selector
    if kind == "sum":
        clients = None
    elif kind == "client":
        clients = [client.strip() for client in value.split(",") if client.strip()]
    else:
        if not value.isdigit() or int(value) < 1:
            raise WorkloadError(f"{usage}; top = {value!r} must be a whole number >= 1")
        clients = [c.client for c in list_servegen_clients(archive, model)[: int(value)]]
    return load_servegen(
        archive,
        model=model,
        clients=clients,
        seed=seed,
        start_s=options.get("start", 0.0),
        end_s=options.get("end"),
        rate_scale=options.get("scale", 1.0),
        traces_dir=directory,
        max_requests=max_requests,
    )

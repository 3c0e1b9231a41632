"""Convert simulations/traces/vllm-burstgpt into the bundled replay trace.

    python -m simulations.convert_burstgpt [--traces DIR] [--out autoscaler/data/burstgpt.csv.gz]

Source: liao4s/BurstGPT_test @ 60886990, example/logs (MIT-style BurstGPT licence): one vLLM
replica serving Llama-3.2-1B on a 24 GB GPU while BurstGPT load was replayed at four scales.
The four runs share one monotonic clock, so laid out on it they form a real 3.3-hour
timeline: four bursts with idle gaps of 706 s, 990 s and 9,497 s between them.

What is recorded and what is derived:
- waiting, running, kv_cache_usage: vllm_log_scaleN.csv (num_pending, num_running,
  gpu_kvcache_usage / 100), about 2 Hz, as recorded.
- gpu_utilization: gpu_log_scaleN.json (GPU_utilization, the quantity DCGM_FI_DEV_GPU_UTIL
  reports), as recorded.
- wake: requests arriving per second over the last 10 s, from detail_log_scaleN.json
  (arrival = record_time - total_chunk_time), every 10 s over the whole timeline: this is
  the demand a gateway in front of the model would have seen.
- completion_rate: requests finished per second over the last minute (record_time is written
  when a request finishes), every 10 s: what rate(vllm:request_success_total[1m]) gives.
- Between runs the engine logger was off. Each run's detail log is the complete list of
  requests it sent and the last of them finished within 0.5 s of the log's last sample, so
  the engine was idle: the converter writes waiting = running = kv_cache_usage = 0 every 10 s
  from 1 s after a run's last request finished to the next run's first sample. These rows
  are derived, not recorded; GPU utilization is left absent there.
- replicas: 1 throughout (one replica served the whole recording), for comparison.

The same series are written under two model names, `llama-1b-hot` and `llama-1b-tail`, so
that the bundled replay shows one load under the hot and the long-tail policy side by side.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
from pathlib import Path

import numpy as np

from simulations.workload import resolve_traces_dir

SCALES = (100, 500, 1000, 2000)
MODELS = ("llama-1b-hot", "llama-1b-tail")
FILL_STEP_S = 10.0
WAKE_WINDOW_S = 10.0
COMPLETION_WINDOW_S = 60.0


def convert(traces: Path) -> list[tuple[float, str, float]]:
    runs = []
    for scale in SCALES:
        with open(traces / f"vllm_log_scale{scale}.csv") as f:
            engine = [row for row in csv.DictReader(f)]
        gpu = json.loads((traces / f"gpu_log_scale{scale}.json").read_text()).values()
        requests = json.loads((traces / f"detail_log_scale{scale}.json").read_text()).values()
        runs.append((engine, list(gpu), list(requests)))
    runs.sort(key=lambda run: float(run[0][0]["timestamp"]))
    origin = float(runs[0][0][0]["timestamp"])

    rows: list[tuple[float, str, float]] = []
    arrivals, finishes = [], []
    for index, (engine, gpu, requests) in enumerate(runs):
        for sample in engine:
            t = float(sample["timestamp"]) - origin
            rows += [
                (t, "waiting", float(sample["num_pending"])),
                (t, "running", float(sample["num_running"])),
                (t, "kv_cache_usage", min(float(sample["gpu_kvcache_usage"]) / 100.0, 1.0)),
            ]
        rows += [(float(s["record_time"]) - origin, "gpu_utilization", float(s["GPU_utilization"])) for s in gpu]
        arrivals += [float(r["record_time"]) - float(r["total_chunk_time"]) - origin for r in requests]
        finishes += [float(r["record_time"]) - origin for r in requests]
        if index + 1 < len(runs):
            idle_from = max(float(r["record_time"]) for r in requests) - origin + 1.0
            next_start = float(runs[index + 1][0][0]["timestamp"]) - origin
            for t in np.arange(idle_from, next_start, FILL_STEP_S):
                rows += [(float(t), "waiting", 0.0), (float(t), "running", 0.0), (float(t), "kv_cache_usage", 0.0)]

    end = max(t for t, _, _ in rows)
    arrivals = np.sort(np.asarray(arrivals))
    for t in np.arange(0.0, end + WAKE_WINDOW_S, WAKE_WINDOW_S):
        count = np.searchsorted(arrivals, t, side="right") - np.searchsorted(arrivals, t - WAKE_WINDOW_S, side="right")
        rows.append((float(t), "wake", count / WAKE_WINDOW_S))
    finishes = np.sort(np.asarray(finishes))
    for t in np.arange(0.0, end + FILL_STEP_S, FILL_STEP_S):
        done = np.searchsorted(finishes, t, side="right") - np.searchsorted(finishes, t - COMPLETION_WINDOW_S, side="right")
        rows.append((float(t), "completion_rate", done / COMPLETION_WINDOW_S))
    rows += [(float(t), "replicas", 1.0) for t in np.arange(0.0, end + FILL_STEP_S, FILL_STEP_S)]
    rows.sort()
    return rows


def write(rows: list[tuple[float, str, float]], out: Path) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["time_s", "name", "signal", "value"])
    for model in MODELS:
        writer.writerows((f"{t:.3f}", model, signal, f"{value:.6g}") for t, signal, value in rows)
    out.write_bytes(gzip.compress(text.getvalue().encode(), mtime=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=Path, default=resolve_traces_dir() / "vllm-burstgpt")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "autoscaler/data/burstgpt.csv.gz")
    args = parser.parse_args()
    rows = convert(args.traces)
    write(rows, args.out)
    print(f"wrote {len(rows) * len(MODELS)} samples over {rows[-1][0]:.0f} s to {args.out}")


if __name__ == "__main__":
    main()

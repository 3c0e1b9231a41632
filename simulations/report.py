"""The simulation report: a side-by-side table, a JSON file, and one PNG per model."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from simulations.simulate import ModelResult, Slo, result_record

# (title, width, field, format): one row per policy, one block per model.
COLUMNS = (
    ("GPU-h", 8, "gpu_hours", "{:.2f}"),
    ("after last", 11, "after_last_gpu_hours", "{:.2f}"),
    ("SLO met", 8, "slo_attainment", "{:.1%}"),
    ("wait p50", 9, "queue_wait_p50_s", "{:.2f}"),
    ("p95", 8, "queue_wait_p95_s", "{:.2f}"),
    ("p99", 8, "queue_wait_p99_s", "{:.2f}"),
    ("TTFT p95", 9, "ttft_p95_s", "{:.2f}"),
    ("TPOT p95", 9, "tpot_p95_s", "{:.3f}"),
    ("cold", 6, "cold_start_requests", "{:d}"),
    ("actions", 8, "scaling_actions", "{:d}"),
    ("at zero s", 10, "seconds_at_zero", "{:.0f}"),
)


def format_table(results: Iterable[ModelResult]) -> str:
    lines = []
    for model, rows in _by_model(results).items():
        lines.append(f"{model} ({rows[0].requests:,} requests)")
        lines.append("  " + f"{'policy':<16}" + "".join(f"{title:>{width}}" for title, width, _, _ in COLUMNS))
        for row in rows:
            cells = "".join(f"{fmt.format(getattr(row, key)):>{width}}" for _, width, key, fmt in COLUMNS)
            lines.append(f"  {row.policy:<16}{cells}")
    return "\n".join(lines)


def _by_model(results: Iterable[ModelResult]) -> dict[str, list[ModelResult]]:
    grouped: dict[str, list[ModelResult]] = {}
    for result in results:
        grouped.setdefault(result.model, []).append(result)
    return grouped


def write_json(path: Path, results: Iterable[ModelResult], *, slo: Slo, meta: dict) -> None:
    path.write_text(
        json.dumps(
            {"slo": {"queue_wait_s": slo.queue_wait_s, "ttft_s": slo.ttft_s, "tpot_s": slo.tpot_s}, **meta, "results": [result_record(r) for r in results]},
            indent=2,
        )
        + "\n"
    )


def write_plots(directory: Path, results: Iterable[ModelResult], *, slo: Slo) -> list[Path]:
    """One PNG per model: demand on top, replicas in the middle, the queue below; a line per
    policy, so where one policy overshoots or lags is visible at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for model, rows in _by_model(results).items():
        figure, (demand, replicas, queue) = plt.subplots(3, 1, figsize=(11, 8), sharex=True, height_ratios=(1, 2, 1.2))
        first = rows[0].timeline
        minutes = [t / 60 for t in first["t"]]
        demand.fill_between(minutes, first["arrivals"], step="post", color="0.75")
        demand.set_ylabel("arrivals / s")
        demand.set_title(f"{model}: demand, replicas and queue per policy (SLO: {slo.describe()})")
        for row in rows:
            line = row.timeline
            label = f"{row.policy}: {row.gpu_hours:.1f} GPU-h, {row.slo_attainment:.0%} in SLO"
            style = {"linewidth": 2.2, "color": "black"} if row.policy == "ours" else {"linewidth": 1.1}
            replicas.step([t / 60 for t in line["t"]], line["replicas"], where="post", label=label, **style)
            queue.step([t / 60 for t in line["t"]], line["queue"], where="post", **style)
        replicas.set_ylabel("replicas (asked)")
        replicas.legend(fontsize=8, loc="upper left")
        queue.set_ylabel("requests queued")
        queue.set_yscale("symlog", linthresh=10)
        queue.set_xlabel("minutes")
        for axis in (demand, replicas, queue):
            axis.grid(alpha=0.3)
        figure.tight_layout()
        path = directory / f"{model}.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    return written

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


def standing_record(standing) -> dict:
    return {
        "model": standing.model,
        "policy": standing.policy,
        "configuration": standing.configuration,
        "configurations_run": standing.configurations_run,
        "on_edge": standing.on_edge,
        "tuning": result_record(standing.tuning),
        "held_out": [result_record(r) for r in standing.held_out],
    }


def format_summary(standings, *, bounds: dict[str, float], slo_target: float, held_out_seeds) -> str:
    """Per model, a markdown table: each contender's configuration, GPU-hours / share in SLO on
    the tuning seed and as the mean (min-max) over the held-out seeds, and the held-out
    GPU-hours as a multiple of the oracle's. A row at or above the target that costs less
    than the oracle is marked: the oracle is then no bound there."""
    lines = []
    by_model: dict[str, list] = {}
    for standing in standings:
        by_model.setdefault(standing.model, []).append(standing)
    seeds = ", ".join(str(s) for s in held_out_seeds) or "none"
    for model, rows in by_model.items():
        oracle = next((r for r in rows if r.policy == "oracle"), None)
        oracle_gpu_h = _mean([r.gpu_hours for r in oracle.held_out]) if oracle and oracle.held_out else (
            oracle.tuning.gpu_hours if oracle else float("nan"))
        lines.append(f"#### {model} ({rows[0].tuning.requests:,} requests; work bound {bounds.get(model, float('nan')):.2f} GPU-h)")
        lines.append("")
        lines.append(f"| contender | configuration | tuning seed: GPU-h / in SLO | held-out seeds ({seeds}): GPU-h / in SLO | x oracle | TPOT p95 ms | configs |")
        lines.append("|---|---|---|---|---|---|---|")
        for row in rows:
            kept = row.held_out or [row.tuning]
            gpu = [r.gpu_hours for r in kept]
            met = [r.slo_attainment for r in kept]
            ratio = _mean(gpu) / oracle_gpu_h if oracle_gpu_h and oracle_gpu_h == oracle_gpu_h else float("nan")
            flag = ""
            if row.policy != "oracle" and min(met) >= slo_target and ratio < 1:
                flag = " (below the oracle)"
            edge = " (edge)" if row.on_edge else ""
            lines.append(
                f"| {row.policy} | {row.configuration}{edge} | {row.tuning.gpu_hours:.2f} / {row.tuning.slo_attainment:.1%} "
                f"| {_mean(gpu):.2f} ({min(gpu):.2f}-{max(gpu):.2f}) / {_mean(met):.1%} ({min(met):.1%}-{max(met):.1%}) "
                f"| {ratio:.2f}{flag} | {1e3 * _mean([r.tpot_p95_s for r in kept]):.0f} | {row.configurations_run} |"
            )
        lines.append("")
    return "\n".join(lines)


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


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

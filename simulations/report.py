"""The simulation report: a side-by-side table, a JSON file, and one PNG per model."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

from simulations.simulate import ModelResult, Slo, result_record

def share(value: float) -> str:
    """A share as a percentage that never rounds up to a whole one: 99.96% in SLO is 99.9%,
    not 100%, and 100% means every request. No requests, no share: n/a."""
    if not math.isfinite(value):
        return "n/a"
    if value in (0.0, 1.0):
        return f"{value:.0%}"
    return f"{math.floor(value * 1000 + 1e-9) / 10:.1f}%"


# (title, width, field, format or function): one row per policy, one block per model.
COLUMNS = (
    ("GPU-h", 8, "gpu_hours", "{:.2f}"),
    ("after last", 11, "after_last_gpu_hours", "{:.2f}"),
    ("SLO met", 8, "slo_attainment", share),
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
            cells = "".join(f"{_cell(fmt, getattr(row, key)):>{width}}" for _, width, key, fmt in COLUMNS)
            lines.append(f"  {row.policy:<16}{cells}")
    return "\n".join(lines)


def _cell(fmt, value) -> str:
    return fmt(value) if callable(fmt) else fmt.format(value)


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


# A style per policy that no other shares, so that two policies asking for the same replicas
# stay apart: the lines drawn first are wider and lighter, the later ones narrower and dashed
# on top of them (KEDA's and the HPA's counts often coincide: KEDA drives an HPA).
POLICY_STYLES = {
    "ours": {"color": "black", "linestyle": "-", "linewidth": 2.4, "zorder": 6},
    "hpa": {"color": "tab:orange", "linestyle": "-", "linewidth": 5.0, "alpha": 0.5, "zorder": 2},
    "keda": {"color": "tab:blue", "linestyle": (0, (4, 2)), "linewidth": 1.4, "zorder": 4},
    "kpa": {"color": "tab:green", "linestyle": (0, (1, 1.5)), "linewidth": 1.8, "zorder": 3},
    "ray": {"color": "tab:purple", "linestyle": (0, (6, 2, 1, 2)), "linewidth": 1.4, "zorder": 3},
    "oracle": {"color": "tab:gray", "linestyle": (0, (2, 3)), "linewidth": 1.2, "zorder": 5},
}
# A tuned peer: its peer's colour, thinner and with its own dash.
TUNED_DASH = (0, (8, 2, 2, 2, 2, 2))
# Replicas up to this count are drawn on a linear scale, more on a log one: a long-tail
# model's 0, 1 and 2 replicas stay apart on a panel whose hot model reaches 100.
REPLICA_LINEAR_UP_TO = 5


def policy_style(policy: str) -> dict:
    """The line style of `policy` ("keda", or a tuned "keda-tuned(12)")."""
    base, tuned, _ = policy.partition("-tuned")
    style = dict(POLICY_STYLES.get(base, {"color": "tab:brown", "linestyle": "-", "linewidth": 1.2, "zorder": 3}))
    if tuned:
        style.update(linestyle=TUNED_DASH, linewidth=1.0, alpha=1.0, zorder=style["zorder"] + 1)
    return style


def plot_model(model: str, rows: list[ModelResult], *, slo: Slo):
    """The figure of one model: demand on top, replicas in the middle, the queue below; a line
    per policy, so where one policy overshoots or lags is visible at a glance. The legend sits
    right of the panels, outside the data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, (demand, replicas, queue) = plt.subplots(3, 1, figsize=(13, 8), sharex=True, height_ratios=(1, 2, 1.2))
    first = rows[0].timeline
    minutes = [t / 60 for t in first["t"]]
    demand.fill_between(minutes, first["arrivals"], step="post", color="0.75")
    demand.set_ylabel("arrivals / s")
    demand.set_title(f"{model}: demand, replicas and queue per policy (SLO: {slo.describe()})")
    most_replicas = most_queued = 1
    for row in rows:
        line = row.timeline
        label = f"{row.policy}: {row.gpu_hours:.1f} GPU-h, {share(row.slo_attainment)} in SLO"
        style = policy_style(row.policy)
        replicas.step([t / 60 for t in line["t"]], line["replicas"], where="post", label=label, **style)
        queue.step([t / 60 for t in line["t"]], line["queue"], where="post", **style)
        most_replicas = max(most_replicas, max(line["replicas"], default=0))
        most_queued = max(most_queued, max(line["queue"], default=0))
    replicas.set_ylabel("replicas (asked)")
    _count_axis(replicas, most_replicas, linear_up_to=REPLICA_LINEAR_UP_TO)
    replicas.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)
    queue.set_ylabel("requests queued")
    _count_axis(queue, most_queued, linear_up_to=10)
    queue.set_xlabel("minutes")
    for axis in (demand, replicas, queue):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


COUNT_TICKS = (0, 1, 2, 3, 4, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 100_000, 1_000_000)


def _count_axis(axis, most: float, *, linear_up_to: int) -> None:
    """A count axis, linear up to `linear_up_to` and logarithmic above, its ticks whole counts."""
    from matplotlib.ticker import FixedLocator, FixedFormatter, NullLocator

    axis.set_yscale("symlog", linthresh=linear_up_to, linscale=1.5)
    top = max(most * 1.2, linear_up_to + 0.5)
    # Every whole count on a short linear part; past five only the round ones, so they do not crowd.
    ticks = [t for t in COUNT_TICKS if t <= top and (linear_up_to <= 5 or t in (0, 1, 5) or t >= linear_up_to)]
    axis.yaxis.set_major_locator(FixedLocator(ticks))
    axis.yaxis.set_major_formatter(FixedFormatter([f"{t:,}" for t in ticks]))
    axis.yaxis.set_minor_locator(NullLocator())
    axis.set_ylim(-0.3, top)


def write_plots(directory: Path, results: Iterable[ModelResult], *, slo: Slo) -> list[Path]:
    """One PNG per model (plot_model)."""
    import matplotlib.pyplot as plt

    written = []
    for model, rows in _by_model(results).items():
        figure = plot_model(model, rows, slo=slo)
        path = directory / f"{model}.png"
        # bbox_inches="tight" keeps the legend right of the panels inside the image.
        figure.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(figure)
        written.append(path)
    return written

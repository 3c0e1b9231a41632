"""The simulation report's figures and table, read as a person reads them: every policy's line
distinct (KEDA's over the HPA's it drives), the legend outside the panels, the replica axis
showing 0, 1 and 2 apart beside a hot model's 100, and no share rounded up to 100%.
Matplotlib's own figure objects are the evidence; no simulation is needed but a made timeline."""

from __future__ import annotations

import math

import pytest

from simulations.contenders import POLICIES
from simulations.report import REPLICA_LINEAR_UP_TO, format_table, plot_model, policy_style, share
from simulations.simulate import ModelResult, Slo


def result(policy: str, replicas: list[float], *, attainment: float = 0.95) -> ModelResult:
    t = [float(i) * 60 for i in range(len(replicas))]
    return ModelResult(
        model="m", policy=policy, requests=1000, gpu_hours=1.0, slo_attainment=attainment, queue_wait_p50_s=0.0,
        queue_wait_p95_s=0.0, queue_wait_p99_s=0.0, ttft_p95_s=0.1, tpot_p95_s=0.01, after_last_gpu_hours=0.0,
        cold_start_requests=0, rejected=0, unserved=0, scaling_actions=0, seconds_at_zero=0.0,
        timeline={"t": t, "arrivals": [1.0] * len(t), "replicas": replicas, "ready": replicas, "queue": [0.0] * len(t),
                  "completed": [1.0] * len(t)},
    )


@pytest.mark.parametrize(("value", "shown"), [
    (0.9996, "99.9%"), (0.999, "99.9%"), (1.0, "100%"), (0.0, "0%"), (0.0004, "0.0%"), (0.95, "95.0%"),
    (0.12345, "12.3%"), (math.nan, "n/a"),
])
def test_a_share_is_never_rounded_up_to_a_whole(value: float, shown: str) -> None:
    assert share(value) == shown


def test_the_table_shows_99_9_not_100() -> None:
    table = format_table([result("ours", [1, 1], attainment=0.9996)])
    assert "99.9%" in table and "100" not in table


def test_every_policy_and_its_tuned_run_have_a_style_of_their_own() -> None:
    names = [*POLICIES, *(f"{p}-tuned(12)" for p in POLICIES if p not in ("ours", "oracle"))]
    styles = [tuple(sorted((k, str(v)) for k, v in policy_style(name).items() if k != "zorder")) for name in names]
    assert len(set(styles)) == len(names)


def test_keda_is_drawn_visibly_over_the_hpa_it_drives() -> None:
    """KEDA scales through an HPA, so their counts often coincide: the HPA's line is wider and
    below, KEDA's dashed and above, and both show."""
    hpa, keda = policy_style("hpa"), policy_style("keda")
    assert hpa["linewidth"] > keda["linewidth"] and hpa["zorder"] < keda["zorder"]
    assert keda["linestyle"] != "-" and keda["color"] != hpa["color"]


def test_the_legend_sits_outside_the_panels_and_keeps_99_9() -> None:
    rows = [result("ours", [2, 1, 0, 1, 2, 100], attainment=0.9996), result("keda", [2, 2, 1, 0, 1, 100]),
            result("hpa", [2, 2, 1, 1, 1, 100])]
    figure = plot_model("m", rows, slo=Slo())
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    (legend,) = [axis.get_legend() for axis in figure.axes if axis.get_legend() is not None]
    box = legend.get_window_extent(renderer)
    for axis in figure.axes:
        panel = axis.get_window_extent(renderer)
        assert box.x0 >= panel.x1, "the legend overlaps a panel's data area"
    assert [t.get_text() for t in legend.get_texts()][0] == "ours: 1.0 GPU-h, 99.9% in SLO"


def test_the_replica_axis_keeps_small_counts_apart_beside_large_ones() -> None:
    """0, 1 and 2 replicas are a long-tail model's whole range: on a linear 0-100 axis they
    would fall within a few pixels. Linear up to 5, logarithmic above: each of 0..5 a tick,
    and the step from 0 to 1 at least a tenth of the panel."""
    figure = plot_model("m", [result("ours", [0, 1, 2, 100])], slo=Slo())
    replicas = figure.axes[1]
    assert replicas.get_yscale() == "symlog"
    ticks = list(replicas.get_yticks())
    assert ticks[: REPLICA_LINEAR_UP_TO + 1] == list(range(REPLICA_LINEAR_UP_TO + 1)) and 100 in ticks
    figure.canvas.draw()
    to_pixels = replicas.transData.transform
    height = replicas.get_window_extent().height
    assert to_pixels((0, 1))[1] - to_pixels((0, 0))[1] > height / 10

"""The closed-loop simulator: the cluster's documented behaviours, metrics as Prometheus would
deliver them, our Controller in the loop, the oracle, the CLI and the suite on a short slice."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from simulations.calibration import A100_8B
from simulations.cluster import Cluster, ColdStart, ModelSetup
from simulations.compare import compare, warm_start
from simulations.contenders import driver_for
from simulations.peers.oracle import needed_per_second
from simulations.sim_adapters import SimulatedPrometheus, peer_view
from simulations.simulate import Slo, run
from simulations.workload import Requests, write_requests

FIXED_COLD_START = ColdStart(median_s=60.0, sigma=0.0, min_s=60.0, max_s=60.0)


def steady(rate_rps: float, duration_s: float, *, prompt: int = 500, output: int = 100, start_s: float = 0.0) -> Requests:
    arrival = start_s + np.arange(0.0, duration_s, 1.0 / rate_rps)
    return Requests(arrival, np.full(len(arrival), prompt), np.full(len(arrival), output), name="steady", source="test")


def setup(workload: Requests, *, kind: str = "hot", initial: int = 1, cold_start: ColdStart = FIXED_COLD_START) -> ModelSetup:
    return ModelSetup("m", workload, A100_8B, cold_start, kind=kind, initial_replicas=initial)


def test_a_starting_replica_costs_gpu_time_and_serves_nothing():
    cluster = Cluster([setup(steady(1.0, 600))], seed=1)
    model = cluster.models["m"]
    model.set_replicas(2, now=0.0)
    for second in range(59):
        cluster.step(float(second), second + 1.0)
    assert len(model.ready(59.0)) == 1 and model.spec_replicas == 2
    assert model.gpu_seconds == pytest.approx(2 * 59)
    assert model.replicas[1].busy_s == 0.0
    cluster.step(59.0, 61.0)
    assert len(model.ready(61.0)) == 2


def test_metrics_arrive_as_prometheus_delivers_them():
    cluster = Cluster([setup(steady(4.0, 600), initial=2)], seed=1)
    model = cluster.models["m"]
    for second in range(70):
        cluster.step(float(second), second + 1.0)
    cluster.take_scrape(70.0)
    signals = SimulatedPrometheus(cluster).fetch_signals(now=80.0).for_model("m")
    assert signals.running.value == sum(r.running for r in model.ready(70.0))  # summed over the 2 pods
    assert signals.running.age_s == 10.0  # as of the scrape, not of the query
    assert 0 < signals.gpu_utilization.value <= 100
    assert signals.wake.value == pytest.approx(4.0, rel=0.05)  # the gateway's request rate
    model.set_replicas(0, now=80.0)
    cluster.step(80.0, 81.0)
    cluster.take_scrape(81.0)
    at_zero = SimulatedPrometheus(cluster).fetch_signals(now=81.0).for_model("m")
    assert not at_zero.waiting.usable and not at_zero.running.usable  # no pod, no series
    assert at_zero.wake.usable
    assert peer_view(model, 81.0).waiting is None


def test_requests_arriving_at_zero_meet_a_cold_start_and_are_served_after_it():
    cluster = Cluster([setup(steady(1.0, 30, start_s=100.0), kind="long-tail", initial=0)], seed=1)
    model = cluster.models["m"]
    for second in range(100, 400):
        if second == 100:
            model.set_replicas(1, now=100.0)
        cluster.step(float(second), second + 1.0)
    requests = model.requests
    assert requests.cold[:30].sum() == 30  # ready only at 160
    assert np.all(requests.first_token_s >= 160.0)
    assert not np.isnan(requests.finished_s).any()


def test_a_replica_removed_while_busy_drains_its_requests():
    cluster = Cluster([setup(steady(2.0, 20, output=400), initial=2)], seed=1)
    model = cluster.models["m"]
    for second in range(10):
        cluster.step(float(second), second + 1.0)
    model.set_replicas(1, now=10.0)
    assert len(model.draining) == 1
    for second in range(10, 200):
        cluster.step(float(second), second + 1.0)
    assert not model.draining
    assert not np.isnan(model.requests.finished_s).any()


def test_requests_longer_than_max_model_len_are_refused_not_queued():
    workload = Requests(np.array([0.0, 1.0]), np.array([70_000, 500]), np.array([10, 10]), name="x", source="test")
    (result,) = run([setup(workload)], driver_for("ours", [setup(workload)]), policy="ours", seed=1, end_s=120)
    assert result.rejected == 1 and result.requests == 1 and result.unserved == 0


def test_the_same_seed_gives_the_same_results_and_another_seed_other_cold_starts():
    workload = steady(3.0, 900)
    setups = [setup(workload, cold_start=ColdStart())]
    first = run(setups, driver_for("keda", setups), policy="keda", seed=7)
    again = run(setups, driver_for("keda", setups), policy="keda", seed=7)
    assert first == again
    cluster_a, cluster_b = Cluster(setups, seed=7), Cluster(setups, seed=8)
    assert cluster_a.models["m"].peek_cold_start_s() != cluster_b.models["m"].peek_cold_start_s()


def test_our_controller_scales_a_long_tail_model_to_zero_and_wakes_it():
    # Two bursts an hour apart: the idle timeout is 60 s x (1 + 3) = 240 s.
    workload = Requests(
        np.concatenate([np.arange(0, 120, 0.5), np.arange(3600, 3720, 0.5)]),
        np.full(480, 500), np.full(480, 50), name="bursts", source="test",
    )
    setups = [setup(workload, kind="long-tail")]
    (result,) = run(setups, driver_for("ours", setups), policy="ours", seed=1)
    assert result.seconds_at_zero > 2400
    assert 0 < result.cold_start_requests < 240  # the second burst's first requests, not all
    assert result.unserved == 0


def test_a_hot_model_never_goes_to_zero_under_any_policy():
    workload = Requests(np.array([0.0, 3000.0]), np.array([100, 100]), np.array([10, 10]), name="sparse", source="test")
    setups = [setup(workload)]
    for policy in ("ours", "keda", "hpa", "kpa", "ray", "oracle"):
        (result,) = run(setups, driver_for(policy, setups), policy=policy, seed=1)
        assert result.seconds_at_zero == 0, policy


def test_oracle_needs_what_the_engine_time_bound_says():
    # 10 req/s of 1,000-token prompts and 100 output tokens on the A100 profile. The KV cache
    # holds 80,000 / 1,100 = 72.7 such requests, so a request costs the engine at least
    # 1,000 x 150 us + 100 x (1.5 ms + 12 ms / 72.7) = 0.3165 s: 3.17 replicas' time per second.
    workload = steady(10.0, 600, prompt=1000, output=100)
    needed = needed_per_second(workload.arrival_s, workload.prompt_tokens, workload.output_tokens, A100_8B, horizon_s=600)
    assert set(needed[100:500]) == {4}
    assert warm_start(workload, A100_8B, kind="hot") == needed[:300].max()


def test_tuned_peer_is_the_cheapest_setting_that_meets_the_slo():
    setups = [setup(steady(4.0, 900, prompt=800, output=120), initial=2)]
    results = compare(setups, ["kpa"], seed=1, slo=Slo(), tuned=True, slo_target=0.9, log=lambda line: None)
    default, tuned = results
    assert tuned.policy == "kpa-tuned"
    assert tuned.slo_attainment >= 0.9
    assert default.slo_attainment < 0.9  # Knative's default target of 70 in flight per pod is far past this knee


def test_simulate_cli_writes_the_report(tmp_path):
    trace = tmp_path / "requests.csv"
    write_requests(steady(2.0, 600), trace)
    out = tmp_path / "report"
    result = subprocess.run(
        [sys.executable, "-m", "simulations", "simulate", "--trace", str(trace), "--trace", f"{trace}@long-tail",
         "--policies", "ours,keda,oracle", "--out", str(out), "--seed", "3"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert {(r["model"], r["policy"]) for r in report["results"]} == {
        (m, p) for m in ("requests", "requests-2") for p in ("ours", "keda", "oracle")
    }
    assert "a100-40g-8b: step = 12.00 ms + 1.500 ms x batch" in (out / "report.txt").read_text()
    assert (out / "requests.png").stat().st_size > 10_000
    assert "GPU-h" in result.stdout
    assert f"wrote {out}/: report.txt, summary.md, report.json and 2 plots (requests.png, requests-2.png)" in result.stdout
    assert "differ in length" not in result.stderr  # one trace twice: the same length


def test_simulate_warns_in_one_line_when_its_traces_differ_in_length(tmp_path):
    """A 10-minute trace beside an hour-long one: the short one's model is simulated, and
    charged, for the hour; the warning names both lengths."""
    short, long = tmp_path / "short.csv", tmp_path / "long.csv"
    write_requests(steady(2.0, 600), short)
    write_requests(steady(0.02, 3600), long)
    result = subprocess.run(
        [sys.executable, "-m", "simulations", "simulate", "--trace", str(short), "--trace", f"{long}@long-tail",
         "--policies", "ours", "--out", str(tmp_path / "report")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (warning,) = [line for line in result.stderr.splitlines() if "differ in length" in line]
    assert warning.startswith("warning: ") and "short 600 s" in warning and "long 3550 s" in warning


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--trace", "azure-conv", "--policies", "ours,vpa"], "--policies: vpa unknown"),
        (["--trace", "nosuchtrace"], "nosuchtrace"),
        (["--trace", "azure-conv@warm"], "must be hot or long-tail"),
        (["--trace", "azure-conv", "--profile", "h200"], "unknown replica profile 'h200'"),
        (["--trace", "azure-conv", "--slo-target", "5"], "'5' is a share: give a number above 0 and at most 1"),
        (["--trace", "azure-conv", "--policies", ""], "--policies: none given; choose from ours, keda"),
    ],
)
def test_simulate_cli_rejects_bad_input_without_a_traceback(args, expected, tmp_path):
    result = subprocess.run([sys.executable, "-m", "simulations", "simulate", *args, "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert expected in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["simulate", "--trace", "azure-conv"], ["suite", "--slice-s", "60", "--entries", "azure-conv"]])
def test_an_out_that_is_a_file_is_named_before_the_run(command, tmp_path):
    taken = tmp_path / "report"
    taken.write_text("mine")
    result = subprocess.run([sys.executable, "-m", "simulations", *command, "--out", str(taken)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "is a file" in result.stderr and "; give a directory" in result.stderr and "Traceback" not in result.stderr
    assert taken.read_text() == "mine"


def test_the_standard_suite_runs_on_a_short_slice(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "simulations.suite", "--slice-s", "300", "--held-out-seeds", "2", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # A sliced run in its own folder, never among a full run's reports.
    sliced = tmp_path / "slice-300s"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slice-300s"]
    assert f"results in {sliced}/ (azure-code, azure-conv, mooncake, servegen-hot, mix)" in result.stdout
    assert f"wrote {sliced / 'mix'}/: report.txt, summary.md, report.json and 4 plots" in result.stdout
    for name in ("azure-code", "azure-conv", "mooncake", "servegen-hot", "mix"):
        report = json.loads((sliced / name / "report.json").read_text())
        policies = {r["policy"].split("-tuned")[0] for r in report["results"]}
        assert policies == {"ours", "keda", "hpa", "kpa", "ray", "oracle"}
        assert any(r["policy"].endswith("-tuned") for r in report["results"])
        assert all(len(standing["held_out"]) == 1 for standing in report["standings"])
        assert (sliced / name / "summary.md").read_text().startswith("#### ")
    assert "check at scale 2000" in result.stdout and "suite took" in result.stdout
    mix = json.loads((sliced / "mix" / "report.json").read_text())
    assert len({r["model"] for r in mix["results"]}) == 4


def test_the_suite_names_an_unknown_entry_and_the_known_ones():
    result = subprocess.run([sys.executable, "-m", "simulations.suite", "--entries", "mix,azure"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "--entries: azure unknown; choose from azure-code, azure-conv, mooncake, servegen-hot, mix, held-out" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_hpa_managed_long_tail_model_is_never_found_at_zero():
    workload = steady(0.5, 600, start_s=900.0)  # nothing in the first five minutes: warm start is 0
    setups = [setup(workload, kind="long-tail", initial=0)]
    (result,) = run(setups, driver_for("hpa", setups), policy="hpa", seed=1)
    assert result.seconds_at_zero == 0 and result.unserved == 0


def test_tuning_that_reaches_no_target_takes_the_cheapest_of_the_best(monkeypatch):
    from dataclasses import replace

    from simulations import compare as module
    from simulations import contenders

    setups = [setup(steady(2.0, 600), initial=2)]
    # Settings with the same (full) attainment and a target no setting can reach; no widening.
    small = replace(contenders.PEERS["ray"], targets=(1.0, 16.0), delays=(600.0,))
    monkeypatch.setitem(contenders.CONTENDERS, "ray", small)
    monkeypatch.setattr(module, "MAX_WIDENINGS", 0)
    (best,), count = module.tune(setups, "ray", seed=1, slo=Slo(), slo_target=1.01, log=lambda line: None)
    assert count == 2
    assert best.configuration == (16.0, 600.0)  # target 1 ongoing per replica costs more for the same SLO
    assert best.on_edge


def test_tuning_widens_the_grid_past_an_edge_until_the_best_point_is_inside(monkeypatch):
    from dataclasses import replace

    from simulations import compare as module
    from simulations import contenders

    setups = [setup(steady(2.0, 600), initial=2)]
    # Ray's cheapest setting that keeps the SLO is a large target; a grid ending at 2 has it
    # on its edge, and tuning goes on doubling until the best target is no longer the last.
    small = replace(contenders.PEERS["ray"], targets=(1.0, 2.0), delays=(600.0,))
    monkeypatch.setitem(contenders.CONTENDERS, "ray", small)
    (best,), count = module.tune(setups, "ray", seed=1, slo=Slo(), slo_target=0.9, log=lambda line: None)
    assert best.configuration[0] > 2.0
    assert count > 2


def test_completion_rate_is_read_like_prometheus_rate_over_a_minute():
    cluster = Cluster([setup(steady(3.0, 900, output=20), initial=3)], seed=1)
    model = cluster.models["m"]
    source = SimulatedPrometheus(cluster)
    cluster.take_scrape(0.0)
    assert not source.fetch_signals(now=0.0).for_model("m").completion_rate.usable  # one sample: no rate yet
    for second in range(300):
        if second % 15 == 0:
            cluster.take_scrape(float(second))
        cluster.step(float(second), second + 1.0)
    rate = source.fetch_signals(now=300.0).for_model("m").completion_rate.value
    assert rate == pytest.approx(3.0, rel=0.1)  # everything that arrives finishes
    assert model.requests.completed == int((~np.isnan(model.requests.finished_s)).sum())


def test_time_per_output_token_is_the_step_time_of_the_batch_a_request_shares():
    def tpot(workload: Requests) -> float:
        (result,) = run([setup(workload)], driver_for("ours", [setup(workload)]), policy="ours", seed=1, end_s=60)
        return result.tpot_p95_s

    alone = steady(0.2, 30, prompt=100, output=50)  # one at a time: a request finishes in ~0.7 s
    together = Requests(np.zeros(16), np.full(16, 100), np.full(16, 50), name="burst", source="test")
    assert tpot(alone) == pytest.approx(A100_8B.step_s(1), rel=0.05)
    assert tpot(together) == pytest.approx(A100_8B.step_s(16), rel=0.05)


def test_gpu_hours_after_the_last_arrival_are_what_a_policy_keeps_once_traffic_stops():
    workload = steady(10.0, 600, output=200)  # about ten replicas' worth at the knee
    setups = [setup(workload, initial=4)]
    ours, oracle = (run(setups, driver_for(policy, setups), policy=policy, seed=1)[0] for policy in ("ours", "oracle"))
    # The run ends 300 s after the last arrival. The oracle drops to its floor of one once the
    # last requests finish; ours releases over its 300 s scale-down window.
    assert 300 / 3600 <= oracle.after_last_gpu_hours <= 1.25 * 300 / 3600
    assert ours.after_last_gpu_hours > 3 * oracle.after_last_gpu_hours
    assert ours.gpu_hours > ours.after_last_gpu_hours


def test_a_flash_crowd_is_not_sized_from_the_overloaded_replicas_it_hits():
    # 10 req/s of 200-token answers arrive at once at 4 replicas, which run ~49 requests each
    # until more start. A request's time there is that of a 49-wide batch; sized as if a
    # replica at its target of 8 took as long, ours asked for 47 replicas.
    workload = steady(10.0, 600, output=200)
    setups = [setup(workload, initial=4)]
    # Sizing is what is tested here: the SLO is queue wait and TTFT only (the crowd runs
    # replicas past 50 ms a token until more start).
    # The policy's sizing at a stated target of 8 (this replica's knee), not the benchmark's default.
    overrides = {"hot": {"target_running_per_replica": 8}}
    (result,) = run(setups, driver_for("ours", setups, overrides=overrides), policy="ours", seed=1, slo=Slo(tpot_s=10.0))
    assert result.slo_attainment > 0.99
    assert max(result.timeline["replicas"]) <= 30


@pytest.mark.parametrize(("command", "default", "example"), [
    (["simulate"], "(default: simulation-report)", "python -m simulations simulate --trace azure-conv"),
    (["suite"], "(default: azure-code,azure-", "./dev suite --slice-s 300"),
])
def test_the_lab_help_has_a_description_the_defaults_and_an_example(command, default, example):
    result = subprocess.run([sys.executable, "-m", "simulations", *command, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    usage, description = result.stdout.split("\n\n")[:2]
    assert usage.startswith("usage:") and len(description) > 40 and not description.lstrip().startswith("options:")
    assert default in " ".join(result.stdout.split())
    assert "examples:" in result.stdout and example in result.stdout
    assert "(default: None)" not in result.stdout and "(default: False)" not in result.stdout


def test_each_request_carries_its_time_per_output_token_and_the_slo_counts_it():
    from simulations.replica import ServedRequests
    from simulations.simulate import request_latencies

    requests = ServedRequests(np.array([0.0, 0.0, 0.0, 0.0]), np.full(4, 10.0), np.array([11.0, 11.0, 1.0, 11.0]))
    requests.admitted_s[:] = [0.1, 0.1, 0.1, 0.1]
    requests.first_token_s[:] = [0.5, 0.5, 0.5, 0.5]
    requests.finished_s[:] = [0.9, 1.5, 0.5, np.nan]  # 40 ms and 100 ms a token; one token; still decoding
    counted, latencies = request_latencies(requests, end=2.0)
    assert counted.all()
    assert latencies.tpot == pytest.approx([0.04, 0.1, 0.0, 0.15])  # the last: (2.0 - 0.5) / 10, a lower bound
    assert list(latencies.meets(Slo(tpot_s=0.05))) == [True, False, True, False]
    assert latencies.meets(Slo(tpot_s=1.0)).all()


def test_a_replica_packed_past_its_decode_speed_misses_the_tpot_slo_that_wait_and_ttft_would_pass():
    def attainment(count: int, slo: Slo) -> float:
        workload = Requests(np.zeros(count), np.full(count, 20), np.full(count, 50), name="burst", source="test")
        setups = [setup(workload)]
        (result,) = run(setups, driver_for("oracle", setups), policy="oracle", seed=1, slo=slo, end_s=60)
        return result.slo_attainment

    lenient = Slo(tpot_s=10.0)
    # 30 at once on one replica: a step of 12 + 1.5 x 30 ms = 57 ms, slower than 50 ms a token.
    assert attainment(30, lenient) == 1.0
    assert attainment(30, Slo(tpot_s=0.05)) < 0.7  # the first admitted decode while the batch is still small
    assert attainment(4, Slo(tpot_s=0.05)) == 1.0  # 18 ms a step

"""The benchmark's fairness: each contender's user configuration pinned to its cited source,
ours given only what a user knows, peers that start warm like the service they scale, and the
oracle's schedule as the cheapest of its family that keeps the SLO (10% less does not).

No server is involved: the simulator and the peers' reproductions are pure Python."""

from __future__ import annotations

import numpy as np
import pytest

from simulations.calibration import A100_8B
from simulations.cluster import ColdStart, ModelSetup, SimModel
from simulations.compare import benchmark, fit_oracle
from simulations.contenders import CONTENDERS, OURS, PEERS, driver_for
from simulations.peers import PeerView
from simulations.peers.oracle import work_bound_gpu_hours
from simulations.simulate import Slo, measured_cold_start_s, ours_config, run
from simulations.workload import Requests


def steady(rate_rps: float, duration_s: float, *, prompt: int = 500, output: int = 100) -> Requests:
    arrival = np.arange(0.0, duration_s, 1.0 / rate_rps)
    return Requests(arrival, np.full(len(arrival), prompt), np.full(len(arrival), output), name="steady", source="test")


def setup(workload: Requests, *, kind: str = "hot", initial: int = 1, cold_start: ColdStart = ColdStart()) -> ModelSetup:
    return ModelSetup("m", workload, A100_8B, cold_start, kind=kind, initial_replicas=initial)


def peer(policy: str, kind: str = "hot"):
    model = SimModel(setup(steady(1.0, 10), kind=kind), np.random.default_rng(0))
    return PEERS[policy].build(model, PEERS[policy].default, False)


def test_keda_runs_as_kserve_documents_it():
    # kserve/website docs/model-serving/generative-inference/autoscaling/autoscaling.md:
    # query vllm:num_requests_running, target value "2", minReplicas 1; KEDA's own defaults
    # (pollingInterval 30 s, cooldownPeriod 300 s) for the rest.
    keda = peer("keda")
    assert (keda.metric, keda.threshold, keda.min_replica_count) == ("running", 2.0, 1)
    assert (keda.polling_interval_s, keda.cooldown_period_s) == (30.0, 300.0)
    assert keda.hpa.downscale_stabilization_s == 300.0 and not keda.hpa.behavior_set
    assert peer("keda", kind="long-tail").min_replica_count == 0


def test_the_hpa_runs_as_the_kubernetes_vllm_example_sets_it_with_the_hpa_defaults():
    # kubernetes/examples AI/vllm-deployment/hpa/horizontal-pod-autoscaler.yaml: a Pods metric
    # vllm_num_requests_running, AverageValue 4, minReplicas 1; HPA defaults: 300 s down-window,
    # none up, tolerance 0.1, 15 s sync.
    hpa = peer("hpa")
    assert (hpa.metric, hpa.core.target_average_value, hpa.core.min_replicas) == ("running", 4.0, 1)
    assert (hpa.core.downscale_stabilization_s, hpa.core.tolerance, hpa.period_s) == (300.0, 0.1, 15.0)


def test_knative_and_ray_run_at_their_documented_defaults():
    kpa = peer("kpa")  # knative.dev/docs/serving/autoscaling/kpa-specific: 60 s stable, panic 10% / 200%
    assert kpa.target == pytest.approx(70.0) and kpa.stable_window_s == 60.0
    assert kpa.panic_window_s == pytest.approx(6.0) and kpa.panic_threshold == 2.0
    assert kpa.scale_to_zero_grace_period_s == 30.0
    ray = peer("ray")  # docs.ray.io ray.serve.config.AutoscalingConfig
    assert (ray.target_ongoing_requests, ray.upscale_delay_s, ray.downscale_delay_s) == (2.0, 30.0, 600.0)
    assert ray.downscale_to_zero_delay_s is None and ray.look_back_period_s == 30.0


def test_every_contender_is_tuned_over_a_grid_of_the_same_size_in_target_and_delay():
    sizes = {name: len(contender.grid()) for name, contender in CONTENDERS.items()}
    assert len(set(sizes.values())) == 1, sizes
    assert all(len(c.targets) > 2 and len(c.delays) > 2 for c in CONTENDERS.values())


def test_ours_is_given_no_knee_and_a_measured_cold_start_not_the_simulators_median():
    spread = ColdStart(median_s=120.0, sigma=0.4)
    config = ours_config([setup(steady(1.0, 10), cold_start=spread)])
    policy = config.models[0].policy
    default_target = type(policy).model_fields["target_running_per_replica"].default
    assert policy.target_running_per_replica == default_target == OURS.default[0]
    measured = measured_cold_start_s(setup(steady(1.0, 10), cold_start=spread))
    assert policy.cold_start_s == measured != spread.median_s
    assert measured == float(int(measured))  # read from readiness each second, as status shows it
    # Always the same probes: not a draw of the run being measured, whatever its seed.
    assert measured_cold_start_s(setup(steady(1.0, 10), cold_start=spread)) == measured
    fixed = ColdStart(median_s=90.0, sigma=0.0, min_s=90.0, max_s=90.0)
    assert measured_cold_start_s(setup(steady(1.0, 10), cold_start=fixed)) == 90.0


def test_a_peer_starts_as_one_that_has_run_at_the_warm_count():
    """A warm service's HPA has its window's history: the first sync, which reads the scrape
    taken before the first request, does not drop five replicas to one; only once its 30 s
    window has passed does it scale down to what the load needs."""
    setups = [setup(steady(5.0, 600), initial=5)]
    for policy in ("keda", "hpa"):
        (result,) = run(setups, driver_for(policy, setups, configuration=(4.0, 30.0)), policy=policy, seed=1, end_s=60)
        line = result.timeline
        assert min(r for t, r in zip(line["t"], line["replicas"]) if t <= 30) == 5, policy


def test_the_oracle_is_the_least_capacity_that_keeps_the_slo_and_ten_percent_less_does_not():
    setups = [setup(steady(6.0, 1200, prompt=800, output=150), initial=3)]
    slo, target = Slo(), 0.95
    fits, (fitted,) = fit_oracle(setups, seed=1, slo=slo, slo_target=target, log=lambda line: None)
    assert fitted.slo_attainment >= target
    fit = fits["m"]
    less_driver = driver_for("oracle", setups, oracle_scale={"m": 0.9 * fit.scale}, oracle_hold_s={"m": fit.hold_s})
    (less,) = run(setups, less_driver, policy="oracle", seed=1, slo=slo)
    assert less.slo_attainment < target
    assert less.gpu_hours < fitted.gpu_hours
    bound = work_bound_gpu_hours(setups[0].workload.prompt_tokens, setups[0].workload.output_tokens, A100_8B)
    assert 0 < bound <= fitted.gpu_hours


def test_no_contender_keeps_the_slo_for_fewer_gpu_hours_than_the_oracle():
    setups = [setup(steady(6.0, 1200, prompt=800, output=150), initial=3)]
    target = 0.95
    standings = benchmark(setups, ["ours", "ray", "kpa", "oracle"], seed=1, slo=Slo(), tuned=False, slo_target=target,
                          log=lambda line: None)
    oracle = next(s.tuning for s in standings if s.policy == "oracle")
    for standing in standings:
        if standing.tuning.slo_attainment >= target:
            assert standing.tuning.gpu_hours >= oracle.gpu_hours, standing.policy


def test_tuned_choices_are_reported_on_the_held_out_seeds_as_well():
    setups = [setup(steady(2.0, 300), initial=2)]
    other = {2: [setup(steady(2.0, 300), initial=2)]}
    standings = benchmark(setups, ["ray"], seed=1, slo=Slo(), tuned=False, held_out=other, log=lambda line: None)
    (ray,) = standings
    assert len(ray.held_out) == 1 and ray.held_out[0].requests == ray.tuning.requests


def test_a_view_with_no_series_reads_no_in_flight_metric():
    from simulations.peers import queue_metric

    view = PeerView(now=0.0, spec_replicas=1, ready_replicas=0, waiting=None, running=None, in_flight_per_pod=None,
                    ongoing=0.0, buffered=3)
    assert queue_metric(view, "in_flight") is None
    assert queue_metric(PeerView(0.0, 1, 1, 2.0, 5.0, 7.0, 7.0, 0), "in_flight") == 7.0
    with pytest.raises(ValueError, match="metric 'queue' unknown"):
        queue_metric(view, "queue")

"""The peers' documented behaviours, one scenario each, with time advanced explicitly.

`drive` runs a peer as the simulator would: one call per `period_s`, its answer fed back as the
next spec.replicas (and, unless a test fixes it, as ready replicas: pods start instantly here,
so the timings below are the autoscalers' own).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from simulations.peers import Peer, PeerView
from simulations.peers.hpa import Hpa, HpaCore
from simulations.peers.keda import Keda
from simulations.peers.knative import Kpa
from simulations.peers.ray_serve import RayServe

_ABSENT = object()


def view(
    now: float,
    spec: int,
    *,
    ready: int | None = None,
    waiting: float | None | object = _ABSENT,
    running: float | None | object = _ABSENT,
    in_flight: float | None | object = _ABSENT,
    ongoing: float = 0.0,
    buffered: int = 0,
) -> PeerView:
    """A PeerView with consistent defaults: ready = spec; with ready pods the vLLM series read 0
    and per-pod concurrency 0, without them they are absent (None)."""
    ready = spec if ready is None else ready
    series_default = 0.0 if ready > 0 else None
    return PeerView(
        now=now,
        spec_replicas=spec,
        ready_replicas=ready,
        waiting=series_default if waiting is _ABSENT else waiting,  # type: ignore[arg-type]
        running=series_default if running is _ABSENT else running,  # type: ignore[arg-type]
        in_flight_per_pod=series_default if in_flight is _ABSENT else in_flight,  # type: ignore[arg-type]
        ongoing=ongoing,
        buffered=buffered,
    )


Load = Callable[[float, int], dict]  # (now, spec) -> view() keyword arguments


def drive(peer: Peer, *, spec: int, until: float, load: Load, start: float = 0.0) -> dict[float, int]:
    """Call the peer every period_s from `start` to `until` inclusive; returns {now: answer}."""
    answers: dict[float, int] = {}
    steps = round((until - start) / peer.period_s)
    for step in range(steps + 1):
        now = start + step * peer.period_s
        spec = peer.decide(view(now, spec, **load(now, spec)))
        answers[now] = spec
    return answers


def at(answers: dict[float, int], start: float, end: float) -> set[int]:
    """The distinct answers in [start, end]."""
    return {replicas for now, replicas in answers.items() if start <= now <= end}


# --- KEDA --------------------------------------------------------------------------------------


def test_keda_drops_from_n_straight_to_zero_exactly_after_the_cooldown():
    # 30 waiting at 5 per replica holds 6 replicas; the load stops at t=15. The last active
    # poll is t=0, so the poll at t=300 is the first past the 300 s cooldown. Meanwhile the HPA
    # cannot go below 6 either: its 300 s window still holds the t=0 recommendation.
    keda = Keda()
    answers = drive(keda, spec=6, until=600, load=lambda now, spec: {"waiting": 30.0 if now < 15 else 0.0})
    assert at(answers, 0, 285) == {6}
    assert answers[300] == 0
    assert at(answers, 300, 600) == {0}


def test_keda_does_not_drop_before_the_cooldown_when_activity_continues():
    # Activity at the poll at t=240 restarts the cooldown: zero comes at 240 + 300.
    keda = Keda()
    answers = drive(keda, spec=2, until=600, load=lambda now, spec: {"waiting": 10.0 if now in (0, 240) else 0.0})
    assert 0 not in at(answers, 0, 510)
    assert answers[540] == 0


def test_keda_wakes_zero_to_one_at_the_first_poll_with_an_active_trigger():
    # Polls at 0, 30, 60; a request is buffered at the gateway from t=31. The HPA sync at t=45
    # is disabled at zero replicas, so the wake waits for the poll at t=60.
    keda = Keda()
    answers = drive(keda, spec=0, until=75, load=lambda now, spec: {"buffered": 1 if now > 30 else 0})
    assert at(answers, 0, 45) == {0}
    assert answers[60] == 1
    assert keda.period_s == 15


def test_keda_trigger_on_vllm_waiting_alone_never_wakes_from_zero():
    # At zero replicas the vLLM series do not exist; ignoreNullValues reads that as 0, which is
    # never above activationThreshold 0, whatever waits at the gateway.
    keda = Keda(wake_from_gateway=False)
    answers = drive(keda, spec=0, until=3600, load=lambda now, spec: {"buffered": 50})
    assert at(answers, 0, 3600) == {0}


def test_keda_vanished_series_reads_as_zero_and_scales_to_zero_after_the_cooldown():
    # keda issue 3065: with ignoreNullValues (default true) an empty result is 0, even while
    # 3 replicas are up, so the model is scaled to zero 300 s after the last active poll.
    keda = Keda(wake_from_gateway=False)
    answers = drive(keda, spec=3, until=450, load=lambda now, spec: {"waiting": 15.0 if now < 15 else None})
    assert keda.trigger_value(view(20, 3, waiting=None)) == 0.0
    assert at(answers, 0, 285) == {3}
    assert answers[300] == 0


def test_keda_without_ignore_null_values_holds_when_the_series_vanishes():
    keda = Keda(wake_from_gateway=False, ignore_null_values=False)
    answers = drive(keda, spec=3, until=900, load=lambda now, spec: {"waiting": 15.0 if now < 15 else None})
    assert at(answers, 0, 900) == {3}
    assert keda.last_reasons[0] in ("TriggerError", "FailedGetExternalMetric")


# --- HPA ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "waiting", "expected", "why"),
    [
        (4, 22.0, 4, "ratio 22 / (5 * 4) = 1.1: inside the 0.1 band, hold"),
        (4, 18.0, 4, "ratio 0.9: inside, hold"),
        (4, 23.0, 5, "ratio 1.15: outside, ceil(23 / 5) = 5"),
        (2, 11.0, 2, "ratio 1.1: hold, not ceil(2.2) = 3"),
        (2, 12.0, 3, "ratio 1.2: ceil(12 / 5) = 3"),
    ],
)
def test_hpa_holds_inside_its_tolerance(current, waiting, expected, why):
    hpa = Hpa()
    assert hpa.decide(view(0, current, waiting=waiting)) == expected, why


@pytest.mark.parametrize(
    ("behavior_set", "current", "expected"),
    [
        # behavior unset (plain HPA, KEDA's default HPA): absolute max(2 * current, 4)
        (False, 1, 4),
        (False, 2, 4),
        (False, 3, 6),
        (False, 5, 10),
        (False, 60, 100),  # maxReplicas 100 caps 120
        # behavior set: defaulted policies, max(current + 4, 2 * current) per 15 s
        (True, 1, 5),
        (True, 2, 6),
        (True, 3, 7),
        (True, 5, 10),
    ],
)
def test_hpa_scale_up_is_limited_to_max_of_four_pods_and_100_percent(behavior_set, current, expected):
    hpa = Hpa(behavior_set=behavior_set)
    assert hpa.decide(view(0, current, waiting=5000.0)) == expected
    assert hpa.last_reasons[-1] == ("ScaleUpLimit" if expected < 100 else "TooManyReplicas")


def test_hpa_scale_up_limit_applies_per_sync():
    hpa = Hpa()
    answers = drive(hpa, spec=1, until=45, load=lambda now, spec: {"waiting": 5000.0})
    assert [answers[t] for t in (0, 15, 30, 45)] == [4, 8, 16, 32]


@pytest.mark.parametrize(
    ("behavior_set", "last_high", "first_low"),
    [
        # behavior unset: a recommendation counts while not Before(now - 300 s) -> the t=0 one
        # still counts at t=300
        (False, 300, 315),
        # behavior set: it counts while After(now - 300 s) -> no longer at t=300
        (True, 285, 300),
    ],
)
def test_hpa_scale_down_waits_for_the_300_s_stabilization_window(behavior_set, last_high, first_low):
    hpa = Hpa(behavior_set=behavior_set)
    answers = drive(hpa, spec=10, until=600, load=lambda now, spec: {"waiting": 50.0 if now < 15 else 0.0})
    assert at(answers, 0, last_high) == {10}
    assert answers[first_low] == 1  # 100% per 15 s: no rate limit stands between 10 and 1
    assert at(answers, first_low, 600) == {1}


def test_hpa_never_goes_below_one_replica():
    hpa = Hpa()
    answers = drive(hpa, spec=1, until=900, load=lambda now, spec: {"waiting": 0.0})
    assert at(answers, 0, 900) == {1}
    with pytest.raises(ValueError, match="min_replicas"):
        HpaCore(target_average_value=5, min_replicas=0)


def test_hpa_holds_when_the_metric_is_missing():
    hpa = Hpa()
    assert hpa.decide(view(0, 4, waiting=None)) == 4
    assert hpa.last_reasons == ("FailedGetExternalMetric",)
    # A missing metric leaves no recommendation behind: the next good reading is judged alone.
    assert hpa.decide(view(15, 4, waiting=100.0)) == 8


# --- Knative KPA -------------------------------------------------------------------------------


def _burst(now: float, spec: int) -> dict:
    # 4 ready pods (new ones are still starting) at the 70 target each; 200 each for t in [122, 130].
    return {"ready": 4, "in_flight": 200.0 if 122 <= now <= 130 else 70.0}


def test_kpa_enters_panic_at_twice_the_capacity_and_does_not_scale_down_while_panicking():
    kpa = Kpa()
    answers: dict[float, int] = {}
    panicking: dict[float, bool] = {}
    spec = 4
    for now in range(0, 194, 2):
        spec = kpa.decide(view(now, spec, **_burst(now, spec)))
        answers[now], panicking[now] = spec, "Panicking" in kpa.last_reasons
    # The panic window (samples at t-4, t-2, t) at t=122 averages (280 + 280 + 800) / 3 = 453:
    # ceil(453 / 70) = 7 pods, 7 / 4 ready = 1.75 < 2. At t=124: 627 -> 9 pods, 2.25: panic.
    assert not panicking[120] and not panicking[122]
    assert panicking[124] and answers[124] == 9
    # The peak (800 -> 12 pods at t=126) is held although the load is back at 280 from t=132.
    assert answers[126] == 12
    assert at(answers, 126, 192) == {12}
    assert all(panicking[now] for now in range(124, 193, 2))


def test_kpa_leaves_panic_a_stable_window_after_the_last_tick_over_the_threshold():
    kpa = Kpa()
    spec = 4
    for now in range(0, 194, 2):
        spec = kpa.decide(view(now, spec, **_burst(now, spec)))
    # Last tick over the threshold: t=132 (samples 128, 130, 132 average 627). Panic ends at the
    # first tick later than 132 + 60 (strictly), t=194, where the stable average is 280 -> 4 pods.
    assert "Panicking" in kpa.last_reasons  # t=192
    spec = kpa.decide(view(194, spec, **_burst(194, spec)))
    assert "PanicEnded" in kpa.last_reasons
    assert spec == 4


@pytest.mark.parametrize(
    ("total", "panics"),
    [(490.0, False), (491.0, True)],
)
def test_kpa_panic_threshold_is_on_ceiled_pod_counts(total, panics):
    # dppc / ready >= 2 with dppc = ceil(avg / 70): with 4 ready pods panic needs 8 pods, i.e.
    # more than 7 * 70 = 490 in flight (1.75x the pods' target, not 2x, because of the ceil).
    kpa = Kpa()
    kpa.decide(view(0, 1, ready=1, in_flight=0.0))  # start with one pod: no initial panic
    for now in (2, 4, 6):
        kpa.decide(view(now, 4, ready=4, in_flight=total / 4))
    assert ("Panicking" in kpa.last_reasons) is panics


def test_kpa_scales_to_zero_after_the_stable_window_and_the_grace_period():
    # Traffic until t=100. The stable window (100, 160] is empty at t=160: desired 0, the PA is
    # marked inactive but keeps its pod; 30 s grace later (t=190) the 0 is applied.
    kpa = Kpa()
    answers = drive(kpa, spec=1, until=240, load=lambda now, spec: {"in_flight": 1.0} if now <= 100 else {})
    assert at(answers, 0, 188) == {1}
    assert answers[190] == 0
    assert at(answers, 190, 240) == {0}


def test_kpa_activator_wakes_from_zero_on_a_buffered_request():
    kpa = Kpa()
    assert kpa.decide(view(0, 0)) == 0
    assert kpa.decide(view(2, 0, buffered=1)) == 1
    # Even 100 buffered requests ask for one pod: the window averages (here over the two samples
    # taken so far, 0 and 100) stay under the 70 target.
    kpa = Kpa()
    assert kpa.decide(view(0, 0)) == 0
    assert kpa.decide(view(2, 0, buffered=100)) == 1


def test_kpa_holds_without_data():
    kpa = Kpa()
    assert kpa.decide(view(0, 3, in_flight=None)) == 3
    assert kpa.last_reasons == ("NoData",)


# --- Ray Serve ---------------------------------------------------------------------------------


def test_ray_waits_upscale_delay_before_scaling_up():
    # ongoing 2 = target for one replica; from t=60 it is 10. The 30 s average first asks for
    # more at t=60 ((29 * 2 + 10) / 30 / 2 -> 2 replicas); 30 s later the average is 10 -> 5.
    ray = RayServe()
    answers = drive(ray, spec=1, until=120, load=lambda now, spec: {"ready": 1, "ongoing": 10.0 if now >= 60 else 2.0})
    assert at(answers, 0, 89) == {1}
    assert answers[90] == 5


def test_ray_waits_downscale_delay_before_scaling_down():
    # 4 replicas at 8 ongoing; from t=101 it is 2. The average asks for 3 or fewer from t=110
    # (20 * 8 + 10 * 2 = 180, / 30 / 2 = 3), so the decision applies at 110 + 600.
    ray = RayServe()
    answers = drive(ray, spec=4, until=720, load=lambda now, spec: {"ongoing": 8.0 if now <= 100 else 2.0})
    assert at(answers, 0, 709) == {4}
    assert answers[710] == 1


def test_ray_direction_change_restarts_the_delay():
    # A 1 s look-back makes the desired count follow the load at once. Up from t=40, a down
    # decision at t=60..64 resets the counter, up again from t=65: it applies at 65 + 30.
    def load(now, spec):
        if 40 <= now < 60 or now >= 65:
            return {"ongoing": 20.0}
        return {"ongoing": 0.0 if 60 <= now < 65 else 4.0}

    ray = RayServe(look_back_period_s=1.0)
    answers = drive(ray, spec=2, until=100, load=load)
    assert at(answers, 0, 94) == {2}
    assert answers[95] == 10


def test_ray_scales_from_zero_at_once():
    ray = RayServe(min_replicas=0)
    answers = drive(ray, spec=0, until=20, load=lambda now, spec: {"ongoing": 1.0 if now >= 10 else 0.0, "ready": 0})
    assert at(answers, 0, 9) == {0}
    assert answers[10] == 1  # no upscale_delay_s
    # While the replica starts (target 1, none running) the target holds.
    assert at(answers, 10, 20) == {1}


def test_ray_goes_to_zero_in_two_steps_of_the_downscale_delay():
    # Idle at 3: N -> 1 after downscale_delay_s, then 1 -> 0 after downscale_to_zero_delay_s
    # (or downscale_delay_s again when unset).
    ray = RayServe(min_replicas=0)
    answers = drive(ray, spec=3, until=1300, load=lambda now, spec: {"ongoing": 0.0})
    assert at(answers, 0, 599) == {3}
    assert at(answers, 600, 1200) == {1}
    assert answers[1201] == 0

    ray = RayServe(min_replicas=0, downscale_to_zero_delay_s=60.0)
    answers = drive(ray, spec=3, until=700, load=lambda now, spec: {"ongoing": 0.0})
    assert answers[600] == 1
    assert answers[661] == 0

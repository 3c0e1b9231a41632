"""The stored policy state: kept from PolicyState's own fields, bounded when read back, and
re-anchored on the new leader's clock. Every ConfigMap read and write goes to the kmock API
emulator (the wire format, the merge patches); the decisions come from the real Controller and
policies, the targets from InMemoryTargets (the actuator is not under test here)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from structlog.testing import capture_logs

from autoscaler.clock import ManualClock
from autoscaler.controller import Controller
from autoscaler.failover import FailoverController
from autoscaler.settings import LeaderSettings
from autoscaler.state_store import (
    ENCODINGS,
    KEPT,
    MAX_IDLE_GAPS,
    ConfigMapStateStore,
    kept_fields,
    key_of,
    record_of,
    restore_all,
    vouch_s,
)
from autoscaler.targets.recording import InMemoryTargets
from autoscaler.telemetry import Telemetry
from policies import PolicyState
from tests.builders import config, model
from tests.test_failover import Holder, Load

NS = "llm-autoscaler"
NAME = "llm-autoscaler-state"
CM_PATH = f"/api/v1/namespaces/{NS}/configmaps/{NAME}"
T0 = 1_763_840_000.0  # a date in 2025, as the wall clock gives

FLEET = config(
    model("tail", kind="long-tail", policy={"cold_start_s": 60}),  # idle timeout 60 x (1 + 3) = 240 s
    model("chat", policy={"min_replicas": 1, "scale_down_stabilization_s": 300}),
)
BATCH = config({
    "name": "embed", "namespace": "ml", "target": {"kind": "Deployment", "name": "embed"},
    "wake_query": "sum(gateway_queue_length)",
    "policy": {"kind": "batch", "replica_throughput_rps": 1.0, "drain_deadline_s": 600, "cold_start_s": 60, "max_replicas": 20},
})

REFRESH_S = LeaderSettings().state_refresh_s


def store(cluster) -> ConfigMapStateStore:
    return ConfigMapStateStore(cluster.api_client, namespace=NS, name=NAME)


def daemon(cluster, fleet, targets, load, **kwargs) -> FailoverController:
    """A leader keeping its state in the ConfigMap on `cluster`; with None, keeping none."""
    controller = Controller(fleet, metrics=load, targets=targets)
    kept = None if cluster is None else store(cluster)
    return FailoverController(Holder(controller, fleet), leadership=None, store=kept, **kwargs)


def run(daemon_, *, start: float, end: float, step: float = 10.0, skew_s: float = 0.0) -> dict[str, list]:
    """Ticks from start to end on a clock `skew_s` off the true time (the times returned are
    true times); each model's (time, desired, reasons) at every tick."""
    seen: dict[str, list] = {}
    now = start
    while now <= end:
        for outcome in daemon_.tick(now=now + skew_s):
            if outcome.decision is not None:
                seen.setdefault(outcome.model, []).append((now, outcome.decision.desired_replicas, outcome.decision.explain()))
        now += step
    return seen


def first_zero(seen: list) -> float | None:
    return next((t for t, desired, _ in seen if desired == 0), None)


def put_records(cluster, data: dict[str, object]) -> None:
    cluster.put({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": NAME, "namespace": NS},
        "data": {key: value if isinstance(value, str) else json.dumps(value) for key, value in data.items()},
    }, "v1/configmaps")


def targets_for(fleet, **initial: int) -> InMemoryTargets:
    return InMemoryTargets({m.name: m for m in fleet.models}, initial=initial)


# -- one serializer, from PolicyState's own fields (issue 15) ------------------------------------


def _sample(kept, *, now: float, index: int):
    """A value of each encoding that is not the field's default and survives its rounding."""
    return {
        "instant": now - 30.0 - index,
        "rate": 2.5,
        "durations": (30.0, 600.0),
        "stamped_share": (now - 5.0, 0.5),
    }[kept.encoding]


def test_every_policy_state_field_round_trips_through_the_state_configmap(kmock_cluster):
    """Every field of PolicyState, kept or not, through a ConfigMap on the kmock API server and
    back: a kept field comes back as it was, one not kept as its default (but first_seen: the
    last count stands as found at first sight). A field added to PolicyState is covered with no change here."""
    now = T0
    kept = {rule.name: rule for rule in KEPT}
    values = {name: _sample(rule, now=now, index=i) for i, (name, rule) in enumerate(kept.items())}
    state = PolicyState(**values)
    for name in kept:
        assert getattr(state, name) != getattr(PolicyState(), name), f"{name}: the sample must differ from the default"
    store(kmock_cluster).save({"batch/x": record_of("batch/x", state, desired=3, now=now, watched_since=now - 3600)})
    assert set(kmock_cluster.get("v1/configmaps", NS, NAME)["data"]) == {key_of("batch/x")}

    restored, refusals = restore_all(store(kmock_cluster).load(), now=now, vouch_s=vouch_s(10.0))
    assert refusals == []
    back = restored["batch/x"].state
    for f in dataclasses.fields(PolicyState):
        if f.name in kept:
            assert getattr(back, f.name) == getattr(state, f.name), f.name
        elif f.name == "first_seen":
            assert back.first_seen == (now, 3)  # the last count, held as found at first sight
        else:
            assert f.metadata["persist"] is None
            assert getattr(back, f.name) == getattr(PolicyState(), f.name), f.name
    assert "backlog_since" in kept  # the field the hand-kept lists had left out


def test_a_state_field_that_does_not_say_how_it_is_kept_stops_the_import():
    @dataclasses.dataclass(frozen=True)
    class Grown(PolicyState):
        drain_started_at: float | None = None

    with pytest.raises(TypeError, match=r"Grown\.drain_started_at does not say whether it survives a restart"):
        kept_fields(Grown)

    @dataclasses.dataclass(frozen=True)
    class Unsure(PolicyState):
        drain_started_at: float | None = dataclasses.field(default=None, metadata={"persist": "instant"})

    with pytest.raises(TypeError, match=r"Unsure\.drain_started_at: when_unsure None; an instant needs"):
        kept_fields(Unsure)

    @dataclasses.dataclass(frozen=True)
    class Odd(PolicyState):
        drain_started_at: float | None = dataclasses.field(default=None, metadata={"persist": "pickle"})

    with pytest.raises(TypeError, match=r"persist 'pickle' is not one of " + ", ".join(ENCODINGS)):
        kept_fields(Odd)


def test_a_batch_model_keeps_its_deadline_across_a_failover(kmock_cluster):
    """A backlog first seen at T0 with a 600 s deadline: the leader dies at T0+200 and the
    standby takes over at T0+210 from the ConfigMap (kmock). It sizes for the deadline the job
    was given (390 s left), as one leader running throughout does, not for a new one (600 s)."""
    load = Load()
    load.waiting = {"embed": 1000.0}  # 2,000 waiting or running
    throughout = run(daemon(None, BATCH, targets_for(BATCH, embed=2), load), start=T0, end=T0 + 400)["embed"]

    targets = targets_for(BATCH, embed=2)
    run(daemon(kmock_cluster, BATCH, targets, load), start=T0, end=T0 + 200)
    after = run(daemon(kmock_cluster, BATCH, targets, load), start=T0 + 210, end=T0 + 400)["embed"]
    assert "390 s left of the 600 s deadline" in after[0][2]
    assert after == [tick for tick in throughout if tick[0] >= T0 + 210]


# -- a tampered or damaged ConfigMap (issue 19, item 8) ------------------------------------------


def take_over(cluster, data: dict[str, object], *, now: float, load: Load, **initial: int):
    """A new leader reads `data` from the ConfigMap and ticks once; its decisions, logs and
    the refusals counted in a real Telemetry registry."""
    put_records(cluster, data)
    telemetry = Telemetry(clock=ManualClock(now), interval_s=10.0)
    leader = daemon(cluster, FLEET, targets_for(FLEET, **initial), load, on_refused=telemetry.state_refused)
    with capture_logs() as logs:
        outcomes = {o.model: o.decision for o in leader.tick(now=now)}

    def refused(field: str, kind: str) -> float:
        return telemetry.registry.get_sample_value("llm_autoscaler_state_refusals_total", {"field": field, "kind": kind}) or 0.0

    warned = {(e["key"], e["field"], e["kind"]) for e in logs if e["event"] == "refused a stored policy state value"}
    return leader, outcomes, warned, refused


def honest(name: str, *, now: float, desired: int = 1, **fields) -> dict:
    return record_of(name, PolicyState(**fields), desired=desired, now=now - 10.0, watched_since=now - 600.0)


def test_an_idle_since_of_zero_does_not_take_a_model_to_zero(kmock_cluster):
    load = Load()
    load.waiting = {"tail": 0.0, "chat": 4.0}
    tampered = {**honest("tail", now=T0), "idle_since": 0}
    leader, decided, warned, refused = take_over(kmock_cluster, {"tail": tampered}, now=T0, load=load, tail=1, chat=1)
    assert decided["tail"].desired_replicas == 1  # was 0: idle "since 1970"
    assert leader.controller.states["tail"].idle_since == T0  # the idle clock starts now
    assert ("tail", "idle_since", "unwatched") in warned and refused("idle_since", "unwatched") == 1


def test_a_last_scale_up_in_the_future_does_not_block_scale_ups(kmock_cluster):
    load = Load()
    load.waiting = {"tail": 0.0, "chat": 400.0}
    tampered = {**honest("chat", now=T0, desired=2), "last_scale_up_at": 1e12}
    leader, decided, warned, refused = take_over(kmock_cluster, {"chat": tampered}, now=T0, load=load, tail=1, chat=2)
    later = {o.model: o.decision for o in leader.tick(now=T0 + 10)}
    assert later["chat"].desired_replicas > 2  # was held at 2 until the year 33658
    assert decided["chat"].desired_replicas > 2  # and at once: the last count stands for scale-downs only
    assert ("chat", "last_scale_up_at", "future") in warned and refused("last_scale_up_at", "future") == 1


def test_a_record_under_another_models_key_does_not_override_its_record(kmock_cluster):
    load = Load()
    load.waiting = {"tail": 0.0, "chat": 4.0}
    own = honest("tail", now=T0, idle_gaps=(30.0, 40.0))
    impostor = honest("tail", now=T0, desired=0, idle_gaps=(1.0,) * 5, idle_since=T0 - 500)
    data = {"tail": own, "zz-tail": impostor}  # the impostor second: the last record read used to win
    leader, _, warned, refused = take_over(kmock_cluster, data, now=T0, load=load, tail=1, chat=1)
    assert leader.controller.states["tail"].idle_gaps == (30.0, 40.0)
    assert ("zz-tail", "model", "wrong_key") in warned and refused("model", "wrong_key") == 1


def test_more_idle_gaps_than_a_policy_keeps_are_refused(kmock_cluster):
    load = Load()
    load.waiting = {"tail": 0.0, "chat": 4.0}
    flooded = {**honest("tail", now=T0), "idle_gaps": [20] * 150_000}
    leader, _, warned, refused = take_over(kmock_cluster, {"tail": flooded}, now=T0, load=load, tail=1, chat=1)
    assert leader.controller.states["tail"].idle_gaps == ()
    assert ("tail", "idle_gaps", "too_many") in warned and refused("idle_gaps", "too_many") == 1
    assert MAX_IDLE_GAPS < 150_000


def test_a_record_that_is_not_json_is_refused_and_the_others_restored(kmock_cluster):
    load = Load()
    load.waiting = {"tail": 0.0, "chat": 4.0}
    data = {"tail": "{not json", "chat": honest("chat", now=T0, desired=3, service_rate_estimate=3.1)}
    leader, _, warned, refused = take_over(kmock_cluster, data, now=T0, load=load, tail=1, chat=3)
    assert leader.controller.states["chat"].service_rate_estimate == 3.1
    assert ("tail", "record", "unreadable") in warned and refused("record", "unreadable") == 1


# -- a record's age (issue 19, item 6) -----------------------------------------------------------


def test_after_an_hour_nobody_watched_a_long_tail_model_is_not_taken_to_zero_at_once(kmock_cluster):
    """The leader saw tail idle for 120 s, then both replicas were down for an hour, in which
    traffic came and went. The new leader takes over 10 s after the last request: the record
    cannot vouch for that hour, so the idle clock restarts at the takeover."""
    load = Load()
    load.waiting = {"tail": 0.0, "chat": 4.0}
    targets = targets_for(FLEET, tail=1, chat=1)
    run(daemon(kmock_cluster, FLEET, targets, load), start=T0, end=T0 + 120)
    with capture_logs() as logs:
        after = run(daemon(kmock_cluster, FLEET, targets, load), start=T0 + 3720, end=T0 + 4200)
    assert first_zero(after["tail"]) == T0 + 3720 + 240  # was T0+3720: idle "for an hour"
    assert any(e.get("field") == "idle_since" and e.get("kind") == "stale" for e in logs)


def test_a_steady_fleet_is_vouched_for_once_a_refresh_and_a_failover_then_keeps_its_idle_clock(kmock_cluster):
    """No record changes for 20 minutes: one write per state_refresh_s keeps saved_at recent, so a
    takeover afterwards is not mistaken for an outage."""
    load = Load()
    load.waiting = {"tail": 0.0, "chat": 4.0}
    fleet = config(model("tail", kind="long-tail", policy={"cold_start_s": 600}), model("chat"))  # idle timeout 2,400 s
    targets = targets_for(fleet, tail=1, chat=1)
    run(daemon(kmock_cluster, fleet, targets, load), start=T0, end=T0 + 1200)
    writes = kmock_cluster.requests("patch", CM_PATH)
    assert 1200 / REFRESH_S - 2 <= len(writes) <= 1200 / REFRESH_S + 2  # not one per tick (120)
    after = run(daemon(kmock_cluster, fleet, targets, load), start=T0 + 1210, end=T0 + 2600)
    assert T0 + 2400 <= first_zero(after["tail"]) <= T0 + 2400 + REFRESH_S + 10  # idle kept, less what was unwatched


# -- clock skew between the old and the new leader (issue 19, item 3) ----------------------------


@pytest.mark.parametrize("behind_s", [60.0, 300.0])
def test_an_old_leader_whose_clock_was_behind_cannot_make_a_model_go_to_zero_early(kmock_cluster, behind_s):
    """Tail idle from T0; the old leader's clock `behind_s` slow. On one clock the model goes to
    zero at T0+240; taking over at T0+130 it must not go sooner (it went at T0+130 with 300 s
    of skew, T0+180 with 60 s)."""
    load = Load()
    load.waiting = {"tail": 0.0, "chat": 4.0}
    targets = targets_for(FLEET, tail=1, chat=1)
    run(daemon(kmock_cluster, FLEET, targets, load), start=T0, end=T0 + 120, skew_s=-behind_s)
    after = run(daemon(kmock_cluster, FLEET, targets, load), start=T0 + 130, end=T0 + 800)
    assert T0 + 240 <= first_zero(after["tail"]) <= T0 + 130 + 240


def test_an_old_leader_whose_clock_was_ahead_does_not_block_the_next_scale_up(kmock_cluster):
    """The old leader, its clock 600 s fast, scaled chat up: its last_scale_up_at lies 10 minutes
    in the new leader's future. With 400 waiting the new leader scales up at its first tick
    (it held for 570 s)."""
    load = Load()
    load.waiting = {"tail": 1.0, "chat": 12.0}
    targets = targets_for(FLEET, tail=1, chat=1)
    before = run(daemon(kmock_cluster, FLEET, targets, load), start=T0, end=T0 + 120, skew_s=600.0)
    assert before["chat"][-1][1] > 1
    load.waiting["chat"] = 400.0
    after = run(daemon(kmock_cluster, FLEET, targets, load), start=T0 + 130, end=T0 + 140)
    assert after["chat"][0][1] > before["chat"][-1][1]


def test_a_record_vouches_for_at_least_a_refresh_a_takeover_and_a_tick():
    timings = LeaderSettings()
    assert vouch_s(10.0) >= timings.state_refresh_s + timings.lease_duration_s + timings.retry_period_s + 10.0
    assert vouch_s(600.0) >= timings.state_refresh_s + timings.lease_duration_s + timings.retry_period_s + 600.0
    longer = LeaderSettings(lease_duration_s=60, renew_deadline_s=40, retry_period_s=5, state_refresh_s=120)
    assert vouch_s(10.0, longer) == 120 + 60 + 5 + 10  # from the settings the daemon runs with


# -- fencing the save (issue 19, item 5) ---------------------------------------------------------


def test_a_deposed_leaders_save_is_answered_409_writes_nothing_and_it_reads_the_state_again(kmock_cluster):
    """A leader stopped (SIGSTOP) and resumed once a new leader had saved: it overwrote the new
    leader's state with counts it never applied. Now its save carries the resourceVersion it
    last read or wrote, the API server answers 409 (injected: kmock keeps no versions), the
    ConfigMap keeps the new leader's records, and the old leader reads them again before it
    acts from its state."""
    put_records(kmock_cluster, {key_of("chat"): honest("chat", now=T0, desired=1)})
    kmock_cluster.call(lambda: kmock_cluster.emulator.objects["v1/configmaps", NS, NAME].patch(
        {"metadata": {"resourceVersion": "100"}}))
    load = Load()
    load.waiting = {"tail": 0.0, "chat": 0.0}
    old = daemon(kmock_cluster, FLEET, targets_for(FLEET, tail=1, chat=1), load)
    old.tick(now=T0)
    (first,) = kmock_cluster.requests("PATCH", CM_PATH)
    assert first.data["metadata"] == {"resourceVersion": "100"}

    theirs = honest("chat", now=T0 + 5, desired=7)
    put_records(kmock_cluster, {key_of("chat"): theirs})  # the new leader's save
    kmock_cluster.fail_next("PATCH", CM_PATH, 409, {"kind": "Status", "code": 409, "reason": "Conflict"})
    load.waiting = {"tail": 0.0, "chat": 400.0}  # the old leader now decides a different count
    with capture_logs() as logs:
        old.tick(now=T0 + 10)
        assert [e["error"] for e in logs if e["event"] == "not saving the policy state: another leader wrote it"]
        assert json.loads(kmock_cluster.get("v1/configmaps", NS, NAME)["data"][key_of("chat")]) == theirs
        reads_before = len(kmock_cluster.requests("GET", CM_PATH))
        old.tick(now=T0 + 20)
    assert len(kmock_cluster.requests("GET", CM_PATH)) == reads_before + 1
    assert any(e["event"] == "policy state restored" for e in logs)


def test_a_leader_whose_lease_lapsed_during_the_tick_does_not_save(kmock_cluster):
    """The fence is asked right before the save, not only at the tick's start: here the
    Lease lapsed after the tick's writes (the targets, unfenced, stand for writes already made)."""
    load = Load()
    load.waiting = {"tail": 0.0, "chat": 40.0}
    controller = Controller(FLEET, metrics=load, targets=targets_for(FLEET, tail=1, chat=1))
    leader = FailoverController(Holder(controller, FLEET), leadership=None, store=store(kmock_cluster), fence=lambda: False)
    with capture_logs() as logs:
        assert leader.tick(now=T0)  # decided and written ...
    assert kmock_cluster.requests("PATCH", CM_PATH) == [] and kmock_cluster.requests("POST") == []  # ... not saved
    assert any(e["event"] == "lost the leader lease during this tick; the policy state is not saved" for e in logs)

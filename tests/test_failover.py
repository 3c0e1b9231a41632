"""Policy state that survives a restart or a failover: the ConfigMap store against the kmock API
emulator, and the FailoverController that restores it, with the real Controller and policies."""

from __future__ import annotations

import json

import pytest
from structlog.testing import capture_logs

from autoscaler.controller import Controller
from autoscaler.failover import FailoverController
from autoscaler.metrics import ModelSignals, Signals
from autoscaler.state_store import (
    ConfigMapStateStore, InMemoryStateStore, StateUnavailable, key_of, record_of, restore, restore_all, vouch_s,
)
from autoscaler.targets.recording import InMemoryTargets
from policies import PolicyState
from policies.signals import Reading
from tests.builders import config, model

CONFIGMAPS = "v1/configmaps"
NS = "llm-autoscaler"
CM_PATH = f"/api/v1/namespaces/{NS}/configmaps/llm-autoscaler-state"


def store(cluster) -> ConfigMapStateStore:
    return ConfigMapStateStore(cluster.api_client, namespace=NS, name="llm-autoscaler-state")


def a_record(name: str, *, desired: int = 3, idle_since: float | None = None, now: float = 100.0) -> dict:
    state = PolicyState(
        idle_since=idle_since, last_scale_up_at=50.0, service_rate_per_replica=2.4567, service_rate_estimate=3.051,
        idle_gaps=(1500.4, 20.0), burst_headroom=(60.0, 0.73456),
    )
    return record_of(name, state, desired=desired, now=now, watched_since=0.0)


def restored(record: dict, *, now: float) -> PolicyState:
    one, refusals = restore(key_of(record["model"]), record, now=now, vouch_s=vouch_s(10.0))
    assert one is not None and refusals == []
    return one.state


# -- the ConfigMap store -------------------------------------------------------------------------


def test_records_round_trip_through_a_configmap_it_creates(kmock_cluster):
    assert store(kmock_cluster).load() == {}  # nothing stored yet is not an error
    saved = {"chat": a_record("chat"), "tail": a_record("tail", desired=0, idle_since=40.0)}
    store(kmock_cluster).save(saved)
    assert store(kmock_cluster).load() == saved
    assert saved["chat"]["service_rate_per_replica"] == 2.5  # two significant digits
    assert restored(saved["chat"], now=100.0).service_rate_estimate == 3.1
    assert restored(saved["chat"], now=100.0).idle_gaps == (1500, 20)  # whole seconds
    assert restored(saved["chat"], now=100.0).burst_headroom == (60.0, 0.73)  # two decimals
    data = kmock_cluster.get(CONFIGMAPS, NS, "llm-autoscaler-state")["data"]
    assert json.loads(data["tail"])["idle_since"] == 40.0


def test_a_steady_fleet_costs_no_write_and_a_change_writes_only_its_own_key(kmock_cluster):
    keeper = store(kmock_cluster)
    keeper.save({"chat": a_record("chat"), "tail": a_record("tail")})
    writes = len(kmock_cluster.requests("patch")) + len(kmock_cluster.requests("post"))
    keeper.save({"chat": a_record("chat", now=105.0), "tail": a_record("tail", now=105.0)})  # only saved_at moved
    assert len(kmock_cluster.requests("patch")) + len(kmock_cluster.requests("post")) == writes
    keeper.save({"chat": a_record("chat", desired=5, now=110.0), "tail": a_record("tail", now=110.0)})
    patches = kmock_cluster.requests("patch", CM_PATH)
    assert [set(p.data["data"]) for p in patches[-1:]] == [{"chat"}]


def test_a_model_no_longer_configured_loses_its_record(kmock_cluster):
    keeper = store(kmock_cluster)
    keeper.save({"chat": a_record("chat"), "gone": a_record("gone")})
    keeper.save({"chat": a_record("chat")})
    assert set(store(kmock_cluster).load()) == {"chat"}


def test_a_damaged_record_or_value_is_refused_and_the_others_load(kmock_cluster):
    kmock_cluster.put({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "llm-autoscaler-state", "namespace": NS},
        "data": {
            "chat": json.dumps(a_record("chat")), "tail": "{not json", "neg": json.dumps(a_record("neg", desired=-1)),
            "gaps": json.dumps({**a_record("gaps"), "idle_gaps": [30, -5]}),
            "older": json.dumps({k: v for k, v in a_record("older").items() if k not in ("idle_gaps", "burst_headroom")}),
            "burst": json.dumps({**a_record("burst"), "burst_headroom": [60.0, -0.5]}),
        },
    }, CONFIGMAPS)
    loaded, refusals = restore_all(store(kmock_cluster).load(), now=100.0, vouch_s=vouch_s(10.0))
    assert set(loaded) == {"chat", "older", "gaps", "burst"}  # a damaged value costs its record only that value
    assert loaded["older"].state.idle_gaps == () and loaded["older"].state.burst_headroom is None
    assert loaded["gaps"].state.idle_gaps == () and loaded["gaps"].state.service_rate_estimate == 3.1
    assert loaded["burst"].state.burst_headroom is None and loaded["burst"].state.idle_gaps == (1500, 20)
    assert sorted((r.key, r.field, r.kind) for r in refusals) == [
        ("burst", "burst_headroom", "invalid"), ("gaps", "idle_gaps", "invalid"),
        ("neg", "desired", "invalid"), ("tail", "record", "unreadable"),
    ]


def test_a_forbidden_read_is_unavailable_state_naming_the_rbac_rule(kmock_cluster):
    kmock_cluster.fail_next("get", CM_PATH, 403)
    with pytest.raises(StateUnavailable, match=r'needs RBAC: apiGroups \[""\], resources \[configmaps\], verbs \[get\] in namespace llm-autoscaler$'):
        store(kmock_cluster).load()


def test_a_failed_save_is_retried_at_the_next_tick(kmock_cluster):
    keeper = store(kmock_cluster)
    keeper.save({"chat": a_record("chat")})
    kmock_cluster.fail_next("patch", CM_PATH, 500)
    keeper.save({"chat": a_record("chat", desired=7)})
    assert store(kmock_cluster).load()["chat"]["desired"] == 3
    keeper.save({"chat": a_record("chat", desired=7)})
    assert store(kmock_cluster).load()["chat"]["desired"] == 7


@pytest.mark.parametrize("name", ["chat", "org/llama-3.1 8b", "x" * 300])
def test_any_model_name_maps_to_a_valid_configmap_key(name):
    key = key_of(name)
    assert len(key) <= 253 and all(c.isalnum() or c in "-._" for c in key)
    assert key_of(name + "!") != key


def test_a_restored_model_keeps_its_instants_and_holds_its_last_count():
    """Saved at 100, restored at 110: an idle clock counts none of the 10 s (it may be skew),
    the last scale-up counts them (a scale-up is not held back longer)."""
    state = restored(a_record("tail", desired=4, idle_since=40.0), now=110.0)
    assert state.idle_since == 50.0 and state.last_scale_up_at == 50.0
    assert state.first_seen == (110.0, 4) and state.recommendations == ()


# -- failover, through the real Controller and policies ------------------------------------------


class Load:
    """A hand-written metrics source: every model shows the load last set for it."""

    def __init__(self) -> None:
        self.waiting: dict[str, float] = {}

    def fetch_signals(self, *, now: float) -> Signals:
        zero = Reading.of(0.0)
        return Signals(models={
            name: ModelSignals(waiting=Reading.of(w), running=Reading.of(w), kv_cache_usage=zero,
                               gpu_utilization=Reading.of(95.0 if w else 0.0), completion_rate=zero, wake=zero,
                               reporting_pods=None)  # pods not counted: this fake knows none
            for name, w in self.waiting.items()
        })


class Flag:
    def __init__(self, leading: bool) -> None:
        self.leading = leading

    def is_leader(self, *, now: float) -> bool:
        return self.leading


class Holder:
    """What ReloadingController offers FailoverController: the config and the controller."""

    def __init__(self, controller: Controller, cfg) -> None:
        self.controller, self.config = controller, cfg

    def tick(self, *, now: float):
        return self.controller.tick(now=now)


FLEET = config(
    model("tail", kind="long-tail", policy={"cold_start_s": 60}),  # idle timeout 60 x (1 + 3) = 240 s
    model("chat", policy={"min_replicas": 1, "scale_down_stabilization_s": 300}),
)


def daemon(store, targets, load, leadership=None) -> FailoverController:
    return FailoverController(Holder(Controller(FLEET, metrics=load, targets=targets), FLEET), leadership=leadership, store=store)


def run(daemon_, *, start: float, end: float, step: float = 10.0) -> dict[str, list[tuple[float, int]]]:
    """Ticks from start to end; returns each model's (time, desired) whenever it changed."""
    changes: dict[str, list[tuple[float, int]]] = {}
    now = start
    while now <= end:
        for outcome in daemon_.tick(now=now):
            if outcome.decision is not None and outcome.decision.direction != "hold":
                changes.setdefault(outcome.model, []).append((now, outcome.decision.desired_replicas))
        now += step
    return changes


def test_a_new_leader_scales_an_idle_model_to_zero_when_the_old_one_would_have_not_a_timeout_later():
    shared = InMemoryStateStore()
    targets = InMemoryTargets({m.name: m for m in FLEET.models}, initial={"tail": 1, "chat": 2})
    load = Load()
    load.waiting = {"tail": 0.0, "chat": 8.0}
    run(daemon(shared, targets, load), start=0, end=120)  # the first leader sees tail idle from t=0, then dies
    changes = run(daemon(shared, targets, load), start=130, end=600)
    # Idle 120 s when last saved (at 120); the 10 s between that save and the takeover are not
    # counted, since on another machine's clock they may be skew (state_store): 10 s late.
    assert changes["tail"] == [(250.0, 0)]

    cold = InMemoryTargets({m.name: m for m in FLEET.models}, initial={"tail": 1, "chat": 2})
    unrestored = run(daemon(None, cold, load), start=130, end=600)
    assert unrestored["tail"] == [(370.0, 0)]  # without the state: idle counted from 130


def test_a_new_leader_holds_a_count_for_the_scale_down_window_instead_of_dropping_it():
    shared = InMemoryStateStore()
    targets = InMemoryTargets({m.name: m for m in FLEET.models}, initial={"tail": 1, "chat": 1})
    load = Load()
    load.waiting = {"tail": 1.0, "chat": 40.0}
    first = run(daemon(shared, targets, load), start=0, end=200)
    peak = first["chat"][-1][1]
    assert peak > 2
    load.waiting["chat"] = 4.0  # demand falls just as the leader dies
    changes = run(daemon(shared, targets, load), start=210, end=900)
    downs = [(t, n) for t, n in changes.get("chat", []) if n < peak]
    assert downs and downs[0][0] >= 210 + 300  # the whole window, counted from the takeover

    # From a blank state the count found at first sight is held the same way (policies.pipeline).
    blank = InMemoryTargets({m.name: m for m in FLEET.models}, initial={"tail": 1, "chat": peak})
    unrestored = run(daemon(None, blank, load), start=210, end=900)
    assert unrestored["chat"][0][0] >= 210 + 300 and unrestored["chat"][0][1] < peak


def test_a_standby_does_not_tick_and_reads_the_state_again_when_it_leads():
    shared = InMemoryStateStore()
    targets = InMemoryTargets({m.name: m for m in FLEET.models}, initial={"tail": 1, "chat": 2})
    load = Load()
    load.waiting = {"tail": 0.0, "chat": 8.0}
    flag = Flag(False)
    standby = daemon(shared, targets, load, leadership=flag)
    assert standby.tick(now=0.0) == []
    flag.leading = True
    shared.records = {"tail": a_record("tail", desired=1, idle_since=0.0, now=5.0)}
    assert {o.model for o in standby.tick(now=10.0)} == {"tail", "chat"}
    assert standby.controller.states["tail"].idle_since == 5.0  # idle 5 s when saved; the 5 s since not counted


def test_a_leader_that_cannot_read_the_stored_state_does_not_act():
    class Unreadable(InMemoryStateStore):
        def load(self):
            raise StateUnavailable("reading ConfigMap llm-autoscaler/llm-autoscaler-state: HTTP 403 Forbidden")

    targets = InMemoryTargets({m.name: m for m in FLEET.models}, initial={"tail": 1, "chat": 2})
    with capture_logs() as logs:
        assert daemon(Unreadable(), targets, Load()).tick(now=0.0) == []
    assert any(e["event"] == "not acting until the stored policy state can be read" and "403" in e["error"] for e in logs)


def test_a_lease_lost_mid_tick_stops_the_writes_that_remain():
    flag = Flag(True)
    targets = InMemoryTargets({m.name: m for m in FLEET.models}, initial={"tail": 1, "chat": 1}, fence=lambda: flag.leading)
    load = Load()
    load.waiting = {"tail": 30.0, "chat": 40.0}
    controller = Controller(FLEET, metrics=load, targets=targets)
    original_apply = targets.apply

    def apply_then_lose(model, decision, *, now):
        action = original_apply(model, decision, now=now)
        flag.leading = False  # the Lease is gone after the first write of the tick
        return action

    targets.apply = apply_then_lose
    outcomes = {o.model: o.action.outcome for o in controller.tick(now=0.0)}
    assert outcomes == {"tail": "patched", "chat": "standby"}
    assert targets.read_states(now=0.0)["chat"].spec_replicas == 1


def test_with_parallel_writers_a_lease_lost_mid_tick_stops_every_write_not_yet_past_the_gate():
    """Three writers, twelve models: the Lease goes during the first write. Only writes that
    had passed the gate by then (at most one per writer) complete; every later one is a
    standby, and every model still gets its outcome, in the config's order."""
    fleet = config(*(model(f"m{i}", policy={"min_replicas": 1}) for i in range(12)))
    flag = Flag(True)
    targets = InMemoryTargets(
        {m.name: m for m in fleet.models}, initial={m.name: 1 for m in fleet.models}, fence=lambda: flag.leading
    )
    load = Load()
    load.waiting = {m.name: 40.0 for m in fleet.models}
    controller = Controller(fleet, metrics=load, targets=targets, write_workers=3)
    original_apply = targets.apply

    def apply_then_lose(model, decision, *, now):
        action = original_apply(model, decision, now=now)
        flag.leading = False
        return action

    targets.apply = apply_then_lose
    outcomes = controller.tick(now=0.0)
    assert [o.model for o in outcomes] == [m.name for m in fleet.models]
    patched = [o.model for o in outcomes if o.action.outcome == "patched"]
    assert 1 <= len(patched) <= 3
    assert {o.action.outcome for o in outcomes} == {"patched", "standby"}
    states = targets.read_states(now=0.0)
    assert [name for name in states if states[name].spec_replicas > 1] == patched


def test_with_parallel_writers_a_write_that_raises_stops_no_other_and_the_first_error_is_raised():
    """A bug in a write (API errors are Actions, not exceptions) on three of twelve models,
    as many as there are writers: the other nine are still written, each once, and the tick
    raises the first in config order."""
    fleet = config(*(model(f"m{i}", policy={"min_replicas": 1}) for i in range(12)))
    targets = InMemoryTargets({m.name: m for m in fleet.models}, initial={m.name: 1 for m in fleet.models})
    load = Load()
    load.waiting = {m.name: 40.0 for m in fleet.models}
    controller = Controller(fleet, metrics=load, targets=targets, write_workers=3)
    original_apply, written = targets.apply, []

    def apply_or_fail(model, decision, *, now):
        if model.name in ("m2", "m4", "m9"):
            raise RuntimeError(f"bug writing {model.name}")
        written.append(model.name)
        return original_apply(model, decision, now=now)

    targets.apply = apply_or_fail
    with pytest.raises(RuntimeError, match="bug writing m2"):
        controller.tick(now=0.0)
    in_config_order = sorted(written, key=lambda name: int(name[1:]))
    assert in_config_order == [f"m{i}" for i in range(12) if i not in (2, 4, 9)]
    states = targets.read_states(now=0.0)
    assert [name for name in states if states[name].spec_replicas > 1] == in_config_order


def test_write_workers_below_one_are_refused():
    with pytest.raises(ValueError, match="write_workers: 0 is not allowed; at least 1"):
        Controller(FLEET, metrics=Load(), targets=InMemoryTargets({}, initial={}), write_workers=0)

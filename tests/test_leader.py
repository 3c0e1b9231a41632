"""Leader election on a coordination.k8s.io/v1 Lease, against the kmock API emulator through
the official client. Time is handed in, so each test walks the clock by hand.

kmock enforces no resourceVersion, so the race of two standbys for one expired Lease (which a
real API server settles with 409 for the loser) is covered by injecting that 409."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s
from structlog.testing import capture_logs

from autoscaler.leader import LeaseElector
from autoscaler.settings import LeaderSettings
from tests.support.faulty_proxy import FaultyProxy

LEASES = "coordination.k8s.io/v1/leases"
NS = "llm-autoscaler"
LEASE_PATH = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/llm-autoscaler"
TIMINGS = LeaderSettings(lease_duration_s=15, renew_deadline_s=10, retry_period_s=2)


def elector(cluster, identity: str) -> LeaseElector:
    return LeaseElector(cluster.api_client, namespace=NS, name="llm-autoscaler", identity=identity, timings=TIMINGS)


def lease(cluster) -> dict:
    return cluster.get(LEASES, NS, "llm-autoscaler")["spec"]


def test_the_first_replica_creates_the_lease_and_leads_and_the_second_stands_by(kmock_cluster):
    a, b = elector(kmock_cluster, "a"), elector(kmock_cluster, "b")
    assert a.try_acquire_or_renew(now=1000.0)
    assert not b.try_acquire_or_renew(now=1000.5)
    assert lease(kmock_cluster)["holderIdentity"] == "a"
    assert lease(kmock_cluster)["leaseDurationSeconds"] == 15
    assert a.is_leader(now=1001.0) and not b.is_leader(now=1001.0)


def test_a_standby_takes_over_within_the_lease_duration_after_the_leader_dies(kmock_cluster):
    a, b = elector(kmock_cluster, "a"), elector(kmock_cluster, "b")
    assert a.try_acquire_or_renew(now=0.0)
    took_over_at = None
    now = 0.0
    while took_over_at is None and now < 60:  # a dies after t=0: only b keeps its rounds
        now += TIMINGS.retry_period_s
        if b.try_acquire_or_renew(now=now):
            took_over_at = now
    # b first saw a's record at t=2, so it waits 15 s from there: it leads at t=18 at the latest.
    assert took_over_at is not None
    assert TIMINGS.lease_duration_s <= took_over_at <= TIMINGS.lease_duration_s + 2 * TIMINGS.retry_period_s
    spec = lease(kmock_cluster)
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1


def test_a_live_leader_keeps_the_lease_and_the_standby_never_takes_it(kmock_cluster):
    a, b = elector(kmock_cluster, "a"), elector(kmock_cluster, "b")
    for step in range(60):  # two minutes of rounds, both alive
        now = step * TIMINGS.retry_period_s
        assert a.try_acquire_or_renew(now=now)
        assert not b.try_acquire_or_renew(now=now + 0.5)
    assert lease(kmock_cluster)["holderIdentity"] == "a"


def test_a_leader_that_cannot_renew_stops_acting_before_a_standby_could_take_over(kmock_cluster):
    a, b = elector(kmock_cluster, "a"), elector(kmock_cluster, "b")
    assert a.try_acquire_or_renew(now=0.0)
    assert not b.try_acquire_or_renew(now=0.0)
    kmock_cluster.fail_next("get", LEASE_PATH, 500, times=6)  # a is cut off for its next six rounds
    with capture_logs() as logs:
        leading = {t: a.try_acquire_or_renew(now=t) for t in (2.0, 4.0, 6.0, 8.0, 9.9, 10.0)}
    assert leading == {2.0: True, 4.0: True, 6.0: True, 8.0: True, 9.9: True, 10.0: False}
    assert any(entry["event"] == "lease round failed" and entry["status"] == 500 for entry in logs)
    # b may take the Lease only at 15 s: a stopped at 10 s, so the two never act at once.
    # (15 s after b received the record, which took the read's few milliseconds past 0.)
    assert not b.try_acquire_or_renew(now=14.9)
    assert b.try_acquire_or_renew(now=15.1)


def test_of_two_standbys_racing_for_an_expired_lease_the_one_answered_409_stands_by(kmock_cluster):
    a, b, c = elector(kmock_cluster, "a"), elector(kmock_cluster, "b"), elector(kmock_cluster, "c")
    assert a.try_acquire_or_renew(now=0.0)
    assert not b.try_acquire_or_renew(now=0.0) and not c.try_acquire_or_renew(now=0.0)
    as_a_left_it = kmock_cluster.get(LEASES, NS, "llm-autoscaler")
    assert b.try_acquire_or_renew(now=15.1)
    # c's read was answered before b's write landed, so c saw a's expired record too ...
    kmock_cluster.fail_next("get", LEASE_PATH, 200, as_a_left_it)
    # ... and its write carried that record's resourceVersion.
    conflict = kmock_cluster.fail_next("patch", LEASE_PATH, 409)
    assert not c.try_acquire_or_renew(now=15.1)
    assert len(conflict) == 1, "c never wrote: the race was not run"
    assert lease(kmock_cluster)["holderIdentity"] == "b"
    assert not c.is_leader(now=15.5)


def test_a_renewal_answered_409_gives_up_leadership_at_once(kmock_cluster):
    a = elector(kmock_cluster, "a")
    assert a.try_acquire_or_renew(now=0.0)
    kmock_cluster.fail_next("patch", LEASE_PATH, 409)
    assert not a.try_acquire_or_renew(now=2.0)
    assert not a.is_leader(now=2.1)


def test_a_released_lease_goes_to_the_standby_at_its_next_round(kmock_cluster):
    a, b = elector(kmock_cluster, "a"), elector(kmock_cluster, "b")
    changes = []
    b._on_change = changes.append
    assert a.try_acquire_or_renew(now=0.0)
    assert not b.try_acquire_or_renew(now=0.0)
    a.release(now=1.0)
    assert not a.is_leader(now=1.0)
    assert lease(kmock_cluster).get("holderIdentity") is None  # the merge patch removed it
    assert b.try_acquire_or_renew(now=2.0)  # not 15 s later
    assert changes == [True]


def test_an_unreachable_api_is_a_failed_round_not_a_crash():
    from kubernetes import client

    api = client.ApiClient(client.Configuration(host="http://127.0.0.1:9"))  # nothing listens on port 9
    unreachable = LeaseElector(api, namespace=NS, name="x", identity="a", timings=TIMINGS)
    with capture_logs() as logs:
        assert not unreachable.try_acquire_or_renew(now=0.0)
    assert any("unreachable" in entry["event"] for entry in logs)


@pytest.mark.parametrize(
    "durations",
    [(15, 15, 2), (10, 15, 2), (15, 10, 10), (15, 10, 0)],
    ids=["renew-equals-lease", "renew-past-lease", "retry-equals-renew", "retry-zero"],
)
def test_timings_that_could_let_two_leaders_overlap_are_refused(durations):
    with pytest.raises(ValueError, match="retry_period_s < renew_deadline_s < lease_duration_s|retry_period_s\n  Input should be greater than 0"):
        LeaderSettings(**dict(zip(("lease_duration_s", "renew_deadline_s", "retry_period_s"), durations)))


def test_a_standby_dates_what_it_saw_on_receipt_so_a_late_answer_cannot_bring_its_takeover_forward(kmock_cluster):
    """Issue 19, item 5: the standby dated the record by the start of its round, so a read
    answered late made it take over that much early. Its first read here is answered 2.5 s late
    (a proxy in front of kmock delays it): it may take over 15 s after it *received* the
    record, at 1 + 2.5 + 15 = 18.5, not at 16."""
    a = elector(kmock_cluster, "a")
    assert a.try_acquire_or_renew(now=0.0)
    with FaultyProxy(kmock_cluster.url) as proxy:
        b = LeaseElector(k8s.ApiClient(k8s.Configuration(host=proxy.url)), namespace=NS, name="llm-autoscaler",
                         identity="b", timings=TIMINGS)
        proxy.delay_s = 2.5
        assert not b.try_acquire_or_renew(now=1.0)
        proxy.delay_s = 0.0
        assert not b.try_acquire_or_renew(now=17.0), "took over before the lease ran out since it saw the record"
        assert b.try_acquire_or_renew(now=19.0)
    assert lease(kmock_cluster)["holderIdentity"] == "b"

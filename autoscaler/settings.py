"""The daemon's own settings: how it talks to the Kubernetes API, watches, sends Events, holds
the Lease and serves its metrics. One frozen model, units in the names, each default with its
reason; `autoscaler run` has one flag per leaf field (`--api-read-timeout-s`), generated from
this model, so a setting and its flag cannot part.

What a model is scaled by lives in the config file (autoscaler.config); these are how the
process runs, the same for every model, and set where the process is started (the Deployment's
args).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.fields import FieldInfo


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class ApiSettings(_Frozen):
    """Kubernetes API requests

    Every request: writes, the Lease, the state ConfigMap, Events, lists of ReplicaSets and nodes."""

    api_connect_timeout_s: float = Field(
        1.0, gt=0, le=60,
        description="Seconds to open a connection to the API server. In a cluster it answers in milliseconds; "
        "one that does not within a second is down, and the tick moves on.",
    )
    api_read_timeout_s: float = Field(
        3.0, gt=0, le=300,
        description="Seconds to wait for an answer to one request. Kubernetes' API latency SLO is 1 s at the 99th "
        "percentile for a single-object write; 3 s leaves room and keeps connect + read under the Lease's "
        "renew margin (lease_duration_s - renew_deadline_s), so a deposed leader's write cannot land after a new "
        "leader has begun.",
    )
    conflict_retries: int = Field(
        3, ge=1, le=10,
        description="Attempts at one write answered 409 Conflict (someone else changed the object) before it waits "
        "for the next tick, each after reading the object again.",
    )

    @property
    def request_timeout_s(self) -> tuple[float, float]:
        """(connect, read), as the kubernetes client's `_request_timeout` takes them."""
        return (self.api_connect_timeout_s, self.api_read_timeout_s)

    @property
    def longest_request_s(self) -> float:
        return self.api_connect_timeout_s + self.api_read_timeout_s


class WatchSettings(_Frozen):
    """Watching Deployments and ScaledObjects

    The list-and-watch cache (autoscaler.targets.watching)."""

    watch_scope: Literal["namespaces", "cluster"] = Field(
        "namespaces",
        description="namespaces: list and watch in each configured namespace (a Role in each, deploy/rbac.yaml); "
        "cluster: once across all namespaces (a ClusterRole, deploy/rbac-cluster-watch.yaml), 2 watches instead "
        "of 2 per namespace.",
    )
    watch_timeout_s: float = Field(
        60.0, gt=0, le=3600,
        description="The API server ends each watch after this long and the cache resumes it at once: one request "
        "a minute per stream. Short, because a connection that died without a word is noticed only when the "
        "server fails to end the watch on time.",
    )
    watch_list_timeout_s: float = Field(
        30.0, gt=0, le=600,
        description="Seconds to wait for a list's answer: a cluster-wide list of thousands of Deployments takes "
        "seconds, far more than one object's write.",
    )
    watch_max_stale_s: float = Field(
        60.0, gt=0, le=3600,
        description="A namespace out of sync (its watch broken) for longer than this is not trusted: its models "
        "hold. Six ticks at the default interval; a watch normally reconnects in milliseconds.",
    )
    watch_backoff_first_s: float = Field(
        0.5, gt=0, le=60, description="First wait before listing again after a watch error; it doubles per error."
    )
    watch_backoff_max_s: float = Field(30.0, gt=0, le=600, description="Longest wait between relists after errors.")
    crd_recheck_s: float = Field(
        300.0, gt=0, le=86400,
        description="KEDA's CRD missing is not an error, but it may be installed later: look again this often.",
    )

    @model_validator(mode="after")
    def _backoff_grows(self) -> WatchSettings:
        if self.watch_backoff_first_s > self.watch_backoff_max_s:
            raise ValueError(
                f"watch_backoff_first_s ({self.watch_backoff_first_s:g}) must not exceed "
                f"watch_backoff_max_s ({self.watch_backoff_max_s:g})"
            )
        return self


class EventSettings(_Frozen):
    """Kubernetes Events

    Posted on the scaled objects (autoscaler.targets.events)."""

    events_queue_size: int = Field(
        1000, ge=1, le=100_000,
        description="Events queued before new ones are dropped and counted (client-go's maxQueuedEvents): a first "
        "tick that changes every count of 1,000 models still fits.",
    )
    events_flush_s: float = Field(
        10.0, ge=0, le=60,
        description="At shutdown, the queued Events get this long to be sent: well inside the pod's 60 s grace "
        "period (deploy/deployment.yaml), which the Lease's release must also fit in.",
    )


class LeaderSettings(_Frozen):
    """Running as two replicas (ignored with --dry-run, which writes nothing)

    One acts, the other stands by (autoscaler.leader), with client-go's leader-election defaults."""

    leader_elect: bool = Field(False, description="Act only while holding the Lease lease_name.")
    lease_name: str = Field("llm-autoscaler", min_length=1, description="The coordination.k8s.io/v1 Lease to hold.")
    lease_duration_s: float = Field(
        15.0, gt=0, le=3600, description="A standby takes over this long after the leader's last renewal."
    )
    renew_deadline_s: float = Field(
        10.0, gt=0, le=3600,
        description="A leader that could not renew for this long stops acting; less than lease_duration_s, and the "
        "gap between them must hold the longest API request.",
    )
    retry_period_s: float = Field(2.0, gt=0, le=600, description="Seconds between election rounds.")
    state_configmap: str = Field(
        "llm-autoscaler-state",
        description="ConfigMap that keeps policy state across restarts and failovers ('' to keep none).",
    )
    state_refresh_s: float = Field(
        60.0, gt=0, le=3600,
        description="Every state record is written again at least this often, so that its saved_at says a leader "
        "was watching that recently: one merge patch a minute on a steady fleet. A record older than this, a "
        "takeover and a tick vouches for no idle time.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> LeaderSettings:
        if not self.retry_period_s < self.renew_deadline_s < self.lease_duration_s:
            raise ValueError(
                "lease timings need retry_period_s < renew_deadline_s < lease_duration_s, got "
                f"{self.retry_period_s:g} < {self.renew_deadline_s:g} < {self.lease_duration_s:g}"
            )
        return self

    @property
    def takeover_s(self) -> float:
        """The longest a standby waits before it leads: the lease, then its next round."""
        return self.lease_duration_s + self.retry_period_s

    @property
    def renew_margin_s(self) -> float:
        """How long after a leader must stop acting a standby may start: a write issued just
        before the deadline must be answered, or given up, within it."""
        return self.lease_duration_s - self.renew_deadline_s


class Settings(_Frozen):
    api: ApiSettings = ApiSettings()
    watch: WatchSettings = WatchSettings()
    events: EventSettings = EventSettings()
    leader: LeaderSettings = LeaderSettings()
    metrics_port: int = Field(
        8080, ge=0, le=65535, description="Serve /metrics, /healthz and /readyz on this port (0: serve none)."
    )
    health_grace_s: float = Field(
        30.0, ge=0, le=3600,
        description="/healthz fails once no tick has ended for three tick intervals plus this: a loop that stopped "
        "is restarted by the kubelet, a slow tick at 1,000 models is not.",
    )
    write_workers: int = Field(
        5, ge=1, le=64,
        description="Writes to the cluster in flight at once within a tick, each model's one at a time, as the HPA "
        "controller's --concurrent-horizontal-pod-autoscaler-syncs (5): a first tick at 1,000 models writes about "
        "120 counts, which one at a time take longer than a tick may.",
    )

    @model_validator(mode="after")
    def _writes_fenced(self) -> Settings:
        # A leader acts until renew_deadline_s after its last renewal; a standby starts at
        # lease_duration_s. A request sent just before the deadline is over, answered or given
        # up, by deadline + connect + read: that must come before the standby's start, or the
        # old leader's write can land after the new leader's.
        if self.leader.leader_elect and not self.api.longest_request_s < self.leader.renew_margin_s:
            raise ValueError(
                f"api_connect_timeout_s + api_read_timeout_s ({self.api.longest_request_s:g} s) must be less than "
                f"lease_duration_s - renew_deadline_s ({self.leader.renew_margin_s:g} s) with leader_elect: "
                "otherwise a deposed leader's write can land after the new leader's"
            )
        return self


def leaf_fields(model: type[BaseModel] = Settings, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], FieldInfo]]:
    """Every setting as (path, field), sub-models flattened: (("api", "api_read_timeout_s"), ...).
    Leaf names are unique across the groups, so each is one flag of `autoscaler run`."""
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from leaf_fields(field.annotation, (*path, name))
        else:
            yield (*path, name), field

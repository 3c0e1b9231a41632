"""Policy state kept in the cluster, so that a restart or a failover to the standby carries on
where the last leader stopped: a model idle for 7 of its 8 minutes goes to zero in one more
minute, not eight, and one held up by the scale-down window is not dropped at once.

One ConfigMap in the daemon's namespace, one key per model, a small JSON record each:

    {"model": "chat", "desired": 6, "saved_at": 1763840000.0, "idle_since": null,
     "starting_since": 1763839990.0, "last_scale_up_at": 1763839990.0,
     "last_scale_down_at": null, "service_rate_per_replica": 2.4, "service_rate_estimate": 3.1,
     "idle_gaps": [1500, 20, 3600]}

Kept: what takes long to build up (idle time, the last scale times, the measured and the
estimated service rate, a long-tail model's last idle periods). Not kept: the stabilization history, which changes every tick and would cost a write
per tick. Instead a restored model starts with one recommendation, the last count it was
given, so the new leader holds it there for a whole scale-down window before it may go lower
(late rather than early: the safe side). The completion-rate history refills in a minute.

Writes go out only for records that changed, in one merge patch per tick; a steady fleet
costs no write. 1,000 models take about 200 KB, well under a ConfigMap's 1 MiB.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Protocol

import structlog
import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from autoscaler.settings import ApiSettings
from policies import PolicyState

log = structlog.get_logger(__name__)

_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,200}$")
_TIMES = ("idle_since", "starting_since", "last_scale_up_at", "last_scale_down_at")
_RATES = ("service_rate_per_replica", "service_rate_estimate")


class StateUnavailable(Exception):
    """The stored state could not be read; acting without it could undo what it protects."""


class StateStore(Protocol):
    def load(self) -> dict[str, dict]:
        """Records by model name; {} when nothing was stored yet. Raises StateUnavailable."""
        ...

    def save(self, records: Mapping[str, dict]) -> None:
        """Store the records of every configured model; a model absent is forgotten."""
        ...


def record_of(model: str, state: PolicyState, *, desired: int, now: float) -> dict:
    return {
        "model": model,
        "desired": desired,
        **{name: getattr(state, name) for name in _TIMES},
        # Two significant digits: the rates move a little every tick they are learned on, and a
        # write per tick for a change no decision notices is not worth it.
        **{name: _rounded(getattr(state, name)) for name in _RATES},
        # Whole seconds: the idle timeout learned from them moves in steps of minutes.
        "idle_gaps": [round(gap) for gap in state.idle_gaps],
        # Raised at most once per cold start, and an hour's evidence of bursts is worth keeping.
        "burst_headroom": None if state.burst_headroom is None else [state.burst_headroom[0], round(state.burst_headroom[1], 2)],
        "saved_at": now,
    }


def _rounded(rate: float | None) -> float | None:
    return float(f"{rate:.2g}") if rate is not None else None


def restore(record: Mapping, *, now: float) -> PolicyState:
    """The state a new leader starts a model from (see the module docstring)."""
    return PolicyState(
        recommendations=((now, int(record["desired"])),),
        **{name: record.get(name) for name in (*_TIMES, *_RATES)},
        idle_gaps=tuple(record.get("idle_gaps", ())),
        burst_headroom=tuple(record["burst_headroom"]) if record.get("burst_headroom") is not None else None,
    )


def _same(a: Mapping, b: Mapping) -> bool:
    return {k: v for k, v in a.items() if k != "saved_at"} == {k: v for k, v in b.items() if k != "saved_at"}


def _valid(record: object) -> bool:
    if not isinstance(record, dict) or not isinstance(record.get("model"), str):
        return False
    desired = record.get("desired")
    if not isinstance(desired, int) or isinstance(desired, bool) or desired < 0:
        return False
    gaps = record.get("idle_gaps", [])
    headroom = record.get("burst_headroom")
    if headroom is not None and not (isinstance(headroom, list) and len(headroom) == 2 and all(map(_non_negative, headroom))):
        return False
    numbers = [record.get(name) for name in (*_TIMES, *_RATES)]
    return all(v is None or _non_negative(v) for v in numbers) and isinstance(gaps, list) and all(map(_non_negative, gaps))


def _non_negative(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def key_of(model: str) -> str:
    """ConfigMap keys allow [-._a-zA-Z0-9]; other names get a readable, unique stand-in."""
    if _KEY.match(model):
        return model
    readable = re.sub(r"[^-._a-zA-Z0-9]", "_", model)[:180]
    return f"{readable}.{hashlib.sha256(model.encode()).hexdigest()[:12]}"


class ConfigMapStateStore:
    def __init__(self, api_client: k8s.ApiClient, *, namespace: str, name: str, api: ApiSettings = ApiSettings()) -> None:
        self._core = k8s.CoreV1Api(api_client)
        self._request_timeout_s = api.request_timeout_s
        self.namespace, self.name = namespace, name
        self._stored: dict[str, dict] | None = None  # what the ConfigMap holds, as of our last read or write

    def load(self) -> dict[str, dict]:
        try:
            config_map = self._core.read_namespaced_config_map(self.name, self.namespace, _request_timeout=self._request_timeout_s)
        except ApiException as err:
            if err.status == 404:
                self._stored = {}
                return {}
            hint = (
                f"; the service account needs RBAC: resources [configmaps], verbs [get], in namespace {self.namespace}"
                if err.status == 403 else ""
            )
            raise StateUnavailable(f"reading ConfigMap {self.namespace}/{self.name}: HTTP {err.status} {err.reason}{hint}") from None
        except urllib3.exceptions.HTTPError as err:
            raise StateUnavailable(f"reading ConfigMap {self.namespace}/{self.name}: {err}") from None
        records, stored = {}, {}
        for key, text in (config_map.data or {}).items():
            try:
                record = json.loads(text)
            except ValueError:
                record = None
            if not _valid(record):  # one damaged entry must not cost the others their state
                log.warning("ignoring an unreadable state record", configmap=self.name, key=key)
                continue
            records[record["model"]] = stored[key] = record
        self._stored = stored
        return records

    def save(self, records: Mapping[str, dict]) -> None:
        wanted = {key_of(model): record for model, record in records.items()}
        if self._stored is None:  # never read: load first, so the diff is against what is there
            try:
                self.load()
            except StateUnavailable as err:
                log.error("could not save policy state; will retry next tick", error=str(err))
                return
        stored = self._stored or {}
        changes: dict[str, str | None] = {
            key: json.dumps(record, separators=(",", ":"), sort_keys=True)
            for key, record in wanted.items()
            if key not in stored or not _same(stored[key], record)
        }
        changes |= {key: None for key in stored if key not in wanted}  # null deletes the key
        if not changes:
            return
        try:
            self._write(changes, wanted)
        except (ApiException, urllib3.exceptions.HTTPError) as err:
            log.error("could not save policy state; will retry next tick", configmap=self.name,
                      status=getattr(err, "status", None), error=str(getattr(err, "reason", err))[:200])
            return
        self._stored = dict(wanted)

    def _write(self, changes: dict[str, str | None], wanted: dict[str, dict]) -> None:
        try:
            self._core.patch_namespaced_config_map(self.name, self.namespace, {"data": changes}, _request_timeout=self._request_timeout_s)
        except ApiException as err:
            if err.status != 404:
                raise
            # First save in this cluster (or the ConfigMap was deleted): create it whole.
            self._create({key: json.dumps(record, separators=(",", ":"), sort_keys=True) for key, record in wanted.items()})

    def _create(self, data: dict[str, str]) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": self.name, "namespace": self.namespace, "labels": {"app.kubernetes.io/name": "llm-autoscaler"}},
            "data": data,
        }
        self._core.create_namespaced_config_map(self.namespace, body, _request_timeout=self._request_timeout_s)


class InMemoryStateStore:
    """For tests and replays of a failover: the same contract, in a dict."""

    def __init__(self) -> None:
        self.records: dict[str, dict] = {}
        self.writes = 0

    def load(self) -> dict[str, dict]:
        return {model: dict(record) for model, record in self.records.items()}

    def save(self, records: Mapping[str, dict]) -> None:
        if set(records) == set(self.records) and all(_same(self.records[m], r) for m, r in records.items()):
            return
        self.records = {model: dict(record) for model, record in records.items()}
        self.writes += 1

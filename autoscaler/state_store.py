"""Policy state kept in the cluster, so that a restart or a failover to the standby carries on
where the last leader stopped: a model idle for 7 of its 8 minutes goes to zero in one more
minute, not eight, one held up by the scale-down window is not dropped at once, and a batch
job keeps the deadline it was given.

One ConfigMap in the daemon's namespace, one key per model (`key_of`), a small JSON record each:

    {"model": "chat", "desired": 6, "saved_at": 1763840000.0, "watched_since": 1763830000.0,
     "idle_since": null, "starting_since": 1763839990.0, "last_scale_up_at": 1763839990.0,
     "last_scale_down_at": null, "service_rate_per_replica": 2.4, "service_rate_estimate": 3.1,
     "burst_headroom": [1763839000.0, 0.5], "idle_gaps": [1500, 20, 3600], "backlog_since": null}

What is kept comes from `PolicyState`'s own fields: each declares in policies/decision.py how it
is kept (an encoding, or None for what the first window of observations rebuilds), and this
module refuses to import while a field does not say, so a field added later cannot be left out.
Not kept: the stabilization history, which changes every tick and would cost a write per tick.
Instead the last count a restored model was given stands as the count found at first sight, so
the new leader holds it there for a whole scale-down window before it may go lower (late rather
than early: the safe side), and scales up at once. The completion-rate and saturation history
refill in a minute.

`saved_at` is the writer's clock when the record was last vouched for, and `watched_since`
since when leaders have watched the model without a break. Instants are written on the
writer's clock and read back as ages before `saved_at`, re-anchored on the new leader's clock
(`restore`): another machine's clock may be minutes off, so `now - saved_at` cannot tell time
that passed from skew. Each instant is placed on its safe side (`when_unsure` in decision.py):
an idle clock counts none of that time, so a leader whose clock was 300 s behind cannot make a
model go to zero early; a batch deadline counts it, up to the bound, so it is never late.

A record vouches for `vouch_s(tick_interval_s)`: the leader rewrites every record at least each
`state_refresh_s`, a standby takes over within the lease and one retry period
(autoscaler.settings), and then a tick saves it. A record further from now than that, either way (an outage nobody watched, or a clock far off), restarts its idle clock:
traffic may have come and gone meanwhile, and an hour-old `idle_since` would take a model to
zero seconds after its last request.

Every restored field is bounded by what it means, and what is refused is logged and counted
(`llm_autoscaler_state_refusals_total{field,kind}`): a record whose key is not its model's,
a count past the largest a policy allows, an instant after the record's `saved_at` (a
`last_scale_up_at` of 1e12 blocked scale-ups), an idle clock older than the record watched (an
`idle_since` of 0 gave an immediate scale to zero), more idle periods than a policy keeps, a
headroom share past its maximum. A refused field starts from its default; a refused record
from a blank state, as a model seen for the first time. A record written before
`watched_since` existed vouches from its `saved_at`, so its idle clock restarts once.

Writes go out for records that changed, in one merge patch per tick, and every record once per
`state_refresh_s` to vouch for it again; a steady fleet costs one write a minute. The size of a
fleet's records against a ConfigMap's 1 MiB is in docs/high-availability.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any, Protocol

import structlog
from kubernetes import client as k8s

from autoscaler.kube_errors import Conflict, Failed, Forbidden, KubernetesError, NotFound, Rule, Unreachable, translated
from autoscaler.settings import ApiSettings, LeaderSettings
from policies import PolicyState
from policies.spec import HotSpec, LongTailSpec, PolicySpec

log = structlog.get_logger(__name__)

_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,200}$")


def vouch_s(tick_interval_s: float, leader: LeaderSettings = LeaderSettings()) -> float:
    """How far from now a record's saved_at may be and still vouch for its idle clock: one
    refresh, one takeover and the tick that saves it."""
    return leader.state_refresh_s + leader.takeover_s + tick_interval_s


def _upper(model: type, name: str) -> float:
    """A spec field's `le` bound: the policies' own limit, not a second one kept here."""
    return next(m.le for m in model.model_fields[name].metadata if getattr(m, "le", None) is not None)


MAX_REPLICAS = int(_upper(PolicySpec, "max_replicas"))
MAX_IDLE_GAPS = int(_upper(LongTailSpec, "idle_gap_history"))
MAX_HEADROOM_SHARE = _upper(HotSpec, "burst_headroom_max")


# -- the fields kept, from PolicyState's own definition --------------------------------------------

ENCODINGS = ("instant", "rate", "durations", "stamped_share")
_TIMED = ("instant", "stamped_share")  # the encodings that hold an instant, re-anchored at takeover


@dataclasses.dataclass(frozen=True, slots=True)
class Kept:
    name: str
    encoding: str
    when_unsure: str | None  # instants: "later" or "earlier" (policies/decision.py says what each means)
    unbroken: bool


def kept_fields(state_type: type = PolicyState) -> tuple[Kept, ...]:
    """How each field of `state_type` is kept, from its `persist` metadata. Raises TypeError
    naming a field that does not say, or says something this module cannot keep."""
    kept = []
    for f in dataclasses.fields(state_type):
        where = f"{state_type.__name__}.{f.name}"
        if "persist" not in f.metadata:
            raise TypeError(
                f"{where} does not say whether it survives a restart: give it field(metadata={{'persist': ...}}) "
                f"with one of {', '.join(ENCODINGS)}, or None for a field rebuilt from observations"
            )
        encoding, when_unsure = f.metadata["persist"], f.metadata.get("when_unsure")
        if encoding is None:
            continue
        if encoding not in ENCODINGS:
            raise TypeError(f"{where}: persist {encoding!r} is not one of {', '.join(ENCODINGS)}")
        if (encoding in _TIMED) != (when_unsure in ("later", "earlier")):
            raise TypeError(
                f"{where}: when_unsure {when_unsure!r}; an instant needs 'later' or 'earlier', other encodings none"
            )
        kept.append(Kept(f.name, encoding, when_unsure, bool(f.metadata.get("unbroken", False))))
    return tuple(kept)


KEPT = kept_fields()  # at import: a PolicyState field that does not say stops the daemon from starting


def _encode(encoding: str, value: Any) -> Any:
    if value is None:
        return None
    if encoding == "rate":
        # Two significant digits: the rates move a little every tick they are learned on, and a
        # write per tick for a change no decision notices is not worth it.
        return float(f"{value:.2g}")
    if encoding == "durations":
        # Whole seconds: the idle timeout learned from them moves in steps of minutes.
        return [round(gap) for gap in value]
    if encoding == "stamped_share":
        # Raised at most once per cold start, and an hour's evidence of bursts is worth keeping.
        return [value[0], round(value[1], 2)]
    return value


def record_of(
    model: str, state: PolicyState, *, desired: int, now: float, watched_since: float | None = None
) -> dict:
    """The record saved for a model; `watched_since` defaults to now (a model first seen)."""
    return {
        "model": model,
        "desired": desired,
        "saved_at": now,
        "watched_since": now if watched_since is None else watched_since,
        **{rule.name: _encode(rule.encoding, getattr(state, rule.name)) for rule in KEPT},
    }


# -- restoring, bounded --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Refusal:
    """A stored value not restored. `kind`: unreadable, wrong_key, invalid, future (after the
    record's saved_at), unwatched (older than the record watched), too_many, stale (the
    record cannot vouch for it now)."""

    key: str
    field: str
    kind: str
    detail: str


@dataclasses.dataclass(frozen=True, slots=True)
class Restored:
    model: str
    desired: int
    state: PolicyState
    watched_since: float  # on the new leader's clock


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _decode(encoding: str, raw: object, *, saved_at: float) -> tuple[Any, str | None, str]:
    """(value on the writer's clock, refusal kind or None, what is allowed)."""
    if encoding == "instant":
        allowed = f"an instant from 0 to saved_at {saved_at:.0f}"
        if not _number(raw):
            return None, "invalid", allowed
        return raw, ("future" if raw > saved_at else None), allowed
    if encoding == "rate":
        return raw, (None if _number(raw) else "invalid"), "a finite rate >= 0"
    if encoding == "durations":
        allowed = f"a list of at most {MAX_IDLE_GAPS} durations >= 0"
        if not isinstance(raw, list) or not all(map(_number, raw)):
            return None, "invalid", allowed
        return tuple(raw), ("too_many" if len(raw) > MAX_IDLE_GAPS else None), allowed
    allowed = f"[an instant from 0 to saved_at {saved_at:.0f}, a share from 0 to {MAX_HEADROOM_SHARE:g}]"
    if not (isinstance(raw, list) and len(raw) == 2 and all(map(_number, raw)) and raw[1] <= MAX_HEADROOM_SHARE):
        return None, "invalid", allowed
    return tuple(raw), ("future" if raw[0] > saved_at else None), allowed


def restore(key: str, stored: object, *, now: float, vouch_s: float) -> tuple[Restored | None, list[Refusal]]:
    """The state a new leader starts a model from (see the module docstring), and what of the
    stored record it refused. None: the whole record is refused, the model starts blank."""
    refusals: list[Refusal] = []

    def refuse(field: str, kind: str, detail: str) -> None:
        refusals.append(Refusal(key, field, kind, detail))

    if not isinstance(stored, dict) or not isinstance(stored.get("model"), str):
        refuse("record", "unreadable", "not a JSON object with a model name")
        return None, refusals
    model = stored["model"]
    if key_of(model) != key:
        refuse("model", "wrong_key", f"{model!r} under key {key!r}; allowed: the key {key_of(model)!r} only")
        return None, refusals
    desired, saved_at = stored.get("desired"), stored.get("saved_at")
    if not (_number(desired) and isinstance(desired, int) and desired <= MAX_REPLICAS):
        refuse("desired", "invalid", f"{desired!r}; allowed: a whole number from 0 to {MAX_REPLICAS}")
        return None, refusals
    if not _number(saved_at):
        refuse("saved_at", "invalid", f"{saved_at!r}; allowed: a finite instant >= 0")
        return None, refusals

    gap_s = now - saved_at  # time passed since the save, plus the clocks' difference: not told apart
    stale = abs(gap_s) > vouch_s
    credit_s = {"later": 0.0, "earlier": min(max(gap_s, 0.0), vouch_s)}

    def anchored(instant: float, when_unsure: str) -> float:
        return now - credit_s[when_unsure] - (saved_at - instant)

    watched = stored.get("watched_since", saved_at)  # absent in records older than it: vouch from saved_at
    if not (_number(watched) and watched <= saved_at):
        refuse("watched_since", "invalid", f"{watched!r}; allowed: an instant from 0 to saved_at {saved_at:.0f}")
        watched = saved_at

    values: dict[str, Any] = {}
    for rule in KEPT:
        raw = stored.get(rule.name)
        if raw is None:  # not set, or a record from before the field existed: its default
            continue
        value, kind, allowed = _decode(rule.encoding, raw, saved_at=saved_at)
        shown = f"{raw!r}"[:80]
        if kind is not None:
            refuse(rule.name, kind, f"{shown}; allowed: {allowed}")
            continue
        if rule.unbroken and value < watched:
            refuse(rule.name, "unwatched", f"{shown} is before watched_since {watched:.0f}, as far back as the record vouches")
            continue
        if rule.unbroken and stale:
            refuse(rule.name, "stale", f"saved {gap_s:.0f} s from now, past the {vouch_s:g} s it vouches for; restarted")
            continue
        if rule.encoding == "instant":
            value = anchored(value, rule.when_unsure)
        elif rule.encoding == "stamped_share":
            value = (anchored(value[0], rule.when_unsure), value[1])
        values[rule.name] = value
    # The last count given stands as found at first sight (policies.pipeline): held through a
    # whole scale-down window, while a scale-up goes at once. As a recommendation it would also
    # be the minimum of the scale-up window, and hold a scale-up back for a tick.
    state = PolicyState(first_seen=(now, desired), **values)
    return Restored(model, desired, state, now if stale else anchored(watched, "later")), refusals


def restore_all(stored: Mapping[str, object], *, now: float, vouch_s: float) -> tuple[dict[str, Restored], list[Refusal]]:
    """Every record `StateStore.load` returned, by model; one damaged record costs no other its state."""
    restored, refusals = {}, []
    for key, record in stored.items():
        one, refused = restore(key, record, now=now, vouch_s=vouch_s)
        refusals += refused
        if one is not None:
            restored[one.model] = one
    return restored, refusals


# -- the stores ----------------------------------------------------------------------------------


class StateUnavailable(Exception):
    """The stored state could not be read; acting without it could undo what it protects."""


class StateTaken(Exception):
    """The stored state was written by another process since this one last read or wrote it:
    a new leader. Nothing was written; what this process holds in memory is no longer the
    state to act from."""


class StateStore(Protocol):
    def load(self) -> dict[str, object]:
        """What is stored, by key: each record JSON-decoded, or its text where it does not
        decode (`restore_all` judges them); {} when nothing was stored yet. Raises StateUnavailable."""
        ...

    def save(self, records: Mapping[str, dict]) -> None:
        """Store the records (`record_of`) of every configured model, by model; a model absent is
        forgotten. Raises StateTaken, writing nothing, if another process wrote in between."""
        ...


def _same(a: Mapping, b: Mapping) -> bool:
    return {k: v for k, v in a.items() if k != "saved_at"} == {k: v for k, v in b.items() if k != "saved_at"}


def _changes(stored: Mapping[str, object], wanted: Mapping[str, dict], *, refresh_s: float) -> dict[str, dict | None]:
    """What to write: the records that changed, every record once the oldest was vouched for
    refresh_s ago (all at once: one write a minute, not one a tick), None for a key to delete."""
    def age_s(key: str, record: dict) -> float:
        old = stored.get(key)
        old_at = old.get("saved_at") if isinstance(old, dict) else None
        return abs(record["saved_at"] - old_at) if _number(old_at) else 0.0  # new or unreadable: in changes already

    def unchanged(key: str, record: dict) -> bool:
        old = stored.get(key)
        return isinstance(old, dict) and _same(old, record)

    changes: dict[str, dict | None] = {key: record for key, record in wanted.items() if not unchanged(key, record)}
    if any(age_s(key, record) >= refresh_s for key, record in wanted.items()):
        # A model skipped by a tick keeps its last record as it was: rewriting it changes nothing.
        changes |= {key: record for key, record in wanted.items() if stored.get(key) != record}
    return changes | {key: None for key in stored if key not in wanted}


def key_of(model: str) -> str:
    """ConfigMap keys allow [-._a-zA-Z0-9]; other names get a readable, unique stand-in."""
    if _KEY.match(model):
        return model
    readable = re.sub(r"[^-._a-zA-Z0-9]", "_", model)[:180]
    return f"{readable}.{hashlib.sha256(model.encode()).hexdigest()[:12]}"


def _text(record: dict) -> str:
    return json.dumps(record, separators=(",", ":"), sort_keys=True)


class ConfigMapStateStore:
    def __init__(
        self, api_client: k8s.ApiClient, *, namespace: str, name: str, api: ApiSettings = ApiSettings(),
        refresh_s: float = LeaderSettings().state_refresh_s,
    ) -> None:
        self._refresh_s = refresh_s
        self._core = k8s.CoreV1Api(api_client)
        self._request_timeout_s = api.request_timeout_s
        self.namespace, self.name = namespace, name
        self._stored: dict[str, object] | None = None  # what the ConfigMap holds, as of our last read or write
        # Its resourceVersion then: every write carries it as a precondition, so a write by a
        # leader that was deposed in between (a process stopped and resumed) is answered 409.
        self._version: str | None = None

    def load(self) -> dict[str, object]:
        try:
            with translated(Rule("", "configmaps", ("get",), self.namespace)):
                config_map = self._core.read_namespaced_config_map(self.name, self.namespace, _request_timeout=self._request_timeout_s)
        except NotFound:
            self._stored, self._version = {}, None
            return {}
        except Failed as err:
            hint = f"; {err.hint}" if isinstance(err, Forbidden) else ""
            raise StateUnavailable(f"reading ConfigMap {self.namespace}/{self.name}: HTTP {err.status} {err.reason}{hint}") from None
        except Unreachable as err:
            raise StateUnavailable(f"reading ConfigMap {self.namespace}/{self.name}: {err}") from None
        stored: dict[str, object] = {}
        for key, text in (config_map.data or {}).items():
            try:
                stored[key] = json.loads(text)
            except ValueError:
                stored[key] = text  # restore_all refuses it; the other records still load
        self._stored, self._version = stored, config_map.metadata.resource_version
        return dict(stored)

    def save(self, records: Mapping[str, dict]) -> None:
        """Write what changed. Raises StateTaken, writing nothing, when another process wrote
        since this one's last read or write; any other failure is logged, to retry next tick."""
        wanted = {key_of(model): record for model, record in records.items()}
        if self._stored is None:  # never read: load first, so the diff is against what is there
            try:
                self.load()
            except StateUnavailable as err:
                log.error("could not save policy state; will retry next tick", error=str(err))
                return
        changes = {key: None if r is None else _text(r) for key, r in _changes(self._stored or {}, wanted, refresh_s=self._refresh_s).items()}
        if not changes:
            return
        try:
            self._write(changes, wanted)
        except Conflict:
            self._stored, self._version = None, None  # read again before any later write
            raise StateTaken(
                f"ConfigMap {self.namespace}/{self.name} was written by another process since this one read it; "
                "not overwritten"
            ) from None
        except KubernetesError as err:
            log.error("could not save policy state; will retry next tick", configmap=self.name,
                      status=getattr(err, "status", None), error=str(getattr(err, "reason", err))[:200])
            return
        stored = dict(self._stored or {})
        for key, text in changes.items():
            if text is None:
                stored.pop(key, None)
            else:
                stored[key] = wanted[key]
        self._stored = stored

    def _write(self, changes: dict[str, str | None], wanted: dict[str, dict]) -> None:
        body: dict[str, object] = {"data": changes}
        if self._version is not None:
            body["metadata"] = {"resourceVersion": self._version}
        try:
            with translated(Rule("", "configmaps", ("patch",), self.namespace)):
                written = self._core.patch_namespaced_config_map(self.name, self.namespace, body, _request_timeout=self._request_timeout_s)
        except NotFound:
            # First save in this cluster (or the ConfigMap was deleted): create it whole. Two
            # processes creating it at once: the API server answers the second 409 (Conflict).
            written = self._create({key: _text(record) for key, record in wanted.items()})
        self._version = written.metadata.resource_version if written.metadata else None

    def _create(self, data: dict[str, str]) -> k8s.V1ConfigMap:
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": self.name, "namespace": self.namespace, "labels": {"app.kubernetes.io/name": "llm-autoscaler"}},
            "data": data,
        }
        with translated(Rule("", "configmaps", ("create",), self.namespace)):
            return self._core.create_namespaced_config_map(self.namespace, body, _request_timeout=self._request_timeout_s)


class InMemoryStateStore:
    """For tests and replays of a failover: the same contract and the same writes, in a dict by key."""

    def __init__(self, *, refresh_s: float = LeaderSettings().state_refresh_s) -> None:
        self._refresh_s = refresh_s
        self.records: dict[str, object] = {}
        self.writes = 0

    def load(self) -> dict[str, object]:
        return {key: dict(r) if isinstance(r, dict) else r for key, r in self.records.items()}

    def save(self, records: Mapping[str, dict]) -> None:
        changes = _changes(self.records, {key_of(model): record for model, record in records.items()}, refresh_s=self._refresh_s)
        if not changes:
            return
        for key, record in changes.items():
            if record is None:
                self.records.pop(key, None)
            else:
                self.records[key] = dict(record)
        self.writes += 1

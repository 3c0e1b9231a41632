"""The Kubernetes API's failures as typed errors, and the RBAC hint: written once, here.

Every call to the API runs inside `translated(rule)`, which raises what the client raised
(an `ApiException`, or one of urllib3's errors when no answer came) as one of:

- `Unreachable`: no answer at all (refused, reset, timed out, a broken stream);
- `Failed(status)`: an answer with an error status, and its subclasses for the statuses
  callers act on: `Forbidden` (403, naming the RBAC rule the call needs), `NotFound` (404),
  `Conflict` (409: written in between, read again), `Gone` (410: a watch's resourceVersion
  expired, list again).

Callers catch these, never the client's exceptions, so a status is told apart in one place
and a 403 reads the same wherever it happened (Kopf's clients/errors.py does the same).

`rbac_hint(rule)` is the one spelling of what the service account lacks; deploy/rbac.yaml is
where it is granted. No I/O here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import urllib3
from kubernetes.client.exceptions import ApiException


@dataclass(frozen=True, slots=True)
class Rule:
    """What the API server authorizes a call by: verbs on a resource (with its subresource,
    "deployments/scale") of an API group ("" is the core group), in a namespace, or across
    the cluster (`namespace` None: a ClusterRole)."""

    api_group: str
    resource: str
    verbs: tuple[str, ...]
    namespace: str | None


def rbac_hint(rule: Rule) -> str:
    group = rule.api_group or '""'
    where = f"in namespace {rule.namespace}" if rule.namespace is not None else "cluster-wide (a ClusterRole)"
    return (
        f"the service account needs RBAC: apiGroups [{group}], resources [{rule.resource}], "
        f"verbs [{', '.join(rule.verbs)}] {where}"
    )


class KubernetesError(Exception):
    """A call to the Kubernetes API that did not succeed."""


class Unreachable(KubernetesError):
    """No answer: the connection was refused, reset or timed out."""


class Failed(KubernetesError):
    """The API server answered with an error status."""

    def __init__(self, status: int, reason: str, message: str, *, rule: Rule) -> None:
        super().__init__(f"API error {status} {reason}: {message}")
        self.status, self.reason, self.message, self.rule = status, reason, message, rule


class Forbidden(Failed):
    @property
    def hint(self) -> str:
        return rbac_hint(self.rule)


class NotFound(Failed):
    pass


class Conflict(Failed):
    pass


class Gone(Failed):
    pass


_BY_STATUS: dict[int, type[Failed]] = {403: Forbidden, 404: NotFound, 409: Conflict, 410: Gone}


def failure(status: int | None, reason: str | None, message: str | None, *, rule: Rule) -> Failed:
    """The error for an answer with `status`; also for an ERROR event inside a watch stream."""
    code = int(status or 0)
    return _BY_STATUS.get(code, Failed)(code, str(reason or ""), str(message or reason or ""), rule=rule)


@contextmanager
def translated(rule: Rule) -> Iterator[None]:
    """Raise a failure of the API calls inside as one of this module's errors; `rule` is what
    those calls need, named by a 403."""
    try:
        yield
    except ApiException as err:
        raise failure(err.status, err.reason, _message(err), rule=rule) from err
    except urllib3.exceptions.HTTPError as err:
        raise Unreachable(str(err)) from err


def _message(err: ApiException) -> str:
    """The Status body's message (what kubectl prints), else the HTTP reason."""
    try:
        return json.loads(err.body).get("message", err.reason)
    except (TypeError, ValueError, AttributeError):
        return str(err.reason)

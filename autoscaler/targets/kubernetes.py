"""Kubernetes actuators: the scale subresource of a Deployment, or a KEDA ScaledObject.

Reconcile, never blindly write: read the current value, skip if equal, patch the smallest
thing (`/scale`'s spec.replicas; one ScaledObject field or annotation), log "from X to Y
because ...". A KEDA-managed workload is only ever written through its ScaledObject: its HPA
would overwrite Deployment.spec.replicas within 15 s (ANCHORS.md, KEDA section).

Fenced, for a daemon that runs as leader and standby: `fence()` ("may this process still
write?", the Lease held) is asked right before every write request, the retries after a 409
included, and every request ends within `api_connect_timeout_s + api_read_timeout_s`, which the
settings keep below the Lease's renew margin. Every patch carries the resourceVersion it was
planned from as a precondition: a write delayed past the check (a process stopped and resumed,
a slow network) that meets a new leader's write in between is answered 409, re-read, and
asked of the fence again, so it never lands over the new leader's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

import structlog
from kubernetes import client as k8s

from autoscaler.config import Config, ModelConfig
from autoscaler.kube_errors import Conflict, Failed, Forbidden, NotFound, Rule, Unreachable, translated
from autoscaler.settings import ApiSettings
from autoscaler.targets import Action, Fence, TargetState, unfenced
from autoscaler.targets.events import EventSender
from autoscaler.targets.watching import (
    KEDA,
    PAUSED_REPLICAS,
    NamespaceView,
    ScaledObjectFacts,
    WatchCache,
    gpus_per_replica,
    scaled_object_facts,
)
from policies.decision import Decision

log = structlog.get_logger(__name__)

FIELD_MANAGER = "llm-autoscaler"
EVENT_MESSAGE_LIMIT = 1024  # the API server truncates longer Event messages anyway


@dataclass(frozen=True, slots=True)
class PlannedPatch:
    """One write as planned from what was read: the field it sets, that field's value now and
    wanted, and the patch body that sets it."""

    field: str  # e.g. "deployments/chat replicas"
    current: int | str | None
    desired: int | str
    body: dict
    resource_version: str | None  # of the object as read; sent as the write's precondition

    def request(self) -> dict:
        if self.resource_version is None:
            return self.body
        metadata = {**self.body.get("metadata", {}), "resourceVersion": self.resource_version}
        return {**self.body, "metadata": metadata}


class KubernetesTargets:
    """Reads come from a WatchCache (watching.py) that the caller starts, follows the config's
    namespaces with, and stops: a tick reads memory, not the API. Events go to an EventSender
    (events.py) that the caller stops: a tick does not wait for them."""

    def __init__(
        self,
        config: Config,
        api_client: k8s.ApiClient,
        *,
        cache: WatchCache,
        events: EventSender,
        api: ApiSettings = ApiSettings(),
        fence: Fence = unfenced,
    ) -> None:
        self._config = config
        self._fence = fence
        self._request_timeout_s = api.request_timeout_s
        self._conflict_retries = api.conflict_retries
        self._cache = cache
        self._events = events
        self._api_client = api_client
        self._apps = k8s.AppsV1Api(api_client)
        self._custom = k8s.CustomObjectsApi(api_client)
        self._models_by_namespace: dict[str, list[ModelConfig]] = {}
        for model in config.models:
            self._models_by_namespace.setdefault(model.namespace, []).append(model)
        # As of the last read: Deployment name -> the ScaledObject that owns it, and -> the
        # plain HPAs that scale it, per namespace; and each ScaledObject, so that a hold needs
        # no API call.
        self._owners: dict[str, dict[str, str]] = {}
        self._autoscaled: dict[str, dict[str, list[str]]] = {}
        self._scaled_objects: dict[tuple[str, str], ScaledObjectFacts] = {}
        self._deployment_versions: dict[tuple[str, str], str | None] = {}

    # -- reading ---------------------------------------------------------------------------

    def read_states(self, *, now: float) -> Mapping[str, TargetState]:
        """From the cache: no API call. A namespace the cache cannot vouch for (not listed
        yet, or its watch broken for too long) leaves its models out, so they are skipped."""
        states: dict[str, TargetState] = {}
        for namespace, models in self._models_by_namespace.items():
            view = self._cache.view(namespace, now=now)
            if view is None:
                log.warning("namespace not in sync with the API; its models are skipped this tick", namespace=namespace, models=len(models))
                continue
            self._owners[namespace] = {
                so.target_name: name for name, so in view.scaled_objects.items() if so.target_kind == "Deployment"
            }
            autoscaled: dict[str, list[str]] = {}
            for name, hpa in sorted(view.autoscalers.items()):
                # KEDA's own HPA for a ScaledObject is already refused as that ScaledObject.
                if hpa.target_kind == "Deployment" and hpa.target_name and not hpa.made_by_keda:
                    autoscaled.setdefault(hpa.target_name, []).append(name)
            self._autoscaled[namespace] = autoscaled
            for name, so in view.scaled_objects.items():
                self._scaled_objects[(namespace, name)] = so
            rolling: dict[str, str] = {}  # model -> its Deployment, for pooled models mid-rollout
            for model in models:
                state = self._state_of(model, view)
                if state is not None:
                    states[model.name] = state
                    name = self._deployment_name(model, view)
                    self._deployment_versions[(namespace, name)] = view.deployments[name].resource_version
                    if model.pool is not None and view.deployments[name].rolling_out:
                        rolling[model.name] = name
            if rolling:
                self._count_revisions(namespace, rolling, states)
        return states

    def _count_revisions(self, namespace: str, rolling: dict[str, str], states: dict[str, TargetState]) -> None:
        """During a rollout the old and new ReplicaSets both hold pods, and a revision may need
        more or fewer GPUs than the last. Each replica counts at the most any revision with pods
        asks (old 1 GPU, new 2: every replica counts 2, so the new pods fit as they land; old 2,
        new 1: every replica counts 2 until the old pods are gone). Only listed while a pooled
        model rolls out, so a steady cluster costs no extra call. If the list fails, the
        template's count stands (the new revision's size)."""
        try:
            with translated(Rule("apps", "replicasets", ("list",), namespace)):
                listed = self._apps.list_namespaced_replica_set(namespace, _request_timeout=self._request_timeout_s)
        except Unreachable as err:
            log.error("Kubernetes API unreachable; the namespace is not read this tick", namespace=namespace, error=str(err))
            return
        except Failed as err:
            self._log_api_error(err, namespace=namespace, model=None)
            return
        for model_name, deployment_name in rolling.items():
            owned = [
                rs for rs in listed.items
                if any(o.kind == "Deployment" and o.name == deployment_name for o in (rs.metadata.owner_references or []))
                and ((rs.status.replicas if rs.status else 0) or (rs.spec.replicas or 0))
            ]
            # The typed ReplicaSet as the API's JSON, so one reader of GPU limits serves both.
            most = max((gpus_per_replica(self._api_client.sanitize_for_serialization(rs.spec)) for rs in owned), default=0)
            state = states[model_name]
            if most > state.gpus_per_replica:
                states[model_name] = dataclasses.replace(state, gpus_per_replica=most)

    @staticmethod
    def _deployment_name(model: ModelConfig, view: NamespaceView) -> str:
        if model.target.kind == "Deployment":
            return model.target.name
        return view.scaled_objects[model.target.name].target_name

    def _state_of(self, model: ModelConfig, view: NamespaceView) -> TargetState | None:
        target = model.target
        if target.kind == "ScaledObject" and target.name not in view.scaled_objects:
            log.warning("ScaledObject not found; skipping this model", model=model.name, namespace=model.namespace, name=target.name)
            return None
        deployment = view.deployments.get(self._deployment_name(model, view))
        if deployment is None:
            log.warning("Deployment not found; skipping this model", model=model.name, namespace=model.namespace, target=target.name)
            return None
        spec_replicas = deployment.spec_replicas
        if target.kind == "ScaledObject" and target.mode == "pin":
            pinned = view.scaled_objects[target.name].paused_replicas
            if pinned is not None and pinned.isdigit():
                spec_replicas = int(pinned)
        return TargetState(
            spec_replicas=spec_replicas,
            ready_replicas=deployment.ready_replicas,
            gpus_per_replica=deployment.gpus_per_replica,
        )

    # -- acting ----------------------------------------------------------------------------

    def apply(self, model: ModelConfig, decision: Decision, *, now: float) -> Action:
        """Compare with the state read this tick and patch only a difference: a hold costs no
        API call. After a 409 (someone wrote in between) read the object again and decide
        again whether a patch is still needed. 404: this model is skipped, the others go on.
        403: an error naming the RBAC rule that is missing. A Deployment that a ScaledObject
        owns, or that a plain HPA scales, is refused: the other controller would undo the write."""
        target = model.target
        if target.kind == "Deployment":
            owner = self._owners.get(model.namespace, {}).get(target.name)
            if owner is not None:
                detail = (
                    f"Deployment {target.name} is managed by ScaledObject {owner}; its HPA would undo a write to "
                    f"the Deployment. Set target kind: ScaledObject, name: {owner}"
                )
                log.error("refusing to scale a KEDA-managed Deployment", model=model.name, namespace=model.namespace, detail=detail)
                return Action(model.name, "refused", detail)
            autoscalers = self._autoscaled.get(model.namespace, {}).get(target.name)
            if autoscalers:
                names = ", ".join(autoscalers)
                detail = (
                    f"Deployment {target.name} is scaled by HorizontalPodAutoscaler {names}; it would undo a write to "
                    f"the Deployment, and the two would fight over its count. Delete the HPA, or leave this model out"
                )
                log.error("refusing to scale a Deployment that an HPA scales", model=model.name, namespace=model.namespace, detail=detail)
                return Action(model.name, "refused", detail)
        for attempt in range(self._conflict_retries):
            try:
                plan = self._plan(model, decision, fresh=attempt > 0)
                if plan.current == plan.desired:
                    return Action(model.name, "unchanged", f"{plan.field} already {plan.desired}")
                if not self._fence():
                    detail = "lost the leader lease before this write; nothing written"
                    log.warning("not the leader; skipping the write", model=model.name, namespace=model.namespace, detail=detail)
                    return Action(model.name, "standby", detail)
                self._send(model, plan)
            except Conflict:
                log.info("conflict; re-reading and retrying", model=model.name, namespace=model.namespace)
                continue
            except Unreachable as err:
                detail = f"Kubernetes API unreachable: {err}; will try again next tick"
                log.error("Kubernetes API unreachable", model=model.name, namespace=model.namespace, detail=detail)
                return Action(model.name, "failed", detail)
            except Failed as err:
                return self._log_api_error(err, namespace=model.namespace, model=model)
            detail = f"{plan.field} from {plan.current} to {plan.desired} because {decision.explain()}"
            log.info("scaled", model=model.name, namespace=model.namespace, what=plan.field,
                     change=f"{plan.current} -> {plan.desired}", reasons=decision.explain())
            self._record_event(model, decision, detail, now=now)
            return Action(model.name, "patched", detail)
        detail = f"still conflicting after {self._conflict_retries} attempts; will try again next tick"
        log.warning("gave up after conflicts", model=model.name, namespace=model.namespace, detail=detail)
        return Action(model.name, "failed", detail)

    def _plan(self, model: ModelConfig, decision: Decision, *, fresh: bool) -> PlannedPatch:
        """The write this decision needs, from the state read this tick or, after a conflict
        (`fresh`), from the object read again."""
        target = model.target
        if target.kind == "Deployment":
            return self._plan_replicas(model, decision, fresh=fresh)
        if target.mode == "pin":
            return self._plan_paused_replicas(model, decision, fresh=fresh)
        return self._plan_bounds(model, decision, fresh=fresh)

    def _plan_replicas(self, model: ModelConfig, decision: Decision, *, fresh: bool) -> PlannedPatch:
        name, namespace = model.target.name, model.namespace
        current, version = decision.current_replicas, self._deployment_versions.get((namespace, name))
        if fresh:
            with translated(Rule("apps", "deployments/scale", ("get",), namespace)):
                scale = self._apps.read_namespaced_deployment_scale(name, namespace, _request_timeout=self._request_timeout_s)
            current, version = scale.spec.replicas or 0, scale.metadata.resource_version
        return PlannedPatch(
            field=f"deployments/{name} replicas",
            current=current,
            desired=decision.desired_replicas,
            body={"spec": {"replicas": decision.desired_replicas}},
            resource_version=version,
        )

    def _plan_paused_replicas(self, model: ModelConfig, decision: Decision, *, fresh: bool) -> PlannedPatch:
        desired = str(decision.desired_replicas)
        scaled_object = self._scaled_object(model, fresh=fresh)
        return PlannedPatch(
            field=f"scaledobjects/{model.target.name} {PAUSED_REPLICAS}",
            current=scaled_object.paused_replicas,
            desired=desired,
            body={"metadata": {"annotations": {PAUSED_REPLICAS: desired}}},
            resource_version=scaled_object.resource_version,
        )

    def _plan_bounds(self, model: ModelConfig, decision: Decision, *, fresh: bool) -> PlannedPatch:
        scaled_object = self._scaled_object(model, fresh=fresh)
        return PlannedPatch(
            field=f"scaledobjects/{model.target.name} min..max",
            current=f"{scaled_object.min_replica_count}..{scaled_object.max_replica_count}",
            desired=f"{decision.floor}..{decision.cap}",
            body={"spec": {"minReplicaCount": decision.floor, "maxReplicaCount": decision.cap}},
            resource_version=scaled_object.resource_version,
        )

    def _send(self, model: ModelConfig, plan: PlannedPatch) -> None:
        if model.target.kind == "Deployment":
            self._patch_scale(model, plan.request())
        else:
            self._patch_scaled_object(model, plan.request())

    def _scaled_object(self, model: ModelConfig, *, fresh: bool) -> ScaledObjectFacts:
        cached = self._scaled_objects.get((model.namespace, model.target.name))
        if cached is not None and not fresh:
            return cached
        with translated(Rule(KEDA["group"], KEDA["plural"], ("get",), model.namespace)):
            raw = self._custom.get_namespaced_custom_object(
                namespace=model.namespace, name=model.target.name, _request_timeout=self._request_timeout_s, **KEDA
            )
        return scaled_object_facts(raw)

    def _patch_scale(self, model: ModelConfig, body: dict) -> None:
        with translated(Rule("apps", "deployments/scale", ("patch",), model.namespace)):
            self._apps.patch_namespaced_deployment_scale(
                model.target.name, model.namespace, body, field_manager=FIELD_MANAGER, _request_timeout=self._request_timeout_s
            )

    def _patch_scaled_object(self, model: ModelConfig, body: dict) -> None:
        # The official client sends a dict to custom objects as a JSON merge patch.
        with translated(Rule(KEDA["group"], KEDA["plural"], ("patch",), model.namespace)):
            self._custom.patch_namespaced_custom_object(
                namespace=model.namespace,
                name=model.target.name,
                body=body,
                field_manager=FIELD_MANAGER,
                _request_timeout=self._request_timeout_s,
                **KEDA,
            )

    def _record_event(self, model: ModelConfig, decision: Decision, detail: str, *, now: float) -> None:
        """An Event on the object written, so `kubectl describe` shows why it was scaled. Queued,
        not posted: the sender posts it after, and a failure never undoes or fails the scaling."""
        target = model.target
        if target.mode == "bounds":
            reason = "BoundsChanged"
        else:  # a pin written at the same count takes control from KEDA's HPA without scaling
            reason = {"up": "ScaledUp", "down": "ScaledDown"}.get(decision.direction, "Pinned")
        stamp = datetime.fromtimestamp(now, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            # kubectl's naming: the object's name and a hex timestamp, unique per write.
            "metadata": {"name": f"{target.name}.{int(now * 1e9):x}", "namespace": model.namespace},
            "involvedObject": {
                "apiVersion": "apps/v1" if target.kind == "Deployment" else f"{KEDA['group']}/{KEDA['version']}",
                "kind": target.kind,
                "name": target.name,
                "namespace": model.namespace,
            },
            "reason": reason,
            "message": detail[:EVENT_MESSAGE_LIMIT],
            "type": "Normal",
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        self._events.send(body, model=model.name)

    def _log_api_error(self, err: Failed, *, namespace: str, model: ModelConfig | None) -> Action:
        name = model.name if model else None
        if isinstance(err, NotFound):
            detail = f"{err.rule.resource} not found in namespace {namespace}: {err.message}"
            log.warning("target not found; skipping", model=name, namespace=namespace, detail=detail)
            return Action(name or "", "missing", detail)
        if isinstance(err, Forbidden):
            detail = f"forbidden: {err.hint} ({err.message})"
            log.error("forbidden by RBAC", model=name, namespace=namespace, detail=detail)
            return Action(name or "", "forbidden", detail)
        detail = str(err)
        log.error("Kubernetes API error", model=name, namespace=namespace, detail=detail)
        return Action(name or "", "failed", detail)

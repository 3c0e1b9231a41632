"""The Role a managed namespace needs, narrowed to the targets the config names.

What the daemon reads it reads by kind (one list and watch per namespace and kind, as the
watch cache does: autoscaler/targets/watching.py), so list and watch cannot be narrowed. What
it writes, and re-reads after a conflict, it writes by name: `get` and `patch` of
`deployments/scale` and of `scaledobjects` are granted only for the targets of that namespace's
models (`resourceNames`). A daemon whose token leaks can then scale those models and no other
workload, and cannot repoint a ScaledObject it does not manage at another Deployment. A kind
no model of the namespace targets gets no write rule at all.

`autoscaler rbac --config CONFIG` prints these Roles and their RoleBindings;
`deploy/rbac.yaml` holds them for `deploy/configmap.yaml` (tests/test_deploy.py checks the two
agree), and tests/test_rbac_calls.py checks every call the daemon makes against them.
"""

from __future__ import annotations

from autoscaler.config import Config

LABELS = {"app.kubernetes.io/name": "llm-autoscaler"}
ROLE_NAME = "llm-autoscaler"


def _rule(group: str, resource: str, verbs: list[str], names: list[str] | None = None) -> dict:
    rule: dict = {"apiGroups": [group], "resources": [resource]}
    if names is not None:
        rule["resourceNames"] = names
    rule["verbs"] = verbs
    return rule


def managed_rules(config: Config, namespace: str) -> list[dict]:
    """The rules of the Role in `namespace`, for the models of `config` that live there."""
    models = [m for m in config.models if m.namespace == namespace]
    deployments = sorted({m.target.name for m in models if m.target.kind == "Deployment"})
    scaled_objects = sorted({m.target.name for m in models if m.target.kind == "ScaledObject"})
    rules = [
        _rule("apps", "deployments", ["list", "watch"]),
        # Only while a model in a GPU pool rolls out: the GPUs of each revision holding pods.
        _rule("apps", "replicasets", ["list"]),
    ]
    if deployments:
        rules.append(_rule("apps", "deployments/scale", ["get", "patch"], deployments))
    rules.append(_rule("keda.sh", "scaledobjects", ["list", "watch"]))
    if scaled_objects:
        rules.append(_rule("keda.sh", "scaledobjects", ["get", "patch"], scaled_objects))
    rules += [
        # Read only, to refuse a Deployment target that a plain HPA scales.
        _rule("autoscaling", "horizontalpodautoscalers", ["list", "watch"]),
        # An Event on each object it scales, with the reasons; created, so not by name.
        _rule("", "events", ["create"]),
    ]
    return rules


def managed_roles(config: Config, *, service_account: str = ROLE_NAME, home: str = "llm-autoscaler") -> list[dict]:
    """A Role and its RoleBinding for each namespace the config's models live in, bound to
    the daemon's ServiceAccount in its own namespace `home`."""
    documents: list[dict] = []
    for namespace in config.namespaces:
        metadata = {"name": ROLE_NAME, "namespace": namespace, "labels": dict(LABELS)}
        documents.append({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": metadata,
            "rules": managed_rules(config, namespace),
        })
        documents.append({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": dict(metadata),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE_NAME},
            "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": home}],
        })
    return documents

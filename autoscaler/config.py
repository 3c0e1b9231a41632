"""Daemon and per-model configuration: one YAML file, loaded into frozen pydantic models.

Every error names the field, the value and what is allowed; `load_config` raises ConfigError
with all of them at once, and the CLI prints them without a traceback.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from autoscaler.promql_syntax import VECTOR, PromQLError, check
from policies.spec import STRICT_MODEL, BatchSpec, HotSpec, LongTailSpec, LooseNumber, exact_numbers

# Kubernetes object and namespace names (RFC 1123). Model keys share the rule, which also keeps
# them safe to place inside PromQL strings (see autoscaler.metrics.promql).
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_PROM_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_PROM_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


# Bounds of tick_interval_s, which replay's --step-s replaces: one definition for both.
TICK_INTERVAL_MIN_S, TICK_INTERVAL_MAX_S = 1.0, 600.0


class ConfigError(Exception):
    """A user's mistake in the config: the message lists every problem, one per line."""


class _Frozen(BaseModel):
    model_config = STRICT_MODEL

    @model_validator(mode="before")
    @classmethod
    def _exact_numbers(cls, data: Any) -> Any:
        return exact_numbers(cls, data)


class PrometheusAuth(_Frozen):
    bearer_token_file: Path | None = Field(None, description="File holding a bearer token, read at every connect.")
    ca_bundle: Path | None = Field(None, description="PEM bundle to verify Prometheus's TLS certificate.")


class PrometheusConfig(_Frozen):
    url: str = Field("http://prometheus-operated.monitoring:9090", description="Base URL of the Prometheus HTTP API.")
    timeout_s: float = Field(
        5.0, gt=0, le=120,
        description="Deadline of one query, whole: connecting, Prometheus's evaluation and reading the answer.",
    )
    max_answer_bytes: int = Field(
        4 * 2**20,
        ge=64 * 2**10,
        description=(
            "Largest answer read for one query; past it the query fails (kind too_large) and its signal "
            "has no data. An answer holds two series a model, about 250 bytes (249,062 bytes at 1,000 models "
            "named like model-0001), so 4 MiB serves some 16,000 models, and the eight queries of a tick then "
            "hold at most 32 MiB of text against the pod's 256 MiB."
        ),
    )
    stale_after_s: float = Field(
        90.0,
        gt=0,
        description=(
            "A sample older than this is stale, not current: three scrapes at the 30 s interval "
            "DCGM collects at. Prometheus still returns such samples for 5 minutes (its lookback)."
        ),
    )
    auth: PrometheusAuth = PrometheusAuth()

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not re.match(r"^https?://[^\s/]+", url):
            raise ValueError(f"must be an http:// or https:// URL, got {url!r}")
        return url.rstrip("/")


class MetricNames(_Frozen):
    """Series names. Defaults are vLLM v1's and DCGM's (ANCHORS.md); older vLLM exports
    `vllm:gpu_cache_usage_perc` instead of `vllm:kv_cache_usage_perc`."""

    waiting: str = "vllm:num_requests_waiting"
    running: str = "vllm:num_requests_running"
    kv_cache_usage: str = "vllm:kv_cache_usage_perc"
    gpu_utilization: str = "DCGM_FI_DEV_GPU_UTIL"
    completions: str = "vllm:request_success_total"  # a counter; read as its rate over 1 minute

    @field_validator("*")
    @classmethod
    def _metric_name(cls, name: str) -> str:
        if not _PROM_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)")
        return name


class LabelNames(_Frozen):
    """Label names. DCGM's pod labels often arrive as exported_pod / exported_namespace
    behind a scrape target (ANCHORS.md); set gpu_pod: pod where yours do not."""

    model: str = "model_name"
    namespace: str = "namespace"
    pod: str = "pod"
    gpu_pod: str = "exported_pod"
    gpu_namespace: str = "exported_namespace"

    @field_validator("*")
    @classmethod
    def _label_name(cls, name: str) -> str:
        if not _PROM_LABEL.fullmatch(name):
            raise ValueError(f"{name!r} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)")
        return name


class DependencyConfig(_Frozen):
    name: str = Field(description="Name models use to refer to this dependency.")
    saturation_query: str = Field(description="PromQL giving one value: the dependency's saturation.")
    saturated_at: float = Field(ge=0, description="Saturation at or above which the models using it do not scale up.")

    _key = field_validator("name")(lambda cls, v: _dns_label("name", v))

    @model_validator(mode="after")
    def _query_parses(self) -> DependencyConfig:
        _check_promql(f"dependency {self.name!r}", "saturation_query", self.saturation_query)
        return self


class TargetConfig(_Frozen):
    kind: Literal["Deployment", "ScaledObject"] = "Deployment"
    name: str
    mode: Literal["bounds", "pin"] | None = Field(
        None,
        description=(
            "ScaledObject only. bounds: patch minReplicaCount/maxReplicaCount (a warm floor, a "
            "cap while a dependency is saturated) and let KEDA's HPA size. pin: set the "
            "autoscaling.keda.sh/paused-replicas annotation so the daemon decides the count."
        ),
    )

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _DNS_SUBDOMAIN.fullmatch(name) or len(name) > 253:
            raise ValueError(f"{name!r} is not a Kubernetes object name (lower-case RFC 1123 subdomain)")
        return name

    @model_validator(mode="after")
    def _mode_matches_kind(self) -> TargetConfig:
        if self.kind == "ScaledObject" and self.mode is None:
            raise ValueError("a ScaledObject target needs mode: bounds or pin")
        if self.kind == "Deployment" and self.mode is not None:
            raise ValueError(f"mode {self.mode!r} applies only to kind ScaledObject, not Deployment")
        return self


class PoolConfig(_Frozen):
    """A GPU pool that models share. Its capacity is a fixed count, or what the nodes that
    match a label selector offer (allocatable nvidia.com/gpu, read every tick). Exactly one."""

    name: str = Field(description="Name models use to join this pool (their `pool` field).")
    capacity_gpus: int | None = Field(
        None, description="GPUs the pool's models may hold together: a quota, or a pool whose nodes are not listed."
    )
    node_selector: dict[str, str] | None = Field(
        None,
        min_length=1,
        description=(
            "Labels of the nodes that make up the pool, e.g. {nvidia.com/gpu.product: NVIDIA-A100-SXM4-40GB}; "
            "their allocatable nvidia.com/gpu is summed each tick (schedulable, Ready nodes only)."
        ),
    )

    capacity_drop_stabilization_s: float = Field(
        300.0,
        ge=0,
        description=(
            "node_selector pools: the pool is arbitrated on the highest GPU count its nodes read over this "
            "window, so a drop acts only once it has lasted this long. Default: Kubernetes' not-ready "
            "toleration, after which a NotReady node's pods are evicted; before it, cutting them frees no GPU."
        ),
    )

    _key = field_validator("name")(lambda cls, v: _dns_label("name", v))

    @field_validator("capacity_gpus")
    @classmethod
    def _some_gpus(cls, gpus: int | None) -> int | None:
        # A pool of 0 GPUs can hold no replica: arbitration would hold every model at its floor
        # for good. A pool without GPUs yet (a node group at zero) is a node_selector pool.
        if gpus is not None and gpus < 1:
            raise ValueError(
                f"{gpus} is not allowed: a pool holds at least 1 GPU; for a pool whose nodes come and go, "
                "set node_selector instead, or drop the pool"
            )
        return gpus

    @model_validator(mode="after")
    def _one_source(self) -> PoolConfig:
        if (self.capacity_gpus is None) == (self.node_selector is None):
            given = "both" if self.capacity_gpus is not None else "neither"
            raise ValueError(
                f"pool {self.name!r}: set exactly one of capacity_gpus (a fixed count of GPUs) or node_selector "
                f"(labels of the nodes whose allocatable nvidia.com/gpu are summed), got {given}"
            )
        return self


PolicyConfig = Annotated[HotSpec | LongTailSpec | BatchSpec, Field(discriminator="kind")]


class ModelConfig(_Frozen):
    name: str = Field(description="Key of this model in the daemon: logs, metrics, replay traces.")
    namespace: str
    model_name: str | None = Field(None, description="Value of vLLM's model_name label; defaults to name.")
    target: TargetConfig
    policy: PolicyConfig
    dependencies: tuple[str, ...] = Field((), description="Names of dependencies this model's requests need.")
    pool: str | None = Field(
        None,
        description=(
            "Name of the GPU pool (pools[].name) this model's replicas take GPUs from. Models in a pool are "
            "arbitrated when together they want more GPUs than it holds; a model without one is not."
        ),
    )
    wake_query: str | None = Field(
        None,
        description=(
            "PromQL giving one value of demand seen outside the pods (a gateway's queue or "
            "request rate; for a batch model, the backlog in requests). The only signal at zero "
            "replicas: required to scale to zero."
        ),
    )

    @field_validator("name", "namespace")
    @classmethod
    def _dns(cls, value: str, info: Any) -> str:
        return _dns_label(info.field_name, value)

    @model_validator(mode="after")
    def _wake_query_parses(self) -> ModelConfig:
        if self.wake_query is not None:
            _check_promql(f"model {self.name!r}", "wake_query", self.wake_query)
        return self

    @model_validator(mode="after")
    def _can_wake(self) -> ModelConfig:
        if self.policy.min_replicas == 0 and not self.wake_query:
            raise ValueError(
                "policy.min_replicas is 0 but wake_query is not set: at zero replicas no vLLM series exist, "
                "so without a wake signal the model could never come back"
            )
        return self

    @property
    def label_value(self) -> str:
        return self.model_name or self.name


class Config(_Frozen):
    prometheus: PrometheusConfig = PrometheusConfig()
    tick_interval_s: float = Field(
        10.0, ge=TICK_INTERVAL_MIN_S, le=TICK_INTERVAL_MAX_S, description="Seconds between two ticks of the loop."
    )
    metrics: MetricNames = MetricNames()
    labels: LabelNames = LabelNames()
    dependencies: tuple[DependencyConfig, ...] = ()
    pools: tuple[PoolConfig, ...] = ()
    models: tuple[ModelConfig, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        problems = []
        problems += _duplicates("models[].name", [m.name for m in self.models])
        problems += _duplicates("dependencies[].name", [d.name for d in self.dependencies])
        problems += _duplicates("pools[].name", [p.name for p in self.pools])
        problems += _duplicates(
            "models[].target", [f"{m.namespace}/{m.target.kind}/{m.target.name}" for m in self.models]
        )
        problems += _duplicates("models[] (namespace, model_name)", [f"{m.namespace}/{m.label_value}" for m in self.models])
        known = {d.name for d in self.dependencies}
        for i, model in enumerate(self.models):
            for dep in model.dependencies:
                if dep not in known:
                    problems.append(
                        f"models[{i}].dependencies: {dep!r} is not defined; defined: {sorted(known) or 'none'}"
                    )
        pools = sorted(p.name for p in self.pools)
        for i, model in enumerate(self.models):
            if model.pool is not None and model.pool not in pools:
                problems.append(f"models[{i}].pool: {model.pool!r} is not defined in pools[]; defined: {pools or 'none'}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def node_pools(self) -> tuple[PoolConfig, ...]:
        """Pools whose capacity is read from the nodes."""
        return tuple(p for p in self.pools if p.node_selector is not None)

    @property
    def namespaces(self) -> tuple[str, ...]:
        return tuple(sorted({m.namespace for m in self.models}))


def redacted_url(url: str) -> str:
    """The URL without the secret of its `user:password@` part, for output and logs: the user
    stays where a password follows it; a lone user part, often a token, goes whole."""

    def hide(match: re.Match) -> str:
        user, colon, _ = match[2].partition(":")
        return f"{match[1]}{user}:***@" if colon else f"{match[1]}***@"

    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)([^/@]*)@", hide, url)


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error: plain
    YAML keeps the last one, so a second `max_replicas:` further down a model would silently
    replace the first."""


def _mapping_without_duplicates(loader: UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    first: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *defaults` merges keys, which may then be overridden on purpose
        key = loader.construct_object(key_node, deep=deep)
        try:
            if key in first:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping (first at line {first[key] + 1})", key_node.start_mark
                )
        except TypeError:
            continue  # an unhashable key: construct_mapping below reports it
        first[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)

# The key of a ConfigMap's data that holds the config, as deploy/configmap.yaml mounts it.
CONFIGMAP_KEY = "config.yaml"


def load_config(path: Path | str) -> Config:
    data, source = read_config(path)
    return parse_config(data, source=source)


def read_config(path: Path | str) -> tuple[Any, str]:
    """The config document of a YAML file, and how to name it in errors. The file is either the
    config itself or a ConfigMap manifest holding it (deploy/configmap.yaml), whose key
    `config.yaml` (or only key) is the config: then errors name that key, and YAML errors the
    line of the manifest."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a text file (byte {err.start} is not UTF-8); the config is YAML") from None
    data = _yaml(text, source=str(path))
    if not (isinstance(data, dict) and data.get("kind") == "ConfigMap" and "models" not in data):
        return data, str(path)
    entries = data.get("data") or {}
    name = (data.get("metadata") or {}).get("name", "")
    keys = sorted(entries) if isinstance(entries, dict) else []
    key = CONFIGMAP_KEY if CONFIGMAP_KEY in keys else keys[0] if len(keys) == 1 else None
    if key is None or not isinstance(entries[key], str):
        found = ", ".join(keys) or "no keys"
        raise ConfigError(
            f"{path}: a ConfigMap ({name}) whose data has no config to read: expected the key {CONFIGMAP_KEY} "
            f"(or a single key) holding the config as text; found {found}"
        )
    source = f"{path} data.{key}"
    return _yaml(entries[key], source=source, first_line=_block_start(text, key)), source


def _yaml(text: str, *, source: str, first_line: int | None = None) -> Any:
    """`first_line`: the file's line (1-based) where `text` begins, when it is a block inside a
    manifest, so that an error points at the line the user sees in their editor."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = ""
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
            if first_line is not None:
                where += f" (line {first_line + mark.line} of the file)"
        raise ConfigError(f"{source}: not valid YAML{where}: {getattr(err, 'problem', None) or err}") from None


def _block_start(text: str, key: str) -> int | None:
    """The line (1-based) where a ConfigMap's `key: |` block begins, if it is a block scalar."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    for section_key, section in getattr(root, "value", []):
        if section_key.value == "data" and isinstance(section, yaml.MappingNode):
            for entry_key, entry in section.value:
                if entry_key.value == key and isinstance(entry, yaml.ScalarNode) and entry.style in ("|", ">"):
                    return entry.start_mark.line + 2
    return None


def parse_config(data: Any, *, source: str = "config") -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with at least 'models', got {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError("\n".join(f"{source}: {line}" for line in describe_errors(err))) from None


def describe_errors(err: ValidationError) -> list[str]:
    """One line per error: where (models[0].policy.max_replicas), what was given, what is allowed."""
    errors = err.errors()
    lines = []
    for error in errors:
        if error["type"] == "too_short" and _inside(error["loc"], errors):
            continue  # pydantic counts only the valid items: one bad model reads as "no models" too
        where = _location(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        given = error.get("input")
        if isinstance(given, LooseNumber):
            lines.append(f"{where}: must be {given.wanted} (got {given.value!r})")
        elif error["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown field (value {given!r}); check the spelling against the reference in README")
        elif error["type"] == "missing":
            lines.append(f"{where}: required field is missing")
        elif isinstance(given, (dict, list)):
            lines.append(f"{where}: {message}")
        else:
            lines.append(f"{where}: {message} (got {given!r})")
    return lines


def _inside(loc: tuple[Any, ...], errors: list[dict]) -> bool:
    """Whether another error lies within `loc` (at one of its items)."""
    return any(len(other["loc"]) > len(loc) and other["loc"][: len(loc)] == loc for other in errors)


def _location(loc: tuple[Any, ...]) -> str:
    where = ""
    for part in loc:
        if isinstance(part, int):
            where += f"[{part}]"
        elif part in ("hot", "long-tail", "batch") and where.endswith("policy"):
            continue  # the discriminator's tag, not a field the user wrote
        else:
            where += f".{part}" if where else str(part)
    return where or "(top level)"


def _check_promql(owner: str, field: str, expression: str) -> None:
    """Refuse an expression Prometheus would refuse (autoscaler/promql_syntax.py says how it is
    checked without a server), or one that does not give an instant vector: the daemon sums
    each to one value, `sum(<expression>)`, and a scalar or a range cannot be summed. Checked
    at check-config and at every reload, so one model's bad query never reaches the query
    that all models' wake queries share."""
    try:
        kind = check(expression)
    except PromQLError as err:
        raise ValueError(f"{owner}: {field} {expression!r} is not valid PromQL: {err}") from None
    if kind != VECTOR:
        hint = f" (e.g. vector({expression}))" if kind == "scalar" else ""
        raise ValueError(f"{owner}: {field} {expression!r} gives a {kind}; it must give an instant vector{hint}")


def _dns_label(field: str, value: str) -> str:
    if not _DNS_LABEL.fullmatch(value) or len(value) > 63:
        raise ValueError(f"{field} {value!r} must be a lower-case RFC 1123 label (a-z, 0-9, '-', at most 63 characters)")
    return value


def _duplicates(field: str, values: list[str]) -> list[str]:
    seen, dupes = set(), []
    for value in values:
        if value in seen and value not in dupes:
            dupes.append(value)
        seen.add(value)
    return [f"{field}: {value!r} appears more than once" for value in dupes]

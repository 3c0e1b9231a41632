"""The configuration reference, generated from the config models' own fields.

Each setting's default, bounds and description live once, on its pydantic field
(`autoscaler/config.py`, `policies/spec.py`, `autoscaler/settings.py`); this renders them as Markdown, so the reference in
`docs/configuration.md` cannot say something the models do not (`tests/test_reference.py` fails when
the page is stale). Regenerate it with:

    .venv/bin/python -m autoscaler.reference > docs/configuration.md
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from typing import Any

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from autoscaler.config import Config, ModelConfig
from autoscaler.settings import leaf_fields
from policies.spec import BatchSpec, HotSpec, LongTailSpec

_HEADER = """\
# Configuration reference

Generated from the config models by `python -m autoscaler.reference`; do not edit by hand
(`tests/test_reference.py` fails when this page and the models disagree).

One YAML file, or a ConfigMap manifest holding it. `autoscaler check-config FILE` validates it and
prints the effective value of every setting. An example: `deploy/configmap.yaml`.
"""

_POLICY_KINDS = (("hot", HotSpec), ("long-tail", LongTailSpec), ("batch", BatchSpec))


def render() -> str:
    sections = [_HEADER, "## The daemon and its models\n", _table(Config, prefix="")]
    for kind, spec in _POLICY_KINDS:
        sections.append(f"## `policy` of kind `{kind}`\n")
        sections.append(_table(spec, prefix="models[].policy."))
    sections += [_FLAGS_HEADER, _flags_table()]
    return "\n".join(sections)


_FLAGS_HEADER = """\
## Flags of `autoscaler run`

How the process runs, the same for every model (`autoscaler/settings.py`), set in the
Deployment's args. Each is one flag; `autoscaler run --help` lists them with the others.
"""


def _flags_table() -> str:
    lines = ["| flag | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    for path, field in leaf_fields():
        flag = "--" + path[-1].replace("_", "-")
        lines.append(f"| `{flag}` | {_type_name(field.annotation)} | {_default(field)} | {allowed(field)} | {_meaning(field)} |")
    return "\n".join(lines) + "\n"


def _table(model: type[BaseModel], *, prefix: str) -> str:
    lines = ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    lines += [f"| `{key}` | {kind} | {default} | {allowed} | {meaning} |" for key, kind, default, allowed, meaning in _rows(model, prefix)]
    return "\n".join(lines) + "\n"


def _rows(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, str, str, str, str]]:
    for name, field in model.model_fields.items():
        key = prefix + name
        if name == "kind" and model in dict(_POLICY_KINDS).values():
            continue
        nested = _nested_model(field.annotation)
        if nested is ModelConfig or (nested is not None and nested.__module__ == "policies.spec"):
            yield key, _type_name(field.annotation), _default(field), "", _meaning(field)
            if nested is ModelConfig:
                yield from _rows(ModelConfig, key + "[].")
            continue
        if nested is not None:
            suffix = "[]." if _is_sequence(field.annotation) else "."
            yield from _rows(nested, key + suffix)
            continue
        yield key, _type_name(field.annotation), _default(field), allowed(field), _meaning(field)


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The config model a field holds, alone or as the items of a tuple; None for a plain value."""
    candidates = [annotation, *typing.get_args(annotation)]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _is_sequence(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (tuple, list)


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        named = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(named) + (" or null" if type(None) in args else "")
    if origin is typing.Literal:
        return " or ".join(f"`{a}`" for a in args)
    if origin in (tuple, list):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "map"
    if isinstance(annotation, type):
        return {"str": "string", "float": "number", "int": "integer", "bool": "boolean"}.get(
            annotation.__name__, annotation.__name__
        )
    return str(annotation)


def _default(field: FieldInfo) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "none"
    if isinstance(value, BaseModel):
        return ""
    if value == ():
        return "`[]`"
    return f"`{value}`"


_BOUNDS = ((Ge, "ge", ">="), (Gt, "gt", ">"), (Le, "le", "<="), (Lt, "lt", "<"), (MinLen, "min_length", "at least"), (MaxLen, "max_length", "at most"))


def allowed(field: FieldInfo) -> str:
    """A field's bounds in words: '>= 1, <= 64'."""
    parts = []
    for item in field.metadata:
        for kind, attribute, symbol in _BOUNDS:
            if isinstance(item, kind):
                parts.append(f"{symbol} {getattr(item, attribute)}")
    return ", ".join(parts)


def _meaning(field: FieldInfo) -> str:
    return " ".join((field.description or "").split()).replace("|", "\\|")


def main() -> None:
    print(render(), end="")


if __name__ == "__main__":
    main()

"""JSON Schema of the runbook format, generated from the models, for editors.

Point the YAML language server at it (`# yaml-language-server: $schema=...`)
to get completion and red squiggles while writing a runbook. Templates are
allowed wherever a non-string value is expected, since `"{{ params.port }}"`
becomes an int only when rendered.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from engine.steps.base import StepType, get_step_type, is_available, step_types

from .model import RunbookHeader, StepCommon

TEMPLATE = {"type": "string", "pattern": r"\{\{|\{%"}
# Where the schema says it lives; `runbook schema` prints it, editors cache by it.
SCHEMA_ID = "https://runbook-engine.dev/schemas/runbook-v1.json"


def runbook_schema() -> dict[str, Any]:
    """The schema of a runbook file: the header, and `Step` as one variant per type."""
    # A plugin that cannot be imported here is left out rather than breaking the schema.
    types = {name: get_step_type(name) for name in step_types.names() if is_available(name)}
    models: list[tuple[type[BaseModel], Any]] = [
        (RunbookHeader, "validation"),
        (StepCommon, "validation"),
    ]
    models += [(t.Spec, "validation") for t in types.values()]
    keys, top = models_json_schema(models, ref_template="#/$defs/{model}", by_alias=True)
    defs: dict[str, Any] = top.get("$defs", {})

    def resolved(model: type[BaseModel]) -> dict[str, Any]:
        ref = keys[(model, "validation")]["$ref"].split("/")[-1]
        schema: dict[str, Any] = defs[ref]
        return schema

    header = resolved(RunbookHeader)
    common = resolved(StepCommon)
    defs["Step"] = _step_schema(types, common, keys)
    schema = dict(header)
    schema["properties"] = dict(header["properties"])
    for section in ("steps", "rescue", "always"):
        schema["properties"][section] = {"type": "array", "items": {"$ref": "#/$defs/Step"}}
    schema["properties"]["steps"]["minItems"] = 1
    defs.pop("RunbookHeader", None)
    # Step bodies and retry values may be templates (rendered per host); the other
    # common fields of a step (inlined in "Step") are read before rendering, so
    # there a template is an error, as the loader says too.
    schema["$defs"] = {k: v if k == "Step" else _allow_templates(v) for k, v in defs.items()}
    if "BlockSpec" in defs:
        # A block's steps are loaded with the file, never rendered: no template
        # there, so an editor reports a nested step's own error, not "any of".
        block = schema["$defs"]["BlockSpec"]
        for section in ("steps", "rescue", "always"):
            block["properties"][section] = {"type": "array", "items": {"$ref": "#/$defs/Step"}}
        block["properties"]["steps"]["minItems"] = 1
    schema["title"] = "Runbook"
    # `$schema` and `$id` first: editors and validators read them before the rest.
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def _step_schema(
    types: dict[str, StepType], common: dict[str, Any], keys: dict[Any, Any]
) -> dict[str, Any]:
    """A step, its variant chosen by its type key, as the loader chooses it.

    A plain oneOf of the variants made editors guess which variant a wrong step
    meant, and a typo (`shel:`) came out as "Missing property assert". Here a
    type key present selects its variant (`if required [shell] then ...`), and
    a step with no type key is told which key is unknown, or which it needs.
    """
    # `assert` is also a common field: it is the type only when no other is there.
    others = [name for name in sorted(types) if name != "assert"]
    has_other = {"anyOf": [{"required": [name]} for name in others]}
    rules: list[dict[str, Any]] = [
        {"if": {"required": [name]}, "then": _step_variant(name, types[name], common, keys)}
        for name in others
    ]
    if "assert" in types:
        rules.append(
            {
                "if": {"required": ["assert"], "not": has_other},
                "then": _step_variant("assert", types["assert"], common, keys),
            }
        )
    # The most common type first: an editor names the first of the ones missing.
    needed = sorted(types, key=lambda name: (name != "shell", name))
    known = [*sorted(types), *(k for k in common["properties"] if k not in types)]
    rules.append(
        {
            "if": {"not": {"anyOf": [{"required": [name]} for name in needed]}},
            "then": {
                "propertyNames": {"enum": known},
                "if": {"propertyNames": {"enum": known}},
                "then": {"anyOf": [{"required": [name]} for name in needed]},
            },
        }
    )
    # Every key once at the top, so editors complete type keys before a variant applies.
    listed = {**common["properties"], **{name: {"title": f"{name} step"} for name in types}}
    return {
        "type": "object",
        "required": ["name"],
        "properties": {key: {"title": value.get("title", key)} for key, value in listed.items()},
        "allOf": rules,
    }


def _step_variant(
    name: str, stype: StepType, common: dict[str, Any], keys: dict[Any, Any]
) -> dict[str, Any]:
    """The schema of a step of type `name`: the common fields and its body (or a shorthand)."""
    body: dict[str, Any] = {"$ref": keys[(stype.Spec, "validation")]["$ref"]}
    shorthands: list[dict[str, Any]] = []
    if stype.normalize("x") != "x":
        shorthands.append({"type": "string"})
    if stype.normalize(["x"]) != ["x"]:
        shorthands.append({"type": "array", "items": {"type": "string"}})
    if shorthands:
        body = {"anyOf": [body, *shorthands]}
    props = dict(common["properties"])
    if name == "assert":
        props.pop("assert", None)
    props[name] = body
    return {
        "title": f"{name} step",
        "properties": props,
        "additionalProperties": False,
    }


def _allow_templates(node: Any) -> Any:
    """Wrap every non-string leaf type so a template string is accepted too."""
    if isinstance(node, list):
        return [_allow_templates(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _allow_templates(v) for k, v in node.items()}
    kind = out.get("type")
    if kind in ("integer", "number", "boolean", "array", "object") and "properties" not in out:
        return {"anyOf": [out, TEMPLATE]}
    if kind == "string" and ("enum" in out or "const" in out):  # log level: "{{ ... }}"
        return {"anyOf": [out, TEMPLATE]}
    if kind == "object" and "properties" in out:
        return {"anyOf": [out, TEMPLATE]} if out.get("additionalProperties") is not False else out
    return out

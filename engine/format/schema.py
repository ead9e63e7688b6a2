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
    variants = [_step_variant(name, stype, common, keys) for name, stype in sorted(types.items())]
    defs["Step"] = {"oneOf": variants}
    if "BlockSpec" in defs:
        for section in ("steps", "rescue", "always"):
            defs["BlockSpec"]["properties"][section] = {
                "type": "array",
                "items": {"$ref": "#/$defs/Step"},
            }
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
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Runbook"
    return schema


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
        "type": "object",
        "properties": props,
        "required": ["name", name],
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

"""Operator inputs: `-p name=value` strings → typed, validated params."""

from __future__ import annotations

import json
from typing import Any

from engine.errors import UsageError, did_you_mean

from .model import Param

_TRUE = {"true", "yes", "y", "on", "1"}
_FALSE = {"false", "no", "n", "off", "0"}


def coerce_param(name: str, param: Param, value: Any) -> Any:
    """One value (a CLI string, a default, an include's value) → the param's type."""
    kind = param.type
    try:
        if kind == "str":
            if isinstance(value, dict | list):
                raise ValueError("expected text")
            out: Any = str(value)
        elif kind == "bool":
            if isinstance(value, bool):
                out = value
            elif str(value).strip().lower() in _TRUE:
                out = True
            elif str(value).strip().lower() in _FALSE:
                out = False
            else:
                raise ValueError("expected true or false")
        elif kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError("expected a whole number")
            out = int(value)
        elif kind == "float":
            if isinstance(value, bool):
                raise ValueError("expected a number")
            out = float(value)
        elif kind == "list":
            if isinstance(value, list):
                out = value
            elif isinstance(value, str) and value.strip().startswith("["):
                out = json.loads(value)
            elif isinstance(value, str):
                out = [v.strip() for v in value.split(",") if v.strip()]
            else:
                raise ValueError("expected a list (JSON, or comma-separated)")
        else:  # dict
            out = value if isinstance(value, dict) else json.loads(str(value))
            if not isinstance(out, dict):
                raise ValueError("expected a JSON object")
    except (ValueError, TypeError) as exc:
        reason = str(exc) if not isinstance(exc, json.JSONDecodeError) else "not valid JSON"
        if param.secret:  # the value, and a parser's quote of it, are not shown
            raise UsageError(f"param {name}: the value given is not a valid {kind}") from None
        raise UsageError(f"param {name}: {value!r} is not a valid {kind} ({reason})") from None
    if param.choices is not None and out not in param.choices:
        allowed = ", ".join(map(str, param.choices))
        shown = "the value given" if param.secret else repr(out)
        raise UsageError(f"param {name}: {shown} is not one of {allowed}")
    return out


def resolve_params(declared: dict[str, Param], given: dict[str, Any]) -> dict[str, Any]:
    """Declared params with the given values, defaults filled in. Raises UsageError."""
    errors = []
    for name in given:
        if name not in declared:
            hint = did_you_mean(name, declared)
            hint = f" ({hint})" if hint else ""
            known = ", ".join(declared) or "none"
            errors.append(f"unknown param {name!r}{hint}; declared params: {known}")
    out: dict[str, Any] = {}
    for name, param in declared.items():
        if name in given:
            try:
                out[name] = coerce_param(name, param, given[name])
            except UsageError as exc:
                errors.append(str(exc))
        elif param.default is not None:
            out[name] = coerce_param(name, param, param.default)
        elif param.required:
            errors.append(f"param {name} is required: pass -p {name}=VALUE")
        else:
            out[name] = None
    if errors:
        raise UsageError("\n".join(errors))
    return out


def parse_assignments(pairs: tuple[str, ...] | list[str], flag: str) -> dict[str, str]:
    """["a=1", "b=x=y"] → {"a": "1", "b": "x=y"}; a pair without `=` is a usage error."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"{flag} expects NAME=VALUE, got {pair!r}")
        out[name.strip()] = value
    return out

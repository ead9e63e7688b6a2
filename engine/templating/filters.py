"""The filters runbooks may use beside Jinja2's own: quote, duration, bytes,
to_json, from_json, pct (docs/format.md lists them with examples)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from typing import Any


def _quote(value: object) -> str:
    return shlex.quote(str(value))


def _duration(seconds: float | str) -> str:
    total = int(float(seconds))
    if total < 60:
        return f"{total}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size:
            parts.append(f"{total // size}{unit}")
            total %= size
    return " ".join(parts[:2])


def _bytes(value: float | str) -> str:
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(size) < 1024 or unit == "PiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _to_json(value: object, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, sort_keys=True, default=str)


def _from_json(text: str) -> Any:
    return json.loads(text)


def _pct(value: float | str, total: float | str | None = None, digits: int = 1) -> str:
    """`0.953 | pct` → "95.3%"; `used | pct(size)` → used/size as a percentage."""
    ratio = float(value)
    if total is not None:
        denominator = float(total)
        ratio = ratio / denominator if denominator else 0.0
    return f"{ratio * 100:.{digits}f}%"


FILTERS: dict[str, Callable[..., Any]] = {
    "quote": _quote,
    "duration": _duration,
    "bytes": _bytes,
    "to_json": _to_json,
    "from_json": _from_json,
    "pct": _pct,
}

"""The Jinja2 environment itself, kept apart so that importing jinja2 (~25 ms)
waits for the first template: a runbook without `{{ }}` never pays for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

# The largest text or list `*` and `+` may build, and the largest power `**` may
# compute: far beyond what a command or query needs, far below what exhausts
# memory. `{{ 'a' * 10**9 }}` was folded at compile time (3.9 GB during
# `runbook check`) and `{{ (params,) * 999999999 }}` ignored the step's timeout.
MAX_SIZE = 1_000_000
MAX_POWER_BITS = 4_096


class Environment(SandboxedEnvironment):
    """Attribute access prefers a mapping's keys over its methods, and `*`, `+`
    and `**` are bounded (checked at render; never folded at compile time).

    Plain Jinja2 resolves `row.values` to `dict.values`; a SQL column or an INFO
    field named like a dict method would then be unreachable with dot syntax.
    """

    intercepted_binops = frozenset({"*", "+", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            _check_power(left, right)
        elif operator in ("*", "+"):
            _check_size(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


def _check_size(operator: str, left: Any, right: Any) -> None:
    sized = (str, bytes, list, tuple)
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, sized) and isinstance(times, int) and len(seq) * times > MAX_SIZE:
                raise SecurityError(
                    f"`*` would build {len(seq) * times:,} items (the limit is {MAX_SIZE:,})"
                )
    elif isinstance(left, sized) and isinstance(right, sized) and len(left) + len(right) > MAX_SIZE:
        raise SecurityError(f"`+` would build more than {MAX_SIZE:,} items")


def _check_power(base: Any, exponent: Any) -> None:
    ints = isinstance(base, int) and isinstance(exponent, int)
    if ints and abs(base) > 1 and exponent > 0 and base.bit_length() * exponent > MAX_POWER_BITS:
        raise SecurityError(f"`**` result too large (over {MAX_POWER_BITS} bits)")


def make_env(filters: Mapping[str, Callable[..., Any]]) -> Environment:
    """Sandboxed (templates come from runbooks), strict (a typo is an error, not "")."""
    env = Environment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters.update(filters)
    return env

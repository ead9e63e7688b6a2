"""The Jinja2 environment itself, kept apart so that importing jinja2 (~25 ms)
waits for the first template: a runbook without `{{ }}` never pays for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment


class Environment(SandboxedEnvironment):
    """Attribute access prefers a mapping's keys over its methods.

    Plain Jinja2 resolves `row.values` to `dict.values`; a SQL column or an INFO
    field named like a dict method would then be unreachable with dot syntax.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


def make_env(filters: Mapping[str, Callable[..., Any]]) -> Environment:
    """Sandboxed (templates come from runbooks), strict (a typo is an error, not "")."""
    env = Environment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters.update(filters)
    return env

"""Templates and expressions: compiled once, rendered per host, checked statically.

The one Jinja2 environment (sandbox.py) is sandboxed, strict and native-typed;
its filters are in filters.py.

Two kinds of source text come out of a runbook:

* templates (`"vacuum {{ params.table }}"`): every string field. A template that
  is exactly one `{{ expr }}` keeps the expression's native type, so
  `"{{ params.count }}"` is the int 3, not the string "3".
* expressions (`when`, `until`, `failed_when`, `assert`, threshold `value`):
  bare Jinja2 expressions, as Ansible's `when`.

Both are compiled once per distinct source text and reused for every host and
step. Rendered output is never rendered again: whatever a host or service sends
back is data, not a template.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from engine.errors import TemplateError

if TYPE_CHECKING:
    from jinja2 import nodes

    from .sandbox import Environment

# The names a template may use, and no others (docs/format.md, templates).
NAMESPACES = frozenset(
    {"params", "vars", "host", "steps", "result", "run", "runbook", "env", "secret"}
)

_MARKERS = ("{{", "{%", "{#")
_LONE_EXPR = re.compile(r"\A\{\{-?(?P<expr>.*?)-?\}\}\n?\Z", re.DOTALL)


def is_template(text: object) -> bool:
    return isinstance(text, str) and any(m in text for m in _MARKERS)


# ----------------------------------------------------------------- environment


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The one environment, made on the first template (jinja2 is imported then)."""
    from .filters import FILTERS
    from .sandbox import make_env

    return make_env(FILTERS)


# ------------------------------------------------------------------- compiling


@dataclass(frozen=True)
class Compiled:
    """A compiled template or expression. `render(ctx)` gives the value."""

    source: str
    fn: Callable[[Mapping[str, Any]], Any]
    ast: nodes.Template = field(repr=False)

    def render(self, context: Mapping[str, Any]) -> Any:
        import jinja2  # imported already: this compiled it

        try:
            return self.fn(context)
        except jinja2.UndefinedError as exc:
            raise TemplateError(_undefined_message(exc, self.source)) from None
        except jinja2.TemplateError as exc:
            raise TemplateError(str(exc)) from None
        except TemplateError:
            raise
        except Exception as exc:  # a filter or operator raised (1/0, int('x'))
            raise TemplateError(f"{type(exc).__name__}: {exc} in {self.source!r}") from None


def _undefined_message(exc: Exception, source: str) -> str:
    return f"{exc} (in {source.strip()!r})"


@lru_cache(maxsize=4096)
def compile_expression(source: str) -> Compiled:
    """Compile a bare expression (`when`, `until`, ...). Raises TemplateError."""
    text = source.strip()
    if not text:
        raise TemplateError("empty expression")
    if is_template(text):
        raise TemplateError(
            f"{text!r} is an expression: write it without {{{{ }}}}, as in Ansible's `when`"
        )
    import jinja2

    env = environment()
    try:
        ast = env.parse("{{ (" + text + ") }}")
        expr = env.compile_expression(text, undefined_to_none=False)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"cannot parse expression {text!r}: {exc.message}") from None

    def run(ctx: Mapping[str, Any]) -> Any:
        value = expr(**ctx)
        if isinstance(value, jinja2.Undefined):
            # A bare `params.nope` yields an Undefined object instead of raising.
            value._fail_with_undefined_error()
        return value

    return Compiled(text, run, ast)


@lru_cache(maxsize=4096)
def compile_template(source: str) -> Compiled:
    """Compile a string field. A lone `{{ expr }}` keeps its native type."""
    from jinja2 import nodes

    if not is_template(source):
        ast = nodes.Template([nodes.Output([nodes.TemplateData(source)])])
        return Compiled(source, lambda _ctx: source, ast)
    match = _LONE_EXPR.match(source)
    if match and "{{" not in match["expr"] and "}}" not in match["expr"]:
        try:
            return compile_expression(match["expr"])
        except TemplateError:
            pass  # let the full template parser report it with its own words
    import jinja2

    env = environment()
    try:
        ast = env.parse(source)
        template = env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"cannot parse template: {exc.message} (line {exc.lineno})") from None
    return Compiled(source, template.render, ast)


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string inside `value` (dicts and lists walked)."""
    if isinstance(value, str):
        if not is_template(value):
            return value
        return compile_template(value).render(context)
    if isinstance(value, dict):
        return {k: render_value(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, context) for v in value]
    return value


def evaluate(source: str, context: Mapping[str, Any]) -> Any:
    """A bare expression's value. Raises TemplateError."""
    return compile_expression(source).render(context)


def holds(condition: str | bool, context: Mapping[str, Any]) -> bool:
    """A condition (`when`, `failed_when`): a literal true/false, or an expression's truth."""
    return condition if isinstance(condition, bool) else bool(evaluate(condition, context))


# ------------------------------------------------------------- static analysis


@dataclass
class References:
    """What a template reads: top-level names and `steps.X` / `params.X` keys."""

    names: set[str] = field(default_factory=set)
    steps: set[str] = field(default_factory=set)
    params: set[str] = field(default_factory=set)


def references(compiled: Compiled) -> References:
    import jinja2.meta
    from jinja2 import nodes

    refs = References()
    ast = compiled.ast
    refs.names = set(jinja2.meta.find_undeclared_variables(ast))
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        target = getattr(node, "node", None)  # find_all is typed as yielding plain nodes
        if not isinstance(target, nodes.Name):
            continue
        if isinstance(node, nodes.Getattr):
            key: object = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            key = node.arg.value
        else:
            continue
        if not isinstance(key, str):
            continue
        if target.name == "steps":
            refs.steps.add(key)
        elif target.name == "params":
            refs.params.add(key)
    return refs


def undeclared(names: Iterable[str], allowed: Iterable[str] = NAMESPACES) -> list[str]:
    allowed_set = set(allowed)
    return sorted(n for n in names if n not in allowed_set and n not in environment().globals)

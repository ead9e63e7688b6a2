"""Warnings about valid runbooks that are still risky to run during an outage."""

from __future__ import annotations

import re

from engine.errors import Location, Problem, TemplateError
from engine.templating import compile_expression, is_template

from .model import Runbook, Step
from .source import format_path

# Commands that destroy data or stop service: they deserve an approval gate.
DESTRUCTIVE = re.compile(
    r"\b(rm\s+-[a-z]*r[a-z]*f|DROP\s+(TABLE|DATABASE|SCHEMA)|TRUNCATE|FLUSHALL|FLUSHDB|"
    r"mkfs|dd\s+if=|shutdown|reboot|systemctl\s+(stop|restart))\b",
    re.IGNORECASE,
)


def lint(rb: Runbook) -> list[str]:
    """The warnings as lines: `file:line step ID: what is risky`."""
    return [f"{step.where} step {step.id}: {message}" for step, message in _findings(rb)]


def lint_problems(rb: Runbook) -> list[Problem]:
    """The same warnings, each placed (file, line, the step's field path), for
    output that tools read: `runbook check --format json|github`."""
    return [
        Problem(message, Location(step.file, step.line), path=format_path(step.path))
        for step, message in _findings(rb)
    ]


def _findings(rb: Runbook) -> list[tuple[Step, str]]:
    out: list[tuple[Step, str]] = []
    for step in rb.all_steps():
        text = repr(step.body)
        # Instructions to a human (`manual`, `log`) run nothing: no gate needed.
        if (
            step.type not in ("manual", "log")
            and DESTRUCTIVE.search(text)
            and not step.common.confirm
            and not _inside_confirmed(rb, step.id)
        ):
            out.append((step, "looks destructive but has no `confirm:` gate"))
        service = step.type in ("shell", "sql", "http", "redis", "s3")
        if service and step.common.timeout is None and rb.header.kind == "emergency":
            out.append((step, "no `timeout:` (an emergency runbook must not hang)"))
        retried = step.common.retry is not None and step.common.retry.attempts > 1
        if retried and step.common.timeout is None and step.type == "shell":
            out.append((step, "retried without a `timeout:`; one hung attempt blocks all"))
        out.extend((step, warning) for warning in _pasted_values(step))
    return out


# Filters whose output cannot change a command's or a query's syntax.
_SAFE_IN_SHELL = frozenset({"quote", "int", "float", "length", "count"})
_SAFE_IN_SQL = frozenset({"int", "float", "length", "count"})
# Where values from outside the runbook come from: the operator, hosts, services.
_OUTSIDE = frozenset({"params", "vars", "steps", "result", "env"})


def _pasted_values(step: Step) -> list[str]:
    """Values templated into shell or SQL text unquoted: a value holding `;` or
    a quote then becomes a command or a statement of its own. A body that is one
    template as a whole (`shell: "{{ params.restart_cmd }}"`) is a command the
    operator gives on purpose, and is not flagged."""
    if not isinstance(step.body, dict):
        return []
    if step.type == "shell" and isinstance(step.body.get("cmd"), str):
        field, text, safe = "shell.cmd", step.body["cmd"], _SAFE_IN_SHELL
        advice = "pass it through `| quote`, or give the command as `argv:`"
    elif step.type == "sql" and isinstance(step.body.get("query"), str):
        field, text, safe = "sql.query", step.body["query"], _SAFE_IN_SQL
        advice = "pass it as a bound parameter (`params:` and %s in the query)"
    else:
        return []
    return [
        f"{field}: `{{{{ {source} }}}}` is pasted into the text unquoted; {advice}"
        for source in _unquoted_expressions(text, safe)
    ]


_OUTPUT = re.compile(r"\{\{-?(.*?)-?\}\}", re.DOTALL)
_TAGS = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)


def _unquoted_expressions(text: str, safe: frozenset[str]) -> list[str]:
    """The `{{ expr }}` of `text` that bring outside values in without a safe filter."""
    if not is_template(text) or not _TAGS.sub("", text).strip():
        return []  # no template, or the whole text is one: the operator's own command
    from jinja2 import nodes

    found = []
    for match in _OUTPUT.finditer(text):
        source = match[1].strip()
        try:
            [output] = compile_expression(source).ast.body
        except (TemplateError, ValueError):
            continue  # the loader reports what does not parse
        assert isinstance(output, nodes.Output)
        [node] = output.nodes
        if isinstance(node, nodes.Const) or (isinstance(node, nodes.Filter) and node.name in safe):
            continue
        if {n.name for n in node.find_all(nodes.Name)} & _OUTSIDE:
            found.append(source)
    return found


def _inside_confirmed(rb: Runbook, step_id: str) -> bool:
    for step in rb.all_steps():
        gated = step.type == "block" and step.common.confirm
        if gated and any(s.id == step_id for s in step.walk()):
            return True
    return False

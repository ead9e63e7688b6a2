"""Warnings about valid runbooks that are still risky to run during an outage."""

from __future__ import annotations

import re

from .model import Runbook

# Commands that destroy data or stop service: they deserve an approval gate.
DESTRUCTIVE = re.compile(
    r"\b(rm\s+-[a-z]*r[a-z]*f|DROP\s+(TABLE|DATABASE|SCHEMA)|TRUNCATE|FLUSHALL|FLUSHDB|"
    r"mkfs|dd\s+if=|shutdown|reboot|systemctl\s+(stop|restart))\b",
    re.IGNORECASE,
)


def lint(rb: Runbook) -> list[str]:
    out = []
    for step in rb.all_steps():
        where = f"{step.where} step {step.id}"
        text = repr(step.body)
        if (
            DESTRUCTIVE.search(text)
            and not step.common.confirm
            and not _inside_confirmed(rb, step.id)
        ):
            out.append(f"{where}: looks destructive but has no `confirm:` gate")
        service = step.type in ("shell", "sql", "http", "redis", "s3")
        if service and step.common.timeout is None and rb.header.kind == "emergency":
            out.append(f"{where}: no `timeout:` (an emergency runbook must not hang)")
        retried = step.common.retry is not None and step.common.retry.attempts > 1
        if retried and step.common.timeout is None and step.type == "shell":
            out.append(f"{where}: retried without a `timeout:`; one hung attempt blocks all")
    return out


def _inside_confirmed(rb: Runbook, step_id: str) -> bool:
    for step in rb.all_steps():
        gated = step.type == "block" and step.common.confirm
        if gated and any(s.id == step_id for s in step.walk()):
            return True
    return False

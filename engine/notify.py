"""`notify:` — tell a webhook, Slack or PagerDuty how a run ended, or that a
prompt waits for a person.

Sent from the controller with httpx: at the run's end for the outcomes a
target lists in `events`, and as a prompt starts waiting at a terminal when it
lists `approval`. A notification is bounded (its `timeout`, one retry) and
never changes the run's outcome or exit code; how each went is recorded as a
log event (`notify`), so the history says whether anyone was told.

Targets are rendered once at the start (params, `secret()`, `env`), so a URL
or routing key read with `secret()` is masked everywhere like any secret. The
payloads are built from the redacted result and pass through the run's
redactor again before they leave.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import SecretError, TemplateError, UsageError
from .format.model import NotifyTarget
from .redaction import Redactor, redact_run
from .results import RunResult, State

# What PagerDuty calls each state (Events API v2 severities).
PD_SEVERITY = {"critical": "critical", "failed": "error", "aborted": "error", "warn": "warning"}
WORST_SHOWN = 5


@dataclass
class Target:
    """A `notify:` entry with its templates rendered."""

    index: int
    kind: str  # webhook, slack, pagerduty
    url: str
    on: frozenset[str]
    timeout: float
    routing_key: str = ""


Say = Callable[[str, str], None]  # (level, message): recorded as a `notify` log event


def render_targets(entries: list[NotifyTarget], context: Mapping[str, Any]) -> list[Target]:
    """Render each entry's URL and key; a template that fails names the entry."""
    from .templating import render_value

    out = []
    for i, entry in enumerate(entries):
        kind = entry.kind
        try:
            if entry.pagerduty is not None:
                url = str(render_value(entry.pagerduty.url, context))
                key = str(render_value(entry.pagerduty.routing_key, context))
            else:
                url, key = str(render_value(getattr(entry, kind), context)), ""
        except (TemplateError, SecretError) as exc:
            raise UsageError(f"notify[{i}].{kind}: {exc}") from None
        out.append(Target(i, kind, url, frozenset(entry.events), entry.timeout, key))
    return out


class Notifier:
    """Delivers the run's notifications; `say` records how each went."""

    def __init__(self, targets: list[Target], runbook: str, redactor: Redactor, say: Say) -> None:
        self.targets = targets
        self.runbook = runbook
        self.redactor = redactor
        self.say = say

    @property
    def wants_approvals(self) -> bool:
        return any("approval" in t.on for t in self.targets)

    # ------------------------------------------------------------ triggers

    def run_finished(self, result: RunResult) -> None:
        """At the end: every target whose `events` hold the run's state (or always)."""
        if result.dry_run:  # a rehearsal pages nobody
            self.say("info", "notify: nothing sent (dry run)")
            return
        result = redact_run(result, self.redactor)
        state = result.state.value
        for target in self.targets:
            if state in target.on or "always" in target.on:
                self._send(target, self._finished_body(target, result), f"run {state}")

    def approval_waiting(self, run_id: str, host: str, step_id: str, prompt: str) -> None:
        """A prompt waits at the terminal: sent in the background, the prompt is not held up."""
        info = {"run_id": run_id, "host": host, "step_id": step_id, "prompt": prompt}
        for target in self.targets:
            if "approval" in target.on:
                body = self._approval_body(target, info)
                threading.Thread(
                    target=self._send, args=(target, body, f"approval {step_id}"), daemon=True
                ).start()

    # ------------------------------------------------------------ payloads

    def _summary(self, result: RunResult) -> tuple[str, list[dict[str, str]]]:
        order = [State.FAILED, State.UNREACHABLE, State.ABORTED, State.CRITICAL, State.WARN]
        worst = sorted(
            (h for h in result.hosts.values() if h.state in order),
            key=lambda h: (order.index(h.state), h.host),
        )[:WORST_SHOWN]
        rows = [{"host": h.host, "state": h.state.value, "reason": h.reason()} for h in worst]
        text = (
            f"runbook {result.runbook}: run {result.run_id} {result.state.value} "
            f"(exit {result.exit_code}){' [dry run]' if result.dry_run else ''}"
        )
        if rows:
            text += " — " + "; ".join(
                f"{r['host']} {r['state']}" + (f": {r['reason']}" if r["reason"] else "")
                for r in rows
            )
        return text, rows

    def _finished_body(self, target: Target, result: RunResult) -> list[dict[str, Any]]:
        text, worst = self._summary(result)
        if target.kind == "slack":
            return [{"text": text}]
        if target.kind == "webhook":
            return [
                {
                    "event": "run_finished",
                    "run_id": result.run_id,
                    "runbook": result.runbook,
                    "state": result.state.value,
                    "exit_code": result.exit_code,
                    "dry_run": result.dry_run,
                    "started_at": result.started_at,
                    "finished_at": result.finished_at,
                    "duration_ms": result.duration_ms,
                    "hosts": {
                        name: {"state": h.state.value, "reason": h.reason()}
                        for name, h in result.hosts.items()
                    },
                    "worst": worst,
                    "text": text,
                }
            ]
        # PagerDuty: an alert per host, deduplicated per runbook and host, so the
        # next run's outcome on that host triggers again or resolves it.
        bodies = []
        for name, h in result.hosts.items():
            state = h.state.value
            if state in PD_SEVERITY and (state in target.on or "always" in target.on):
                action = "trigger"
            elif state == "ok" and ("ok" in target.on or "always" in target.on):
                action = "resolve"
            else:
                continue
            body: dict[str, Any] = {
                "routing_key": target.routing_key,
                "event_action": action,
                "dedup_key": f"{result.runbook}/{name}",
            }
            if action == "trigger":
                body["payload"] = {
                    "summary": f"{result.runbook} on {name}: {state}"
                    + (f": {h.reason()}" if h.reason() else ""),
                    "source": name,
                    "severity": PD_SEVERITY[state],
                    "component": result.runbook,
                    "custom_details": {"run_id": result.run_id, "exit_code": result.exit_code},
                }
            bodies.append(body)
        return bodies

    def _approval_body(self, target: Target, info: dict[str, str]) -> list[dict[str, Any]]:
        text = (
            f"runbook {self.runbook}: run {info['run_id']} waits for approval on "
            f"{info['host']} at {info['step_id']}: {info['prompt']}"
        )
        if target.kind == "slack":
            return [{"text": text}]
        if target.kind == "webhook":
            return [{"event": "approval", "runbook": self.runbook, **info, "text": text}]
        return [
            {
                "routing_key": target.routing_key,
                "event_action": "trigger",
                "dedup_key": f"{self.runbook}/{info['run_id']}/{info['step_id']}",
                "payload": {
                    "summary": text[:1024],
                    "source": info["host"],
                    "severity": "info",
                    "component": self.runbook,
                },
            }
        ]

    # ------------------------------------------------------------ delivery

    def _send(self, target: Target, bodies: list[dict[str, Any]], what: str) -> None:
        import httpx

        where = f"notify[{target.index}] {target.kind}"
        for body in bodies:
            # The routing key is PagerDuty's credential: sent, but never anything else.
            key = body.pop("routing_key", None)
            payload = self.redactor(body)
            if key is not None:
                payload = {"routing_key": key, **payload}
            error = ""
            for _ in range(2):  # one retry: a webhook may blip, the run is over
                try:
                    response = httpx.post(target.url, json=payload, timeout=target.timeout)
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}"
                    continue
                if response.is_success:
                    error = ""
                    break
                error = f"HTTP {response.status_code} {response.reason_phrase}"
            if error:
                self.say("warning", self.redactor.text(f"{where} ({what}) not delivered: {error}"))
            else:
                self.say("info", f"{where} ({what}) delivered")

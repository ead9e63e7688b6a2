"""Alerts that start runbooks: POST /hooks/alertmanager and /hooks/grafana.

Both send Alertmanager's webhook shape (version 4: groupKey, status,
receiver, groupLabels, commonLabels, alerts[...]; Grafana adds orgId, title,
state, message). Each config rule whose `match:` labels fit the group (its
common labels, or one of its alerts' labels) starts its runbook with params
rendered from the alert's labels. One run per alert group while it fires:
Alertmanager repeats a firing notification every `repeat_interval`, and each
repeat must not start the remedy again. `resolved` clears the group, so its
next firing starts a new run; that the alert resolved is recorded in the audit
table, with the run it had started (and whether that run still runs).

The groups are remembered in memory: a restarted server starts a new run for
a group that still fires.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from engine.errors import EngineError
from engine.users import User

from .auth import audit, need
from .config import WebhookRule
from .models import HookResult, HookRun

router = APIRouter(prefix="/hooks", tags=["webhooks"])


class Alert(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: Literal["firing", "resolved"] = "firing"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str = ""
    endsAt: str = ""
    generatorURL: str = ""
    fingerprint: str = ""


class AlertmanagerPayload(BaseModel):
    """Alertmanager's webhook body (version 4); unknown fields are kept, not refused."""

    model_config = ConfigDict(extra="allow")
    version: str = "4"
    groupKey: str = ""
    truncatedAlerts: int = 0
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[Alert] = Field(default_factory=list)


class GrafanaPayload(AlertmanagerPayload):
    """Grafana unified alerting's webhook body: Alertmanager's, and a few more."""

    orgId: int | None = None
    title: str = ""
    state: str = ""
    message: str = ""


class AlertGroups:
    """(rule, group key) → the run it started, while the group fires."""

    def __init__(self) -> None:
        # "" while its run is being started: the key is taken before the start,
        # so a repeat sent meanwhile finds it, and the lock is never held across
        # a start (which may wait for hosts' locks): other groups go on.
        self.firing: dict[tuple[str, str], str] = {}
        self.lock = threading.Lock()


def group_key(payload: AlertmanagerPayload) -> str:
    """Alertmanager's groupKey; for a sender without one, the group's labels."""
    return payload.groupKey or json.dumps(payload.groupLabels, sort_keys=True)


def matching_alert(rule: WebhookRule, payload: AlertmanagerPayload) -> Alert | None:
    """The alert the rule's params are rendered from: a firing one first."""
    common = payload.commonLabels
    fits = [a for a in payload.alerts if rule.matches({**common, **a.labels})]
    firing = [a for a in fits if a.status == "firing"]
    if firing or fits:
        return (firing or fits)[0]
    if rule.matches(common):
        return Alert(status=payload.status, labels=dict(common))
    return None


def render_rule(
    rule: WebhookRule, alert: Alert, payload: AlertmanagerPayload
) -> tuple[dict[str, Any], str | None]:
    """The rule's params and limit for this alert (TemplateError when one fails)."""
    from engine.templating import render_value

    context = {
        "labels": {**payload.commonLabels, **alert.labels},
        "annotations": {**payload.commonAnnotations, **alert.annotations},
        "common_labels": payload.commonLabels,
        "group_labels": payload.groupLabels,
        "status": payload.status,
        "receiver": payload.receiver,
        "alert": alert.model_dump(),
    }
    params = render_value(rule.params, context)
    limit = render_value(rule.limit, context) if rule.limit else None
    return dict(params), str(limit) if limit else None


def handle_alerts(
    request: Request, source: str, payload: AlertmanagerPayload, user: User
) -> HookResult:
    config = request.app.state.config
    results = []
    for rule in config.webhooks:
        if rule.source != source:
            continue
        alert = matching_alert(rule, payload)
        if alert is None:
            continue
        key = group_key(payload)
        if payload.status == "resolved":
            results.append(_resolved(request, rule, key, user))
        else:
            results.append(_firing(request, source, rule, key, alert, payload, user))
    return HookResult(status="ok", runs=results)


def _resolved(request: Request, rule: WebhookRule, key: str, user: User) -> HookRun:
    groups: AlertGroups = request.app.state.alert_groups
    with groups.lock:
        run_id = groups.firing.pop((rule.name, key), None) or None  # "": still starting
    handle = request.app.state.manager.handle(run_id) if run_id else None
    running = bool(handle is not None and handle.alive)
    audit(request, user.name, "alert resolved", run_id, rule=rule.name, group_key=key,
          run_still_running=running)  # fmt: skip
    note = f"run {run_id} still runs" if running else "" if run_id else "no run was started"
    return HookRun(rule=rule.name, group_key=key, status="resolved", run_id=run_id, message=note)


def _firing(
    request: Request, source: str, rule: WebhookRule, key: str, alert: Alert,
    payload: AlertmanagerPayload, user: User,
) -> HookRun:  # fmt: skip
    groups: AlertGroups = request.app.state.alert_groups
    with groups.lock:
        existing = groups.firing.get((rule.name, key))
        if existing is None:
            groups.firing[(rule.name, key)] = ""  # taken: this request starts it
    if existing is not None:
        return HookRun(
            rule=rule.name, group_key=key, status="already_running", run_id=existing or None,
            message="one run per alert group while it fires",
        )  # fmt: skip
    try:
        params, limit = render_rule(rule, alert, payload)
        handle = request.app.state.manager.start(
            rule.runbook, params, user=user.name, limit=limit, trusted_params=True,
            operator=f"{source}:{payload.receiver or user.name}", from_alert=True,
        )  # fmt: skip
    except BaseException as exc:
        with groups.lock:
            groups.firing.pop((rule.name, key), None)  # the next notification tries again
        if not isinstance(exc, EngineError):
            raise
        audit(request, user.name, "webhook refused", None, rule=rule.name, group_key=key,
              error=str(exc))  # fmt: skip
        return HookRun(rule=rule.name, group_key=key, status="error", message=str(exc))
    with groups.lock:
        groups.firing[(rule.name, key)] = handle.run_id
    audit(request, user.name, "webhook start", handle.run_id, rule=rule.name, group_key=key,
          runbook=rule.runbook, source=source, receiver=payload.receiver)  # fmt: skip
    return HookRun(rule=rule.name, group_key=key, status="started", run_id=handle.run_id)


@router.post("/alertmanager", response_model=HookResult)
def alertmanager(
    payload: AlertmanagerPayload, request: Request, user: User = Depends(need("start"))
) -> HookResult:
    """Alertmanager's webhook_configs (send its http_config authorization)."""
    return handle_alerts(request, "alertmanager", payload, user)


@router.post("/grafana", response_model=HookResult)
def grafana(
    payload: GrafanaPayload, request: Request, user: User = Depends(need("start"))
) -> HookResult:
    """Grafana's webhook contact point (Authorization header: Bearer TOKEN)."""
    return handle_alerts(request, "grafana", payload, user)

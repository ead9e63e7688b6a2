"""`runbook serve` over real HTTP: tokens and rights, runs started through the
API whose gates and manual steps are answered by other users, the event
stream, cancel, secret params, the audit trail, Alertmanager webhooks, and
schemathesis calling every endpoint of the published OpenAPI spec."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.fixtures.serve import Served
from tests.helpers import cli

GATED = """
runbook: gated
steps:
  - name: Restart
    id: restart
    confirm: Restart the app?
    approvers: ['@approver']
    shell: touch {marker}
  - name: After
    id: after
    shell: echo after
"""

SLEEPY = """
runbook: sleepy
steps:
  - name: Wait long
    id: nap
    shell: sleep 60
"""

MANUAL = """
runbook: by-hand
steps:
  - name: Swap the disk
    id: swap
    manual: Swap the failed disk in rack 4.
  - name: After
    id: after
    shell: echo swapped
"""

SECRET = """
runbook: {name}
params:
  token: {{type: str, secret: true, required: true}}
steps:
  - name: Use it
    id: use
    shell: test -n "{{{{ params.token }}}}"
"""

DISK = """
runbook: disk-full
webhook: true
params:
  instance: {type: str, required: true}
steps:
  - name: Say where
    id: where
    shell: echo "cleaning {{ params.instance }}"
"""

NOT_WEBHOOK = """
runbook: no-hooks
params:
  instance: {type: str}
steps:
  - name: Nothing
    shell: "true"
"""

RULE = {
    "name": "disk-full",
    "source": "alertmanager",
    "match": {"alertname": "DiskFull"},
    "runbook": "disk-full",
    "params": {"instance": "{{ labels.instance }}"},
}

# Alertmanager's webhook body, version 4, as its docs show it.
ALERTMANAGER = {
    "version": "4",
    "groupKey": '{}:{alertname="DiskFull"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "runbook",
    "groupLabels": {"alertname": "DiskFull"},
    "commonLabels": {"alertname": "DiskFull", "severity": "critical"},
    "commonAnnotations": {"summary": "disk almost full"},
    "externalURL": "http://alertmanager.example:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "DiskFull", "severity": "critical", "instance": "db1:9100"},
            "annotations": {"summary": "disk almost full"},
            "startsAt": "2026-01-05T10:00:00.000Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example:9090/graph?g0.expr=disk",
            "fingerprint": "a1b2c3d4e5f60718",
        }
    ],
}


def _start(served: Served, user: str, runbook: str, **body: Any) -> str:
    reply = served.as_user(user).post("/api/runs", json={"runbook": runbook, **body})
    assert reply.status_code == 202, reply.text
    return str(reply.json()["run_id"])


def _events(served: Served, run_id: str) -> list[dict[str, Any]]:
    """Every event line of the run's SSE stream, until it ends."""
    out = []
    with served.as_user("vera").stream("GET", f"/api/runs/{run_id}/events") as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        for line in reply.iter_lines():
            if line.startswith("data: "):
                out.append(json.loads(line.removeprefix("data: ")))
    return out


def _in_background(work: Callable[[], Any]) -> Future[Any]:
    future: Future[Any] = Future()

    def target() -> None:
        try:
            future.set_result(work())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=target, daemon=True).start()
    return future


def test_tokens_and_rights(serve_factory: Callable[..., Served], tmp_path: Path) -> None:
    served = serve_factory({"sleepy": SLEEPY})
    with served.anonymous() as anon:
        assert anon.get("/api/healthz").json()["status"] == "ok"
        assert anon.get("/api/runs").status_code == 401
        bad = anon.get("/api/runs", headers={"Authorization": "Bearer not-a-token"})
        assert bad.status_code == 401
    vera = served.as_user("vera")
    assert [r["name"] for r in vera.get("/api/runbooks").json()] == ["sleepy"]
    refused = vera.post("/api/runs", json={"runbook": "sleepy"})
    assert refused.status_code == 403
    assert "vera" in refused.json()["detail"] and "start" in refused.json()["detail"]
    missing = served.as_user("alice").post("/api/runs", json={"runbook": "nope"})
    assert missing.status_code == 404
    failures = served.as_user("bob").get("/api/audit").json()
    assert any(row["action"] == "login failed" for row in failures)


def test_gate_approved_by_another_user(
    serve_factory: Callable[..., Served], tmp_path: Path
) -> None:
    marker = tmp_path / "restarted"
    served = serve_factory({"gated": GATED.format(marker=marker)})
    run_id = _start(served, "alice", "gated")
    stream = _in_background(lambda: _events(served, run_id))
    gate = served.wait_gate(run_id, "restart")
    assert gate["requested_by"] == "alice" and gate["approvers"] == ["@approver"]
    assert gate["kind"] == "confirm"
    own = served.as_user("alice").post(f"/api/runs/{run_id}/gates/restart", json={"approve": True})
    assert own.status_code == 403
    assert not marker.exists()
    vote = served.as_user("bob").post(
        f"/api/runs/{run_id}/gates/restart", json={"approve": True, "comment": "graphs fine"}
    )
    assert vote.status_code == 200, vote.text
    doc = served.wait_run(run_id)
    assert doc["exit_code"] == 0 and doc["state"] == "ok"
    assert marker.exists()
    assert doc["approvals"][0]["approved"] is True and "bob" in doc["approvals"][0]["by"]
    kinds = [e["event"] for e in stream.result(timeout=60)]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert "step_finished" in kinds
    listed = served.as_user("vera").get("/api/runs", params={"runbook": "gated"}).json()
    assert [(r["id"], r["operator"]) for r in listed] == [(run_id, "alice")]
    audit = served.as_user("vera").get("/api/audit", params={"run_id": run_id}).json()
    actions = {(row["user_name"], row["action"]) for row in audit}
    assert {("alice", "start"), ("bob", "approve")} <= actions
    assert next(r for r in audit if r["action"] == "approve")["detail"]["via"] == "api"


def test_own_gate_refused_and_a_decline_aborts(
    serve_factory: Callable[..., Served], tmp_path: Path
) -> None:
    served = serve_factory({"gated": GATED.format(marker=tmp_path / "restarted")})
    run_id = _start(served, "carol", "gated")  # carol may approve, but not her own run
    served.wait_gate(run_id, "restart")
    own = served.as_user("carol").post(f"/api/runs/{run_id}/gates/restart", json={"approve": True})
    assert own.status_code == 403
    assert "needs someone else" in own.json()["detail"]
    unknown = served.as_user("bob").post(f"/api/runs/{run_id}/gates/nope", json={"approve": True})
    assert unknown.status_code == 409
    declined = served.as_user("bob").post(
        f"/api/runs/{run_id}/gates/restart", json={"approve": False, "comment": "not now"}
    )
    assert declined.status_code == 200
    assert declined.json()["gates"][0]["decision"] == "declined"
    doc = served.wait_run(run_id)
    assert doc["exit_code"] == 4 and doc["state"] == "aborted"
    assert not (tmp_path / "restarted").exists()
    assert served.as_user("vera").post(f"/api/runs/{run_id}/resume").status_code == 403
    resumed = served.as_user("alice").post(f"/api/runs/{run_id}/resume")
    assert resumed.status_code == 202, resumed.text
    again = resumed.json()["run_id"]
    served.wait_gate(again, "restart")
    served.as_user("carol").post(f"/api/runs/{again}/gates/restart", json={"approve": True})
    doc = served.wait_run(again)
    assert doc["exit_code"] == 0 and (tmp_path / "restarted").exists()


def test_cancel_kills_a_long_step(serve_factory: Callable[..., Served]) -> None:
    served = serve_factory({"sleepy": SLEEPY})
    run_id = _start(served, "alice", "sleepy")
    seen: list[dict[str, Any]] = []
    with served.as_user("vera").stream("GET", f"/api/runs/{run_id}/events") as reply:
        for line in reply.iter_lines():
            if not line.startswith("data: "):
                continue
            seen.append(json.loads(line.removeprefix("data: ")))
            if seen[-1]["event"] == "step_started":
                refused = served.as_user("bob").post(f"/api/runs/{run_id}/cancel")
                assert refused.status_code == 403  # an approver has no cancel right
                cancel = served.as_user("alice").post(f"/api/runs/{run_id}/cancel")
                assert cancel.status_code == 200 and cancel.json()["cancelled"] is True
    assert seen[-1]["event"] == "run_finished"
    doc = served.wait_run(run_id)
    assert doc["exit_code"] == 4 and doc["state"] == "aborted"
    assert "cancelled by alice" in (doc["aborted"] or "")
    audit = served.as_user("vera").get("/api/audit", params={"run_id": run_id}).json()
    assert ("alice", "cancel") in {(r["user_name"], r["action"]) for r in audit}


def test_secret_params_only_when_the_config_allows(
    serve_factory: Callable[..., Served],
) -> None:
    served = serve_factory(
        {"locked": SECRET.format(name="locked"), "open": SECRET.format(name="open")},
        secret_params_from_request={"open": ["token"]},
    )
    alice = served.as_user("alice")
    refused = alice.post("/api/runs", json={"runbook": "locked", "params": {"token": "s3cr3t-x"}})
    assert refused.status_code == 400
    assert "secret_params_from_request.locked" in refused.json()["detail"]
    assert alice.get("/api/runs").json() == []
    run_id = _start(served, "alice", "open", params={"token": "s3cr3t-x"})
    doc = served.wait_run(run_id)
    assert doc["exit_code"] == 0
    assert "s3cr3t-x" not in json.dumps(doc)
    assert "s3cr3t-x" not in json.dumps(_events(served, run_id))


def test_manual_step_acknowledged_through_the_api(serve_factory: Callable[..., Served]) -> None:
    served = serve_factory({"by-hand": MANUAL})
    run_id = _start(served, "alice", "by-hand")
    gate = served.wait_gate(run_id, "swap")
    assert gate["kind"] == "manual" and "rack 4" in gate["prompt"]
    viewer = served.as_user("vera").post(f"/api/runs/{run_id}/manual/swap", json={"done": True})
    assert viewer.status_code == 403
    wrong = served.as_user("bob").post(f"/api/runs/{run_id}/gates/swap", json={"approve": True})
    assert wrong.status_code == 409 and "manual" in wrong.json()["detail"]
    done = served.as_user("carol").post(f"/api/runs/{run_id}/manual/swap", json={"done": True})
    assert done.status_code == 200, done.text
    doc = served.wait_run(run_id)
    assert doc["exit_code"] == 0
    steps = {s["id"]: s for s in doc["hosts"]["localhost"]["steps"]}
    assert steps["after"]["state"] == "ok"


def test_alertmanager_group_starts_one_run(serve_factory: Callable[..., Served]) -> None:
    served = serve_factory({"disk-full": DISK}, webhooks=[RULE])
    hook = served.as_user("alice")
    first = hook.post("/hooks/alertmanager", json=ALERTMANAGER)
    assert first.status_code == 200, first.text
    [started] = first.json()["runs"]
    assert started["status"] == "started"
    again = hook.post("/hooks/alertmanager", json=ALERTMANAGER)  # the repeat_interval resend
    assert again.json()["runs"][0] == {**started, "status": "already_running",
                                       "message": "one run per alert group while it fires"}  # fmt: skip
    doc = served.wait_run(started["run_id"])
    assert doc["exit_code"] == 0
    out = doc["hosts"]["localhost"]["steps"][0]["data"]["stdout"]
    assert "cleaning db1:9100" in out
    runs = served.as_user("vera").get("/api/runs", params={"runbook": "disk-full"}).json()
    assert [r["operator"] for r in runs] == ["alertmanager:runbook"]
    resolved = copy.deepcopy(ALERTMANAGER)
    resolved["status"] = resolved["alerts"][0]["status"] = "resolved"
    done = hook.post("/hooks/alertmanager", json=resolved).json()["runs"][0]
    assert done["status"] == "resolved" and done["run_id"] == started["run_id"]
    audit = served.as_user("vera").get("/api/audit", params={"run_id": started["run_id"]}).json()
    assert {"webhook start", "alert resolved"} <= {r["action"] for r in audit}
    viewer = served.as_user("vera").post("/hooks/alertmanager", json=ALERTMANAGER)
    assert viewer.status_code == 403


def test_config_refuses_a_rule_for_a_runbook_without_webhook(tmp_path: Path) -> None:
    from tests.fixtures.serve import write_config

    rule = {**RULE, "runbook": "no-hooks"}
    path, _ = write_config(tmp_path, {"no-hooks": NOT_WEBHOOK}, webhooks=[rule])
    result = cli("serve", "--config", str(path))
    assert result.exit_code == 65
    assert "webhooks[0].runbook" in result.output and "webhook: true" in result.output
    path.write_text(path.read_text() + "\nlisten: {port: 99999}\n")
    assert "listen.port" in cli("serve", "--config", str(path)).output


def test_serve_needs_the_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fixtures.serve import write_config

    monkeypatch.setenv("RUNBOOK_SERVE_CONFIG", "unset-after-this-test")

    path, _ = write_config(tmp_path, {"disk-full": DISK})
    result = cli("serve", "--config", str(path), env={"RUNBOOK_HISTORY": "off"})
    assert result.exit_code == 64 and "history" in result.output


def test_no_endpoint_answers_with_a_server_error(serve_factory: Callable[..., Served]) -> None:
    """schemathesis generates requests for every operation of /openapi.json;
    none may be answered with a 5xx. Driven through hypothesis directly rather
    than schemathesis's pytest plugin, which newer pytest releases break."""
    from schemathesis.checks import not_a_server_error

    from tests.fixtures.serve import token_of

    served = serve_factory({"disk-full": DISK, "sleepy": SLEEPY}, webhooks=[RULE])
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
    headers = {"Authorization": f"Bearer {token_of('carol')}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12, [op.label for op in operations]
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=15, deadline=None, database=None,
            suppress_health_check=list(HealthCheck),
        )  # fmt: skip
        def no_server_error(case: Any) -> None:
            reply = case.call(headers=headers)
            case.validate_response(reply, checks=[not_a_server_error])

        no_server_error()


# Grafana's unified-alerting webhook body (contact point "webhook"), as its docs show it.
GRAFANA = {
    "receiver": "runbook",
    "status": "firing",
    "orgId": 1,
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "DiskFull", "grafana_folder": "infra", "instance": "db2:9100"},
            "annotations": {"summary": "disk almost full"},
            "startsAt": "2026-01-05T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://grafana.example/alerting/grafana/abc/view",
            "fingerprint": "57c6d9296de2ad39",
            "silenceURL": "http://grafana.example/alerting/silence/new",
            "dashboardURL": "",
            "panelURL": "",
            "values": {"B": 97.5},
            "valueString": "[ var='B' labels={instance=db2:9100} value=97.5 ]",
        }
    ],
    "groupLabels": {"alertname": "DiskFull", "grafana_folder": "infra"},
    "commonLabels": {"alertname": "DiskFull", "grafana_folder": "infra", "instance": "db2:9100"},
    "commonAnnotations": {"summary": "disk almost full"},
    "externalURL": "http://grafana.example/",
    "version": "1",
    "groupKey": '{}/{__grafana_autogenerated__="true"}:{alertname="DiskFull"}',
    "truncatedAlerts": 0,
    "title": "[FIRING:1] DiskFull infra (db2:9100)",
    "state": "alerting",
    "message": "**Firing**\n\nValue: B=97.5",
}


def test_grafana_alert_starts_one_run(serve_factory: Callable[..., Served]) -> None:
    served = serve_factory({"disk-full": DISK}, webhooks=[{**RULE, "source": "grafana"}])
    hook = served.as_user("alice")
    first = hook.post("/hooks/grafana", json=GRAFANA)
    assert first.status_code == 200, first.text
    [started] = first.json()["runs"]
    assert started["status"] == "started"
    assert hook.post("/hooks/grafana", json=GRAFANA).json()["runs"][0]["status"] == (
        "already_running"
    )
    doc = served.wait_run(started["run_id"])
    assert "cleaning db2:9100" in doc["hosts"]["localhost"]["steps"][0]["data"]["stdout"]
    # A rule for Grafana does not answer Alertmanager's endpoint, and the reverse.
    other = hook.post("/hooks/alertmanager", json=ALERTMANAGER).json()["runs"]
    assert other == []


INVENTORY = """
hosts:
  staging1: {connection: local}
  prod1: {connection: local}
groups:
  staging: {hosts: {staging1: {}}}
  prod: {hosts: {prod1: {}}}
"""

EVERYWHERE = """
runbook: everywhere
webhook: true
params:
  instance: {type: str, default: x}
steps:
  - name: Where
    id: where
    shell: echo "on {{ host.name }}"
"""


def test_a_request_narrows_the_servers_limit_and_never_widens_it(
    serve_factory: Callable[..., Served], tmp_path: Path
) -> None:
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(INVENTORY)
    served = serve_factory({"everywhere": EVERYWHERE}, inventory=str(inventory), limit="staging")
    alice = served.as_user("alice")
    outside = alice.post("/api/runs", json={"runbook": "everywhere", "limit": "prod1"})
    assert outside.status_code == 400 and "`staging:&prod1` matches no host" in outside.text
    inside = _start(served, "alice", "everywhere", limit="staging1")
    assert list(served.wait_run(inside)["hosts"]) == ["staging1"]


def test_resume_only_runs_this_servers_runbooks(
    serve_factory: Callable[..., Served], tmp_path: Path
) -> None:
    served = serve_factory({"disk-full": DISK})
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text("runbook: elsewhere\nsteps:\n  - name: Fail\n    shell: exit 1\n")
    assert cli("run", str(elsewhere)).exit_code == 3
    (row,) = served.as_user("vera").get("/api/runs").json()
    refused = served.as_user("alice").post(f"/api/runs/{row['id']}/resume")
    assert refused.status_code == 404 and "not a runbook of this server" in refused.text


def test_an_alert_no_longer_starts_a_runbook_that_dropped_webhook_true(
    serve_factory: Callable[..., Served],
) -> None:
    served = serve_factory({"disk-full": DISK}, webhooks=[RULE])
    path = served.runbooks / "disk-full.yaml"
    path.write_text(path.read_text().replace("webhook: true\n", ""))
    (reply,) = served.as_user("alice").post("/hooks/alertmanager", json=ALERTMANAGER).json()["runs"]
    assert reply["status"] == "error" and "no longer says `webhook: true`" in reply["message"]
    assert served.as_user("vera").get("/api/runs").json() == []


def test_the_same_alert_sent_at_once_starts_one_run(serve_factory: Callable[..., Served]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from tests.fixtures.serve import token_of

    served = serve_factory({"disk-full": DISK}, webhooks=[RULE])

    def post(_: int) -> str:
        with httpx.Client(base_url=served.url, timeout=30) as client:
            reply = client.post(
                "/hooks/alertmanager",
                json=ALERTMANAGER,
                headers={"Authorization": f"Bearer {token_of('alice')}"},
            )
            return str(reply.json()["runs"][0]["status"])

    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(post, range(6)))
    assert sorted(statuses) == ["already_running"] * 5 + ["started"]
    assert len(served.as_user("vera").get("/api/runs").json()) == 1

"""`notify:` against a real HTTP receiver in a thread: the webhook, Slack and
PagerDuty payloads a run's end sends, filtered by `events`, with secrets masked
(but PagerDuty's routing key sent), a failing endpoint recorded and never the
run's outcome, the approval notice, and bad targets refused before any step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.execution.approvals import Operator
from engine.notify import Notifier, Target
from engine.redaction import Redactor
from tests.fixtures.receiver import Receiver
from tests.helpers import cli, write

INVENTORY = """
hosts:
  web1: {connection: local, address: 127.0.0.1, vars: {depth: 2}}
  web2: {connection: local, address: 127.0.0.1, vars: {depth: 9}}
"""

TOKEN = "tok-Notify-5ecret-77"


def _runbook(tmp_path: Path, notify: str) -> Path:
    return write(
        tmp_path,
        f"""
runbook: queue-check
notify:
{notify}
steps:
  - name: Queue depth
    id: depth
    shell: "echo {{{{ host.vars.depth }}}}"
    thresholds:
      queue_depth: {{value: result.stdout | int, warn: "> 3", critical: "> 5"}}
  - name: Token check
    when: host.name == 'web2'
    assert:
      that: ["false"]
      message: "token {{{{ secret('API_TOKEN') }}}} refused"
    ignore_errors: true
""",
    )


def _run(tmp_path: Path, rb: Path, *args: str) -> int:
    inv = write(tmp_path, INVENTORY, "inventory.yaml")
    return cli("run", rb, "-i", inv, *args).exit_code


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_TOKEN", TOKEN)
    monkeypatch.setenv("PD_KEY", "pd-routing-key-123")


def test_webhook_and_slack_say_how_the_run_ended(tmp_path: Path, receiver: Receiver) -> None:
    rb = _runbook(
        tmp_path,
        f"""  - events: [critical, failed]
    webhook: {receiver.url}/hook
  - events: [critical]
    slack: "{receiver.url}/slack"
  - events: [ok]
    webhook: {receiver.url}/only-ok""",
    )
    assert _run(tmp_path, rb) == 2
    [hook] = receiver.bodies("/hook")
    assert hook["event"] == "run_finished" and hook["runbook"] == "queue-check"
    assert hook["state"] == "critical" and hook["exit_code"] == 2
    assert hook["hosts"]["web1"] == {"state": "ok", "reason": ""}
    assert hook["worst"] == [{"host": "web2", "state": "critical", "reason": "Queue depth"}]
    [slack] = receiver.bodies("/slack")
    assert slack == {"text": hook["text"]}
    assert slack["text"].startswith(f"runbook queue-check: run {hook['run_id']} critical (exit 2)")
    assert "web2 critical: Queue depth" in slack["text"]
    assert receiver.bodies("/only-ok") == []  # the run was not ok
    assert TOKEN not in json.dumps(receiver.posts)  # the secret never left
    log = cli("history", hook["run_id"]).output
    assert "notify[0] webhook (run critical) delivered" in log


def test_pagerduty_triggers_per_host_and_resolves_the_ok_ones(
    tmp_path: Path, receiver: Receiver
) -> None:
    rb = _runbook(
        tmp_path,
        f"""  - events: [critical, failed, ok]
    pagerduty:
      routing_key: "{{{{ secret('PD_KEY') }}}}"
      url: {receiver.url}/v2/enqueue""",
    )
    assert _run(tmp_path, rb) == 2
    events = {e["dedup_key"]: e for e in receiver.bodies("/v2/enqueue")}
    trigger, resolve = events["queue-check/web2"], events["queue-check/web1"]
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["routing_key"] == "pd-routing-key-123"  # PagerDuty's credential is sent
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["source"] == "web2"
    assert trigger["payload"]["summary"] == "queue-check on web2: critical: Queue depth"
    assert "payload" not in resolve
    # Anywhere else the key is a secret like any other: masked in the history.
    history = cli("history", "--format", "json").output
    assert "pd-routing-key-123" not in history


def test_a_failing_endpoint_is_recorded_and_changes_nothing(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.status = 500
    rb = _runbook(tmp_path, f"  - events: [always]\n    webhook: {receiver.url}/hook")
    assert _run(tmp_path, rb) == 2  # the run's own outcome
    assert len(receiver.bodies("/hook")) == 2  # tried, and tried once more
    run_id = json.loads(cli("history", "--format", "json").stdout)[0]["id"]
    assert "not delivered: HTTP 500 Internal Server Error" in cli("history", run_id).output


def test_a_dry_run_pages_nobody(tmp_path: Path, receiver: Receiver) -> None:
    rb = _runbook(tmp_path, f"  - events: [always]\n    webhook: {receiver.url}/hook")
    inv = write(tmp_path, INVENTORY, "inventory.yaml")
    res = cli("run", rb, "-i", inv, "--dry-run")
    assert res.exit_code == 0 and "notify: nothing sent (dry run)" in res.output
    assert receiver.posts == []


def test_an_unreachable_endpoint_is_said_on_the_console(tmp_path: Path) -> None:
    rb = _runbook(
        tmp_path, "  - events: [always]\n    webhook: http://127.0.0.1:9/x\n    timeout: 2"
    )
    inv = write(tmp_path, INVENTORY, "inventory.yaml")
    res = cli("run", rb, "-i", inv)
    assert res.exit_code == 2
    assert "notify[0] webhook (run critical) not delivered: ConnectError" in res.output


def test_a_bad_target_is_refused_before_any_step(tmp_path: Path) -> None:
    both = write(
        tmp_path,
        "runbook: x\nnotify:\n  - {slack: 'http://a', webhook: 'http://b'}\n"
        "steps:\n  - {name: touch, shell: 'touch ran'}\n",
        "both.yaml",
    )
    res = cli("run", both)
    assert res.exit_code == 65 and "exactly one of webhook, slack or pagerduty" in res.output
    missing = write(
        tmp_path,
        "runbook: y\nnotify:\n  - {slack: \"{{ secret('NO_SUCH_HOOK') }}\"}\n"
        "steps:\n  - {name: touch, shell: 'touch ran'}\n",
        "missing.yaml",
    )
    res = cli("run", missing)
    assert res.exit_code == 64 and "notify[0].slack:" in res.output
    assert "secret 'NO_SUCH_HOOK' is not set" in res.output
    assert not Path("ran").exists() and not (tmp_path / "ran").exists()


def test_a_prompt_waiting_at_the_terminal_is_announced(receiver: Receiver) -> None:
    """The operator's hook fires as the question is asked (a person must come),
    and the notice goes out in the background, the prompt not held up."""
    said: list[tuple[str, str]] = []
    target = Target(0, "slack", f"{receiver.url}/slack", frozenset({"approval"}), 5)
    notifier = Notifier([target], "failover", Redactor(), lambda lvl, msg: said.append((lvl, msg)))
    asked: list[str] = []
    operator = Operator(
        "erin",
        interactive=True,
        ask=lambda question, choices: asked.append(question) or "yes",
        on_wait=lambda host, step, prompt: notifier.approval_waiting("run-1", host, step, prompt),
    )
    approved, by = operator.confirm("db1", "promote", "Promote the replica?")
    assert approved and by == "erin" and asked == ["[db1] Promote the replica?"]
    receiver.wait_for(1)
    [notice] = receiver.bodies("/slack")
    assert notice["text"] == (
        "runbook failover: run run-1 waits for approval on db1 at promote: Promote the replica?"
    )

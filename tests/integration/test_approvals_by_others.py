"""Gates answered by others: `approvers:`, `min_approvals`, `approval_timeout`,
`self_approval`, and `runbook approve RUN_ID STEP` from another terminal.

The run is a real `runbook run` process waiting at its gate; the votes are
given by `runbook approve` as other users, through the shared history (SQLite
here, PostgreSQL in one test), as a team on several control nodes would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from tests.fixtures.history import engine_env
from tests.helpers import cli, write

GATED = """
runbook: gated-restart
steps:
  - name: Restart
    id: restart
    confirm: Restart the app on {{{{ host.name }}}}?
    approvers: {approvers}
    min_approvals: {needed}
    approval_timeout: {timeout}
    shell: touch {marker}
  - name: After
    shell: echo after
"""


def _spawn(rb: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "engine", "run", str(rb), "--format", "json", *args],
        cwd=rb.parent,
        env=engine_env(RUNBOOK_OPERATOR="alice", **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _waiting_gate(proc: subprocess.Popen[str], env: dict[str, str] | None = None) -> str:
    """The run's id once its gate is written to the history."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        runs = json.loads(cli("history", "--format", "json", env=env).stdout)
        if runs:
            listed = cli("approve", runs[0]["id"], env=env)
            if "restart" in listed.output:
                return str(runs[0]["id"])
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the gate never showed up in the history")


def _vote(run_id: str, user: str, *args: str, env: dict[str, str] | None = None) -> Result:
    return cli("approve", run_id, *args, env={"RUNBOOK_OPERATOR": user, **(env or {})})


def test_two_others_must_approve_and_the_runner_cannot(tmp_path: Path) -> None:
    marker = tmp_path / "restarted"
    rb = write(tmp_path, GATED.format(approvers="[bob, carol, dave]", needed=2,
                                      timeout="2m", marker=marker))  # fmt: skip
    proc = _spawn(rb)
    run_id = _waiting_gate(proc)
    listed = cli("approve", run_id)
    assert "restart\tlocalhost\t0/2 by bob, carol, dave\tRestart the app on localhost?" in (
        listed.output
    )
    own = _vote(run_id, "alice", "restart")
    assert own.exit_code == 64
    assert "needs someone else" in own.output
    stranger = _vote(run_id, "mallory", "restart")
    assert stranger.exit_code == 64
    assert "not among the approvers" in stranger.output
    first = _vote(run_id, "bob", "restart", "--comment", "graphs look fine")
    assert "waiting (1 of 2 approval(s))" in first.output
    assert not marker.exists()
    second = _vote(run_id, "carol", "restart")
    assert "approved (2 of 2" in second.output
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, (out, err)
    assert marker.exists()
    doc = json.loads(out)
    (approval,) = doc["approvals"]
    assert approval["approved"] and approval["by"].startswith("bob, carol")
    history = json.loads(cli("history", run_id, "--format", "events").stdout)
    kinds = [e["kind"] for e in history["events"]]
    assert "approval" in kinds


def test_one_decline_closes_the_gate_and_the_run_is_aborted(tmp_path: Path) -> None:
    marker = tmp_path / "restarted"
    rb = write(tmp_path, GATED.format(approvers="[bob, carol]", needed=1, timeout="2m",
                                      marker=marker))  # fmt: skip
    proc = _spawn(rb)
    run_id = _waiting_gate(proc)
    assert _vote(run_id, "bob", "restart", "--decline").exit_code == 0
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 4, (out, err)
    assert not marker.exists()
    steps = {s["id"]: s for s in json.loads(out)["hosts"]["localhost"]["steps"]}
    assert steps["restart"]["state"] == "aborted"
    assert "bob (declined)" in json.dumps(json.loads(out)["approvals"])


def test_nobody_in_time_declines_the_gate(tmp_path: Path) -> None:
    rb = write(tmp_path, GATED.format(approvers="[bob]", needed=1, timeout="1s",
                                      marker=tmp_path / "m"))  # fmt: skip
    proc = _spawn(rb)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 4, (out, err)
    assert "nobody in time: 0 of 1 approval(s) before the approval timeout" in out
    assert not (tmp_path / "m").exists()


def test_roles_come_from_the_serve_config(tmp_path: Path) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text("users:\n  dave: {roles: [approver, dba]}\n  erin: {roles: [approver]}\n")
    env = {"RUNBOOK_SERVE_CONFIG": str(config)}
    rb = write(tmp_path, GATED.format(approvers="['@dba']", needed=1, timeout="2m",
                                      marker=tmp_path / "m"))  # fmt: skip
    proc = _spawn(rb, **env)
    run_id = _waiting_gate(proc, env)
    refused = _vote(run_id, "erin", "restart", env=env)
    assert refused.exit_code == 64
    assert "not among the approvers of restart: @dba" in refused.output
    assert _vote(run_id, "dave", "restart", env=env).exit_code == 0
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, (out, err)


def test_ctrl_c_while_waiting_stops_the_wait(tmp_path: Path) -> None:
    rb = write(tmp_path, GATED.format(approvers="[bob]", needed=1, timeout="10m",
                                      marker=tmp_path / "m"))  # fmt: skip
    proc = _spawn(rb)
    run_id = _waiting_gate(proc)
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 4, (out, err)
    assert "the run stopped while waiting" in out
    assert "no gate waits" in cli("approve", run_id).output


def test_without_a_history_nobody_can_answer(tmp_path: Path) -> None:
    rb = write(tmp_path, GATED.format(approvers="[bob]", needed=1, timeout="10m",
                                      marker=tmp_path / "m"))  # fmt: skip
    proc = _spawn(rb, RUNBOOK_HISTORY="off")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 4, (out, err)
    assert "approvers vote through the run history, which is off" in out


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ("approvers: [bob]", "only for a step with `confirm:`"),
        ("confirm: ok?\n    approvers: [bob, carol]\n    min_approvals: 3", "can never be met"),
        ("confirm: ok?\n    min_approvals: 0", "min_approvals"),
    ],
)
def test_approval_fields_are_checked_before_anything_runs(
    tmp_path: Path, fields: str, message: str
) -> None:
    rb = write(
        tmp_path,
        f"""
runbook: bad-gate
steps:
  - name: Restart
    {fields}
    shell: touch {tmp_path}/m
""",
    )
    result = cli("run", str(rb))
    assert result.exit_code == 65
    assert message in result.output and "rb.yaml:" in result.output
    assert not (tmp_path / "m").exists()


def test_votes_meet_in_a_shared_postgresql_history(tmp_path: Path, pg_history_dsn: str) -> None:
    env = {"RUNBOOK_HISTORY": pg_history_dsn}
    marker = tmp_path / "restarted"
    rb = write(tmp_path, GATED.format(approvers="[bob]", needed=1, timeout="2m",
                                      marker=marker))  # fmt: skip
    proc = _spawn(rb, **env)
    run_id = _waiting_gate(proc, env)
    assert _vote(run_id, "bob", "restart", env=env).exit_code == 0
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, (out, err)
    assert marker.exists()


SECRET_GATE = """
runbook: secret-gate
params:
  password: {type: str, secret: true}
steps:
  - name: Rotate
    id: rotate
    confirm: "Rotate to {{ params.password }} on {{ host.name }}?"
    approvers: [bob]
    shell: echo rotated
"""


def test_a_secret_in_the_prompt_never_reaches_the_gates_table(tmp_path: Path) -> None:
    from engine.history.location import open_store

    secret = "gate-pw-Zq81x"
    rb = write(tmp_path, SECRET_GATE)
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", str(rb), "-p", f"password={secret}"],
        cwd=tmp_path,
        env=engine_env(RUNBOOK_OPERATOR="alice"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while "rotate" not in (listed := _listing()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    assert "Rotate to *** on localhost?" in listed and secret not in listed
    run_id = json.loads(cli("history", "--format", "json").stdout)[0]["id"]
    assert _vote(run_id, "bob", "rotate", "--comment", "rotated by the book").exit_code == 0
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, (out, err)
    store = open_store()
    try:
        dumped = json.dumps(store.dump(), default=str)
    finally:
        store.close()
    assert "Rotate to ***" in dumped and "rotated by the book" in dumped
    assert secret not in dumped + out + err


def _listing() -> str:
    runs = json.loads(cli("history", "--format", "json").stdout)
    return cli("approve", runs[0]["id"]).output if runs else ""


def test_a_gate_waiting_for_others_is_announced_by_notify(tmp_path: Path, receiver: Any) -> None:
    rb = write(
        tmp_path,
        f"""
runbook: announced-gate
notify:
  - events: [approval]
    webhook: {receiver.url}/hook
steps:
  - name: Restart
    id: restart
    confirm: Restart the app?
    approvers: [bob]
    shell: echo restarted
""",
    )
    proc = _spawn(rb)
    run_id = _waiting_gate(proc)
    receiver.wait_for(1)
    (body,) = receiver.bodies("/hook")
    assert json.dumps(body).count("restart") >= 1 and run_id in json.dumps(body)
    assert _vote(run_id, "bob", "restart").exit_code == 0
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, (out, err)


def test_the_runners_yes_is_not_a_vote_where_they_may_not_answer(tmp_path: Path) -> None:
    marker = tmp_path / "restarted"
    text = GATED.format(approvers="[bob]", needed=1, timeout="2m", marker=marker)
    rb = write(tmp_path, text.replace("    min_approvals: 1\n", "    self_approval: true\n"))
    proc = _spawn(rb, "--yes")
    run_id = _waiting_gate(proc)  # alice's --yes did not open it: she is not an approver
    assert not marker.exists()
    assert _vote(run_id, "bob", "restart").exit_code == 0
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, (out, err)


def test_with_a_serve_config_only_its_users_with_the_right_may_vote(tmp_path: Path) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text("users:\n  bob: {roles: [approver]}\n  vera: {roles: [viewer]}\n")
    env = {"RUNBOOK_SERVE_CONFIG": str(config)}
    rb = write(tmp_path, GATED.format(approvers="[bob, vera, mallory]", needed=1,
                                      timeout="2m", marker=tmp_path / "m"))  # fmt: skip
    proc = _spawn(rb, **env)
    run_id = _waiting_gate(proc, env)
    stranger = _vote(run_id, "mallory", "restart", env=env)
    assert stranger.exit_code == 64 and "not a user of" in stranger.output
    viewer = _vote(run_id, "vera", "restart", env=env)
    assert viewer.exit_code == 64 and "may not approve" in viewer.output
    assert _vote(run_id, "bob", "restart", env=env).exit_code == 0
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, (out, err)

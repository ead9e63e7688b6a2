"""Approvals: confirm: and manual steps, with and without a terminal, recorded in history
with the operator's identity."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.history import engine_env
from tests.helpers import cli, write

CONFIRM = """
runbook: approve-demo
steps:
  - name: look
    shell: "echo look >> counter"
  - name: drop slot
    id: drop_slot
    confirm: "Drop replication slot {{ 'slot_a' }}?"
    shell: "echo drop >> counter"
  - name: after
    shell: "echo after >> counter"
always:
  - name: cleanup
    shell: "echo cleanup >> counter"
"""


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNBOOK_OPERATOR", "carol")
    return tmp_path


def _last_run() -> dict:
    runs = json.loads(cli("history", "--format", "json", "--limit", "1").stdout)
    return json.loads(cli("history", runs[0]["id"], "--format", "events").stdout)


def _approvals(detail: dict) -> list[dict]:
    return [
        e["payload"] | {"step": e["step_id"]} for e in detail["events"] if e["kind"] == "approval"
    ]


def test_declined_without_a_terminal_aborts_the_host_and_is_recorded(in_tmp: Path) -> None:
    rb = write(in_tmp, CONFIRM)
    res = cli("run", rb)
    assert res.exit_code == 4, res.output
    assert "declined" in res.stdout
    # The gated step and everything after it did not run; `always` cleanup did.
    assert (in_tmp / "counter").read_text().split() == ["look", "cleanup"]
    detail = _last_run()
    assert detail["run"]["state"] == "aborted" and detail["run"]["exit_code"] == 4
    [approval] = _approvals(detail)
    assert approval["step"] == "drop_slot" and approval["approved"] is False
    assert approval["by"].startswith("carol") and "--approve drop_slot" in approval["by"]
    assert approval["prompt"] == "Drop replication slot slot_a?"
    steps = {s["id"]: s for s in detail["steps"]}
    assert steps["drop_slot"]["state"] == "aborted"
    assert "after" not in steps


def test_approve_one_step_by_id_records_who(in_tmp: Path) -> None:
    rb = write(in_tmp, CONFIRM)
    res = cli("run", rb, "--approve", "drop_slot", "--operator", "dave")
    assert res.exit_code == 0, res.output
    assert (in_tmp / "counter").read_text().split() == ["look", "drop", "after", "cleanup"]
    detail = _last_run()
    assert detail["run"]["operator"] == "dave"
    [approval] = _approvals(detail)
    assert approval["approved"] is True and approval["by"] == "dave (--approve drop_slot)"
    steps = {s["id"]: s for s in detail["steps"]}
    assert steps["drop_slot"]["approved_by"] == "dave (--approve drop_slot)"


def test_yes_approves_everything(in_tmp: Path) -> None:
    rb = write(in_tmp, CONFIRM)
    assert cli("run", rb, "--yes").exit_code == 0
    [approval] = _approvals(_last_run())
    assert approval["approved"] is True and approval["by"] == "carol (--yes)"


def test_approve_an_unknown_step_is_a_usage_error(in_tmp: Path) -> None:
    rb = write(in_tmp, CONFIRM)
    res = cli("run", rb, "--approve", "drop_slott")
    assert res.exit_code == 64 and "no such step id" in res.output
    assert not (in_tmp / "counter").exists()


MANUAL = """
runbook: manual-demo
steps:
  - name: fail over
    id: failover
    manual: |
      1. Open the console
      2. Promote the replica
  - name: verify
    shell: "echo verify >> counter"
"""


def test_manual_step_without_terminal_aborts(in_tmp: Path) -> None:
    rb = write(in_tmp, MANUAL)
    res = cli("run", rb)
    assert res.exit_code == 4, res.output
    assert "--approve failover" in res.output
    assert not (in_tmp / "counter").exists()
    assert _last_run()["run"]["state"] == "aborted"


def test_manual_step_pre_acknowledged(in_tmp: Path) -> None:
    rb = write(in_tmp, MANUAL)
    res = cli("run", rb, "--approve", "failover")
    assert res.exit_code == 0, res.output
    # The instructions are shown and recorded even when acknowledged ahead.
    assert "Promote the replica" in res.stderr
    steps = {s["id"]: s for s in _last_run()["steps"]}
    assert steps["failover"]["data"]["acknowledged_by"] == "carol (--approve failover)"
    assert "Promote the replica" in steps["failover"]["data"]["instructions"]
    assert (in_tmp / "counter").read_text().split() == ["verify"]


def test_yes_does_not_acknowledge_a_manual_step(in_tmp: Path) -> None:
    """--yes approves confirm: gates; work a person must do is named on its own."""
    rb = write(in_tmp, MANUAL)
    res = cli("run", rb, "--yes")
    assert res.exit_code == 4, res.output
    assert "--yes does not acknowledge manual steps" in res.output
    assert "Promote the replica" in res.stderr  # shown, though not acknowledged
    assert not (in_tmp / "counter").exists()


def test_step_mode_without_a_terminal_refuses_to_start(in_tmp: Path) -> None:
    # It used to skip every step nobody was asked about and exit 0.
    rb = write(in_tmp, CONFIRM)
    res = cli("run", rb, "--step", "--yes")
    assert res.exit_code == 64, res.output
    assert "--step asks before every step: it needs a terminal" in res.stderr
    assert not (in_tmp / "counter").exists()


EOF = "\x04"  # Ctrl-D: a terminal's end of input


def _run_on_terminal(rb: Path, answers: dict[str, str], *args: str) -> tuple[int, str]:
    """Run the engine with stdin/stderr on a pseudo-terminal, answering prompts
    (EOF: type Ctrl-D instead of an answer)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", str(rb), *args],
        cwd=rb.parent,
        env=engine_env(RUNBOOK_OPERATOR="erin", TERM="dumb"),
        stdin=slave,
        stderr=slave,
        stdout=subprocess.PIPE,
        text=True,
    )
    os.close(slave)
    seen = ""
    pending = dict(answers)
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                seen += os.read(master, 4096).decode(errors="replace")
            except OSError:
                break
        for prompt, answer in list(pending.items()):
            if prompt in seen:
                os.write(master, answer.encode() + (b"" if answer == EOF else b"\n"))
                del pending[prompt]
    out, _ = proc.communicate(timeout=30)
    os.close(master)
    assert not pending, f"prompts never shown: {list(pending)}; terminal showed: {seen!r}"
    return proc.returncode, out + seen


def test_confirm_on_a_terminal_yes(in_tmp: Path) -> None:
    rb = write(in_tmp, CONFIRM)
    code, text = _run_on_terminal(rb, {"Drop replication slot slot_a?": "yes"})
    assert code == 0, text
    assert (in_tmp / "counter").read_text().split() == ["look", "drop", "after", "cleanup"]
    [approval] = _approvals(_last_run())
    assert approval["approved"] is True and approval["by"] == "erin"


def test_confirm_on_a_terminal_no(in_tmp: Path) -> None:
    rb = write(in_tmp, CONFIRM)
    code, text = _run_on_terminal(rb, {"Drop replication slot slot_a?": "no"})
    assert code == 4, text
    [approval] = _approvals(_last_run())
    assert approval["approved"] is False and approval["by"] == "erin"


def test_manual_step_on_a_terminal_shows_instructions_and_waits(in_tmp: Path) -> None:
    rb = write(in_tmp, MANUAL)
    code, text = _run_on_terminal(rb, {"Done?": "done"})
    assert code == 0, text
    assert "Promote the replica" in text
    steps = {s["id"]: s for s in _last_run()["steps"]}
    assert steps["failover"]["data"]["acknowledged_by"] == "erin"


def test_confirm_accepts_y(in_tmp: Path) -> None:
    rb = write(in_tmp, CONFIRM)
    code, text = _run_on_terminal(rb, {"Drop replication slot slot_a? [yes/no]": "Y"})
    assert code == 0, text
    [approval] = _approvals(_last_run())
    assert approval["approved"] is True


def test_ctrl_d_at_a_confirm_is_a_decline(in_tmp: Path) -> None:
    # It used to be an engine crash: exit 70, the run in state `error`.
    rb = write(in_tmp, CONFIRM)
    code, text = _run_on_terminal(rb, {"Drop replication slot slot_a?": EOF})
    assert code == 4, text
    detail = _last_run()
    assert detail["run"]["state"] == "aborted"
    [approval] = _approvals(detail)
    assert approval["approved"] is False and "the terminal's input ended" in approval["by"]
    assert (in_tmp / "counter").read_text().split() == ["look", "cleanup"]


def test_ctrl_d_at_a_manual_step_aborts_and_can_be_resumed(in_tmp: Path) -> None:
    rb = write(in_tmp, MANUAL)
    code, text = _run_on_terminal(rb, {"Done?": EOF})
    assert code == 4, text
    detail = _last_run()
    steps = {s["id"]: s for s in detail["steps"]}
    assert steps["failover"]["state"] == "aborted"
    assert "not acknowledged" in (steps["failover"]["error"] or "")
    resumed = cli("resume", detail["run"]["id"], "--approve", "failover")
    assert resumed.exit_code == 0, resumed.output
    assert (in_tmp / "counter").read_text().split() == ["verify"]


def test_ctrl_d_at_a_step_prompt_aborts(in_tmp: Path) -> None:
    rb = write(in_tmp, CONFIRM)
    code, text = _run_on_terminal(
        rb, {"run step 'look'": "y", "run step 'drop_slot'": EOF}, "--step"
    )
    assert code == 4, text
    assert "the terminal's input ended" in text
    assert _last_run()["run"]["state"] == "aborted"
    # Nobody is left to ask: no later step runs unasked, cleanup included.
    assert (in_tmp / "counter").read_text().split() == ["look"]


def test_approve_names_a_gate_and_a_manual_step_inside_an_include(in_tmp: Path) -> None:
    """Recorded as `<include id>.<step id>`, approved by that name: a scheduled
    runbook that includes others (no terminal) is not stuck at their gates."""
    write(
        in_tmp,
        "runbook: inner\nsteps:\n"
        "  - {name: gate, confirm: go?, shell: 'echo gated >> counter'}\n"
        "  - {name: look, manual: look at it}\n",
        name="inner.yaml",
    )
    outer = write(in_tmp, "runbook: outer\nsteps:\n  - {name: prep, include: inner.yaml}\n")
    res = cli("run", outer, "--approve", "prep.gate", "--approve", "prep.look")
    assert res.exit_code == 0, res.output
    assert (in_tmp / "counter").read_text() == "gated\n"
    steps = {s["id"]: s for s in _last_run()["steps"]}
    assert steps["prep.look"]["data"]["acknowledged_by"] == "carol (--approve prep.look)"
    typo = cli("run", outer, "--approve", "prep.gat")
    assert typo.exit_code == 64 and "did you mean `prep.gate`" in typo.output

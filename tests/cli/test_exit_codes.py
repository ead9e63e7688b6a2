"""Every exit code (engine/exitcodes.py), each produced by a real runbook run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import cli, run_json, write

OK = """
runbook: exit-ok
steps:
  - name: fine
    shell: "true"
  - name: not needed
    when: false
    shell: "false"
"""

WARN = """
runbook: exit-warn
steps:
  - name: measure
    shell: echo 85
    thresholds:
      used: {value: result.stdout | int, warn: "> 80", critical: "> 90"}
"""

CRITICAL = """
runbook: exit-critical
steps:
  - name: measure
    shell: echo 95
    thresholds:
      used: {value: result.stdout | int, warn: "> 80", critical: "> 90"}
  - name: still runs after critical
    shell: "true"
"""

FAILED = """
runbook: exit-failed
steps:
  - name: broken
    shell: exit 7
  - name: never reached
    shell: "true"
"""

ABORTED = """
runbook: exit-aborted
steps:
  - name: dangerous
    confirm: "Really?"
    shell: "true"
"""

PARAMS = """
runbook: exit-usage
params:
  count: {type: int, default: 1}
steps:
  - name: fine
    shell: "true"
"""


@pytest.mark.parametrize(
    ("text", "code", "state"),
    [
        (OK, 0, "ok"),
        (WARN, 1, "warn"),
        (CRITICAL, 2, "critical"),
        (FAILED, 3, "failed"),
        (ABORTED, 4, "aborted"),
    ],
)
def test_run_exit_codes(tmp_path: Path, text: str, code: int, state: str) -> None:
    exit_code, doc = run_json(write(tmp_path, text))
    assert exit_code == code
    assert doc["state"] == state
    assert doc["exit_code"] == code


def test_critical_does_not_stop_later_steps(tmp_path: Path) -> None:
    _, doc = run_json(write(tmp_path, CRITICAL))
    steps = doc["hosts"]["localhost"]["steps"]
    assert [s["state"] for s in steps] == ["critical", "ok"]
    assert steps[0]["metrics"]["used"]["value"] == 95


def test_failed_step_stops_the_host(tmp_path: Path) -> None:
    _, doc = run_json(write(tmp_path, FAILED))
    steps = doc["hosts"]["localhost"]["steps"]
    assert [s["id"] for s in steps] == ["broken"]
    assert steps[0]["data"]["rc"] == 7
    assert "rc 7" in steps[0]["error"]


def test_unknown_param_is_usage_error(tmp_path: Path) -> None:
    result = cli("run", write(tmp_path, PARAMS), "-p", "cuont=3")
    assert result.exit_code == 64
    assert "unknown param 'cuont'" in result.stderr
    assert "did you mean `count`" in result.stderr


def test_bad_param_type_is_usage_error(tmp_path: Path) -> None:
    result = cli("run", write(tmp_path, PARAMS), "-p", "count=many")
    assert result.exit_code == 64
    assert "not a valid int" in result.stderr


def test_bad_flag_is_usage_error(tmp_path: Path) -> None:
    result = cli("run", write(tmp_path, OK), "--no-such-flag")
    assert result.exit_code == 64


def test_unknown_start_at_is_usage_error(tmp_path: Path) -> None:
    result = cli("run", write(tmp_path, FAILED), "--start-at", "neverr_reached")
    assert result.exit_code == 64
    assert "did you mean `never_reached`" in result.stderr


def test_invalid_runbook_exits_65(tmp_path: Path) -> None:
    result = cli("run", write(tmp_path, "runbook: x\nsteps: []\n"))
    assert result.exit_code == 65
    assert "nothing was executed" in result.stderr


def test_ignored_failure_does_not_count(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        runbook: ignored
        steps:
          - name: may fail
            shell: exit 1
            ignore_errors: true
          - name: goes on
            shell: "true"
        """,
    )
    code, doc = run_json(path)
    assert code == 0
    steps = doc["hosts"]["localhost"]["steps"]
    assert steps[0]["state"] == "failed" and steps[0]["ignored"] is True
    assert steps[1]["state"] == "ok"


BUGGY = """
runbook: buggy
params:
  token: {type: str, secret: true}
steps:
  - name: first
    log: "starting"
  - name: boom
    log: "this step's record hits the injected bug"
  - name: never
    log: "not reached"
"""


def test_an_engine_bug_exits_70_and_the_run_is_recorded_as_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python's own exit code for a crash is 1, which here means `warn`."""
    from engine.execution.executor import HostExecutor

    real = HostExecutor._record

    def buggy(self: HostExecutor, res: Any, depth: int = 0) -> Any:
        if res.step_id == "boom":  # stands in for a bug in the engine's own code
            raise RuntimeError(f"index out of range near {self.context['params']['token']}")
        return real(self, res, depth)

    monkeypatch.setattr(HostExecutor, "_record", buggy)
    res = cli("run", write(tmp_path, BUGGY), "-p", "token=tok-Secret-42", "--format", "json")
    assert res.exit_code == 70, res.output
    doc = json.loads(res.stdout)  # the report is still written, with the bug as its end
    assert doc["exit_code"] == 70 and doc["aborted"].startswith("internal error: RuntimeError")
    assert "internal error: RuntimeError: index out of range near ***" in res.stderr
    assert "a bug in the engine" in res.stderr
    assert "tok-Secret-42" not in res.output + res.stderr

    monkeypatch.setattr(HostExecutor, "_record", real)
    runs = json.loads(cli("history", "--format", "json").stdout)
    assert runs[0]["state"] == "error" and runs[0]["exit_code"] == 70  # resumable
    detail = cli("history", runs[0]["id"], "--format", "events").stdout
    assert "internal error: RuntimeError" in detail and "tok-Secret-42" not in detail
    assert [s["id"] for s in json.loads(detail)["steps"]] == ["first"]
    resumed = cli("resume", runs[0]["id"], "-p", "token=tok-Secret-42")  # the bug fixed
    assert resumed.exit_code == 0, resumed.output
    assert "1 finished step result(s)" in resumed.stderr


def test_a_bug_outside_a_run_exits_70_without_the_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from engine.history import view

    def broken(rows: Any) -> str:
        raise KeyError("tok-Secret-77")  # stands in for a bug holding something secret

    monkeypatch.setattr(view, "runs_table", broken)
    res = cli("history")
    assert res.exit_code == 70, res.output
    assert "internal error: KeyError at test_exit_codes.py:" in res.stderr
    assert "tok-Secret-77" not in res.output + res.stderr


def test_a_broken_pipe_is_not_an_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.history import view

    def reader_gone(rows: Any) -> str:
        raise BrokenPipeError(32, "Broken pipe")  # `runbook history | head`

    monkeypatch.setattr(view, "runs_table", reader_gone)
    res = cli("history")
    assert res.exit_code == 1 and "internal error" not in res.stderr


def test_a_host_that_never_sends_a_banner_is_unreachable_without_a_traceback(
    tmp_path: Path,
) -> None:
    # paramiko's transport thread logged its failure with a traceback on stderr;
    # the operator gets the engine's reason instead.
    import socket
    import subprocess
    import sys

    from tests.fixtures.history import engine_env

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # accepts (the kernel does), never speaks
        port = listener.getsockname()[1]
        inventory = write(
            tmp_path,
            f"hosts:\n  silent: {{address: 127.0.0.1, port: {port}, connect_timeout: 500ms}}\n",
            "inventory.yaml",
        )
        rb = write(tmp_path, "runbook: nb\nsteps:\n  - name: a\n    shell: echo hi\n")
        proc = subprocess.run(
            [sys.executable, "-m", "engine", "run", str(rb), "-i", str(inventory)],
            capture_output=True, text=True, env=engine_env(), timeout=60,
        )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr and "paramiko" not in proc.stderr, proc.stderr
    as_json = subprocess.run(
        [sys.executable, "-m", "engine", "history", "--format", "json"],
        capture_output=True, text=True, env=engine_env(), timeout=60,
    )  # fmt: skip
    [run] = json.loads(as_json.stdout)
    assert run["state"] == "unreachable"
    timeline = subprocess.run(
        [sys.executable, "-m", "engine", "history", run["id"], "--format", "json"],
        capture_output=True, text=True, env=engine_env(), timeout=60,
    )  # fmt: skip
    assert "SSH handshake" in timeline.stdout  # the reason, kept for the operator

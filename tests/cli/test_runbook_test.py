"""`runbook test`: cases with stand-in step results prove a runbook's branches
without touching a host (docs/testing.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import cli, write

ROOT = Path(__file__).resolve().parents[2]

# Writes a marker file if its shell steps ever ran for real.
RUNBOOK = """
runbook: restart-demo
params:
  threshold: {type: int, default: 90}
steps:
  - name: check disk
    id: check_disk
    shell: "touch MARKER; df --output=pcent / | tail -1"
    thresholds:
      used: {value: result.stdout | float, critical: "> {{ params.threshold }}"}
  - name: fix it
    id: fix
    when: steps.check_disk.state == 'critical'
    block:
      steps:
        - name: restart
          id: restart
          shell: "touch MARKER; systemctl restart app"
      rescue:
        - name: page
          id: notify_oncall
          confirm: "Page the on-call?"
          shell: "touch MARKER; page-oncall"
  - name: each queue
    id: queues
    loop: [a, b]
    shell: "touch MARKER; llen {{ item }}"
    thresholds:
      depth: {value: result.stdout | int, warn: "> 10"}
  - name: remember
    id: remember
    set: {restarted: "{{ steps.fix.state }}"}
  - name: sure
    assert: "vars.restarted in ['ok', 'skipped']"
"""

CASES = """
cases:
  - name: disk fine
    params: {threshold: 90}
    results:
      check_disk: {stdout: "40"}
      queues: [{stdout: "1"}, {stdout: "2"}]
    expect:
      exit: 0
      steps: {check_disk: ok, fix: skipped, restart: not_run, queues: ok}
  - name: disk critical, the restart fails, the rescue pages
    hosts: [web1]
    approve: [notify_oncall]
    results:
      check_disk: {stdout: "95"}
      restart: {failed: true, stderr: "unit not found"}
      notify_oncall: {stdout: paged}
      queues: {stdout: "50"}
    expect:
      exit: 2
      steps:
        check_disk: critical
        restart: {state: failed, error: unit not found}
        notify_oncall: ok
        fix: ok
        queues: warn
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """runbooks/NAME.yaml with its cases at runbooks/tests/NAME.yaml."""
    books = tmp_path / "runbooks"
    (books / "tests").mkdir(parents=True)
    marker = tmp_path / "ran-for-real"
    write(books, RUNBOOK.replace("MARKER", str(marker)), "restart-demo.yaml")
    write(books / "tests", CASES, "restart-demo.yaml")
    return books


def test_passing_cases_are_found_beside_the_runbook(project: Path) -> None:
    result = cli("test", str(project / "restart-demo.yaml"))
    assert result.exit_code == 0, result.output
    assert "PASS  disk fine" in result.stdout
    assert "PASS  disk critical, the restart fails, the rescue pages" in result.stdout
    assert "2 case(s): 2 passed, 0 failed" in result.stdout
    assert not (project.parent / "ran-for-real").exists()  # no step ran for real


def test_a_wrong_expectation_fails_with_the_difference(project: Path) -> None:
    cases = project / "tests" / "restart-demo.yaml"
    cases.write_text(cases.read_text().replace("exit: 2", "exit: 0").replace(
        "notify_oncall: ok", "notify_oncall: skipped"
    ))  # fmt: skip
    result = cli("test", str(project / "restart-demo.yaml"))
    assert result.exit_code == 1
    assert "PASS  disk fine" in result.stdout
    assert "FAIL  disk critical, the restart fails, the rescue pages" in result.stdout
    assert "exit: expected 0, got 2" in result.stdout
    assert "step notify_oncall: expected skipped, got ok" in result.stdout
    assert "1 failed" in result.stdout


def test_a_step_without_a_stand_in_is_an_error_of_the_case(project: Path) -> None:
    cases = project / "tests" / "restart-demo.yaml"
    cases.write_text(cases.read_text().replace('      queues: {stdout: "50"}\n', ""))
    result = cli("test", str(project / "restart-demo.yaml"), "--format", "json")
    assert result.exit_code == 1
    second = json.loads(result.stdout)["files"][0]["cases"][1]
    assert second["passed"] is False
    assert second["missing"] == ["web1: queues"]
    assert any("step queues has no result in case" in d for d in second["differences"])
    assert not (project.parent / "ran-for-real").exists()


def test_a_confirm_not_approved_is_declined(project: Path, tmp_path: Path) -> None:
    other = write(
        tmp_path,
        """
        runbook: ./runbooks/restart-demo.yaml
        cases:
          - name: nobody approves the page
            results:
              check_disk: {stdout: "95"}
              restart: {rc: 1}
            expect:
              exit: 4
              steps: {restart: failed, notify_oncall: aborted, queues: not_run}
        """,
        "declined.yaml",
    )
    result = cli("test", str(project / "restart-demo.yaml"), str(other))
    assert result.exit_code == 0, result.output
    assert "PASS  nobody approves the page" in result.stdout


def test_an_invalid_cases_file_exits_65_with_its_line(project: Path) -> None:
    cases = project / "tests" / "restart-demo.yaml"
    cases.write_text(cases.read_text().replace("check_disk: ok,", "chek_disk: okay,"))
    result = cli("test", str(project / "restart-demo.yaml"))
    assert result.exit_code == 65
    assert "restart-demo.yaml:9:" in result.stderr
    assert "no step 'chek_disk' in restart-demo (did you mean `check_disk`?)" in result.stderr
    assert "'okay' is not a step state" in result.stderr
    assert "PASS" not in result.stdout  # nothing ran


def test_missing_cases_file_is_a_usage_error(tmp_path: Path) -> None:
    book = write(tmp_path, "runbook: lonely\nsteps:\n  - name: x\n    log: hi\n", "lonely.yaml")
    result = cli("test", str(book))
    assert result.exit_code == 64
    assert "no cases at" in result.stderr


def test_every_library_cases_file_passes() -> None:
    files = sorted((ROOT / "runbooks" / "tests").glob("*.yaml"))
    assert len(files) >= 4
    result = cli("test", *map(str, files), "--format", "json")
    doc = json.loads(result.stdout)
    failing = [
        (f["file"], c["name"], c["differences"], c["missing"])
        for f in doc["files"]
        for c in f["cases"]
        if not c["passed"]
    ]
    assert failing == []
    assert result.exit_code == 0
    assert {Path(f["file"]).name for f in doc["files"]} == {p.name for p in files}


def test_a_poll_takes_its_results_in_turn_and_waits_for_nothing(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    write(
        tmp_path,
        """
        runbook: poll
        steps:
          - name: lag
            id: lag
            shell: "echo 5"
          - name: wait for it
            id: waiting
            confirm: "go?"
            wait: {check: lag}
            retry: {attempts: 5, delay: 1h}
            until: (result.stdout | int) < 10
        """,
        "poll.yaml",
    )
    write(
        tmp_path / "tests",
        """
        cases:
          - name: polls until the lag is small
            approve: all
            results:
              lag: [{stdout: "50"}, {stdout: "40"}, {stdout: "3"}]
            expect: {exit: 0, steps: {waiting: ok}}
          - name: the lag stays, the wait fails
            approve: all
            results:
              lag: {stdout: "50"}
            expect: {exit: 3, steps: {waiting: {error: until not met after 5 attempts}}}
        """,
        "poll.yaml",
    )
    result = cli("test", str(tmp_path / "poll.yaml"))
    assert result.exit_code == 0, result.output
    assert "2 case(s): 2 passed, 0 failed" in result.stdout

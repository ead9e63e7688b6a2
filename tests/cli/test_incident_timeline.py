"""`runbook history --format markdown`: a run's and an incident's timeline for the
postmortem, drawn from real runs recorded in the isolated $RUNBOOK_HOME."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.history.gates import Gate, Vote
from engine.history.location import open_store
from tests.helpers import cli, write

SECRET = "hunter2-s3cr3t-token"

# Run in a process of its own: its steps wait for the other run's, so the two
# runs' steps interleave in time, as two operators' runs do in an incident.
CHECK = """
runbook: check-disk
params:
  token: {type: str, secret: true}
steps:
  - name: Begin
    id: begin
    shell: "echo begin"
  - name: Wait for the failover
    id: wait_failover
    shell: "touch a_waiting; for i in $(seq 600); do [ -f b_done ] && exit 0; sleep 0.05; done; exit 1"
  - name: Measure
    id: measure
    shell: "echo 85"
    thresholds:
      disk_pct: {value: result.stdout | int, warn: "> 80", critical: "> 95", unit: "%"}
  - name: Use the token
    id: use_token
    shell: "echo token is {{ params.token }}; echo 'ticks ``` in | output'"
  - name: Note
    id: note
    log: {message: "disk checked", level: warning}
  - name: Break
    id: breaks
    shell: "echo disk full >&2; exit 3"
"""

FAILOVER = """
runbook: failover
steps:
  - name: Look
    id: look
    shell: "echo look"
  - name: Promote
    id: promote
    confirm: "Promote the replica?"
    shell: "echo promoted"
  - name: Tell the team
    id: tell
    manual: "Post in #ops that the replica is primary"
  - name: Done
    id: done
    shell: "touch b_done"
"""

OTHER = """
runbook: unrelated
steps:
  - name: Quiet
    id: quiet
    shell: "echo unrelated"
"""


@pytest.fixture
def incident(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Two runs of INC-42 (interleaved) and one run of no incident: their ids."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNBOOK_OPERATOR", "carol")
    check, failover = write(tmp_path, CHECK, "check.yaml"), write(tmp_path, FAILOVER, "fo.yaml")
    first = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", str(check), "--incident", "INC-42",
         "-p", f"token={SECRET}"],
        cwd=tmp_path, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    _wait_for(tmp_path / "a_waiting", first)
    second = cli(
        "run", failover, "--incident", "INC-42", "--operator", "dave",
        "--approve", "promote", "--approve", "tell",
    )  # fmt: skip
    out, err = first.communicate(timeout=120)
    assert first.returncode == 3, out + err
    assert second.exit_code == 0, second.output
    assert cli("run", write(tmp_path, OTHER, "other.yaml")).exit_code == 0
    runs = json.loads(cli("history", "--format", "json").stdout)
    ids = {r["runbook"]: r["id"] for r in runs}
    assert {r["runbook"]: r["incident"] for r in runs} == {
        "check-disk": "INC-42",
        "failover": "INC-42",
        "unrelated": None,
    }
    return ids


def _wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    """Until the other run's step says it is waiting (or that run ended)."""
    deadline = time.monotonic() + 60
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert path.exists(), proc.communicate()


def _table_rows(md: str, first_header: str) -> list[list[str]]:
    """The rows of the table whose header starts with `first_header`, split on
    unescaped pipes; every row must have as many cells as the header."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        rows.append(cells)
    header, rule, body = rows[0], rows[1], rows[2:]
    assert all(set(c) == {"-"} for c in rule) and len(rule) == len(header)
    assert all(len(r) == len(header) for r in body), md
    return [header, *body]


def _renders(md: str) -> None:
    """The Markdown parses; its tables have the rows and cells the text has."""
    try:
        from markdown_it import MarkdownIt
    except ImportError:
        return  # _table_rows checked the row and column counts
    tokens = MarkdownIt("commonmark").enable("table").parse(md)
    tables = [t for t in tokens if t.type == "table_open"]
    assert len(tables) == md.count("\n|---|")
    assert sum(t.type == "tr_open" for t in tokens) == sum(
        1 for line in md.splitlines() if line.startswith("|") and not line.startswith("|---")
    )
    html = MarkdownIt("commonmark").enable("table").render(md)
    assert "<table>" in html and "<script" not in html


def test_one_run_as_markdown(incident: dict[str, str]) -> None:
    res = cli("history", incident["failover"], "--format", "markdown")
    assert res.exit_code == 0, res.output
    md = res.stdout
    assert SECRET not in md
    assert "| **incident** | INC-42 |" in md and "| **started by** | dave |" in md
    assert "| **outcome** | **ok** (exit 0) |" in md
    rows = _table_rows(md, "time")
    assert rows[0] == ["time", "host", "what", "state", "took", "detail"]
    steps = [(r[2].split("`")[1], r[3]) for r in rows[1:] if r[2].startswith("step ")]
    assert steps == [("look", "ok"), ("promote", "ok"), ("tell", "ok"), ("done", "ok")]
    [approval] = [r for r in rows if r[2] == "approval of `promote`"]
    assert approval[3] == "approved" and approval[5].startswith("by dave (--approve promote)")
    [manual] = [r for r in rows if r[2].startswith("step `tell`")]
    assert "manual step acknowledged by dave" in manual[5]
    assert rows[-1][2] == "run finished" and rows[-1][5] == "exit 0"
    _renders(md)


def test_a_failed_run_shows_the_error_threshold_and_redacted_output(
    incident: dict[str, str],
) -> None:
    md = cli("history", incident["check-disk"], "--format", "markdown", "--tail", "1").stdout
    assert SECRET not in md
    assert "| **params** | token=`***` |" in md
    assert "| **outcome** | **failed** (exit 3) |" in md
    rows = {r[2].split(" ")[1]: r for r in _table_rows(md, "time")[1:] if r[2].startswith("step")}
    assert (
        rows["`measure`"][3] == "warn" and "disk\\_pct = 85 % (warn \\> 80)" in rows["`measure`"][5]
    )
    assert rows["`breaks`"][3] == "failed" and "rc 3" in rows["`breaks`"][5]
    # --tail 1: the last line of the output only, in a fence longer than its backticks.
    assert "**`use_token` on localhost, stdout (ok)** — last 1 of 2 lines" in md
    assert "````text\nticks ``` in | output\n````" in md
    assert "token is ***" not in md
    full = cli("history", incident["check-disk"], "--format", "markdown").stdout
    assert "````text\ntoken is ***\nticks ``` in | output\n````" in full
    _renders(md)


def test_an_incident_interleaves_its_runs_in_time(incident: dict[str, str]) -> None:
    res = cli("history", "--incident", "INC-42", "--format", "markdown")
    assert res.exit_code == 0, res.output
    md = res.stdout
    assert SECRET not in md
    assert md.startswith("# Incident INC-42\n")
    assert "| **operators** | carol, dave |" in md and "| **approvers** | dave |" in md
    assert "unrelated" not in md and incident["unrelated"][-6:] not in md
    rows = _table_rows(md, "time")
    assert rows[0] == ["time", "run", "host", "what", "state", "took", "detail"]
    steps = [(r[1].split(" ")[0], r[3].split("`")[1]) for r in rows[1:] if r[3].startswith("step")]
    assert steps == [
        ("check-disk", "begin"),
        ("check-disk", "wait_failover"),
        ("failover", "look"),
        ("failover", "promote"),
        ("failover", "tell"),
        ("failover", "done"),
        ("check-disk", "measure"),
        ("check-disk", "use_token"),
        ("check-disk", "note"),
        ("check-disk", "breaks"),
    ]
    assert [r[0] for r in rows[1:]] == sorted(r[0] for r in rows[1:])
    # Then each run's summary.
    assert md.index("### check-disk `") < md.index("### failover `")
    assert "| **outcome** | **failed** (exit 3) |" in md
    assert "| **outcome** | **ok** (exit 0) |" in md
    _renders(md)


def test_incident_lists_and_the_incident_column(incident: dict[str, str]) -> None:
    text = cli("history", "--incident", "INC-42").stdout
    assert text.splitlines()[0].split()[:2] == ["run", "runbook"]
    assert "incident" in text.splitlines()[0]
    assert incident["failover"] in text and incident["unrelated"] not in text
    runs = json.loads(cli("history", "--incident", "INC-42", "--format", "json").stdout)
    assert sorted(r["runbook"] for r in runs) == ["check-disk", "failover"]
    everything = cli("history").stdout
    assert "incident" in everything.splitlines()[0] and "INC-42" in everything
    only_other = cli("history", "--runbook", "unrelated").stdout
    assert "incident" not in only_other.splitlines()[0]
    for out in (text, everything, json.dumps(runs)):
        assert SECRET not in out


def test_usage_errors_change_nothing(incident: dict[str, str]) -> None:
    missing = cli("history", "--incident", "INC-404", "--format", "markdown")
    assert missing.exit_code == 64 and "no run of incident 'INC-404'" in missing.output
    assert cli("history", "--format", "markdown").exit_code == 64
    both = cli("history", incident["failover"], "--incident", "INC-42")
    assert both.exit_code == 64 and "--incident" in both.output
    assert cli("history", "--incident", "INC-42", "--metric", "disk_pct").exit_code == 64


def test_votes_of_others_are_listed_with_via_and_comment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    res = cli("run", write(tmp_path, OTHER), "--incident", "INC-7", "--operator", "erin")
    assert res.exit_code == 0, res.output
    run_id = json.loads(cli("history", "--format", "json").stdout)[0]["id"]
    store = open_store()
    try:
        at = "2026-12-04T09:00:0{}.000+00:00"
        store.insert_gate(
            Gate(run_id, "localhost", "quiet", "confirm", "Run | it?", "erin", ["@dba", "frank"],
                 2, False, at.format(1), None, "approved", "frank, gina", at.format(5))
        )  # fmt: skip
        store.add_vote(
            Vote(run_id, "quiet", "*", "frank", True, "web", "looks `fine`", at.format(2))
        )
        store.add_vote(Vote(run_id, "quiet", "localhost", "gina", True, "cli", "", at.format(3)))
        store.add_vote(Vote(run_id, "quiet", "*", "hal", False, "api", "not me", at.format(4)))
    finally:
        store.close()
    md = cli("history", run_id, "--format", "markdown").stdout
    rows = _table_rows(md, "time")
    votes = [(r[1], r[3], r[5]) for r in rows if r[2] == "vote on `quiet`"]
    assert votes == [
        ("", "approve", "frank via web: “looks \\`fine\\`”"),
        ("localhost", "approve", "gina via cli"),
        ("", "decline", "hal via api: “not me”"),
    ]
    [opened] = [r for r in rows if r[2] == "gate `quiet` opened"]
    assert "Run \\| it?" in opened[5] and "approvers: @dba, frank, 2 needed" in opened[5]
    [closed] = [r for r in rows if r[2] == "gate `quiet` closed"]
    assert closed[3] == "approved" and closed[5] == "by frank, gina"
    incident_md = cli("history", "--incident", "INC-7", "--format", "markdown").stdout
    assert "| **approvers** | frank, gina, hal |" in incident_md
    _renders(md)
    _renders(incident_md)

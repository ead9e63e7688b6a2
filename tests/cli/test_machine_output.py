"""Machine output as a contract: `--format json` and `--format jsonl` of real runs,
checked against the schemas `runbook schema --output run|event` publishes, and
`history RUN_ID --format json` printing the same document as the run did."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from engine import events
from engine.reports.jsonl import event_name
from tests.fixtures.history import engine_env
from tests.helpers import cli, steps_of, write

TOKEN = "tok-Mach1ne-77q"

RUNBOOK = """
runbook: machine-output
steps:
  - name: hello
    shell: "echo hi {{ secret('MO_TOKEN') }}"
  - name: measure
    shell: "echo 7"
    thresholds:
      n: {value: "result.stdout | int", warn: "> 5", critical: "> 9"}
  - name: not today
    when: "false"
    log: never
  - name: say
    log: "token={{ secret('MO_TOKEN') }}"
  - name: broken
    shell: "echo bad {{ secret('MO_TOKEN') }} >&2; exit 2"
"""


def _validator(what: str) -> jsonschema.Draft202012Validator:
    shown = cli("schema", "--output", what)
    assert shown.exit_code == 0, shown.output
    schema = json.loads(shown.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$id"] == f"https://runbook-engine.dev/schemas/{what}-v1.json"
    assert schema["title"]
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture(scope="module")
def run_schema() -> jsonschema.Draft202012Validator:
    return _validator("run")


@pytest.fixture(scope="module")
def event_schema() -> jsonschema.Draft202012Validator:
    return _validator("event")


def _run(rb: Path, *args: str) -> tuple[int, str]:
    result = cli("run", str(rb), *args, env={"MO_TOKEN": TOKEN})
    return result.exit_code, result.stdout


def _shape(doc: dict[str, Any]) -> dict[str, Any]:
    """What must match between a run's document and history's: every key, and
    per host and step everything but free-form data."""
    return {
        "keys": sorted(doc),
        "run": {k: v for k, v in doc.items() if k not in ("hosts", "logs")},
        "hosts": {
            name: [{k: v for k, v in s.items() if k != "data"} for s in h["steps"]]
            for name, h in doc["hosts"].items()
        },
        "logs": doc["logs"],
    }


def test_run_json_follows_the_schema_and_history_prints_the_same(
    tmp_path: Path, run_schema: jsonschema.Draft202012Validator
) -> None:
    code, out = _run(write(tmp_path, RUNBOOK), "--format", "json")
    assert code == 3 and TOKEN not in out
    doc = json.loads(out)
    run_schema.validate(doc)
    assert doc["schema_version"] == 1 and doc["state"] == "failed" and doc["exit_code"] == 3
    steps = steps_of(doc)
    assert {k: s["state"] for k, s in steps.items()} == {
        "hello": "ok", "measure": "warn", "not_today": "skipped", "say": "ok", "broken": "failed",
    }  # fmt: skip
    assert steps["measure"]["metrics"]["n"]["value"] == 7
    assert all(s["finished_at"] for s in steps.values())
    assert steps["not_today"]["started_at"] is None  # skipped: it never started
    assert steps["broken"]["started_at"] <= steps["broken"]["finished_at"]
    assert doc["logs"][0]["message"] == "token=***"
    assert steps["broken"]["data"]["stderr"].strip() == "bad ***"

    shown = cli("history", doc["run_id"], "--format", "json")
    assert shown.exit_code == 0 and TOKEN not in shown.stdout
    again = json.loads(shown.stdout)
    run_schema.validate(again)
    assert _shape(again) == _shape(doc)
    assert steps_of(again)["broken"]["data"] == steps["broken"]["data"]


def test_jsonl_streams_every_event_by_the_event_schema(
    tmp_path: Path, event_schema: jsonschema.Draft202012Validator
) -> None:
    code, out = _run(write(tmp_path, RUNBOOK), "--format", "jsonl")
    assert code == 3 and TOKEN not in out
    lines = [json.loads(line) for line in out.splitlines()]
    for line in lines:
        event_schema.validate(line)
    names = [line["event"] for line in lines]
    assert names[0] == "run_started" and names[-1] == "run_finished"
    assert {"step_started", "step_finished", "log_message", "host_finished"} <= set(names)
    assert len({line["run_id"] for line in lines}) == 1
    assert lines[-1]["result"]["exit_code"] == 3
    log = next(line for line in lines if line["event"] == "log_message")
    assert log["message"] == "token=***" and log["step_id"] == "say"


def test_resume_speaks_the_same_contract(
    tmp_path: Path,
    run_schema: jsonschema.Draft202012Validator,
    event_schema: jsonschema.Draft202012Validator,
) -> None:
    code, out = _run(write(tmp_path, RUNBOOK), "--format", "json")
    assert code == 3
    first = json.loads(out)
    resumed = cli("resume", first["run_id"], "--format", "json", env={"MO_TOKEN": TOKEN})
    assert resumed.exit_code == 3 and TOKEN not in resumed.stdout
    doc = json.loads(resumed.stdout)
    run_schema.validate(doc)
    assert steps_of(doc)["hello"]["skip_reason"] == "resumed: already done"
    streamed = cli("resume", doc["run_id"], "--format", "jsonl", env={"MO_TOKEN": TOKEN})
    lines = [json.loads(line) for line in streamed.stdout.splitlines()]
    for line in lines:
        event_schema.validate(line)
    assert lines[0]["resumed_from"] == doc["run_id"]


def test_jsonl_lines_arrive_while_the_run_is_still_going(tmp_path: Path) -> None:
    """A reader tailing stdout gets each line as it happens: the run waits on a
    file that the test writes only after reading the waiting step's start."""
    go = tmp_path / "go"
    rb = write(
        tmp_path,
        f"""
        runbook: tailed
        steps:
          - name: wait
            shell: "while [ ! -e {go} ]; do sleep 0.05; done"
            timeout: 60s
          - name: after
            shell: "true"
        """,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", str(rb), "--format", "jsonl"],
        stdout=subprocess.PIPE, text=True, env=engine_env(),
    )  # fmt: skip
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(json.loads(line))
        if seen[-1]["event"] == "step_started" and seen[-1]["step_id"] == "wait":
            break
    assert proc.poll() is None  # still running: the line was not held back to the end
    go.touch()
    seen += [json.loads(line) for line in proc.stdout]
    assert proc.wait(timeout=60) == 0
    assert seen[-1]["event"] == "run_finished" and seen[-1]["result"]["state"] == "ok"


def test_every_event_type_is_in_the_event_schema(
    event_schema: jsonschema.Draft202012Validator,
) -> None:
    types = [
        t
        for t in vars(events).values()
        if isinstance(t, type) and issubclass(t, events.Event) and t is not events.Event
    ]
    named = event_schema.schema["allOf"][0]["properties"]["event"]["enum"]
    assert sorted(event_name(t) for t in types) == sorted(named)
    for t in types:  # each event's own fields are described
        described = next(
            part["then"]["properties"]
            for part in event_schema.schema["allOf"][1:]
            if part["if"]["properties"]["event"]["const"] == event_name(t)
        )
        own = {f.name for f in dataclasses.fields(t)} - {"run_id", "at"}
        assert own == set(described), t.__name__


def test_schema_defaults_to_the_runbook_format() -> None:
    default = cli("schema")
    assert default.exit_code == 0
    assert default.stdout == cli("schema", "--output", "runbook").stdout
    assert "run-v1" not in default.stdout
    assert cli("schema", "--output", "nope").exit_code == 64


def test_history_keeps_the_recorded_events_under_format_events(tmp_path: Path) -> None:
    _, out = _run(write(tmp_path, RUNBOOK), "--format", "json")
    run_id = json.loads(out)["run_id"]
    rows = json.loads(cli("history", run_id, "--format", "events").stdout)
    assert set(rows) == {"run", "steps", "events"}
    assert rows["events"][0]["kind"] == "run_started"
    assert cli("history", "--format", "events").exit_code == 64  # one run's: needs RUN_ID

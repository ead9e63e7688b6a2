"""The published JSON Schemas of the engine's machine output: the run document
(`run --format json`, `history RUN_ID --format json`) and the event lines
(`run --format jsonl`). `runbook schema --output run|event` prints them.

`schema_version` is an integer (as `check --format json` says it), bumped only
when a field is removed, renamed, retyped or changes meaning, with a new `$id`;
a reader checks it equals the version it knows. Fields may be added within a
version, so objects stay open to properties this schema does not name.
Written by hand, not generated from the dataclasses:
a contract changes on purpose, and tests/cli/test_machine_output.py checks
the engine's real output against it.
"""

from __future__ import annotations

from typing import Any

SCHEMA_VERSION = 1
DRAFT = "https://json-schema.org/draft/2020-12/schema"
BASE = "https://runbook-engine.dev/schemas"  # an identifier: nothing fetches it

STEP_STATES = ["ok", "skipped", "warn", "critical", "failed", "unreachable", "aborted"]
# A recorded run's row also says these: still running, its engine gone without
# recording the end, or the engine itself raised (resumable).
RUN_STATES = [*STEP_STATES, "running", "died", "error"]

STRING = {"type": "string"}
NULLABLE_STRING = {"type": ["string", "null"]}
BOOLEAN = {"type": "boolean"}
COUNT = {"type": "integer", "minimum": 0}


def _object(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
    }


def _defs() -> dict[str, Any]:
    """What the run document and the event lines share."""
    metric = _object(
        {
            "value": {"type": ["number", "null"]},
            "state": {"enum": STEP_STATES},
            "warn": NULLABLE_STRING,
            "critical": NULLABLE_STRING,
            "unit": NULLABLE_STRING,
        }
    )
    step_result = _object(
        {
            "id": STRING,
            "name": STRING,
            "state": {"enum": STEP_STATES},
            "duration_ms": COUNT,
            "attempts": COUNT,
            "dry_run": BOOLEAN,
            "metrics": {"type": "object", "additionalProperties": {"$ref": "#/$defs/metric"}},
            "data": {"type": "object"},
        },
        {
            "error": STRING,
            "skip_reason": STRING,
            "rendered": {"type": "object"},
            "approved_by": STRING,
            "ignored": BOOLEAN,
            "rescued": BOOLEAN,
        },
    )
    return {
        "metric": metric,
        "step_result": step_result,
        # In the run document a step also says when it ran; null where the
        # history has no start (a step a resume kept, or a start never recorded).
        "step": {
            "allOf": [
                {"$ref": "#/$defs/step_result"},
                _object({"started_at": NULLABLE_STRING, "finished_at": NULLABLE_STRING}),
            ]
        },
        "host": _host("#/$defs/step"),
        "host_result": _host("#/$defs/step_result"),
        "run_result": _run_result("#/$defs/host_result"),
    }


def _host(step_ref: str) -> dict[str, Any]:
    return _object(
        {
            "state": {"enum": STEP_STATES},
            "steps": {"type": "array", "items": {"$ref": step_ref}},
        },
        {
            "unreachable": STRING,
            "aborted": STRING,
            "not_started": {"const": True},
            "worker": STRING,
        },
    )


def _run_result(host_ref: str) -> dict[str, Any]:
    return _object(
        {
            "run_id": STRING,
            "runbook": STRING,
            "state": {"enum": RUN_STATES},
            # null: a recorded run that has not ended (or whose engine died).
            "exit_code": {"type": ["integer", "null"]},
            "dry_run": BOOLEAN,
            "started_at": STRING,
            "finished_at": STRING,  # "" while a recorded run has not ended
            "duration_ms": COUNT,
            "hosts": {"type": "object", "additionalProperties": {"$ref": host_ref}},
        },
        # `stopped` (max_fail stopped new hosts) is not in the history: only a
        # live run's document can say it.
        {"aborted": STRING, "stopped": STRING},
    )


def run_schema() -> dict[str, Any]:
    """The schema of the run document."""
    defs = _defs()
    where = {"at": STRING, "host": NULLABLE_STRING, "step": NULLABLE_STRING}
    log = _object({**where, "level": STRING, "message": STRING})
    approval = _object({**where, "approved": BOOLEAN, "by": STRING, "prompt": STRING})
    return {
        "$schema": DRAFT,
        "$id": f"{BASE}/run-v{SCHEMA_VERSION}.json",
        "title": "runbook run document",
        "description": "One run: `runbook run --format json`, `runbook resume --format json`, "
        "`runbook history RUN_ID --format json`.",
        "allOf": [
            _run_result("#/$defs/host"),
            _object(
                {
                    "schema_version": {"const": SCHEMA_VERSION},
                    "logs": {"type": "array", "items": log},
                    "approvals": {"type": "array", "items": approval},
                }
            ),
        ],
        "$defs": defs,
    }


def _events() -> dict[str, dict[str, Any]]:
    """Each event's own fields (engine/events.py), by its line's `event` name."""
    on_step = {"host": STRING, "step_id": STRING}
    return {
        "run_started": _object(
            {
                "runbook": STRING,
                "path": STRING,
                "hosts": {"type": "array", "items": STRING},
                "params": {"type": "object"},
                "operator": STRING,
                "dry_run": BOOLEAN,
                "inventory": STRING,
                "inventory_digest": STRING,
                "runbook_digest": STRING,
                "resumed_from": NULLABLE_STRING,
            }
        ),
        "step_started": _object({**on_step, "name": STRING, "depth": COUNT}),
        "step_finished": _object(
            {"host": STRING, "depth": COUNT, "result": {"$ref": "#/$defs/step_result"}}
        ),
        "log_message": _object({**on_step, "level": STRING, "message": STRING}),
        "approval": _object({**on_step, "approved": BOOLEAN, "by": STRING, "prompt": STRING}),
        "host_finished": _object(
            {
                "host": STRING,
                "state": {"enum": STEP_STATES},
                "reason": STRING,
                "not_started": BOOLEAN,
                "worker": STRING,
            }
        ),
        "run_aborted": _object({"reason": STRING}),
        "run_finished": _object({"result": {"$ref": "#/$defs/run_result"}}),
    }


def event_schema() -> dict[str, Any]:
    """The schema of one `--format jsonl` line."""
    events = _events()
    common = _object(
        {
            "schema_version": {"const": SCHEMA_VERSION},
            "event": {"enum": list(events)},
            "run_id": STRING,
            "at": STRING,
        }
    )
    return {
        "$schema": DRAFT,
        "$id": f"{BASE}/event-v{SCHEMA_VERSION}.json",
        "title": "runbook run event",
        "description": "One line of `runbook run --format jsonl`: an event as it happens.",
        "allOf": [
            common,
            *(
                {"if": _object({"event": {"const": name}}), "then": fields}
                for name, fields in events.items()
            ),
        ],
        "$defs": _defs(),
    }


SCHEMAS = {"run": run_schema, "event": event_schema}

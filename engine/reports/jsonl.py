"""`--format jsonl`: one JSON object per event on stdout, as it happens.

For log shippers and chat bots that tail a run: each line is flushed as it is
written, and says `schema_version`, `event` (the event type's name in
snake_case), `run_id`, `at` and the event's own fields. Its schema is `runbook
schema --output event` (reports/run_schema.py). Events reach processors
already redacted by the EventBus, so nothing here masks again.
"""

from __future__ import annotations

import json
import re
from dataclasses import fields
from typing import IO, Any

from engine.events import Event

from .run_schema import SCHEMA_VERSION


def event_name(kind: type[Event]) -> str:
    """`LogMessage` → `log_message`: the type's name, which a reader already knows
    from engine/events.py."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", kind.__name__).lower()


def event_line(event: Event) -> dict[str, Any]:
    line: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "event": event_name(type(event))}
    for f in fields(event):
        value = getattr(event, f.name)
        line[f.name] = value.to_dict() if hasattr(value, "to_dict") else value
    return line


def event_text(event: Event) -> str:
    """The line as written: `--format jsonl` and the event streams of `runbook serve`."""
    return json.dumps(event_line(event), default=str, ensure_ascii=False)


class JsonLines:
    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def handle(self, event: Event) -> None:
        self.stream.write(event_text(event) + "\n")
        self.stream.flush()  # per line: a reader tailing the stream sees it now
